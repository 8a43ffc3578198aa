"""Sub rows: one role's sub trajectories of one step, packed for the store and read back.

A sub row is one sub-agent call (one row of a role's :class:`sim.records.Trajectories`). Its
scalar fields are columns (``query``, ``rollout``, ``invocation``, ``finish_order``, ``c_main``,
``format_ok``, ``expert``, ``version``, ``n_steps``); its per-step records (``actions``,
``logp``, ``handle`` and every ``obs.*`` field) are one blob: its ``n_steps`` records packed as a
numpy structured array (raw bytes, no per-row header). The layout of that structured array
(field, dtype string with byte order, per-step shape) is stored once per (run, step, role) in
``mgrpo_sub_steps`` with the policy kind's ``extras`` (safetensors bytes: they are addressed by
``handle``, not by row) and a digest of everything written, so a read gives back the exact
arrays, dtypes and shapes, and a retried write is recognised as the same (or not).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save
from sqlalchemy import Connection, select

from experiments.store.errors import ConflictError, MissingError, StoreError
from experiments.store.schema import bulk_insert, insert_ignore, sub_rows, sub_steps
from sim.records import Trajectories

__all__ = ["SubRows", "read_sub_rows", "write_sub_rows"]

_INT_COLS = ("query", "rollout", "invocation", "finish_order", "version", "n_steps")
_FLOAT_COLS = ("c_main", "format_ok", "expert")


@dataclass
class SubRows:
    """One role's sub trajectories of one step, ordered by (query, rollout, invocation).

    Attributes:
        trajectories: the rows as :class:`sim.records.Trajectories` (``num_rows`` rows, every
            array exact, dtypes kept, ``extras`` whole).
        query: ``(num_rows,)`` int64 query index in ``[0, B)`` (``rollout // K``).
        c_main: ``(num_rows,)`` float64 c_M of each row's rollout, in [0, 1].
    The other per-row fields are the trajectories' own: ``rollout`` (in ``[0, B*K)``),
    ``invocation``, ``finish_order``, ``format_ok`` (f_S), ``expert`` (e_S) and ``version``.
    """

    trajectories: Trajectories
    query: np.ndarray
    c_main: np.ndarray

    def __len__(self) -> int:
        return self.trajectories.num_rows

    @property
    def role(self) -> str:
        return self.trajectories.role

    @property
    def rollout(self) -> np.ndarray:
        """``(num_rows,)`` int64 rollout id in ``[0, B*K)``."""
        return self.trajectories.rollout

    @property
    def invocation(self) -> np.ndarray:
        """``(num_rows,)`` int64 call index within the rollout."""
        return self.trajectories.invocation

    @property
    def format_ok(self) -> np.ndarray:
        """``(num_rows,)`` float64 f_S."""
        return self.trajectories.format_ok

    @property
    def expert(self) -> np.ndarray:
        """``(num_rows,)`` float64 e_S."""
        return self.trajectories.expert

    @property
    def version(self) -> np.ndarray:
        """``(num_rows,)`` int64 step of the policy that produced each row."""
        return self.trajectories.version


# ----------------------------------------------------------------------------- packing
def _step_fields(traj: Trajectories) -> dict[str, np.ndarray]:
    out = {"actions": traj.actions, "logp": traj.logp, "handle": traj.handle}
    return out | {f"obs.{k}": v for k, v in traj.obs.items()}


def _layout(fields: dict[str, np.ndarray]) -> list[list]:
    out = []
    for name, v in fields.items():
        if v.dtype.hasobject or v.dtype.names is not None:
            raise ValueError(f"records field {name!r} has dtype {v.dtype}: numbers only")
        out.append([name, v.dtype.str, list(v.shape[1:])])
    return out


def _struct(layout: list[list]) -> np.dtype:
    return np.dtype([(name, np.dtype(dt), tuple(shape)) for name, dt, shape in layout])


def _digest(layout: str, cols: dict[str, np.ndarray], buf: bytes, extras: bytes | None) -> str:
    h = hashlib.blake2b(layout.encode(), digest_size=16)
    for k in (*_INT_COLS, *_FLOAT_COLS):
        h.update(np.ascontiguousarray(cols[k]).tobytes())
    h.update(buf)
    h.update(extras or b"")
    return h.hexdigest()


def _pack(traj: Trajectories, correct: np.ndarray, group_size: int):
    """``(layout JSON, columns, per-row blobs, extras bytes, digest)`` of ``traj``."""
    fields = _step_fields(traj)
    layout = _layout(fields)
    rec = np.empty(traj.num_steps, dtype=_struct(layout))
    for name, v in fields.items():
        rec[name] = v
    buf = rec.tobytes()
    size = rec.dtype.itemsize
    mv = memoryview(buf)
    offs = (traj.offsets * size).tolist()
    blobs = [bytes(mv[a:b]) for a, b in zip(offs[:-1], offs[1:], strict=True)]
    cols = {
        "query": traj.rollout // group_size,
        "rollout": traj.rollout,
        "invocation": traj.invocation,
        "finish_order": traj.finish_order,
        "version": traj.version,
        "n_steps": traj.lengths,
        "c_main": np.asarray(correct, dtype=np.float64)[traj.rollout],
        "format_ok": traj.format_ok,
        "expert": traj.expert,
    }
    extras = st_save({k: np.ascontiguousarray(v) for k, v in traj.extras.items()})
    extras = extras if traj.extras else None
    layout_text = json.dumps(layout)
    return layout_text, cols, blobs, extras, _digest(layout_text, cols, buf, extras)


# ----------------------------------------------------------------------------- SQL
def write_sub_rows(
    conn: Connection,
    run_id: str,
    step: int,
    traj: Trajectories,
    correct: np.ndarray,
    group_size: int,
) -> bool:
    """Write ``traj`` (role ``traj.role``) as step ``step``'s sub rows, in the caller's write
    transaction. Returns True when written, False when the same rows were there already;
    raises :class:`ConflictError` when other rows were."""
    n_rollouts = len(correct)
    if group_size < 1 or n_rollouts % group_size:
        raise ValueError(f"group_size {group_size}: must be >= 1 and divide len(correct)")
    if traj.num_rows and (traj.rollout.min() < 0 or traj.rollout.max() >= n_rollouts):
        raise ValueError(
            f"role {traj.role!r}: rollout ids must lie in [0, {n_rollouts}) (len(correct))"
        )
    pairs = np.stack([traj.rollout, traj.invocation], axis=1)
    if len(np.unique(pairs, axis=0)) < traj.num_rows:
        raise ValueError(f"role {traj.role!r}: (rollout, invocation) pairs must be unique")
    order = np.lexsort((traj.invocation, traj.rollout))  # = (query, rollout, invocation)
    if np.any(order != np.arange(traj.num_rows)):  # canonical order: a retry's digest matches
        traj = traj.select(order)
    layout, cols, blobs, extras, digest = _pack(traj, correct, group_size)
    key = {"run_id": run_id, "step": int(step), "role": traj.role}
    head = key | {"n_rows": traj.num_rows, "layout": layout, "extras": extras}
    if insert_ignore(conn, sub_steps, head | {"digest": digest, "created": time.time()}):
        names = ("run_id", "step", "role", *cols, "records")
        n = traj.num_rows
        values = [[run_id] * n, [int(step)] * n, [traj.role] * n]
        values += [v.tolist() for v in cols.values()] + [blobs]
        bulk_insert(conn, sub_rows, names, list(zip(*values, strict=True)))
        return True
    c = sub_steps.c
    old = conn.execute(
        select(c.n_rows, c.digest).where(
            c.run_id == run_id, c.step == int(step), c.role == traj.role
        )
    ).one()
    if old.digest != digest:
        raise ConflictError(
            f"run {run_id!r} step {step} role {traj.role!r}: the store holds other sub rows "
            f"({old.n_rows} rows, digest {old.digest}) than this write ({traj.num_rows} rows, "
            f"digest {digest}); a step's sub rows are written once"
        )
    return False


def read_sub_rows(conn: Connection, run_id: str, step: int, role: str) -> SubRows:
    """Step ``step``'s sub rows of ``role``, ordered by (query, rollout, invocation);
    :class:`MissingError` when none were written."""
    c = sub_steps.c
    head = conn.execute(
        select(c.n_rows, c.layout, c.extras).where(
            c.run_id == run_id, c.step == int(step), c.role == role
        )
    ).one_or_none()
    if head is None:
        raise MissingError(f"run {run_id!r} has no sub rows of role {role!r} at step {step}")
    r = sub_rows.c
    names = (*_INT_COLS, *_FLOAT_COLS)
    result = conn.execute(
        select(*(r[k] for k in names), r.records)
        .where(r.run_id == run_id, r.step == int(step), r.role == role)
        .order_by(r.query, r.rollout, r.invocation)
    ).all()
    if len(result) != head.n_rows:
        raise StoreError(
            f"run {run_id!r} step {step} role {role!r}: {len(result)} sub rows stored, "
            f"{head.n_rows} expected (the store was changed by hand?)"
        )
    cols_t = list(zip(*result, strict=True)) if result else [()] * (len(names) + 1)
    cols = {k: np.asarray(cols_t[i], dtype=np.int64) for i, k in enumerate(_INT_COLS)}
    off = len(_INT_COLS)
    cols |= {k: np.asarray(cols_t[off + i], np.float64) for i, k in enumerate(_FLOAT_COLS)}
    dtype = _struct(json.loads(head.layout))
    buf = b"".join(cols_t[-1])
    if len(buf) != int(cols["n_steps"].sum()) * dtype.itemsize:
        raise StoreError(f"run {run_id!r} step {step} role {role!r}: records of the wrong size")
    rec = np.frombuffer(buf, dtype=dtype)
    steps = {name: rec[name].copy() for name in dtype.names}
    obs = {k[4:]: v for k, v in steps.items() if k.startswith("obs.")}
    extras = {k: v.copy() for k, v in st_load(head.extras).items()} if head.extras else {}
    traj = Trajectories.from_steps(
        role,
        {k: cols[k] for k in ("rollout", "invocation", "finish_order", "version")}
        | {"format_ok": cols["format_ok"], "expert": cols["expert"]},
        cols["n_steps"],
        obs,
        steps["actions"],
        steps["logp"],
        steps["handle"],
        extras,
    )
    return SubRows(traj, cols["query"], cols["c_main"])
