"""``mgrpo sweep``: the argument parser and the command (see :mod:`experiments.sweep`)."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from experiments.config import ConfigError

if TYPE_CHECKING:
    from experiments.sweep.config import SweepConfig

__all__ = ["add_parser", "run"]

TRIALS_MAX = 100_000
"""the largest ``--trials`` (a study's total)"""
WORKERS_MAX = 256
"""the most ``--workers`` processes"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``mgrpo sweep`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "sweep",
        help="Optuna study over the alignment target D and the reward mixing w (and b1)",
        description="An Optuna study over the alignment target D and the sub-agent reward "
        "mixing w (and b1); ranges, seeds, metric, pruner and heartbeats come from the config's "
        "[sweep] table (documented in experiments/sweep/__init__.py). --trials is the study's "
        "total: rerun the same command to continue it.",
    )
    p.add_argument("config", nargs="?", help="TOML config (with a [sweep] table) or preset name")
    p.add_argument("--trials", type=int, required=True, help="the study's total number of trials")
    p.add_argument("--study", required=True, help="study name (a rerun continues it)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (postgresql+psycopg://..., sqlite:///...) or journal:PATH "
        "(default sqlite:///OUT/study.db)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes here (default 1)")
    p.add_argument("--out", help="output directory (default sweeps/<study>)")
    p.add_argument("--seeds", type=int, help="seeds per trial (overrides [sweep] seeds)")
    p.add_argument(
        "--multi-objective",
        action="store_true",
        help="optimize (metric, stability) with NSGA-II, no pruning",
    )
    p.add_argument("--no-plots", action="store_true", help="skip OUT/plots/study_*.png")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, or a [sweep] key as sweep.<key> (repeatable)",
    )
    p.set_defaults(func=run)
    return p


def _objectives(sweep: SweepConfig, multi: bool) -> tuple[list[str], list[str]]:
    names = [sweep.metric.removeprefix("eval/")]
    directions = [sweep.direction]
    if multi:
        names.append("stability")
        directions.append("maximize")
    return names, directions


def _prepare_study(args, flat, sweep, storage_url: str):
    """Create or load the study and check that an existing one is compatible; the study."""
    import optuna

    from experiments.sweep.storage import open_storage

    storage = open_storage(storage_url, sweep)
    names, directions = _objectives(sweep, args.multi_objective)
    space = {
        "space": {k: list(v) for k, v in sweep.space().items()},
        "fixed": sweep.fixed(),
        "metric": sweep.metric,
    }
    study = optuna.create_study(
        study_name=args.study, storage=storage, directions=directions, load_if_exists=True
    )
    have = [d.name.lower() for d in study.directions]
    old = study.user_attrs.get("sweep")
    problems = []
    if have != directions:
        problems.append(
            f"study {args.study!r} exists with directions {have}; this sweep needs {directions} "
            f"({'with' if args.multi_objective else 'without'} --multi-objective)"
        )
    if old is not None and old != json.loads(json.dumps(space)):
        problems.append(
            f"study {args.study!r} exists with the search space {old}; this config gives {space}; "
            "use another --study"
        )
    if problems:
        raise ConfigError(problems)
    if old is None:
        study.set_user_attr("sweep", space)
        study.set_user_attr("objectives", names)
        study.set_user_attr("base_config", {k: v for k, v in flat.items()})
    return study


def run(args: argparse.Namespace) -> int:
    """``mgrpo sweep``: exit 0 done, 1 failed, 2 bad input, 130 interrupted."""
    from experiments.env_check import check_env, check_output_dir
    from experiments.sweep.config import load_sweep
    from experiments.sweep.storage import StorageError, default_storage

    problems = []
    if not 1 <= args.trials <= TRIALS_MAX:
        problems.append(f"--trials {args.trials}: the study's total must be in [1, {TRIALS_MAX:_}]")
    if not 1 <= args.workers <= WORKERS_MAX:
        problems.append(f"--workers {args.workers}: must be in [1, {WORKERS_MAX}]")
    if not args.study.strip():
        problems.append("--study: give a non-empty study name")
    if problems:
        raise ConfigError(problems)
    flat, base, sweep = load_sweep(args.config, args.set, args.seeds)
    check_env(base)
    out = Path(args.out) if args.out else Path("sweeps") / args.study
    check_output_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or default_storage(out)
    import optuna

    from experiments.sweep.summary import print_summary, summarize, write_plots
    from experiments.sweep.workers import run_worker, worker_main

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _prepare_study(args, flat, sweep, storage_url)
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_space = ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in sweep.space().items())
    print(
        f"sweep {args.study}: {args.trials} trials in total, {n_space}, {sweep.seeds} seed(s), "
        f"{base.steps} steps; {args.workers} worker(s); runs in {out}/trials"
    )
    wargs = (storage_url, args.study, flat, sweep, str(out), args.trials, args.multi_objective)
    code = 0
    try:
        if args.workers == 1:
            code = run_worker(0, *wargs)
        else:
            ctx = mp.get_context("spawn")
            procs = [
                ctx.Process(target=worker_main, args=(w, *wargs), name=f"sweep-worker-{w}")
                for w in range(args.workers)
            ]
            for proc in procs:
                proc.start()
            try:
                for proc in procs:
                    proc.join()
            except KeyboardInterrupt:
                for proc in procs:
                    proc.terminate()
                raise
            for w, proc in enumerate(procs):
                if proc.exitcode != 0:
                    print(
                        f"error: worker {w} exited with code {proc.exitcode}; its running trial "
                        "is failed and retried by the next worker (rerun the same command)",
                        file=sys.stderr,
                    )
                    code = 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted; completed trials are in the storage. Continue with the same command.",
            file=sys.stderr,
        )
        return 130
    summary = summarize(study, args.trials, storage_url)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    if summary["best"]:
        if not args.no_plots:
            write_plots(study, out)
    elif code == 0:
        print("error: no trial completed (see the failed trials' user attributes)", file=sys.stderr)
        code = 1
    return code
