"""Roles as processes: the main agent and the specialists train in separate processes that
exchange their data through a store (issue 13; :mod:`experiments.store`).

``mgrpo train CONFIG --role NAME --storage URL --out DIR`` runs the roles named by ``--role``
(repeatable) of one run; every process of the run gives the same config (the run id defaults to
a hash of the resolved config, ``--run-id`` names it) and its own ``--out``.

Synchronized mode, per step ``n`` (DESIGN §3.5; the same code as one process,
:meth:`sim.trainer.Learner.rollout`, ``prepare``, ``update``, ``finish_step``):

* **main side** (the process with ``--role main``, plus any specialists it also runs): loads the
  remote specialists' weights published after step ``n - 1``, rolls out step ``n`` (every role
  acts: the sub-agents are sampled here, with their own generators), writes each remote
  specialist's sub trajectories (records, c_M, f_S, e_S, versions) and marks them ``written``,
  updates its own roles, waits until every remote specialist has ``published`` step ``n``, and
  writes the complete metrics row (the specialists' keys read back from the store), so its
  ``metrics.jsonl`` equals the one-process run's, time keys excepted. Evaluation runs here, with
  the specialists' weights of step ``n``.
* **sub side** (specialists only): waits for step ``n``'s rows, computes its rewards, alignment
  and advantages, updates, publishes its weights and its metrics, marks ``published``.

``variant = "async_queue"`` splits the same way (the queue lives on the sub side). A side that
waits prints what it waits for; ``--wait-timeout`` bounds each wait. Either side can be killed
and restarted with ``--resume``: it continues from its checkpoint, re-derives the steps after
it (the store's writes are idempotent: identical data is not written twice, different data is
an error) and the pair ends with the metrics of an uninterrupted run.

Each process claims its roles in the store (a heartbeat every few seconds): a second live
process for a role is refused; the claim's owner is the host and the run directory, so a
``--resume`` of the same ``--out`` takes its claim back at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.records import Trajectories
from sim.rollout import RolloutBatch

__all__ = ["SplitOptions", "MainSide", "SubSide", "open_side", "default_run_id"]

_EXTRA = "split."
"""prefix of the per-rollout arrays the main side adds to a specialist's records (``extras``)"""


POLL_S = 0.05
"""the longest interval between two looks at the store's markers while a side waits (the
first look after 1 ms, then doubling: :meth:`experiments.store.Run.wait_for`)"""
QUIET_WAIT_S = 3.0
"""a side says what it waits for once a wait lasts this long (seconds)"""


@dataclass(frozen=True)
class SplitOptions:
    """How one process takes part in a split run.

    Attributes:
        storage: the store URL (``sqlite:///PATH`` or ``postgresql+psycopg://...``).
        roles: the roles this process runs (``main`` and/or specialist names).
        run_id: the run's name in the store (None: :func:`default_run_id` of the config).
        wait_timeout: seconds a side waits for the other before it stops with an error.
        blob_dir: directory for large weight blobs (None: in the database).
        stale_after: seconds without a heartbeat after which a role's claim may be taken over.
    """

    storage: str
    roles: tuple[str, ...]
    run_id: str | None = None
    wait_timeout: float = 600.0
    blob_dir: str | None = None
    stale_after: float = 30.0


def default_run_id(config_text: str) -> str:
    """``run-<12 hex>``: a hash of the resolved config (every process of a run gives it)."""
    return "run-" + hashlib.sha256(config_text.encode()).hexdigest()[:12]


def check_roles(cfg: Any, specialists: tuple[str, ...], roles: tuple[str, ...]) -> None:
    """``--role`` values against the config: known roles, not all of them, a splittable
    variant. Raises ``ValueError`` with the reason."""
    known = ("main", *specialists)
    if not roles:
        raise ValueError("--storage needs at least one --role (main or a specialist)")
    bad = [r for r in roles if r not in known]
    if bad:
        raise ValueError(f"--role {bad[0]!r}: this config has roles {', '.join(known)}")
    if not specialists:
        raise ValueError(
            f"variant {cfg.variant!r} has no specialist roles: there is nothing to split "
            "(drop --role and --storage)"
        )
    if set(roles) == set(known):
        raise ValueError(
            f"--role names every role ({', '.join(known)}): run it as one process (drop --role "
            "and --storage)"
        )
    if cfg.variant == "shared_policy":
        raise ValueError(
            "variant 'shared_policy' trains one module for all roles: it cannot be split into "
            "processes"
        )


