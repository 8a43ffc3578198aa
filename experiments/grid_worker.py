"""The worker of a grid in the store (``mgrpo ablate --storage URL [--join]``): takes cells
until none are left (:func:`work`), one process or several (:func:`work_pool`).

A worker claims the grid's next cell (:func:`experiments.grid_store.claim`), heartbeats while
it trains, and ends the claim: done (with its result: the store run that holds its files, its
eval success), failed (training failed: not retried) or released (any other error: retried by
the next claim, up to ``attempts`` claims). Before a cell trains:

- the cells it needs (its stage-1 run) are materialised under this worker's ``--out`` from the
  store (:func:`experiments.grid_files.materialise`), and its ``roles.<r>.init_from`` point
  there (a cell's spec holds paths into the grid as cell keys, :func:`cell_specs`);
- its env's pilot D (``[ablate.pilot]``) is read from the store, or computed here
  (:func:`experiments.pilot.ensure_pilot`) and stored; the first stored value stays, so every
  machine trains with the same D.

When it finds no cell to take, it waits (polling every ``poll`` seconds, a line saying what for
every ``report_every`` seconds) while cells are pending or running, and returns once every cell
is done or failed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments import ablate

if TYPE_CHECKING:
    from experiments.grid_store import Cell, Lease
    from experiments.store import Store

__all__ = ["ATTEMPTS", "STALE_AFTER", "WorkerOptions", "cell_specs", "runs_of", "work", "work_pool"]

STALE_AFTER = 120.0
"""default seconds without a heartbeat after which a running cell is taken over"""
ATTEMPTS = 3
"""default claims of one cell before it fails"""


@dataclass(frozen=True)
class WorkerOptions:
    """What one worker loop (:func:`work`) needs; picklable for worker processes."""

    url: str
    """the store's URL"""
    grid: str
    out: Path
    """this machine's output directory (cells go to ``out/<cell>``)"""
    blob_dir: str | None = None
    """the store's blob directory for large files (None: in the database)"""
    stale_after: float = STALE_AFTER
    """seconds without a heartbeat after which others take a running cell of ours over"""
    attempts: int = ATTEMPTS
    """claims of a cell (a killed worker's included) before it fails"""
    max_cells: int | None = None
    """cells this worker takes at most (None: until none is left)"""
    tensorboard: bool = False
    quiet: bool = False
    poll: float = 0.5
    """seconds between looks at the grid while waiting"""
    report_every: float = 30.0
    """seconds between "waiting for ..." lines"""


# ----------------------------------------------------------------------------- cells <-> runs
def _key(run_dir: Path, out: Path) -> str:
    return Path(run_dir).relative_to(out).as_posix()


