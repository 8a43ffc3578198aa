"""``mgrpo ablate --storage URL``: an ablation grid whose cells live in a database, worked on by
processes on any number of machines (issue 13, item 4).

    mgrpo ablate CONFIG --storage URL [--grid NAME] [--workers W] [--out DIR] [--no-work]
    mgrpo ablate --storage URL --join [--grid NAME] [--workers W] [--out DIR]

The first form plans the grid exactly as ``mgrpo ablate CONFIG`` does and puts its cells in the
store (:mod:`experiments.grid_store`; the same command again keeps the cells already there; a
grid name that holds another plan is refused), then works on it like a joiner unless
``--no-work``. Each worker process takes cells until every cell is done or failed: a cell whose
needs (its stage-1 run, :mod:`experiments.stages`) are not done yet waits, with a line every
30 s saying what for. A running cell heartbeats; one whose worker was killed is taken over after
``--stale-after`` seconds and retried (``--attempts`` claims at most, then failed).

Before a cell trains, the runs it needs are materialised under the worker's own ``--out`` from
the store (config, metrics, checkpoint; :mod:`experiments.grid_files`), and its
``roles.<r>.init_from`` point there; the env's pilot D (``[ablate.pilot]``) is computed by the
first worker that needs it and stored, so every machine trains with the same D. A finished
cell's metrics and checkpoint go to the store (large files to ``--blob-dir``). When the grid
is complete, the planning process copies every finished run dir into its ``--out`` and writes
the summary and plots there as a local grid does; ``mgrpo report --storage URL`` and ``mgrpo
plot --storage URL`` work from any machine. Without ``--storage`` nothing changes: a local
process pool (:mod:`experiments.ablate`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import ablate
from experiments.config import ConfigError
from experiments.grid_worker import ATTEMPTS, STALE_AFTER

if TYPE_CHECKING:
    from experiments.grid_worker import WorkerOptions
    from experiments.store import Store

__all__ = ["add_parser", "run"]


# ----------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo ablate`` (:mod:`experiments.ablate`'s options plus the store's)."""
    p = ablate.add_parser(subparsers)
    g = p.add_argument_group("grids on several machines (a shared database)")
    g.add_argument(
        "--storage",
        metavar="URL",
        help="put the grid's cells in this store and "
        "work on them: sqlite:///PATH (one machine) or "
        "postgresql+psycopg://USER@HOST/DB (several); default: a local process pool",
    )
    g.add_argument(
        "--grid",
        metavar="NAME",
        help="the grid's name in the store (default: the "
        "config's name; with --join: the store's only grid)",
    )
    g.add_argument(
        "--join",
        action="store_true",
        help="work on a grid already in --storage "
        "(no CONFIG): take cells until every cell is done or failed",
    )
    g.add_argument(
        "--no-work",
        action="store_true",
        help="only put the grid's cells in --storage; workers run them with --join",
    )
    g.add_argument(
        "--stale-after",
        type=float,
        default=STALE_AFTER,
        metavar="S",
        help="seconds "
        "without a heartbeat after which another worker takes a running cell over "
        f"(default {STALE_AFTER:g})",
    )
    g.add_argument(
        "--attempts",
        type=int,
        default=ATTEMPTS,
        metavar="N",
        help="claims of one "
        f"cell (a killed worker's included) before it fails (default {ATTEMPTS})",
    )
    g.add_argument(
        "--max-cells",
        type=int,
        metavar="N",
        help="take at most N cells per worker process, then exit (default: until none is left)",
    )
    g.add_argument(
        "--blob-dir",
        metavar="DIR",
        help="directory shared by every machine for large checkpoints (default: in the database)",
    )
    p.set_defaults(func=run)
    return p


def _usage_problems(args: argparse.Namespace) -> list[str]:
    if not args.storage:
        flags = [
            f
            for f, v in (
                ("--join", args.join),
                ("--no-work", args.no_work),
                ("--grid", args.grid),
                ("--max-cells", args.max_cells),
                ("--blob-dir", args.blob_dir),
            )
            if v
        ]
        return [f"{f} needs --storage URL (the store that holds the grid)" for f in flags]
    problems = []
    if not args.stale_after > 0:
        problems.append(f"--stale-after {args.stale_after:g}: must be > 0 seconds")
    if args.attempts < 1:
        problems.append(f"--attempts {args.attempts}: must be >= 1")
    if args.max_cells is not None and args.max_cells < 1:
        problems.append(f"--max-cells {args.max_cells}: must be >= 1")
    if args.join:
        given = [
            f
            for f, v in (
                ("CONFIG", args.config),
                ("--variants", args.variants),
                ("--seeds", args.seeds),
                ("--envs", args.envs),
                ("--set", args.set),
                ("--no-work", args.no_work),
            )
            if v
        ]
        problems += [
            f"--join takes the grid's cells from the store: {f} is not needed (the grid was "
            "planned by mgrpo ablate CONFIG --storage URL); remove it"
            for f in given
        ]
    return problems


