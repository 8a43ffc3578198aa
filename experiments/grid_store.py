"""An ablation grid in the store (issue 13, item 4): cells that workers on any machine claim.

A grid is a named set of cells (tables ``mgrpo_grids``, ``mgrpo_cells``, ``mgrpo_cell_needs``
of :mod:`experiments.store.schema`). A cell is one run of ``mgrpo ablate``'s plan, keyed by its
run dir relative to ``--out`` (``InvasiveSpecies/mgrpo/seed0``), with a spec (JSON: the
resolved flat keys, paths into the grid as cell keys, the cells it needs, its pilot), a state,
the worker that holds it and the database-clock time of that worker's last heartbeat.

States::

    pending --claim--> running --finish--> done
                          |  \\--fail----> failed        (training failed: not retried)
                          |--release---> pending        (an error in the worker: retried)
                          \\--stale-----> running        (no heartbeat for stale_after s:
                                                        another worker, attempt + 1; after
                                                        max_attempts attempts: failed)

    pending --a need failed--> failed ("not run: it needs X, which failed")

:func:`claim` is one write transaction: cells whose needs failed are failed first, then the
first takeable cell in plan order (pending with every need done, or running with a stale
heartbeat) is selected (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
serialises writers) and taken with a conditional ``UPDATE`` whose row count says whether it
won. A :class:`Lease` keeps the cell alive from a thread and ends it with :meth:`Lease.finish`,
:meth:`Lease.fail` or :meth:`Lease.release`, each conditional on still owning it (a worker
whose cell was taken over learns it there and its result is dropped).

Example::

    store = Store(url)
    enqueue(store, "quick", [("Species/mgrpo/seed0", spec), ...])   # idempotent
    lease = claim(store, "quick", default_owner(), stale_after=120, max_attempts=3)
    if lease is not None:
        with lease.keep_alive():
            ... train lease.spec ...
            lease.finish({"run_id": ...})
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, exists, insert, or_, select, update

from experiments.store import StoreError
from experiments.store.schema import cell_needs, cells, grids, insert_ignore, now_sql

if TYPE_CHECKING:
    from experiments.store import Store

__all__ = [
    "STATES",
    "Cell",
    "GridError",
    "Lease",
    "cells_of",
    "claim",
    "check_grid_name",
    "counts",
    "enqueue",
    "grid_names",
    "open_store",
    "waiting_for",
]

STATES = ("pending", "running", "done", "failed")
"""the states of a cell"""
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class GridError(StoreError):
    """A grid name that is taken by another plan, or a grid that is not in the store."""


def check_grid_name(name: str) -> str:
    """``name`` when it is a valid grid name (letters, digits, ``_.-``; at most 64), else
    :class:`GridError` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise GridError(
            f"grid name {name!r} is invalid; allowed: 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def _checked_key(key: str) -> str:
    """A cell key as read back: a relative path inside ``--out`` (no ``..``, not absolute)."""
    parts = key.split("/")
    if key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise GridError(f"cell key {key!r} in the store is not a relative path inside --out")
    return key


def open_store(url: str, *, blob_dir: str | None = None, create: bool = True) -> Store:
    """The :class:`~experiments.store.Store` at ``url``; ``create=False`` (readers, joiners):
    a SQLite file that does not exist is a :class:`GridError` instead of a new, empty store."""
    from experiments.store import Store
    from experiments.store.url import parse_url

    u = parse_url(url)
    if (
        not create
        and u.get_backend_name() == "sqlite"
        and not Path(u.database).expanduser().is_file()
    ):
        raise GridError(
            f"the store file {u.database} does not exist: plan the grid there first with "
            "mgrpo ablate CONFIG --storage URL"
        )
    return Store(url, blob_dir=blob_dir)


@dataclass(frozen=True)
class Cell:
    """One cell as stored (:func:`cells_of`)."""

    key: str
    """its run dir relative to ``--out``"""
    spec: dict[str, Any]
    state: str
    attempts: int
    owner: str | None
    error: str | None
    result: dict[str, Any] | None
    started: float | None
    finished: float | None


def _plan_hash(specs: list[tuple[str, dict[str, Any]]]) -> str:
    text = json.dumps([[k, s] for k, s in specs], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def enqueue(store: Store, grid: str, specs: list[tuple[str, dict[str, Any]]]) -> bool:
    """Put the grid's cells (``(key, spec)`` in plan order; ``spec["needs"]``: keys of earlier
    cells) in the store in one transaction. True: new; False: the same plan was there (its
    cells, done or not, are kept). :class:`GridError` when ``grid`` holds another plan."""
    check_grid_name(grid)
    digest = _plan_hash(specs)
    keys = {k for k, _ in specs}
    with store.begin(write=True) as conn:
        row = {"grid": grid, "plan_hash": digest, "n_cells": len(specs), "created": time.time()}
        if insert_ignore(conn, grids, row):
            now = time.time()
            rows = [
                {
                    "grid": grid,
                    "cell": k,
                    "position": i,
                    "spec": json.dumps(s, sort_keys=True),
                    "state": "pending",
                    "attempts": 0,
                    "created": now,
                }
                for i, (k, s) in enumerate(specs)
            ]
            conn.execute(insert(cells), rows)
            needs = [
                {"grid": grid, "cell": k, "need": n}
                for k, s in specs
                for n in dict.fromkeys(s.get("needs", ()))
                if n in keys
            ]
            if needs:
                conn.execute(insert(cell_needs), needs)
            return True
        old = conn.execute(select(grids.c.plan_hash, grids.c.n_cells).where(grids.c.grid == grid))
        old = old.one()
    if old.plan_hash == digest:
        return False
    raise GridError(
        f"grid {grid!r} in the store {store.url} holds another plan ({old.n_cells} cells, plan "
        f"{old.plan_hash[:12]}; this one: {len(specs)} cells, plan {digest[:12]}; "
        f"{_first_difference(cells_of(store, grid), specs)}): give another --grid NAME, or the "
        "config and flags that planned it"
    )


def _first_difference(old: list[Cell], new: list[tuple[str, dict[str, Any]]]) -> str:
    """The first cell that differs between a stored plan and a new one, in words."""
    have = {c.key: c.spec for c in old}
    want = dict(new)
    for key in [*want, *have]:
        if key not in have:
            return f"cell {key} is not in the stored plan"
        if key not in want:
            return f"the stored cell {key} is not in this plan"
        if have[key] != want[key]:
            a, b = have[key].get("flat", {}), want[key].get("flat", {})
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            what = (
                ", ".join(
                    f"{k} ({a.get(k, '(unset)')!r} there, {b.get(k, '(unset)')!r} here)"
                    for k in keys[:3]
                )
                or "its needs or pilot"
            )
            return f"cell {key} differs in {what}"
    return "the cells are in another order"


def grid_names(store: Store) -> list[str]:
    """Every grid in the store, sorted."""
    with store.begin() as conn:
        return list(conn.execute(select(grids.c.grid).order_by(grids.c.grid)).scalars())


def cells_of(store: Store, grid: str) -> list[Cell]:
    """The grid's cells in plan order (:class:`GridError` when there is no such grid)."""
    c = cells.c
    with store.begin() as conn:
        if conn.execute(select(grids.c.grid).where(grids.c.grid == grid)).scalar() is None:
            names = ", ".join(grid_names(store)) or "none"
            raise GridError(f"the store {store.url} has no grid {grid!r}; grids there: {names}")
        rows = conn.execute(select(cells).where(c.grid == grid).order_by(c.position)).all()
    return [
        Cell(
            _checked_key(r.cell),
            json.loads(r.spec),
            r.state,
            r.attempts,
            r.owner,
            r.error,
            json.loads(r.result) if r.result else None,
            r.started,
            r.finished,
        )
        for r in rows
    ]


def counts(store: Store, grid: str) -> dict[str, int]:
    """Cells per state (every state in :data:`STATES`, zeros included)."""
    from sqlalchemy import func

    c = cells.c
    with store.begin() as conn:
        q = select(c.state, func.count()).where(c.grid == grid).group_by(c.state)
        found = dict(conn.execute(q).all())
    return {s: int(found.get(s, 0)) for s in STATES}


def waiting_for(store: Store, grid: str) -> str:
    """What a worker that found no takeable cell waits for, in one sentence."""
    cs = cells_of(store, grid)
    state = {c.key: c.state for c in cs}
    running = [c for c in cs if c.state == "running"]
    blocked = [c for c in cs if c.state == "pending"]
    parts = []
    if running:
        who = ", ".join(f"{c.key} ({c.owner})" for c in running[:3])
        parts.append(f"{len(running)} running cell(s): {who}{' ...' if len(running) > 3 else ''}")
    if blocked:
        needs = sorted(
            {n for c in blocked for n in c.spec.get("needs", ()) if state.get(n) != "done"}
        )
        parts.append(
            f"{len(blocked)} pending cell(s) that need {', '.join(needs[:3])}"
            f"{' ...' if len(needs) > 3 else ''} first"
        )
    return f"grid {grid!r}: waiting for {' and '.join(parts) or 'nothing'}"


# ----------------------------------------------------------------------------- claiming
def _fail_orphans(conn: Connection, grid: str) -> None:
    """Fail every pending cell one of whose needs failed (repeated: chains of needs)."""
    c, n = cells.c, cell_needs.c
    d = cells.alias("d")
    while True:
        q = (
            select(c.cell, n.need)
            .join(cell_needs, and_(n.grid == c.grid, n.cell == c.cell))
            .join(d, and_(d.c.grid == n.grid, d.c.cell == n.need))
            .where(c.grid == grid, c.state == "pending", d.c.state == "failed")
        )
        rows = conn.execute(q).all()
        if not rows:
            return
        for cell, need in {r.cell: r.need for r in rows}.items():
            conn.execute(
                update(cells)
                .where(c.grid == grid, c.cell == cell, c.state == "pending")
                .values(
                    state="failed",
                    error=f"not run: it needs {need}, which failed",
                    finished=now_sql(conn),
                )
            )


def claim(
    store: Store, grid: str, owner: str, *, stale_after: float = 120.0, max_attempts: int = 3
) -> Lease | None:
    """Take the grid's next cell for ``owner``; None when no cell can be taken now (see
    :func:`counts` for whether any is left). A running cell without a heartbeat for over its
    owner's ``stale_after`` is taken over; one that already had ``max_attempts`` attempts is
    failed instead (and the next cell tried)."""
    c, n = cells.c, cell_needs.c
    d = cells.alias("d")
    while True:
        with store.begin(write=True) as conn:
            _fail_orphans(conn, grid)
            now = conn.execute(select(now_sql(conn))).scalar_one()
            unmet = exists().where(
                n.grid == c.grid,
                n.cell == c.cell,
                d.c.grid == n.grid,
                d.c.cell == n.need,
                d.c.state != "done",
            )
            stale = and_(c.state == "running", c.heartbeat + c.stale_after < now)
            q = (
                select(c.cell, c.spec, c.state, c.owner, c.heartbeat, c.attempts, c.error)
                .where(c.grid == grid, or_(and_(c.state == "pending", ~unmet), stale))
                .order_by(c.position)
                .limit(1)
            )
            if conn.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=cells)
            row = conn.execute(q).one_or_none()
            if row is None:
                return None
            where = [c.grid == grid, c.cell == row.cell, c.state == row.state]
            if row.state == "running":
                where += [c.owner == row.owner, c.heartbeat == row.heartbeat]
            if row.state == "running" and row.attempts >= max_attempts:
                error = (
                    f"failed after {row.attempts} attempt(s): its worker {row.owner} stopped "
                    f"(no heartbeat for {now - row.heartbeat:.0f} s)"
                    + (f"; an earlier attempt: {row.error}" if row.error else "")
                )
                conn.execute(
                    update(cells).where(*where).values(state="failed", error=error, finished=now)
                )
                continue
            took = conn.execute(
                update(cells)
                .where(*where)
                .values(
                    state="running",
                    owner=owner,
                    heartbeat=now,
                    stale_after=stale_after,
                    attempts=c.attempts + 1,
                    started=now,
                    finished=None,
                )
            ).rowcount
        if took == 1:
            took_over = row.owner if row.state == "running" else None
            return Lease(
                store,
                grid,
                _checked_key(row.cell),
                json.loads(row.spec),
                row.attempts + 1,
                owner,
                stale_after,
                max_attempts,
                took_over,
            )


@dataclass
class Lease:
    """A claimed cell (from :func:`claim`); its end methods return False when the cell was
    taken over by another worker meanwhile (nothing is changed then)."""

    store: Store
    grid: str
    key: str
    spec: dict[str, Any]
    attempt: int
    """1 for the first claim of the cell, 2 after a retry, ..."""
    owner: str
    stale_after: float
    max_attempts: int
    took_over: str | None = None
    """the previous owner when this claim replaced a stale one"""
    lost: bool = False
    """set by a heartbeat that found the cell taken over"""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def _where(self) -> list[Any]:
        c = cells.c
        return [
            c.grid == self.grid,
            c.cell == self.key,
            c.owner == self.owner,
            c.state == "running",
        ]

    def _set(self, **values: Any) -> bool:
        with self.store.begin(write=True) as conn:
            if values.get("finished") is True:
                values["finished"] = now_sql(conn)
            n = conn.execute(update(cells).where(*self._where()).values(**values)).rowcount
        self.lost = self.lost or n == 0
        return n == 1

    def heartbeat(self) -> bool:
        """Stamp the cell as alive (database clock); False when it was taken over."""
        with self.store.begin(write=True) as conn:
            stmt = update(cells).where(*self._where()).values(heartbeat=now_sql(conn))
            n = conn.execute(stmt).rowcount
        self.lost = self.lost or n == 0
        return n == 1

    def keep_alive(self, interval: float | None = None) -> Lease:
        """Heartbeat every ``interval`` seconds (default ``stale_after / 4``) from a daemon
        thread until the lease ends (a context manager: ``with lease.keep_alive(): ...``)."""
        every = self.stale_after / 4 if interval is None else float(interval)

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    if not self.heartbeat():
                        return
                except Exception:  # noqa: BLE001 - a transient database error: retry
                    continue

        self._thread = threading.Thread(target=beat, name=f"cell-{self.key}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the heartbeat thread (the lease's end methods call it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def finish(self, result: dict[str, Any]) -> bool:
        """Mark the cell done with ``result`` (JSON)."""
        self.stop()
        return self._set(
            state="done", result=json.dumps(result, sort_keys=True), error=None, finished=True
        )

    def fail(self, error: str) -> bool:
        """Mark the cell failed (not retried), with ``error``."""
        self.stop()
        return self._set(state="failed", error=error, finished=True)

    def release(self, error: str, *, count: bool = True) -> bool:
        """Give the cell back: pending again with ``error`` noted, or failed when it had
        ``max_attempts`` attempts; ``count=False`` (an interrupt) does not count this one."""
        self.stop()
        c = cells.c
        attempts = self.attempt if count else self.attempt - 1
        if attempts >= self.max_attempts:
            return self._set(
                state="failed",
                finished=True,
                error=f"failed after {attempts} attempt(s); the last: {error}",
            )
        return self._set(
            state="pending",
            owner=None,
            heartbeat=None,
            error=error,
            attempts=c.attempts - (0 if count else 1),
        )
