"""Fixtures for the experiments tests: tiny real run dirs, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "steps": 3,
    "algo.queries_per_step": 4,
    "algo.group_size": 2,
    "eval.episodes": 8,
    "eval.oracle_episodes": 16,
    "eval.every": 2,
}
SPECIES = "mgrpo/InvasiveSpecies-v0"


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
