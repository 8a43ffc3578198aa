"""``mgrpo eval RUN``: a trained run's held-out success with a 95% interval, calls and time.

    mgrpo eval runs/p0                        # 2000 held-out episodes, greedy actions
    mgrpo eval runs/p0 --episodes 500 --seed 1 --sampled

Loads ``RUN/config.toml`` and ``RUN/checkpoint.pt`` (:func:`experiments.api.load_run`) and runs
:func:`experiments.api.evaluate`; writes nothing. Exit codes: 0 success, 2 bad RUN path or
arguments (one line on stderr). Heavy imports (torch) happen inside :func:`run`, so ``mgrpo
--help`` stays light.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "run"]


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def _non_negative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo eval`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="held-out success (95%% interval), calls and time of a trained run",
        description=(
            "Evaluate RUN's last checkpoint on held-out queries (ids from 2**31 up, the queries "
            "and episode seeds of the env's oracle baseline): success with a Wilson 95% "
            "interval, sub-agent calls per role, simulated time, category-error rate. "
            "Writes nothing."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", help="a run directory (config.toml, checkpoint.pt)")
    p.add_argument(
        "--episodes",
        type=_positive,
        default=2000,
        metavar="N",
        help="held-out episodes, one per query (default 2000)",
    )
    p.add_argument(
        "--seed",
        type=_non_negative,
        default=0,
        metavar="S",
        help="held-out slice: queries 2**31 + S*N + i (default 0)",
    )
    p.add_argument(
        "--sampled",
        action="store_true",
        help="sample actions from the policies instead of taking the most likely ones",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo eval``: print the table; 0 on success, 2 on a bad run directory."""
    from experiments.api import evaluate, load_run

    try:
        loaded = load_run(args.run_dir)
    except (FileNotFoundError, ValueError) as e:  # ConfigError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = evaluate(loaded, n=args.episodes, seed=args.seed, greedy=not args.sampled)
    cfg = loaded.config
    print(f"run {loaded.run_dir}: {cfg.env.id}, variant {cfg.variant}, step {loaded.step}")
    print(res.table())
    return 0
