"""The store: :class:`Store` (one database, named by its URL) and :class:`Run` (one run in it,
whose methods read and write that run's sub rows, markers, metrics, weights and claims)."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from experiments.store.claims import Claim, default_owner
from experiments.store.errors import ConflictError, MissingError, RunConfigError, WaitTimeout
from experiments.store.rows import SubRows, read_sub_rows, write_sub_rows
from experiments.store.schema import ensure_schema, insert_ignore, markers, metrics, runs
from experiments.store.url import BEGIN_OPTION, make_engine, parse_url, redact
from experiments.store.weights import (
    BlobDir,
    read_weights,
    state_dict_to_bytes,
    write_weights,
)
from sim.records import Trajectories

__all__ = ["DEFAULT_BLOB_THRESHOLD", "MARKER_KINDS", "VOLATILE_METRICS", "Run", "Store"]

DEFAULT_BLOB_THRESHOLD = 16 * 2**20
"""bytes above which weights go to the blob directory (when the store has one)"""

MARKER_KINDS = ("written", "consumed", "published")
"""the marker kinds the trainer uses (any other short name is allowed too): ``written`` (a
step's data is in the store), ``consumed`` (a role has read it), ``published`` (a role's weights
of a step are in the store)"""

VOLATILE_METRICS = ("time/",)
"""metric key prefixes left out when a retried :meth:`Run.put_metrics` is compared with the
stored row (timings differ between a step and its recomputation after a restart)"""


def _name(what: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValueError(f"{what} must be a non-empty string of at most {max_len} characters")
    return value


def _step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return int(step)


def _json_default(v: Any) -> Any:
    if isinstance(v, np.generic | np.ndarray):
        return v.tolist()
    raise TypeError(f"metric value {v!r} of type {type(v).__name__} is not JSON")


def _stable(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith(VOLATILE_METRICS)}


class Store:
    """A store of split-trainer data behind one SQLAlchemy URL.

    Opening it checks the URL, connects once, checks the schema version and creates the tables
    that are missing; every problem is a :class:`~experiments.store.StoreError` subclass whose
    message names the URL with its password masked.

    Args:
        url: ``sqlite:///PATH`` (the embedded default) or ``postgresql+psycopg://USER@HOST/DB``.
        blob_dir: folder for weights larger than ``blob_threshold`` bytes (shared by every
            process, e.g. a network mount; each row stores a path relative to it). None: all
            weights inline in the database.
        blob_threshold: bytes; weights of this size or less stay inline.
        connect_timeout_s: seconds to wait for a PostgreSQL server.
        busy_timeout_s: seconds a SQLite writer waits for another writer.

    Open one :class:`Store` per process (after any fork): its connection pool is not shared
    across processes. Its methods may be called from several threads.

    Example::

        store = Store("sqlite:///runs/split/store.db")
        run = store.open_run("rubiks-s0", config_text)       # create, or check the config
        with run.claim("main").keep_alive():                 # one process per role
            run.put_sub_rows(step, batch.trajectories["sub"], batch.correct, group_size=K)
            run.mark(step, "sub", "written")                 # the sub side may read step
            run.wait_for(step, "sub", "published", timeout=600, on_wait=print)
            weights = run.get_weights(step, "sub")
    """

    def __init__(
        self,
        url: str,
        *,
        blob_dir: str | os.PathLike | None = None,
        blob_threshold: int = DEFAULT_BLOB_THRESHOLD,
        connect_timeout_s: float = 10.0,
        busy_timeout_s: float = 60.0,
    ) -> None:
        parsed = parse_url(url)
        self.url = redact(parsed)
        """the URL, password masked"""
        self.dialect = parsed.get_backend_name()
        """``sqlite`` or ``postgresql``"""
        self.blob_dir = BlobDir(blob_dir) if blob_dir is not None else None
        self.blob_threshold = int(blob_threshold)
        self._engine = make_engine(
            parsed, connect_timeout_s=connect_timeout_s, busy_timeout_s=busy_timeout_s
        )
        try:
            with self.begin(write=True) as conn:
                ensure_schema(conn, repr(self.url))
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @contextmanager
    def begin(self, write: bool = False) -> Iterator[Connection]:
        """A connection in a transaction, committed on exit (rolled back on an exception).
        ``write``: on SQLite, take the write lock at once (``BEGIN IMMEDIATE``)."""
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                yield conn

    def close(self) -> None:
        """Close every pooled connection (the store cannot be used after)."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def open_run(self, run_id: str, config_text: str) -> Run:
        """The run ``run_id``, created with ``config_text`` (the resolved config, e.g. TOML)
        when new. :class:`~experiments.store.RunConfigError` names both config hashes (and
        the first differing line) when the run exists with another config."""
        _name("run_id", run_id, 200)
        digest = hashlib.sha256(config_text.encode()).hexdigest()
        c = runs.c
        with self.begin(write=True) as conn:
            row = {"run_id": run_id, "config_hash": digest, "config_text": config_text}
            insert_ignore(conn, runs, row | {"created": time.time()})
            old = conn.execute(select(c.config_hash, c.config_text).where(c.run_id == run_id)).one()
        if old.config_hash != digest:
            diff = [
                line
                for line in difflib.unified_diff(
                    old.config_text.splitlines(), config_text.splitlines(), lineterm="", n=0
                )
                if line[:1] in "+-" and line[:3] not in ("+++", "---")
            ]
            raise RunConfigError(
                f"run {run_id!r} in the store {self.url} was created by another config "
                f"(config hash {old.config_hash[:12]} there, {digest[:12]} here; first "
                f"differences, - there + here: {'; '.join(diff[:4]) or 'whitespace'}): use "
                "another run id, or the same config"
            )
        return Run(self, run_id, digest)

    def run(self, run_id: str) -> Run:
        """The existing run ``run_id`` (no config check; for readers such as reports)."""
        found = self._scalar(select(runs.c.config_hash).where(runs.c.run_id == run_id))
        if found is None:
            raise MissingError(f"the store {self.url} has no run {run_id!r}")
        return Run(self, run_id, found)

    def runs(self) -> list[str]:
        """Every run id in the store, sorted."""
        with self.begin() as conn:
            return list(conn.execute(select(runs.c.run_id).order_by(runs.c.run_id)).scalars())

    def _scalar(self, query: Any) -> Any:
        with self.begin() as conn:
            return conn.execute(query).scalar()


