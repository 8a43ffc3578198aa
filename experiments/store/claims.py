"""Role claims: at most one live process holds each role of a run.

A claim is a row (run, role) -> owner with a heartbeat, both stamped with the database's clock
(one clock for all machines) and the holder's ``stale_after``. Claiming a role that another
owner holds fails with :class:`~experiments.store.errors.ClaimError` naming the holder and the
age of its last heartbeat, unless that heartbeat is older than the holder's ``stale_after``
seconds: then the claim is taken over (the holder was killed, e.g. ``kill -9`` before a
``--resume``). Taking over is one conditional ``UPDATE``, so two processes racing for a stale
claim cannot both win.

The holder keeps its claim alive with :meth:`Claim.heartbeat` (e.g. once per step) or a
background thread (:meth:`Claim.keep_alive`); a holder whose claim was taken over learns it at
its next heartbeat (:class:`ClaimError`) or from :meth:`Claim.check`.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from contextlib import AbstractContextManager
from typing import Protocol

from sqlalchemy import Connection, delete, select, update

from experiments.store.errors import ClaimError
from experiments.store.schema import claims, insert_ignore, now_sql

__all__ = ["Claim", "default_owner"]


class _Transactions(Protocol):
    """What a claim needs of its store (:meth:`experiments.store.Store.begin`)."""

    def begin(self, write: bool = False) -> AbstractContextManager[Connection]: ...


def default_owner() -> str:
    """``host:pid:token`` (the token tells two claims of one process apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Claim:
    """A held role of a run; a context manager that releases it on exit.

    Attributes:
        run_id, role, owner: what is held, by whom.
        stale_after: seconds without a heartbeat after which others may take the role over
            (stored with the claim: the holder's promise to beat more often).
        took_over: the previous owner when this claim replaced a stale one, else None.
    """

    def __init__(
        self, store: _Transactions, run_id: str, role: str, owner: str, stale_after: float
    ) -> None:
        self._store = store
        self.run_id, self.role, self.owner = run_id, role, owner
        self.stale_after = float(stale_after)
        self.took_over: str | None = None
        self._lost: ClaimError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _where(self):
        c = claims.c
        return c.run_id == self.run_id, c.role == self.role

    # ------------------------------------------------------------------ acquire
    def acquire(self) -> Claim:
        """Take the role (or take over a stale claim); :class:`ClaimError` when it is held."""
        with self._store.begin(write=True) as conn:
            now = conn.execute(select(now_sql(conn))).scalar_one()
            row = {"run_id": self.run_id, "role": self.role, "owner": self.owner}
            row |= {"acquired": now, "heartbeat": now, "stale_after": self.stale_after}
            if insert_ignore(conn, claims, row):
                return self
            c = claims.c
            old = conn.execute(
                select(c.owner, c.heartbeat, c.stale_after).where(*self._where())
            ).one()
            age = now - old.heartbeat
            if old.owner != self.owner and age <= old.stale_after:
                raise ClaimError(
                    f"role {self.role!r} of run {self.run_id!r} is held by {old.owner} (last "
                    f"heartbeat {age:.1f} s ago; its claim goes stale after {old.stale_after:g} "
                    "s without one): stop that process, or wait for its claim to go stale"
                )
            taken = conn.execute(
                update(claims)
                .where(*self._where(), c.owner == old.owner, c.heartbeat == old.heartbeat)
                .values(owner=self.owner, acquired=now, heartbeat=now, stale_after=self.stale_after)
            ).rowcount
            if not taken:  # another process took it over between our select and update
                raise ClaimError(
                    f"role {self.role!r} of run {self.run_id!r}: another process took over the "
                    f"stale claim of {old.owner} first"
                )
            self.took_over = None if old.owner == self.owner else old.owner
        return self

    # ------------------------------------------------------------------ keep alive
    def heartbeat(self) -> None:
        """Stamp the claim as alive; :class:`ClaimError` when it was taken over."""
        if self._lost is not None:
            raise self._lost
        with self._store.begin(write=True) as conn:
            n = conn.execute(
                update(claims)
                .where(*self._where(), claims.c.owner == self.owner)
                .values(heartbeat=now_sql(conn))
            ).rowcount
        if not n:
            self._lost = ClaimError(
                f"role {self.role!r} of run {self.run_id!r}: this process ({self.owner}) lost "
                f"its claim (no heartbeat for over {self.stale_after:g} s, and another process "
                "took the role over)"
            )
            raise self._lost

    def keep_alive(self, interval: float | None = None) -> Claim:
        """Heartbeat every ``interval`` seconds (default ``stale_after / 4``) from a daemon
        thread until :meth:`release`; a lost claim is reported by :meth:`check`."""
        if self._thread is None:
            every = self.stale_after / 4 if interval is None else float(interval)

            def beat() -> None:
                while not self._stop.wait(every):
                    try:
                        self.heartbeat()
                    except ClaimError:
                        return
                    except Exception:  # noqa: BLE001 - a transient database error: retry
                        continue

            self._thread = threading.Thread(target=beat, name=f"claim-{self.role}", daemon=True)
            self._thread.start()
        return self

    def check(self) -> None:
        """Raise the :class:`ClaimError` of a lost claim, if any (cheap: no query)."""
        if self._lost is not None:
            raise self._lost

    # ------------------------------------------------------------------ release
    def release(self) -> None:
        """Stop heartbeats and delete the claim (if still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._store.begin(write=True) as conn:
            conn.execute(delete(claims).where(*self._where(), claims.c.owner == self.owner))

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