def cell_specs(runs: list[ablate.AblationRun], out: Path) -> list[tuple[str, dict[str, Any]]]:
    """The plan as ``(cell key, spec)`` with no path of this machine in it: ``init_from`` paths
    into the grid become ``links`` (flat key -> cell key), needs and the pilot's path cell keys
    (so every machine plans the same grid whatever its ``--out``)."""
    keys = {r.run_dir.absolute(): _key(r.run_dir, out) for r in runs}

    def split(flat: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        links = {
            k: keys[Path(v)]
            for k, v in flat.items()
            if k.endswith(".init_from") and isinstance(v, str) and Path(v) in keys
        }
        return {k: v for k, v in flat.items() if k not in links}, links

    specs = []
    for r in runs:
        flat, links = split(r.flat)
        pilot = None
        if r.pilot is not None:
            pflat, plinks = split(r.pilot.flat)
            pilot = {
                "path": _key(r.pilot.path, out),
                "flat": pflat,
                "links": plinks,
                "batches": r.pilot.batches,
                "quantile": r.pilot.quantile,
            }
        needs = [keys[n.absolute()] for n in r.needs if n.absolute() in keys]
        specs.append(
            (
                _key(r.run_dir, out),
                {
                    "env_id": r.env_id,
                    "variant": r.variant,
                    "seed": r.seed,
                    "name": r.name,
                    "flat": flat,
                    "links": links,
                    "needs": needs,
                    "pilot": pilot,
                },
            )
        )
    return specs


def _linked(flat: dict[str, Any], links: dict[str, str], out: Path) -> dict[str, Any]:
    return flat | {k: str((out / cell).absolute()) for k, cell in links.items()}


def runs_of(cells: list[Cell], out: Path) -> list[ablate.AblationRun]:
    """The grid's cells as :class:`~experiments.ablate.AblationRun` under ``out``."""
    from experiments.pilot import PilotSpec

    runs = []
    for c in cells:
        s, p = c.spec, c.spec.get("pilot")
        pilot = None
        if p is not None:
            flat = _linked(p["flat"], p["links"], out)
            pilot = PilotSpec(out / p["path"], flat, p["batches"], p["quantile"])
        runs.append(
            ablate.AblationRun(
                s["env_id"],
                s["variant"],
                s["seed"],
                out / c.key,
                _linked(s["flat"], s["links"], out),
                s["name"],
                tuple(out / n for n in s["needs"]),
                pilot,
            )
        )
    return runs


# ----------------------------------------------------------------------------- one worker
def work(opts: WorkerOptions) -> list[dict[str, Any]]:
    """One worker: take cells of ``opts.grid`` until every cell is done or failed (or
    ``opts.max_cells`` were taken); returns one record per cell taken."""
    from experiments.grid_store import claim, counts, waiting_for
    from experiments.store import Store
    from experiments.store.claims import default_owner

    store = Store(opts.url, blob_dir=opts.blob_dir)
    owner = default_owner()
    records: list[dict[str, Any]] = []
    next_report = 0.0
    try:
        while opts.max_cells is None or len(records) < opts.max_cells:
            lease = claim(
                store, opts.grid, owner, stale_after=opts.stale_after, max_attempts=opts.attempts
            )
            if lease is None:
                left = counts(store, opts.grid)
                if left["pending"] + left["running"] == 0:
                    break
                now = time.monotonic()
                if not opts.quiet and now >= next_report:
                    print(waiting_for(store, opts.grid), flush=True)
                    next_report = now + opts.report_every
                time.sleep(opts.poll)
                continue
            next_report = 0.0
            rec = _run_cell(store, lease, opts)
            records.append(rec)
            if not opts.quiet:
                succ = rec.get("success")
                more = f" (eval success {succ:.3f})" if succ is not None else ""
                more += f": {rec['error']}" if rec.get("error") else ""
                print(f"{rec['status']}: {lease.key} (attempt {lease.attempt}){more}", flush=True)
    finally:
        store.close()
    return records


def _one_line(e: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _run_cell(store: Store, lease: Lease, opts: WorkerOptions) -> dict[str, Any]:
    """Train the leased cell and end the lease: done, failed (training failed) or released
    (any other error: retried up to ``opts.attempts`` claims)."""
    lease.keep_alive()
    try:
        rec = _train_cell(store, lease, opts)
    except KeyboardInterrupt:
        lease.release("interrupted", count=False)
        raise
    except Exception as e:  # noqa: BLE001 - the store, a file, a crash in training: retry
        lease.release(_one_line(e))
        return {"run": lease.key, "status": "released", "error": _one_line(e)}
    ok = lease.fail(rec["error"]) if rec["status"] == "failed" else lease.finish(rec)
    if not ok:
        why = f"no heartbeat from this worker for over {lease.stale_after:g} s"
        error = f"another worker took the cell over ({why}); this result is dropped"
        return {"run": lease.key, "status": "lost", "error": error}
    return rec


def _train_cell(store: Store, lease: Lease, opts: WorkerOptions) -> dict[str, Any]:
    """Materialise the cell's needs, set its pilot's D, train, upload; a result record."""
    from experiments.grid_files import materialise, upload_cell
    from experiments.grid_store import cells_of

    spec, out = lease.spec, opts.out
    if spec["needs"]:
        done = {c.key: c for c in cells_of(store, lease.grid) if c.state == "done"}
        for need in spec["needs"]:
            materialise(store, need, done[need].result, out)
    flat = _linked(spec["flat"], spec["links"], out)
    if spec["pilot"] is not None:
        d = _pilot_target(store, lease.grid, spec["pilot"], out)
        flat = flat if d is None else flat | {"algo.align_target": d}
    run = ablate.AblationRun(
        spec["env_id"], spec["variant"], spec["seed"], out / lease.key, flat, spec["name"]
    )
    rec = ablate._train_one(run, opts.tensorboard)
    rec["run"] = lease.key
    if rec["status"] == "failed":
        return rec
    rec |= upload_cell(store, lease.grid, lease.key, lease.attempt, out / lease.key)
    rec["links"] = {k: [flat[k], cell] for k, cell in spec["links"].items()}
    return rec | {"owner": lease.owner, "attempt": lease.attempt}


def _pilot_target(store: Store, grid: str, p: dict[str, Any], out: Path) -> int | None:
    """The grid's pilot D of one env: the stored one, else computed here and stored (the
    first worker's value stays: every machine trains with the same D)."""
    from experiments.grid_files import get_pilot, put_pilot
    from experiments.pilot import PilotSpec, ensure_pilot

    found, d = get_pilot(store, grid, p["path"])
    if found:
        return d
    spec = PilotSpec(
        out / p["path"], _linked(p["flat"], p["links"], out), p["batches"], p["quantile"]
    )
    d = ensure_pilot(spec)
    hist = json.loads(spec.path.read_text()).get("histogram", {})
    return put_pilot(store, grid, p["path"], d, {"histogram": hist})


def work_pool(opts: WorkerOptions, workers: int) -> list[dict[str, Any]]:
    """:func:`work` in this process (one worker) or in ``workers`` spawned processes."""
    if workers == 1:
        return work(opts)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from experiments.procs import die_with_parent

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent) as pool:
        futures = [pool.submit(work, opts) for _ in range(workers)]
        return [rec for f in futures for rec in f.result()]