class Run:
    """One run of a :class:`Store` (from :meth:`Store.open_run`); every method is one
    transaction, and every write is idempotent: writing the same key again with the same content
    is a no-op that returns False, with other content a
    :class:`~experiments.store.ConflictError`.

    Keys: ``step`` is the training step (int >= 0), ``role`` is ``main`` or a specialist's
    name, ``kind`` a marker kind (:data:`MARKER_KINDS`).
    """

    def __init__(self, store: Store, run_id: str, config_hash: str) -> None:
        self.store, self.run_id, self.config_hash = store, run_id, config_hash

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, store={self.store.url!r})"

    @property
    def config_text(self) -> str:
        """The config text the run was created with."""
        return self.store._scalar(select(runs.c.config_text).where(runs.c.run_id == self.run_id))

    # ------------------------------------------------------------------ sub rows
    def put_sub_rows(
        self, step: int, traj: Trajectories, correct: np.ndarray, *, group_size: int
    ) -> bool:
        """Write one role's sub trajectories of ``step`` (role ``traj.role``) in one
        transaction.

        Args:
            step: the training step.
            traj: the role's unaligned sub trajectories of the step (``num_rows`` rows, any
                order; ``rollout`` in ``[0, B*K)``, (rollout, invocation) unique). A role nobody
                called has zero rows: write it too, so the reader knows the step is complete.
            correct: ``(B*K,)`` c_M per rollout; row ``i`` stores ``correct[traj.rollout[i]]``.
            group_size: K (a row's query index is ``rollout // K``).
        Returns True when written, False when these exact rows were there already.
        """
        step = _step(step)
        _name("role", traj.role, 64)
        with self.store.begin(write=True) as conn:
            return write_sub_rows(conn, self.run_id, step, traj, correct, group_size)

    def get_sub_rows(self, step: int, role: str) -> SubRows:
        """``role``'s sub rows of ``step``, ordered by (query, rollout, invocation) whatever
        the order they were written in; :class:`~experiments.store.MissingError` when absent."""
        with self.store.begin() as conn:
            return read_sub_rows(conn, self.run_id, _step(step), role)

    # ------------------------------------------------------------------ markers
    def mark(self, step: int, role: str, kind: str) -> bool:
        """Record that ``kind`` happened for ``role`` at ``step`` (False: already marked)."""
        row = {"run_id": self.run_id, "step": _step(step), "role": _name("role", role, 64)}
        row |= {"kind": _name("kind", kind, 32), "created": time.time()}
        with self.store.begin(write=True) as conn:
            return insert_ignore(conn, markers, row)

    def has_marker(self, step: int, role: str, kind: str) -> bool:
        """Whether :meth:`mark` was called with these keys."""
        return not self._missing(_step(step), (role,), kind)

    def marked_steps(self, role: str, kind: str) -> list[int]:
        """Every step with a ``kind`` marker of ``role``, ascending (e.g. to resume)."""
        c = markers.c
        with self.store.begin() as conn:
            q = select(c.step).where(c.run_id == self.run_id, c.role == role, c.kind == kind)
            return list(conn.execute(q.order_by(c.step)).scalars())

    def _missing(self, step: int, roles: tuple[str, ...], kind: str) -> list[str]:
        c = markers.c
        with self.store.begin() as conn:
            q = select(c.role).where(
                c.run_id == self.run_id, c.step == step, c.kind == kind, c.role.in_(roles)
            )
            found = set(conn.execute(q).scalars())
        return [r for r in roles if r not in found]

    def wait_for(
        self,
        step: int,
        roles: str | Iterable[str],
        kind: str,
        *,
        timeout: float | None,
        poll: float = 0.03,
        on_wait: Callable[[str], None] | None = None,
        report_every: float = 30.0,
    ) -> float:
        """Block until every role in ``roles`` has a ``kind`` marker at ``step``.

        Polls the markers, 1 ms after the first look and then twice as long after each look
        up to ``poll`` seconds (a short wait costs little latency, a long one little CPU). When
        it has to wait, it calls
        ``on_wait(message)`` at once and then every ``report_every`` seconds with a sentence
        naming what it waits for and for how long (the caller prints it).

        Returns the seconds waited; raises :class:`~experiments.store.WaitTimeout` (a
        ``TimeoutError``) naming the missing markers once ``timeout`` seconds have passed
        (``None``: no limit).
        """
        step = _step(step)
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        t0 = time.monotonic()
        deadline = t0 + (float("inf") if timeout is None else timeout)
        next_report = t0
        interval = min(0.001, poll)
        limit = "no limit" if timeout is None else f"at most {timeout:g} s"
        while True:
            missing = self._missing(step, roles, kind)
            now = time.monotonic()
            if not missing:
                return now - t0
            who = ", ".join(repr(r) for r in missing)
            what = (
                f"marker {kind!r} of role{'s' if len(missing) > 1 else ''} {who} at step {step} "
                f"of run {self.run_id!r}"
            )
            if now >= deadline:
                raise WaitTimeout(
                    f"timed out after {timeout:g} s waiting for {what} in the store "
                    f"{self.store.url}: is the process that writes it running?"
                )
            if on_wait is not None and now >= next_report:
                on_wait(f"waiting for {what} ({now - t0:.0f} s so far, {limit})")
                next_report = now + report_every
            time.sleep(max(0.0, min(interval, deadline - now)))
            interval = min(interval * 2, poll)

    # ------------------------------------------------------------------ metrics
    def put_metrics(self, step: int, role: str, values: Mapping[str, Any]) -> bool:
        """Store ``role``'s metrics row of ``step`` (JSON; numpy scalars allowed). A retry is
        compared without the :data:`VOLATILE_METRICS` keys; the first write's values stay."""
        data = json.dumps(dict(values), sort_keys=True, default=_json_default)
        row = {"run_id": self.run_id, "step": _step(step), "role": _name("role", role, 64)}
        c = metrics.c
        with self.store.begin(write=True) as conn:
            if insert_ignore(conn, metrics, row | {"data": data, "created": time.time()}):
                return True
            old = conn.execute(
                select(c.data).where(c.run_id == self.run_id, c.step == step, c.role == role)
            ).scalar_one()
        old_d, new_d = _stable(json.loads(old)), _stable(json.loads(data))
        if old_d != new_d:
            keys = sorted(k for k in old_d.keys() | new_d.keys() if old_d.get(k) != new_d.get(k))
            raise ConflictError(
                f"run {self.run_id!r} step {step} role {role!r}: the stored metrics differ from "
                f"this write in {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
            )
        return False

    def get_metrics(self, step: int, role: str) -> dict[str, Any]:
        """``role``'s metrics row of ``step``; :class:`~experiments.store.MissingError` when
        absent."""
        c = metrics.c
        data = self.store._scalar(
            select(c.data).where(c.run_id == self.run_id, c.step == _step(step), c.role == role)
        )
        if data is None:
            raise MissingError(
                f"run {self.run_id!r} has no metrics of role {role!r} at step {step}"
            )
        return json.loads(data)

    def metrics(self, role: str) -> dict[int, dict[str, Any]]:
        """Every metrics row of ``role``: step -> row, ascending."""
        c = metrics.c
        with self.store.begin() as conn:
            q = select(c.step, c.data).where(c.run_id == self.run_id, c.role == role)
            return {s: json.loads(d) for s, d in conn.execute(q.order_by(c.step))}

    # ------------------------------------------------------------------ weights
    def put_weights(self, step: int, role: str, weights: bytes | Mapping[str, Any]) -> bool:
        """Publish ``role``'s weights after the update of ``step``: safetensors bytes, or a
        torch state dict (name -> tensor) serialised with
        :func:`~experiments.store.state_dict_to_bytes`. Above the store's ``blob_threshold``
        bytes they go to its blob directory (when it has one)."""
        data = weights if isinstance(weights, bytes | bytearray) else state_dict_to_bytes(weights)
        step, role = _step(step), _name("role", role, 64)
        st = self.store
        with st.begin(write=True) as conn:
            return write_weights(
                conn, self.run_id, step, role, data, st.blob_dir, st.blob_threshold
            )

    def get_weights(self, step: int, role: str) -> bytes:
        """The safetensors bytes of ``role``'s weights of ``step``, their sha256 checked
        (:class:`~experiments.store.ChecksumError` on a mismatch)."""
        with self.store.begin() as conn:
            return read_weights(conn, self.run_id, _step(step), role, self.store.blob_dir)

    # ------------------------------------------------------------------ claims
    def claim(self, role: str, *, stale_after: float = 60.0, owner: str | None = None) -> Claim:
        """Hold ``role`` of this run for this process (see :class:`~experiments.store.Claim`):
        :class:`~experiments.store.ClaimError` when a live process holds it; a claim without a
        heartbeat for over ``stale_after`` seconds is taken over."""
        owner = owner or default_owner()
        return Claim(self.store, self.run_id, _name("role", role, 64), owner, stale_after).acquire()
