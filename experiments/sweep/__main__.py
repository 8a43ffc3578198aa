"""``python -m experiments.sweep ARGS``: the same as ``mgrpo sweep ARGS``."""

from __future__ import annotations

import argparse
import sys

from experiments.config import ConfigError
from experiments.sweep.cli import add_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mgrpo")  # usage reads "mgrpo sweep ..."
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
