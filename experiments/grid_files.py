"""A grid cell's run dir in the store: uploaded by the worker that trained it, materialised on
any machine that needs it (a stage-2 cell's ``init_from``, ``mgrpo report --storage``).

Upload (:func:`upload_cell`) goes to a run of the store (:class:`experiments.store.Run`) of its
own per attempt, ``grid:<grid>:<cell>:<attempt>`` (a retry never collides with what a killed
attempt left), created with the run dir's ``config.toml`` as its config text:

==========================  ===========================================================
file                        in the store
==========================  ===========================================================
``config.toml``             the run's config text (``mgrpo_runs``)
``metrics.jsonl``           one ``mgrpo_metrics`` row per line, role ``cell``, step = line
                            index, the line's JSON text as written
``checkpoint.pt``,          ``mgrpo_weights`` rows of step 0 named by the file: inline, or
``weights-*.safetensors``   in the store's blob directory above its threshold; sha256
                            checked on every read
==========================  ===========================================================

Materialise (:func:`materialise`) writes ``DEST/<cell>/`` back (each file atomically, files
already there with the same content left alone); ``config.toml``'s ``roles.<r>.init_from``
paths, which name the uploading machine's directories, are rewritten to ``DEST``'s.

An env's pilot D (``[ablate.pilot]``, ``OUT/<env>/pilot.json`` on the machine that computed
it) is stored once per grid (:func:`put_pilot`: the first writer's value stays) and read by
every other machine (:func:`get_pilot`), so all of them train with the same D.
"""

from __future__ import annotations

import hashlib
import json
import time
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from experiments.atomic import atomic_write
from experiments.checkpoint import CHECKPOINT, METRICS, WEIGHTS_GLOB
from experiments.store.schema import grid_pilots, insert_ignore, metrics, weights

if TYPE_CHECKING:
    from experiments.store import Store

__all__ = [
    "cell_run_id",
    "get_pilot",
    "materialise",
    "put_pilot",
    "relink",
    "upload_cell",
]

CONFIG = "config.toml"
_ROLE = "cell"
"""the metrics role of a cell's rows"""


def cell_run_id(grid: str, cell: str, attempt: int) -> str:
    """The store run that holds one attempt's files."""
    return f"grid:{grid}:{cell}:{attempt}"


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically unless it holds exactly that already."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    atomic_write(path, data, prefix=f".{path.name}-")


def upload_cell(store: Store, grid: str, cell: str, attempt: int, run_dir: Path) -> dict[str, Any]:
    """Upload a finished run dir; returns ``{"run_id", "rows", "files"}`` for the cell's
    result. Idempotent (a retried upload of the same files is a no-op)."""
    run_dir = Path(run_dir)
    run = store.open_run(cell_run_id(grid, cell, attempt), (run_dir / CONFIG).read_text())
    lines = [ln for ln in (run_dir / METRICS).read_text().splitlines() if ln.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a run killed while writing its last line (read_metrics skips it too)
            raise
        rows.append({"run_id": run.run_id, "step": i, "role": _ROLE, "data": line})
    now = time.time()
    with store.begin(write=True) as conn:
        for row in rows:
            insert_ignore(conn, metrics, row | {"created": now})
    files = [CHECKPOINT, *sorted(p.name for p in run_dir.glob(WEIGHTS_GLOB))]
    files = [f for f in files if (run_dir / f).is_file()]
    for name in files:
        run.put_weights(0, name, (run_dir / name).read_bytes())
    return {"run_id": run.run_id, "rows": len(rows), "files": files}


def relink(text: str, values: dict[str, tuple[str, str]]) -> str:
    """``config.toml`` text with ``roles.<r>.init_from = OLD`` lines set to ``NEW`` for
    ``values = {"roles.<r>.init_from": (OLD, NEW)}`` (other lines unchanged)."""
    out, table = [], ""
    for line in text.splitlines(keepends=True):
        s = line.strip()
        if s.startswith("["):
            table = s.strip("[]").strip()
        elif table.startswith("roles.") and s.startswith("init_from"):
            old_new = values.get(f"{table}.init_from")
            try:
                value = tomllib.loads(s).get("init_from")
            except tomllib.TOMLDecodeError:
                value = None
            if old_new is not None and value == old_new[0]:
                line = f"init_from = {json.dumps(old_new[1])}\n"
        out.append(line)
    return "".join(out)


def materialise(
    store: Store, cell: str, result: dict[str, Any], dest: Path, *, files: bool = True
) -> Path:
    """Write the run dir of a done cell (its ``result``, from :func:`upload_cell` plus the
    worker's ``links``) to ``dest/<cell>``: config.toml (``init_from`` paths into the grid
    rewritten to ``dest``'s), metrics.jsonl and, with ``files``, checkpoint.pt and the weight
    files (others of those names removed). Returns the run dir."""
    run = store.run(result["run_id"])
    run_dir = Path(dest) / cell
    links = {
        k: (old, str((Path(dest) / need).absolute()))
        for k, (old, need) in result.get("links", {}).items()
    }
    _write(run_dir / CONFIG, relink(run.config_text, links).encode())
    c = metrics.c
    with store.begin() as conn:
        q = select(c.data).where(c.run_id == run.run_id, c.role == _ROLE).order_by(c.step)
        lines = list(conn.execute(q).scalars())
    _write(run_dir / METRICS, "".join(line + "\n" for line in lines).encode())
    if not files:
        return run_dir
    w = weights.c
    for name in result["files"]:
        with store.begin() as conn:
            sha = conn.execute(
                select(w.sha256).where(w.run_id == run.run_id, w.step == 0, w.role == name)
            ).scalar_one()
        path = run_dir / name
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == sha:
            continue
        _write(path, run.get_weights(0, name))
    for p in run_dir.glob(WEIGHTS_GLOB):
        if p.name not in result["files"]:
            p.unlink(missing_ok=True)  # a partial attempt's weights
    return run_dir


# ----------------------------------------------------------------------------- pilots
def get_pilot(store: Store, grid: str, path: str) -> tuple[bool, int | None]:
    """``(found, D)`` of the grid's pilot at ``path`` (OUT-relative ``<env>/pilot.json``)."""
    p = grid_pilots.c
    with store.begin() as conn:
        row = conn.execute(
            select(p.align_target).where(p.grid == grid, p.path == path)
        ).one_or_none()
    return (False, None) if row is None else (True, row.align_target)


def put_pilot(
    store: Store, grid: str, path: str, d: int | None, data: dict[str, Any]
) -> int | None:
    """Store a pilot's D unless one is there; returns the stored D (the first writer's, so
    every machine trains with the same D)."""
    row = {"grid": grid, "path": path, "align_target": d, "created": time.time()}
    with store.begin(write=True) as conn:
        insert_ignore(conn, grid_pilots, row | {"data": json.dumps(data, sort_keys=True)})
    return get_pilot(store, grid, path)[1]
