"""The ``qbias-check`` command: the gate and the thesis toolbox without pytest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``qbias-check`` command."""
    parser = argparse.ArgumentParser(
        prog="qbias-check",
        description="Compare an int8 model with its float reference, per class and per group.",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qbias-check`` command; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
