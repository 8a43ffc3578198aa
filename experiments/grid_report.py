"""``mgrpo report --storage URL`` and ``mgrpo plot --storage URL``: the report and plots of a grid
in the store (``mgrpo ablate --storage``), from any machine.

    mgrpo report --storage URL [--grid NAME] [--local DIR] [--out FILE]
    mgrpo plot --storage URL [--grid NAME] [--local DIR] [--out DIR]

The finished cells' run dirs (config.toml and metrics.jsonl; no checkpoints) are copied from the
store into a local directory (``--local``; for ``report`` also ``DIR``; default
``~/.cache/mgrpo/grids/<grid>-<hash of the URL>``), laid out as the grid's ``--out``, and the
usual report and plot code runs on it (:mod:`experiments.report`,
:mod:`experiments.plots.cli`). ``--grid`` may be left out when the store holds one grid. For
``mgrpo plot``, ``--storage`` alone still names an Optuna study's storage (``--study``); it
means a grid when ``--grid`` is given or when the database holds grids and no study.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from experiments import report
from experiments.plots import cli as plots_cli

__all__ = ["add_parsers", "default_local", "fetch_grid", "run_plot", "run_report"]


def _grid_options(p: argparse.ArgumentParser, storage: bool) -> None:
    about = (
        None
        if storage
        else (
            "--storage URL names a grid's store when --grid is given, or when the database holds "
            "grids and no Optuna study"
        )
    )
    g = p.add_argument_group("a grid in a store (mgrpo ablate --storage)", about)
    if storage:
        g.add_argument(
            "--storage",
            metavar="URL",
            help="the store of a grid (sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB): report its finished cells",
        )
    g.add_argument("--grid", metavar="NAME", help="the grid in --storage (default: the only one)")
    g.add_argument(
        "--local",
        metavar="DIR",
        help="where the finished run dirs are copied "
        "(default: ~/.cache/mgrpo/grids/<grid>-<url hash>)",
    )


def add_parsers(subparsers: Any) -> None:
    """Register ``mgrpo report`` and ``mgrpo plot`` with their grid options."""
    r = report.add_parser(subparsers)
    _grid_options(r, storage=True)
    r.set_defaults(func=run_report)
    p = plots_cli.add_parser(subparsers)  # has --storage (an Optuna study's, or a grid's)
    _grid_options(p, storage=False)
    p.set_defaults(func=run_plot)


def default_local(url: str, grid: str) -> Path:
    """``$XDG_CACHE_HOME/mgrpo/grids/<grid>-<hash>`` (``~/.cache`` without the variable)."""
    from experiments.store import redact

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(redact(url).encode()).hexdigest()[:10]
    return cache / "mgrpo" / "grids" / f"{grid}-{digest}"


def fetch_grid(url: str, grid: str | None, local: str | Path | None) -> Path:
    """Copy the finished cells of ``grid`` (None: the store's only grid) into ``local`` (None:
    :func:`default_local`); returns it. ``ValueError`` saying what is wrong: a store that
    cannot be opened, no such grid, no finished cell, a ``local`` holding other runs."""
    from experiments.grid_files import materialise
    from experiments.grid_store import cells_of, check_grid_name, grid_names, open_store
    from experiments.store import StoreError

    try:
        with open_store(url, create=False) as store:
            if grid is None:
                names = grid_names(store)
                if len(names) != 1:
                    have = ", ".join(names) or "none"
                    raise ValueError(
                        f"the store {store.url} holds {len(names)} grids ({have}): give --grid NAME"
                    )
                grid = names[0]
            cells = cells_of(store, check_grid_name(grid))
            done = [c for c in cells if c.state == "done"]
            if not done:
                states = ", ".join(sorted({c.state for c in cells}))
                raise ValueError(f"grid {grid!r} has no finished cell yet (its cells: {states})")
            root = Path(local) if local else default_local(url, grid)
            keys = {c.key for c in done}
            found = root.rglob("metrics.jsonl") if root.is_dir() else []
            rels = {m.parent.relative_to(root).as_posix() for m in found if "plots" not in m.parts}
            others = sorted(rels - keys)
            if others:
                raise ValueError(
                    f"{root} holds run dirs that are not finished cells of grid "
                    f"{grid!r} (e.g. {others[0]}): give an empty --local DIR"
                )
            for c in done:
                materialise(store, c.key, c.result, root, files=False)
    except StoreError as e:
        raise ValueError(str(e).splitlines()[0]) from e
    print(
        f"grid {grid!r}: {len(done)} of {len(cells)} cells finished, copied to {root}",
        file=sys.stderr,
    )
    return root


def run_report(args: argparse.Namespace) -> int:
    """``mgrpo report``: a directory, or a grid in ``--storage``."""
    if not args.storage:
        flags = [f for f, v in (("--grid", args.grid), ("--local", args.local)) if v]
        if flags or args.dir is None:
            what = f"{flags[0]} needs --storage URL" if flags else "give DIR (or --storage URL)"
            print(f"error: {what}", file=sys.stderr)
            return 2
        return report.run(args)
    if args.dir and args.local and Path(args.dir) != Path(args.local):
        print(
            "error: give DIR or --local (where the grid's run dirs go), not both", file=sys.stderr
        )
        return 2
    try:
        args.dir = fetch_grid(args.storage, args.grid, args.local or args.dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return report.run(args)


def _holds_grids_only(url: str) -> bool:
    """Whether ``url`` is a database with mgrpo grids and no Optuna study (a plain engine: no
    file created, no table made, no pragma set on someone's Optuna database)."""
    if "://" not in url:
        return False
    from sqlalchemy import create_engine, inspect, select

    from experiments.store.schema import grids
    from experiments.store.url import parse_url

    engine = None
    try:
        u = parse_url(url)
        if u.get_backend_name() == "sqlite":
            if not Path(u.database).expanduser().is_file():
                return False
            engine = create_engine(u)
        else:
            engine = create_engine(u, connect_args={"connect_timeout": 10})
        with engine.connect() as conn:
            tables = inspect(conn)
            if not tables.has_table(grids.name) or tables.has_table("studies"):
                return False
            return conn.execute(select(grids.c.grid).limit(1)).first() is not None
    except Exception:  # noqa: BLE001 - not ours: the Optuna path says what is wrong
        return False
    finally:
        if engine is not None:
            engine.dispose()


def run_plot(args: argparse.Namespace) -> int:
    """``mgrpo plot``: run dirs, an Optuna study, or a grid in ``--storage``."""
    grid_mode = args.grid is not None or (
        args.storage and not args.run_dirs and not args.study and _holds_grids_only(args.storage)
    )
    if not grid_mode:
        if args.local:
            print("error: --local needs --storage URL (with --grid NAME)", file=sys.stderr)
            return 2
        return plots_cli.run(args)
    if not args.storage:
        print("error: --grid needs --storage URL (the store that holds the grid)", file=sys.stderr)
        return 2
    try:
        local = fetch_grid(args.storage, args.grid, args.local)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.run_dirs = [*args.run_dirs, str(local)]
    if not args.study:
        args.storage = None  # the grid's store is no Optuna study
    return plots_cli.run(args)