def _grid_name(store: Store, args: argparse.Namespace) -> str:
    """``--grid``, or the store's only grid for ``--join`` (GridError otherwise)."""
    from experiments.grid_store import GridError, check_grid_name, grid_names

    if args.grid:
        return check_grid_name(args.grid)
    if not args.join:
        stem = Path(args.config).stem if args.config else "default"
        return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:64] or "default"
    names = grid_names(store)
    if len(names) == 1:
        return names[0]
    if not names:
        raise GridError(
            f"the store {store.url} has no grid; plan one with mgrpo ablate CONFIG --storage URL"
        )
    raise GridError(
        f"the store {store.url} has {len(names)} grids: give --grid NAME, one of {', '.join(names)}"
    )


def run(args: argparse.Namespace) -> int:
    """``mgrpo ablate``: the local pool without ``--storage``, the store's grid with it."""
    problems = _usage_problems(args)
    if problems:
        raise ConfigError(problems)
    if not args.storage:
        return ablate.run(args)
    if not 1 <= args.workers <= ablate.WORKERS_MAX:
        raise ConfigError([f"--workers must be in [1, {ablate.WORKERS_MAX}], got {args.workers}"])
    from experiments.env_check import check_output_dir
    from experiments.grid_store import cells_of, counts, enqueue, open_store
    from experiments.grid_worker import WorkerOptions, cell_specs, runs_of, work_pool
    from experiments.store import StoreError

    out = Path(args.out)
    runs, new = None, False
    if not args.join:  # plan and check (bad config: exit 2 before the store is touched)
        variants = (
            [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
        )
        envs = [e.strip() for e in args.envs.split(",") if e.strip()] if args.envs else None
        runs = ablate.plan(args.config, args.set, out, variants, args.seeds, envs)
        ablate.check_envs(runs)
    check_output_dir(out)
    try:
        store = open_store(args.storage, blob_dir=args.blob_dir, create=not args.join)
        grid = _grid_name(store, args)
        if runs is not None:
            new = enqueue(store, grid, cell_specs(runs, out))
        cells = cells_of(store, grid)
    except StoreError as e:
        raise ConfigError([str(e).splitlines()[0]]) from e
    if args.join:  # this machine can build the grid's envs
        ablate.check_envs(runs_of(cells, out))
    n = counts(store, grid)
    if not args.quiet:
        how = "put in" if new else "found in"
        left = ", ".join(f"{v} {k}" for k, v in n.items() if v)
        print(f"grid {grid!r}: {len(cells)} cells {how} the store {store.url} ({left})")
        if args.no_work:
            print(f"workers: mgrpo ablate --storage {store.url} --join --grid {grid} --out DIR")
    store.close()
    if args.no_work:
        return 0
    opts = WorkerOptions(
        url=args.storage,
        grid=grid,
        out=out,
        blob_dir=args.blob_dir,
        stale_after=args.stale_after,
        attempts=args.attempts,
        max_cells=args.max_cells,
        tensorboard=args.tensorboard,
        quiet=args.quiet,
    )
    try:
        return _finish(opts, work_pool(opts, args.workers), planner=not args.join)
    except KeyboardInterrupt:
        print("\ninterrupted; the cells of this process go back to the grid", file=sys.stderr)
        return 130
    except StoreError as e:  # the database went away: our cells go stale, others retry them
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1


def _finish(opts: WorkerOptions, records: list[dict[str, Any]], planner: bool) -> int:
    """After the work: the summary (planner, complete grid), failures on stderr, exit code."""
    from experiments.grid_files import materialise
    from experiments.grid_store import cells_of
    from experiments.grid_worker import runs_of
    from experiments.store import Store

    with Store(opts.url, blob_dir=opts.blob_dir) as store:
        cells = cells_of(store, opts.grid)
        complete = all(c.state in ("done", "failed") for c in cells)
        files: list[Path] = []
        if complete and planner and any(c.state == "done" for c in cells):
            for c in cells:
                if c.state == "done":
                    materialise(store, c.key, c.result, opts.out)
            runs = [
                r for r, c in zip(runs_of(cells, opts.out), cells, strict=True) if c.state == "done"
            ]
            files = ablate.summarize(opts.out, runs)
    failed = (
        [(c.key, c.error) for c in cells if c.state == "failed"]
        if complete
        else [(r["run"], r.get("error")) for r in records if r["status"] == "failed"]
    )
    if not opts.quiet:
        done = sum(c.state == "done" for c in cells)
        what = "complete" if complete else "not complete (its other cells are for other workers)"
        print(
            f"grid {opts.grid!r} is {what}: {done} of {len(cells)} cells done; this process "
            f"took {len(records)}"
        )
        for f in files:
            print(f"wrote {f}")
        if complete and not planner:
            print(f"summary: mgrpo report --storage URL --grid {opts.grid}")
    for key, error in failed:
        print(f"error: {key}: {error}", file=sys.stderr)
    return 1 if failed else 0
