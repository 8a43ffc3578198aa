"""``mgrpo plot RUN_DIR... [--out DIR] [--oracle-queries N] [--storage URL --study NAME]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo plot`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "plot",
        help="plot runs (success, reward per role, d_k, alignment, eval shares) and optionally "
        "a study",
        description="Plot run dirs: a directory holding run dirs (any depth) expands to them. "
        "Every figure states its seeds, band (95%% seed-bootstrap percentile interval of the "
        "mean) and EMA weight under the plot.",
    )
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="run dirs or dirs of run dirs")
    p.add_argument("--out", help="output directory (default: <first RUN_DIR>/plots)")
    p.add_argument("--storage", help="Optuna storage of a study: URL, journal:PATH or .db file")
    p.add_argument("--study", help="study name (default: the only study in --storage)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse runs of one variant whose configs differ beyond the seed (exit 2) "
        "instead of drawing one line per config",
    )
    p.add_argument(
        "--oracle-queries",
        type=int,
        default=2000,
        metavar="N",
        help="held-out queries of the oracle's d_k line in the d_k figure (default 2000, "
        "cached; 0: leave it out)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo plot``: 0 on success, 2 on bad input (one line on stderr)."""
    if not args.run_dirs and not args.storage:
        print("error: give at least one RUN_DIR (or --storage for a study)", file=sys.stderr)
        return 2
    from experiments.config import ConfigError
    from experiments.env_check import check_output_dir

    missing = [d for d in args.run_dirs if not Path(d).is_dir()]
    if missing:
        for d in missing:
            what = "is a file, not a run directory" if Path(d).exists() else "does not exist"
            print(f"error: RUN_DIR {d}: {what}", file=sys.stderr)
        return 2
    if args.study is not None and not args.storage:
        print("error: --study needs --storage (where the study is)", file=sys.stderr)
        return 2
    first = args.run_dirs[0] if args.run_dirs else Path(args.storage).parent
    out = Path(args.out) if args.out else Path(first) / "plots"
    try:
        check_output_dir(out)
    except ConfigError as e:
        print(f"error: {e.problems[0]}", file=sys.stderr)
        return 2
    from experiments.plots.runs import plot_runs
    from experiments.plots.study import load_study, plot_study

    try:
        study = None
        if args.storage:
            study = load_study(args.storage, _study_name(args.storage, args.study))
        n = getattr(args, "oracle_queries", 2000)
        if n < 0:
            raise ValueError(f"--oracle-queries {n}: give 0 (leave the line out) or more")
        written = (
            plot_runs(args.run_dirs, out, strict=args.strict, oracle_queries=n)
            if args.run_dirs
            else []
        )
        if study is not None:
            written += plot_study(study, out)
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


def _study_name(storage: str, name: str | None) -> str | None:
    """``--study`` checked against the studies in ``storage`` (ValueError listing them)."""
    if name is None:
        return None
    import optuna

    url: object = storage
    if storage.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = storage.removeprefix("journal:")
        if not Path(path).is_file():
            raise ValueError(f"{path}: no such journal file")
        url = JournalStorage(JournalFileBackend(path))
    elif "://" not in storage:
        if not Path(storage).is_file():
            raise ValueError(f"{storage}: no such study storage file")
        url = f"sqlite:///{Path(storage).resolve()}"
    names = optuna.study.get_all_study_names(url)
    if name not in names:
        have = ", ".join(sorted(names)) or "none"
        raise ValueError(f"--study {name!r} is not in {storage}; studies there: {have}")
    return name
