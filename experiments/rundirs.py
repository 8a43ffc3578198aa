"""Run directories (issue 6): find, load and describe them.

A *run dir* holds ``config.toml`` (the resolved config) and ``metrics.jsonl`` (one JSON object per
training step, DESIGN §6). :func:`find_runs` expands directories to the run dirs under them,
:func:`load_run` reads one (a missing or corrupt one raises ``ValueError`` naming the path and the
problem); a :class:`Run` gives each metric as a series over the steps that logged it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments.checkpoint import read_metrics

__all__ = [
    "CONFIG",
    "COUNTERS",
    "METRICS",
    "Run",
    "find_runs",
    "is_run_dir",
    "load_run",
    "load_runs",
    "roles_of",
    "specialists_of",
]

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
COUNTERS = ("align_duplicated", "align_dropped", "align_empty")
"""the alignment counters of a specialist role (DESIGN §6)"""
_NOT_ROLES = ("eval", "tool", "time")


# ---------------------------------------------------------------------------------- loading
@dataclass
class Run:
    """One loaded run dir."""

    path: Path
    """the run directory"""
    config: dict[str, Any]
    """``config.toml`` as nested dicts"""
    rows: list[dict[str, Any]]
    """metrics rows, one per training step, in step order"""
    truncated: bool = False
    """the last line of ``metrics.jsonl`` was cut off (a killed run) and was skipped"""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        return str(self.config.get("variant", "mgrpo"))

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @property
    def env_id(self) -> str:
        return str(self.config.get("env", {}).get("id", "?"))

    @property
    def batch(self) -> tuple[int, int]:
        """``(B, K)``: queries per step and group size."""
        algo = self.config.get("algo", {})
        return int(algo.get("queries_per_step", 0)), int(algo.get("group_size", 0))

    @property
    def steps(self) -> int:
        """Training steps done (rows logged)."""
        return len(self.rows)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``key`` over the rows that have it (finite values only); ``x`` is the
        1-based training step (updates done when the row was logged)."""
        xs, ys = [], []
        for i, r in enumerate(self.rows):
            v = r.get(key)
            if isinstance(v, int | float) and math.isfinite(v):
                xs.append(int(r.get("step", i + 1)))
                ys.append(float(v))
        return np.asarray(xs, dtype=int), np.asarray(ys, dtype=float)


def is_run_dir(path: Path) -> bool:
    """A run dir: a directory with both ``config.toml`` and ``metrics.jsonl``."""
    return (path / CONFIG).is_file() and (path / METRICS).is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run dirs named by ``paths``: a run dir itself, or every run dir under a directory (any
    depth, sorted). Raises ``ValueError`` for a missing path or one without any run dir."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ValueError(f"{p}: no such directory")
        if not p.is_dir():
            raise ValueError(f"{p}: not a directory (give a run dir or a dir holding run dirs)")
        if (p / CONFIG).is_file() or (p / METRICS).is_file():
            found.append(p)  # explicitly named: load_run says what is missing
            continue
        sub = sorted(m.parent for m in p.rglob(METRICS) if "plots" not in m.parent.parts)
        if not sub:
            raise ValueError(f"{p}: no run dirs found (a run dir holds {CONFIG} and {METRICS})")
        found.extend(sub)
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def load_run(path: str | Path) -> Run:
    """Load one run dir. Raises ``ValueError`` with the path and what is wrong (missing or
    unparsable config.toml, missing or corrupt metrics.jsonl, no rows)."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"{path}: no such run directory")
    cfg_path, met_path = path / CONFIG, path / METRICS
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a run dir ({CONFIG} is missing)")
    if not met_path.is_file():
        raise ValueError(f"{path}: not a run dir ({METRICS} is missing; did the run start?)")
    try:
        config = tomllib.loads(cfg_path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{cfg_path}: corrupt config ({e})") from e
    try:
        rows = read_metrics(met_path)
    except UnicodeDecodeError as e:
        raise ValueError(f"{met_path}: corrupt metrics (not text: {e})") from e
    except ValueError as e:
        raise ValueError(f"corrupt metrics: {e}") from e
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise ValueError(f"{met_path}: corrupt metrics (line {bad[0] + 1} is not a JSON object)")
    if not rows:
        raise ValueError(f"{met_path}: no metrics rows (the run logged no step)")
    n_lines = sum(1 for line in met_path.read_text().splitlines() if line.strip())
    rows.sort(key=lambda r: r.get("step", 0))
    return Run(path=path, config=config, rows=rows, truncated=n_lines > len(rows))


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`find_runs` then :func:`load_run` on each."""
    return [load_run(p) for p in find_runs(paths)]


def _roles_logging(runs: Iterable[Run], name: str) -> set[str]:
    """Roles with a ``<role>/<name>`` key in any row (eval/tool/time prefixes excluded)."""
    found: set[str] = set()
    for run in runs:
        for r in run.rows:
            for k in r:
                pre, _, key = k.partition("/")
                if key == name and pre not in _NOT_ROLES:
                    found.add(pre)
    return found


def roles_of(runs: Iterable[Run]) -> list[str]:
    """Roles with a ``<role>/reward_mean`` in any row: ``main`` first, then specialists."""
    return sorted(_roles_logging(runs, "reward_mean"), key=lambda r: (r != "main", r))


def specialists_of(runs: Iterable[Run]) -> list[str]:
    """Specialist roles: those that log ``<role>/calls_mean``."""
    return sorted(_roles_logging(runs, "calls_mean"))
