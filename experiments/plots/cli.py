"""``mgrpo plot RUN_DIR... [--out DIR] [--storage URL --study NAME]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from experiments.plots.runs import plot_runs
from experiments.plots.study import load_study, plot_study

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo plot`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="plot runs (stability curves, success, d_k, alignment) and optionally a study",
        description="Plot run dirs: a directory holding run dirs (any depth) expands to them.",
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run dirs or dirs of run dirs")
    p.add_argument("--out", help="output directory (default: <first RUN_DIR>/plots)")
    p.add_argument("--storage", help="Optuna storage of a study: URL, journal:PATH or .db file")
    p.add_argument("--study", help="study name (default: the only study in --storage)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo plot``: 0 on success, 2 on bad input (one line on stderr)."""
    if not args.run_dirs and not args.storage:
        print("error: give at least one RUN_DIR (or --storage for a study)", file=sys.stderr)
        return 2
    first = args.run_dirs[0] if args.run_dirs else Path(args.storage).parent
    out = Path(args.out) if args.out else Path(first) / "plots"
    try:
        written = plot_runs(args.run_dirs, out) if args.run_dirs else []
        if args.storage:
            written += plot_study(load_study(args.storage, args.study), out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # storage errors (unreachable URL, missing study) are not ValueError
        if type(e).__module__.startswith(("optuna", "sqlalchemy")):
            print(f"error: cannot load the study: {e}".splitlines()[0], file=sys.stderr)
            return 2
        raise
    for p in written:
        print(p)
    return 0
