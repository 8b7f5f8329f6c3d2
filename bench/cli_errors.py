"""Shared by the command-line tools: one-line errors and exit status 2 for bad input, a parser
that fails that way, and comma-separated list arguments."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn


class UsageError(Exception):
    """Bad input detected before any expensive work; the message is one line."""


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def split_list(text: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; ValueError on an empty list or an empty item
    (``"50,,100"``, a trailing comma): a typo there would silently drop a setting."""
    items = [t.strip() for t in text.split(",")]
    if not any(items):
        raise ValueError("expected a comma-separated list, got nothing")
    if not all(items):
        raise ValueError(f"empty item in the list {text!r}")
    return items


def csv_list(kind: Callable = str) -> Callable[[str], list]:
    """argparse ``type`` for a comma-separated list of ``kind``; empty items are errors."""
    def parse(text: str) -> list:
        try:
            items = split_list(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid list {text!r}") from None
    return parse


INTERRUPTED = 130  # the shell's status for a command ended by Ctrl-C (128 + SIGINT)


def interrupted(prog: str, hint: str) -> NoReturn:
    """Ctrl-C: one line saying how to resume, exit status 130."""
    print(f"\n{prog}: interrupted; {hint}", file=sys.stderr, flush=True)
    raise SystemExit(INTERRUPTED)


def make_parser(prog: str, module: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser for ``python -m <module>`` whose errors are one line on stderr and exit 2
    (argparse's own print usage and a multi-line message)."""
    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            fail(prog, message)

    return _Parser(prog=f"python -m {module}", description=description,
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
