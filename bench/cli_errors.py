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


def csv_list(kind: Callable = str) -> Callable[[str], list]:
    """argparse ``type`` for a comma-separated list of ``kind`` (empty items dropped)."""
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid list {text!r}") from None
    return parse


def make_parser(prog: str, module: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser for ``python -m <module>`` whose errors are one line on stderr and exit 2
    (argparse's own print usage and a multi-line message)."""
    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            fail(prog, message)

    return _Parser(prog=f"python -m {module}", description=description,
                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
