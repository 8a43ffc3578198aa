"""A throwaway PostgreSQL server for tests, benchmarks and trying the split trainers on one
machine: :func:`throwaway_postgres` starts one on 127.0.0.1 (trust auth, fsync off, data in a
temporary folder) and removes it after; :func:`create_database` and :func:`create_schema` add
a fresh database or schema to it.

Needs the PostgreSQL server binaries (``initdb``, ``pg_ctl``: ``apt-get install postgresql``);
as root the server runs as the ``postgres`` user (initdb refuses root). Not for real data:
fsync is off.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "PostgresUnavailable",
    "create_database",
    "create_schema",
    "pg_bindir",
    "throwaway_postgres",
]


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says why."""


def pg_bindir() -> Path | None:
    """The folder of ``initdb`` (newest ``/usr/lib/postgresql/*/bin``, else ``PATH``)."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(d, "initdb").is_file():
            return Path(d)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(text: str) -> str:
    return text.strip()[-300:]


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a server, yield its URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``),
    stop it and delete its data on exit. :class:`PostgresUnavailable` when it cannot start."""
    bindir = pg_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "PostgreSQL not found (no initdb in /usr/lib/postgresql/*/bin or PATH)"
        )
    root = Path(tempfile.mkdtemp(prefix="mgrpo-pg-"))
    root.chmod(0o755)
    data = root / "data"
    as_pg: list[str] = []
    try:
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root without runuser: cannot run as postgres")
            as_pg = ["runuser", "-u", "postgres", "--"]
            made = subprocess.run(
                ["install", "-d", "-o", "postgres", "-m", "700", str(data)],
                capture_output=True,
                text=True,
            )
            if made.returncode != 0:
                raise PostgresUnavailable(
                    f"cannot create a data folder owned by the postgres user: {_tail(made.stderr)}"
                )
        else:
            data.mkdir(mode=0o700)
        init = subprocess.run(
            [*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
             "--no-sync"],
            capture_output=True, text=True,
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL initdb failed: {_tail(init.stderr)}")
        port = _free_port()
        pg_ctl = [*as_pg, str(bindir / "pg_ctl"), "-D", str(data)]
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off"
        start = subprocess.run(
            [*pg_ctl, "-w", "-t", "30", "-l", str(data / "server.log"), "-o", opts, "start"],
            capture_output=True,
            text=True,
        )
        if start.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL did not start: {_tail(start.stderr)}")
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def create_schema(url: str, name: str) -> str:
    """Create schema ``name`` in the database of ``url`` and return a URL whose connections
    use it (``search_path``): a fresh, empty store per test at the cost of one statement."""
    import psycopg
    from sqlalchemy.engine import make_url

    if not name.isidentifier():
        raise ValueError(f"schema name {name!r}: letters, digits and _ only")
    u = make_url(url)
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    query = dict(u.query) | {"options": f"-csearch_path={name}"}
    return u.set(query=query).render_as_string(hide_password=False)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url`` (a superuser URL such as the one
    :func:`throwaway_postgres` yields) and return the URL of the new database."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if not name.isidentifier():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    conninfo = u.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)
