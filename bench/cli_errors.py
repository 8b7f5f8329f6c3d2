"""One-line errors and exit status 2 for bad command-line input."""
from __future__ import annotations

import sys
from typing import NoReturn


class UsageError(Exception):
    """Bad input detected before any expensive work; the message is one line."""


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)
