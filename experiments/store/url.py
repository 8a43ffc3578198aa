"""Store URLs: validation, password masking and the SQLAlchemy engine of each backend.

Two backends, chosen by the URL alone:

======================================  ====================================================
``sqlite:///PATH``                       the embedded default: one file (WAL mode, a busy
                                         timeout, foreign keys on); processes on one machine
``postgresql+psycopg://USER@HOST/DB``    PostgreSQL through psycopg 3 (``postgresql://`` is
                                         read as ``postgresql+psycopg://``); several machines
======================================  ====================================================

On SQLite, write transactions start with ``BEGIN IMMEDIATE`` (they take the write lock at once
and wait up to the busy timeout for it) and reads with a plain ``BEGIN``: under WAL, readers
never block the writer and a write never fails half-way for a reader that upgraded its lock.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from experiments.store.errors import StoreURLError

__all__ = ["ALLOWED_SCHEMES", "BEGIN_OPTION", "make_engine", "parse_url", "redact"]

ALLOWED_SCHEMES = ("sqlite", "postgresql+psycopg")
"""the URL schemes the store opens (``postgresql`` alone means ``postgresql+psycopg``)"""

BEGIN_OPTION = "mgrpo_begin"
"""execution option naming the SQLite ``BEGIN`` mode of a connection (``"IMMEDIATE"`` for writes)"""

_EXAMPLES = "e.g. sqlite:///runs/store.db or postgresql+psycopg://user:password@host:5432/db"


def redact(url: str | URL) -> str:
    """``url`` with its password replaced by ``***`` (for messages); also for malformed URLs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL: mask what looks like user:password@
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def parse_url(url: str) -> URL:
    """The checked :class:`sqlalchemy.engine.URL` of ``url``.

    Raises :class:`StoreURLError` (password masked) when ``url`` is malformed, has a scheme
    other than :data:`ALLOWED_SCHEMES`, is an in-memory SQLite database (private to one
    connection, so no other process could read it) or names a file in a missing folder.
    """
    if not isinstance(url, str) or "://" not in url:
        raise StoreURLError(f"store URL {redact(str(url))!r} is not a URL; use {_EXAMPLES}")
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as e:  # e.g. a port that is not a number
        raise StoreURLError(f"store URL {redact(url)!r} is malformed ({e}); use {_EXAMPLES}") from e
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")
    if u.drivername not in ALLOWED_SCHEMES:
        raise StoreURLError(
            f"store URL {redact(u)!r}: unknown scheme {u.drivername!r}; the store opens "
            f"{' or '.join(s + '://' for s in ALLOWED_SCHEMES)} ({_EXAMPLES})"
        )
    if u.drivername == "sqlite":
        if u.database in (None, "", ":memory:") or u.database.startswith("file::memory:"):
            raise StoreURLError(
                f"store URL {redact(u)!r} is an in-memory SQLite database, private to one "
                "connection; use sqlite:///PATH (a file)"
            )
        folder = Path(u.database).expanduser().resolve().parent
        if not folder.is_dir():
            raise StoreURLError(
                f"store URL {redact(u)!r}: the folder {str(folder)!r} does not exist; create it "
                "or name a file in an existing folder"
            )
    elif not u.host and "host" not in u.query:
        raise StoreURLError(f"store URL {redact(u)!r} names no host; use {_EXAMPLES}")
    return u


def _sqlite_events(engine: Engine) -> None:
    """WAL, foreign keys and our own ``BEGIN`` on every SQLite connection (the busy timeout is
    the driver's ``timeout``)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _begin)
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        mode = conn.get_execution_options().get(BEGIN_OPTION, "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: URL, *, connect_timeout_s: float = 10.0, busy_timeout_s: float = 60.0):
    """A SQLAlchemy engine for a URL from :func:`parse_url`, its connection tried once.

    Args:
        url: a checked URL.
        connect_timeout_s: seconds to wait for a PostgreSQL server (``connect_timeout``).
        busy_timeout_s: seconds a SQLite writer waits for another writer's lock.

    Raises :class:`StoreURLError` naming the URL (password masked) and the first line of the
    driver's reason when the driver is missing or the database cannot be reached.
    """
    try:
        if url.drivername == "sqlite":
            engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
            _sqlite_events(engine)
        else:
            engine = create_engine(
                url,
                connect_args={"connect_timeout": max(1, round(connect_timeout_s))},
                pool_pre_ping=True,
            )
    except ModuleNotFoundError as e:
        raise StoreURLError(
            f"store URL {redact(url)!r} needs the Python module {e.name!r} "
            "(pip install 'psycopg[binary]', or the project's 'postgres' extra)"
        ) from e
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:  # noqa: BLE001 - driver errors of many kinds
        engine.dispose()
        lines = str(getattr(e, "orig", None) or e).strip().splitlines()
        reason = lines[0] if lines else type(e).__name__
        raise StoreURLError(f"cannot open store {redact(url)!r}: {reason}") from e
    return engine