class _Side:
    """What both sides share: the store run, the claims, the wait messages."""

    def __init__(
        self,
        learner: Any,
        opts: SplitOptions,
        config_text: str,
        run_dir: Path,
        log: Callable[[str], None],
    ) -> None:
        from experiments.store import Store

        self.learner, self.opts, self.log = learner, opts, log
        specialists = tuple(learner.roles)
        check_roles(learner.cfg, specialists, opts.roles)
        self.local = tuple(r for r in ("main", *specialists) if r in opts.roles)
        self.remote = tuple(r for r in specialists if r not in opts.roles)
        self.store = Store(opts.storage, blob_dir=opts.blob_dir)
        self.run_id = opts.run_id or default_run_id(config_text)
        owner = f"{socket.gethostname()}:{Path(run_dir).resolve()}"
        self.claims: list[Any] = []
        self.waited = 0.0
        """seconds this step spent waiting for the other side"""
        try:
            self.run = self.store.open_run(self.run_id, config_text)
            for r in self.local:
                claim = self.run.claim(r, stale_after=opts.stale_after, owner=owner)
                self.claims.append(claim.keep_alive())
        except BaseException:
            self.close()
            raise

    def wait(self, step: int, roles: tuple[str, ...], kind: str) -> float:
        """Wait for ``kind`` markers of ``roles`` at ``step``; says what it waits for once
        the wait passes :data:`QUIET_WAIT_S` (then every 30 s)."""
        from experiments.store import WaitTimeout

        for c in self.claims:
            c.check()
        first = min(QUIET_WAIT_S, self.opts.wait_timeout)
        poll = POLL_S
        try:
            w = self.run.wait_for(step, roles, kind, timeout=first, poll=poll)
        except WaitTimeout:
            if first >= self.opts.wait_timeout:
                raise
            rest = self.opts.wait_timeout - first
            w = first + self.run.wait_for(
                step, roles, kind, timeout=rest, poll=poll, on_wait=self.log
            )
        self.waited += w
        return w

    def _train_local(
        self, batch: RolloutBatch, on_progress: Callable[[str], None] | None
    ) -> tuple[dict[str, Any], float, float]:
        """This process's roles: rewards, alignment, advantages, then their updates (the
        learner's ``prepare`` and ``update`` phases). Returns the metrics row so far and the
        perf_counter times at the end of the preparation and of the updates."""
        L = self.learner
        metrics = L.step_header()
        gaps: dict[str, float] = {}
        prepared = L.prepare(batch, self.local, metrics, gaps)
        L.last_prepared = prepared
        t2 = time.perf_counter()
        L.update(prepared, self.local, metrics, gaps, on_progress)
        return metrics, t2, time.perf_counter()

    def close(self) -> None:
        """Release the claims and the database connections (idempotent)."""
        for c in self.claims:
            try:
                c.release()
            except Exception:  # noqa: BLE001 - the store may be gone; the claim goes stale
                pass
        self.claims = []
        self.store.close()


