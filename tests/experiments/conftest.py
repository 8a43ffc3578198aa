"""Fixtures and helpers of the experiments tests: tiny budgets, the ``mgrpo`` command (in a
subprocess or in process), synthetic and real tiny run dirs, a throwaway PostgreSQL server."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

TINY = {
    "steps": 3,
    "algo.queries_per_step": 4,
    "algo.group_size": 2,
    "eval.episodes": 8,
    "eval.oracle_episodes": 16,
    "eval.final_episodes": 16,
    "eval.every": 2,
}
SPECIES = "mgrpo/InvasiveSpecies-v0"


def set_args(keys: Mapping[str, Any] | Iterable[str]) -> list[str]:
    """``--set`` arguments: ``{"steps": 3}`` or ``["steps=3"]`` -> ``["--set", "steps=3"]``."""
    items = [f"{k}={json.dumps(v)}" for k, v in keys.items()] if isinstance(keys, Mapping) else keys
    return [a for item in items for a in ("--set", item)]


def mgrpo(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """``mgrpo ARGS`` in a subprocess (``python -m experiments.cli``), output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        check=check,
        capture_output=True,
        text=True,
        **kw,
    )


def run_inprocess(module: Any, argv: list[str]) -> int:
    """One subcommand (``module.add_parser``) run in this process: ``argv`` starts with its name."""
    parser = argparse.ArgumentParser(prog="mgrpo")
    module.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def write_run(
    d: Path,
    *,
    variant: str = "mgrpo",
    seed: int = 0,
    env: str = "mgrpo/InvasiveSpecies-v0",
    reward: list[float] = (0.0, 1.0, 0.5, 1.0),
    success: dict[int, float] | None = None,
    sim_time: float = 10.0,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """A synthetic run dir: B=2, K=2, one row per ``reward`` value (row i has ``step`` i + 1),
    evaluations at the row indices in ``success`` (oracle 1.0). ``config``: dotted keys added
    to or replacing those of ``config.toml`` (``{"algo.align_target": 8}``)."""
    success = {1: 0.5, 3: 1.0} if success is None else success
    d.mkdir(parents=True, exist_ok=True)
    text = (
        f'variant = "{variant}"\nseed = {seed}\nsteps = {len(reward)}\n'
        f'[env]\nid = "{env}"\n[algo]\nqueries_per_step = 2\ngroup_size = 2\nalign_target = 4\n'
    )
    if config:
        text = _toml_with(text, config)
    (d / "config.toml").write_text(text)
    calls, dup, drop, empty = [1, 2, 3, 2], [2, 0, 0, 2], [0, 1, 1, 0], [1, 1, 0, 0]
    lines = []
    for s, r in enumerate(reward):
        row = {"step": s + 1, "samples": (s + 1) * 4, "main/reward_mean": r}
        row |= {"sub/reward_mean": r / 2, "sub/calls_mean": calls[s % 4]}
        row |= {"sub/align_duplicated": dup[s % 4], "sub/align_dropped": drop[s % 4]}
        row |= {"sub/align_empty": empty[s % 4], "tool/category_error_rate": 0.25}
        if s in success:
            row |= {"eval/success_greedy": success[s], "eval/success": success[s] / 2}
            row |= {"eval/oracle_success": 1.0, "eval/oracle_fraction": success[s]}
            row |= {"eval/sim_time": sim_time}
        lines.append(json.dumps(row))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _toml_with(text: str, keys: Mapping[str, Any]) -> str:
    """``text`` (TOML of scalars and tables) with the dotted ``keys`` added or replaced."""
    tree = tomllib.loads(text)
    for key, value in keys.items():
        *tables, name = key.split(".")
        node = tree
        for t in tables:
            node = node.setdefault(t, {})
        node[name] = value
    out: list[str] = []

    def emit(node: dict[str, Any], prefix: str) -> None:
        out.extend(f"{k} = {json.dumps(v)}" for k, v in node.items() if not isinstance(v, dict))
        for k, v in node.items():
            if isinstance(v, dict):
                out.append(f"[{prefix}{k}]")
                emit(v, f"{prefix}{k}.")

    emit(tree, "")
    return "\n".join(out) + "\n"


def train_run(run_dir: Path, **keys) -> Path:
    """Train one tiny run into ``run_dir`` (config.toml + metrics.jsonl + checkpoint.pt)."""
    from experiments.config import dump_toml, resolve
    from experiments.run import Trainer

    cfg = resolve({**TINY, "env.id": SPECIES, **keys})
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_toml(cfg))
    Trainer(cfg, run_dir, progress=False).train()
    return run_dir


@pytest.fixture(scope="session")
def ablation_dir(tmp_path_factory) -> Path:
    """An ablation-like dir: species, variants mgrpo and main_only x seeds 0 and 1, nested one
    level (``<variant>/s<seed>``) as a runner would lay them out."""
    root = tmp_path_factory.mktemp("ablation")
    for variant in ("mgrpo", "main_only"):
        for seed in (0, 1):
            train_run(root / variant / f"s{seed}", variant=variant, seed=seed)
    return root


# ----------------------------------------------------------------------------- PostgreSQL
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    """Skip, or under ``CI=true`` fail: CI must run the PostgreSQL tests (``.ci/run``
    installs PostgreSQL with apt where it is missing)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true requires PostgreSQL (.ci/run installs it with apt as root)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, fsync off), one per test
    process, stopped after; skipped where none can start (failed under ``CI=true``)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (the dev extra has it)")
    from experiments.store.testing import PostgresUnavailable, throwaway_postgres

    stack = ExitStack()
    try:
        url = stack.enter_context(throwaway_postgres())
    except PostgresUnavailable as e:
        _unavailable(str(e))
    with stack:
        yield url
