"""The store's tables (SQLAlchemy Core), its schema version and the dialect-specific
insert-or-ignore that makes every write idempotent.

Every table is prefixed ``mgrpo_`` so that the store can share a database with an Optuna study
(``--storage`` names one URL for both). Times are Unix seconds (float); ``step`` is the training
step (0-based, as ``Trajectories.version``); ``role`` is ``main`` or a specialist's name.

=====================  =========================  ============================================
table                  key                        holds
=====================  =========================  ============================================
``mgrpo_meta``         key                        ``schema_version``
``mgrpo_runs``         run_id                     config hash (sha256 of the config text),
                                                  config text, created
``mgrpo_sub_steps``    run_id, step, role         one role's sub rows of one step: row count,
                                                  per-step layout, extras, digest
``mgrpo_sub_rows``     run_id, step, role,        one sub trajectory: query, c_M, f_S, e_S,
                       rollout, invocation        finish order, policy version, records blob
``mgrpo_markers``      run_id, step, role, kind   that ``kind`` happened (written, consumed,
                                                  published, ...)
``mgrpo_metrics``      run_id, step, role         a JSON dict
``mgrpo_weights``      run_id, step, role         safetensors bytes inline, or a file in the
                                                  blob directory; sha256 and size
``mgrpo_claims``       run_id, role               which process holds the role, heartbeat
``mgrpo_grids``        grid                       an ablation grid: plan hash, cell count
``mgrpo_cells``        grid, cell                 one cell (its run dir relative to ``--out``):
                                                  spec JSON, state, owner, heartbeat, attempts,
                                                  error, result JSON
``mgrpo_cell_needs``   grid, cell, need           a cell that must be done before ``cell``
``mgrpo_grid_pilots``  grid, path                 an env's pilot D (``[ablate.pilot]``); the
                                                  first writer's value stays
=====================  =========================  ============================================

The grid tables are used by :mod:`experiments.grid_store` and :mod:`experiments.grid_files`
(``mgrpo ablate --storage``).

Schema versions: 1 (the split-trainer tables), 2 (adds the grid tables). A store of version 1
is upgraded in place when opened (version 2 only adds tables); any other version is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from experiments.store.errors import SchemaVersionError

__all__ = [
    "SCHEMA_VERSION",
    "bulk_insert",
    "cell_needs",
    "cells",
    "claims",
    "ensure_schema",
    "grid_pilots",
    "grids",
    "insert_ignore",
    "markers",
    "meta",
    "metadata",
    "metrics",
    "now_sql",
    "runs",
    "sub_rows",
    "sub_steps",
    "weights",
]

SCHEMA_VERSION = 2
"""version of the tables below; a store of another version is refused with both named"""
UPGRADES_FROM = (1,)
"""older versions whose stores are upgraded in place (the newer versions only add tables)"""

_PG_LOCK_KEY = 0x6D67_7270_6F00  # pg_advisory_xact_lock key serialising schema creation

metadata = MetaData()


def _run_fk() -> ForeignKey:
    return ForeignKey("mgrpo_runs.run_id")


meta = Table(
    "mgrpo_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "mgrpo_runs",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("config_hash", String(64), nullable=False),
    Column("config_text", Text, nullable=False),
    Column("created", Double, nullable=False),
)

sub_steps = Table(
    "mgrpo_sub_steps",
    metadata,
    Column("run_id", String(200), _run_fk(), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("n_rows", Integer, nullable=False),
    Column("layout", Text, nullable=False),  # JSON [[field, dtype.str, shape], ...]
    Column("extras", LargeBinary, nullable=True),  # safetensors of Trajectories.extras
    Column("digest", String(32), nullable=False),  # blake2b-128 of everything written
    Column("created", Double, nullable=False),
)

sub_rows = Table(
    "mgrpo_sub_rows",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("rollout", Integer, primary_key=True),  # in [0, B*K)
    Column("invocation", Integer, primary_key=True),  # call index within the rollout
    Column("query", Integer, nullable=False),  # rollout // K, in [0, B)
    Column("finish_order", Integer, nullable=False),
    Column("c_main", Double, nullable=False),  # c_M of the row's rollout
    Column("format_ok", Double, nullable=False),  # f_S
    Column("expert", Double, nullable=False),  # e_S
    Column("version", Integer, nullable=False),  # step of the policy that acted
    Column("n_steps", Integer, nullable=False),
    Column("records", LargeBinary, nullable=False),  # n_steps packed records (layout)
    ForeignKeyConstraint(
        ["run_id", "step", "role"],
        ["mgrpo_sub_steps.run_id", "mgrpo_sub_steps.step", "mgrpo_sub_steps.role"],
    ),
)

markers = Table(
    "mgrpo_markers",
    metadata,
    Column("run_id", String(200), _run_fk(), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("created", Double, nullable=False),
)

metrics = Table(
    "mgrpo_metrics",
    metadata,
    Column("run_id", String(200), _run_fk(), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("data", Text, nullable=False),  # JSON object, keys sorted
    Column("created", Double, nullable=False),
)

weights = Table(
    "mgrpo_weights",
    metadata,
    Column("run_id", String(200), _run_fk(), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),  # bytes
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=True),  # inline, or
    Column("path", Text, nullable=True),  # a file relative to the blob directory
    Column("created", Double, nullable=False),
)

claims = Table(
    "mgrpo_claims",
    metadata,
    Column("run_id", String(200), _run_fk(), primary_key=True),
    Column("role", String(64), primary_key=True),
    Column("owner", Text, nullable=False),  # e.g. host:pid:token
    Column("acquired", Double, nullable=False),  # database clock
    Column("heartbeat", Double, nullable=False),  # database clock
    Column("stale_after", Double, nullable=False),  # seconds, the holder's own
)

grids = Table(
    "mgrpo_grids",
    metadata,
    Column("grid", String(64), primary_key=True),
    Column("plan_hash", String(64), nullable=False),  # sha256 of the cells' specs
    Column("n_cells", Integer, nullable=False),
    Column("created", Double, nullable=False),
)

cells = Table(
    "mgrpo_cells",
    metadata,
    Column("grid", String(64), ForeignKey("mgrpo_grids.grid"), primary_key=True),
    Column("cell", String(300), primary_key=True),  # run dir relative to --out
    Column("position", Integer, nullable=False),  # plan order (stage 1 first)
    Column("spec", Text, nullable=False),  # JSON: flat keys, links, needs, pilot
    Column("state", String(16), nullable=False),  # pending, running, done, failed
    Column("owner", Text, nullable=True),  # host:pid:token of the worker running it
    Column("heartbeat", Double, nullable=True),  # database clock
    Column("stale_after", Double, nullable=True),  # seconds, the owner's own
    Column("attempts", Integer, nullable=False),  # claims so far
    Column("error", Text, nullable=True),
    Column("result", Text, nullable=True),  # JSON, once done
    Column("created", Double, nullable=False),
    Column("started", Double, nullable=True),  # database clock, last claim
    Column("finished", Double, nullable=True),  # database clock
)

cell_needs = Table(
    "mgrpo_cell_needs",
    metadata,
    Column("grid", String(64), primary_key=True),
    Column("cell", String(300), primary_key=True),
    Column("need", String(300), primary_key=True),
    ForeignKeyConstraint(["grid", "cell"], ["mgrpo_cells.grid", "mgrpo_cells.cell"]),
    ForeignKeyConstraint(["grid", "need"], ["mgrpo_cells.grid", "mgrpo_cells.cell"]),
)

grid_pilots = Table(
    "mgrpo_grid_pilots",
    metadata,
    Column("grid", String(64), ForeignKey("mgrpo_grids.grid"), primary_key=True),
    Column("path", String(300), primary_key=True),  # OUT-relative, e.g. <env>/pilot.json
    Column("align_target", Integer, nullable=True),  # None: no specialist role
    Column("data", Text, nullable=False),  # JSON: histogram, settings
    Column("created", Double, nullable=False),
)


def now_sql(conn: Connection) -> Any:
    """The database server's clock in Unix seconds, as a SQL expression (one clock for every
    machine, so claim staleness does not depend on clock skew between clients)."""
    if conn.dialect.name == "postgresql":
        sql = "extract(epoch from clock_timestamp())::double precision"
    else:
        sql = "((julianday('now') - 2440587.5) * 86400.0)"
    return literal_column(sql, Double)


def insert_ignore(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """``INSERT ... ON CONFLICT DO NOTHING`` of one row with the dialect's own insert construct;
    True when inserted, False when its key was there already."""
    ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = ins(table).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
    return conn.execute(stmt, row).rowcount == 1


def bulk_insert(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple]
) -> None:
    """Insert many rows (tuples of ``columns``' values) in the caller's transaction, without
    per-row SQLAlchemy processing: psycopg's ``COPY`` on PostgreSQL, the driver's
    ``executemany`` of the statement SQLAlchemy compiles on SQLite. Values must already be
    plain Python values (int, float, str, bytes). Duplicate keys fail (no ignoring here)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        prep = conn.dialect.identifier_preparer
        names = ", ".join(prep.quote(c) for c in columns)
        cur = conn.connection.driver_connection.cursor()  # the same transaction
        with cur.copy(f"COPY {prep.format_table(table)} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=list(columns))
    order = [list(columns).index(k) for k in compiled.positiontup]
    if order != list(range(len(columns))):
        rows = [tuple(r[i] for i in order) for r in rows]
    conn.exec_driver_sql(str(compiled), list(rows))


def ensure_schema(conn: Connection, where: str) -> None:
    """Check the schema version of the store behind ``conn`` and create missing tables.

    Runs inside the caller's write transaction (on PostgreSQL under an advisory lock, so that
    processes opening a new store at once do not race). ``where`` names the store in messages.
    Raises :class:`SchemaVersionError` naming both versions when the store has another one
    (a version in :data:`UPGRADES_FROM` is upgraded: the missing tables are created).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    if inspect(conn).has_table(meta.name):
        found = conn.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
        if found is not None and int(found) in UPGRADES_FROM:
            metadata.create_all(conn)
            conn.execute(
                update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION))
            )
            return
        if found is not None and int(found) != SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store at {where} has schema version {found}; this mgrpo-sim reads schema "
                f"version {SCHEMA_VERSION} (and upgrades version(s) "
                f"{', '.join(map(str, UPGRADES_FROM))} in place): use another database (or "
                "file), or the mgrpo-sim version that wrote it"
            )
    metadata.create_all(conn)
    insert_ignore(conn, meta, {"key": "schema_version", "value": str(SCHEMA_VERSION)})
