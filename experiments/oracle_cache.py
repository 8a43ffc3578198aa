"""The oracle reference of a run (``eval/oracle_fraction``), cached across runs.

:meth:`sim.trainer.Learner.oracle` plays the env's oracle on ``eval.oracle_episodes`` held-out
queries (2,000 by default: many seconds before the first step). The result depends only on the
env (id, preset, keyword arguments but ``flat``), the number of episodes and the env's code, so
:func:`cached_oracle` keeps it in a small JSON file per key under the cache directory
(``$MGRPO_CACHE``, else ``~/.cache/mgrpo-sim``) in ``oracle/``. The key holds an env code
version: a hash of the source files of the ``envs`` package, so editing an env recomputes it.
A cache that cannot be read or written is skipped (the value is computed), never an error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.atomic import atomic_write

if TYPE_CHECKING:
    from sim.config import TrainConfig

__all__ = ["cache_dir", "cached_oracle", "env_code_version", "oracle_key"]

VERSION = 1
"""the cache file format (part of the key)"""


def cache_dir() -> Path:
    """``$MGRPO_CACHE``, else ``~/.cache/mgrpo-sim``."""
    env = os.environ.get("MGRPO_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mgrpo-sim"


@functools.cache
def env_code_version() -> str:
    """A hash of the ``envs`` package's source files (paths and contents)."""
    import envs

    root = Path(envs.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def oracle_key(cfg: TrainConfig) -> dict[str, Any]:
    """What the oracle reference of ``cfg`` depends on (as :meth:`Learner.oracle` calls it)."""
    import numpy as np

    kwargs = {k: v for k, v in sorted(cfg.env.kwargs.items()) if k != "flat"}
    return {
        "format": VERSION,
        "env_id": cfg.env.id,
        "preset": cfg.env.preset,
        "kwargs": kwargs,
        "episodes": cfg.eval.oracle_episodes,
        "seed": 0,
        "env_code": env_code_version(),
        "numpy": np.__version__,
    }


def cached_oracle(
    cfg: TrainConfig, compute: Callable[[], float], log: Callable[[str], None]
) -> float:
    """The oracle reference of ``cfg``: from the cache, else ``compute()`` (then cached).

    Args:
        cfg: the run's config (its ``env.*`` and ``eval.oracle_episodes``).
        compute: computes it, e.g. ``learner.oracle``.
        log: receives one line before a computation and one after (or one for a cache hit).
    """
    key = oracle_key(cfg)
    blob = json.dumps(key, sort_keys=True)
    path = cache_dir() / "oracle" / f"{hashlib.sha256(blob.encode()).hexdigest()[:24]}.json"
    n, env_id = cfg.eval.oracle_episodes, cfg.env.id
    try:
        rec = json.loads(path.read_text())
        if rec.get("key") == json.loads(blob) and isinstance(rec.get("success"), float):
            value = rec["success"]
            log(f"oracle reference on {n} held-out episodes of {env_id}: {value:.3f} (cached)")
            return value
    except (OSError, ValueError, AttributeError):
        pass
    log(f"oracle reference on {n} held-out episodes of {env_id} ...")
    t0 = time.perf_counter()
    value = float(compute())
    where = _write(path, {"key": key, "success": value})
    note = f"cached in {where}" if where else "not cached: the cache directory is not writable"
    log(f"oracle reference: {value:.3f} in {time.perf_counter() - t0:.1f} s ({note})")
    return value


def _write(path: Path, rec: dict[str, Any]) -> Path | None:
    """Write ``rec`` to ``path`` atomically; None when it cannot be written."""
    try:
        return atomic_write(path, json.dumps(rec, sort_keys=True), prefix=".oracle-")
    except OSError:
        return None