class MainSide(_Side):
    """The main agent's process (with any specialists it runs too): rolls out, trains its
    roles, hands the remote specialists their rows, writes the complete metrics row."""

    needs_oracle = True

    def _load_remote(self, version: int) -> None:
        """Load every remote specialist's weights published after step ``version``."""
        from experiments.store import state_dict_from_bytes

        self.wait(version, self.remote, "published")
        for r in self.remote:
            sd = state_dict_from_bytes(self.run.get_weights(version, r))
            self.learner.policies[r].load_state_dict(sd)

    def train_step(self, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        L = self.learner
        progress = on_progress or (lambda phase: None)
        n = L.step
        self.waited = 0.0
        if n > 0:
            progress("waiting for specialists")
            self._load_remote(n - 1)
        t0 = time.perf_counter()
        progress("rollout")
        batch = L.rollout()
        t1 = time.perf_counter()
        progress("advantages")
        for r in self.remote:
            traj = _with_rollout_arrays(batch, r)
            self.run.put_sub_rows(n, traj, batch.correct, group_size=batch.group_size)
            self.run.mark(n, r, "written")
        metrics, t2, t3 = self._train_local(batch, on_progress)
        progress("waiting for specialists")
        self._load_remote(n)  # the weights of step n: evaluation and the next rollout use them
        for r in self.remote:
            metrics |= {k: v for k, v in self.run.get_metrics(n, r).items() if _owned(k, r)}
        metrics = _canonical_order(metrics, ("main", *L.roles))
        t4 = time.perf_counter()
        row = L.finish_step(metrics, (t0, t1, t2, t3), batch.env_steps, progress)
        row["time/split_wait_s"] = self.waited
        row["time/split_after_update_s"] = t4 - t3
        self.run.put_metrics(n, "main", row)
        return row


class SubSide(_Side):
    """A process of specialists only: trains them on the rows the main side writes."""

    needs_oracle = False

    def train_step(self, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        from experiments.store import state_dict_to_bytes

        L = self.learner
        progress = on_progress or (lambda phase: None)
        n = L.step
        self.waited = 0.0
        progress("waiting for main")
        self.wait(n, self.local, "written")
        t0 = time.perf_counter()
        batch = self._batch(n)
        t1 = time.perf_counter()
        progress("advantages")
        metrics, t2, t3 = self._train_local(batch, on_progress)
        for r in self.local:
            if self.run.has_marker(n, r, "published"):  # a resume redid a published step
                continue
            self.run.put_weights(n, r, state_dict_to_bytes(L.policies[r].state_dict()))
            self.run.put_metrics(n, r, {k: v for k, v in metrics.items() if _owned(k, r)})
            self.run.mark(n, r, "published")
        t4 = time.perf_counter()
        row = L.finish_step(metrics, (t0, t1, t2, t3), 0, progress, evaluate=False)
        row["time/split_wait_s"] = self.waited
        row["time/split_publish_s"] = t4 - t3
        return row

    def _batch(self, n: int) -> RolloutBatch:
        """Step ``n``'s rollout batch as far as the local specialists' updates read it."""
        cfg = self.learner.cfg
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size
        trajs, calls = {}, {}
        correct = sim_time = None
        for r in self.local:
            rows = self.run.get_sub_rows(n, r)
            traj = rows.trajectories
            extra = {k[len(_EXTRA) :]: v for k, v in traj.extras.items() if k.startswith(_EXTRA)}
            traj.extras = {k: v for k, v in traj.extras.items() if not k.startswith(_EXTRA)}
            trajs[r], calls[r] = traj, extra["calls"]
            correct, sim_time = extra["correct"], extra["sim_time"]
        assert correct is not None and sim_time is not None
        N = B * K
        zeros = np.zeros(N)
        return RolloutBatch(
            queries=np.zeros(B, np.int64),
            group_size=K,
            trajectories=trajs,
            correct=correct,
            format_ok=zeros,
            calls=calls,
            category_errors=zeros,
            sim_time=sim_time,
        )


def _with_rollout_arrays(batch: RolloutBatch, role: str) -> Trajectories:
    """``role``'s trajectories plus the per-rollout arrays its update reads (``(B*K,)`` c_M,
    simulated time and the role's calls), as ``split.*`` extras."""
    traj = batch.trajectories[role]
    extras = dict(traj.extras)
    extras[_EXTRA + "correct"] = np.asarray(batch.correct, np.float64)
    extras[_EXTRA + "sim_time"] = np.asarray(batch.sim_time, np.float64)
    extras[_EXTRA + "calls"] = np.asarray(batch.calls[role])
    return dataclasses.replace(traj, extras=extras)


def _owned(key: str, role: str) -> bool:
    return key.startswith(role + "/")


def _canonical_order(metrics: dict[str, Any], roles: tuple[str, ...]) -> dict[str, Any]:
    """The keys in the one-process order: header, reward keys by role, then update keys by
    role (``rows`` first), so split and one-process rows print alike."""
    from sim.trainer import UPDATE_KEYS

    update_keys = {"rows", *UPDATE_KEYS}
    head = {k: v for k, v in metrics.items() if "/" not in k}
    prep: dict[str, Any] = {}
    upd: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for k, v in metrics.items():
        if "/" not in k:
            continue
        prefix, name = k.split("/", 1)
        if prefix in roles and name in update_keys:
            upd[k] = v
        elif prefix in roles:
            prep[k] = v
        else:
            other[k] = v
    by_role = sorted(prep.items(), key=lambda kv: roles.index(kv[0].split("/", 1)[0]))
    main_first = [kv for kv in by_role if kv[0].startswith("main/")]
    rest = [kv for kv in by_role if not kv[0].startswith("main/")]
    upd_sorted = sorted(upd.items(), key=lambda kv: roles.index(kv[0].split("/", 1)[0]))
    return head | dict(main_first) | other | dict(rest) | dict(upd_sorted)


def open_side(
    learner: Any,
    opts: SplitOptions,
    config_text: str,
    run_dir: Path,
    log: Callable[[str], None] = print,
) -> MainSide | SubSide:
    """The side this process plays (main when ``opts.roles`` holds ``main``)."""
    cls = MainSide if "main" in opts.roles else SubSide
    return cls(learner, opts, config_text, run_dir, log)
