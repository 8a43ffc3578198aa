"""``python -m experiments.sweep ARGS``: the same as ``mgrpo sweep ARGS``."""

from __future__ import annotations

import sys

from experiments.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", *sys.argv[1:]]))
