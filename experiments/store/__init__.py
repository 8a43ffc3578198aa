"""The SQL store that carries the exchange between split trainers (issue 13): per run and step,
the sub trajectories the specialists train on, markers, each role's metrics, published weights,
and which process holds which role.

One URL is the only switch (:mod:`experiments.store.url`): ``sqlite:///PATH`` (embedded, WAL;
processes on one machine) or ``postgresql+psycopg://USER@HOST/DB`` (several machines). Tables:
:mod:`experiments.store.schema`.

How roles as processes use it (synchronized mode, DESIGN §3.5), per step ``n``::

    store = Store(url, blob_dir=...)
    run = store.open_run(run_id, config_text)   # same run id + another config: RunConfigError
    claim = run.claim(role).keep_alive()        # a second live process: ClaimError

    # main process
    batch = collect_rollouts(...)                                    # step n
    for r in specialists:
        run.put_sub_rows(n, batch.trajectories[r], batch.correct, group_size=K)
        run.mark(n, r, "written")
    ... update main ...; run.put_metrics(n, "main", row)
    run.wait_for(n, specialists, "published", timeout=t, on_wait=print)
    load run.get_weights(n, r) for each r, then roll out step n + 1

    # process of specialist r
    run.wait_for(n, r, "written", timeout=t, on_wait=print)
    rows = run.get_sub_rows(n, r)    # ordered by (query, rollout, invocation); c_M per row
    ... rewards, alignment, advantages, update ...
    run.put_weights(n, r, policy.state_dict()); run.put_metrics(n, r, row)
    run.mark(n, r, "published")

Every write is idempotent (a retry after a crash is a no-op; other content for the same key is
a :class:`ConflictError`), and each write is one transaction, so a process killed at any point
and restarted with ``--resume`` finds each step either wholly written or absent. Mark after the
data it announces is written; :meth:`Run.marked_steps` tells a restarted process where it was.
"""

from __future__ import annotations

from experiments.store.claims import Claim
from experiments.store.errors import (
    ChecksumError,
    ClaimError,
    ConflictError,
    MissingError,
    RunConfigError,
    SchemaVersionError,
    StoreError,
    StoreURLError,
    WaitTimeout,
)
from experiments.store.rows import SubRows
from experiments.store.schema import SCHEMA_VERSION
from experiments.store.store import (
    DEFAULT_BLOB_THRESHOLD,
    MARKER_KINDS,
    VOLATILE_METRICS,
    Run,
    Store,
)
from experiments.store.url import ALLOWED_SCHEMES, redact
from experiments.store.weights import state_dict_from_bytes, state_dict_to_bytes

__all__ = [
    "ALLOWED_SCHEMES",
    "DEFAULT_BLOB_THRESHOLD",
    "MARKER_KINDS",
    "SCHEMA_VERSION",
    "VOLATILE_METRICS",
    "ChecksumError",
    "Claim",
    "ClaimError",
    "ConflictError",
    "MissingError",
    "Run",
    "RunConfigError",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "StoreURLError",
    "SubRows",
    "WaitTimeout",
    "redact",
    "state_dict_from_bytes",
    "state_dict_to_bytes",
]
