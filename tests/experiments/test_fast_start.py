"""A fast, talkative start (issue 15, item 5): ``mgrpo --help``, ``mgrpo <cmd> --help`` and
``mgrpo envs`` import none of the heavy libraries, and the oracle reference is cached."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from experiments.config import resolve
from experiments.oracle_cache import cache_dir, cached_oracle, env_code_version, oracle_key

HEAVY = ("torch", "numba", "transformers", "optuna", "matplotlib", "scipy", "sklearn", "pandas")
COMMANDS = ("train", "ablate", "sweep", "plot", "report", "check-math", "envs")

PROBE = """
import json, sys
from experiments.cli import main
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _imported(*argvs: list[str]) -> tuple[list[str], str]:
    code = PROBE.format(argvs=list(argvs), heavy=HEAVY)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stdout


def test_help_of_every_command_and_envs_import_no_heavy_library():
    heavy, out = _imported(["--help"], *([c, "--help"] for c in COMMANDS), ["envs"])
    assert heavy == [], f"imported {heavy}"
    assert "mgrpo/RubiksLogic-v0" in out and "mgrpo/InvasiveSpecies-v0" in out


def test_a_config_error_imports_no_torch():
    heavy, _ = _imported(["train", "--set", "adv.ddof=true"], ["train", "--out", "/"])
    assert "torch" not in heavy and "numba" not in heavy


def test_oracle_reference_is_cached_per_env_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MGRPO_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    cfg = resolve({"env.id": "mgrpo/InvasiveSpecies-v0", "eval.oracle_episodes": 40})
    calls, lines = [], []

    def compute() -> float:
        calls.append(1)
        return 0.625

    assert cached_oracle(cfg, compute, lines.append) == 0.625
    assert cached_oracle(cfg, compute, lines.append) == 0.625
    assert len(calls) == 1 and "(cached)" in lines[-1] and "40 held-out episodes" in lines[0]
    for other in ({"eval.oracle_episodes": 41}, {"env.preset": "heavy"}, {"env.top_k": 2}):
        cfg2 = resolve({"env.id": "mgrpo/InvasiveSpecies-v0", "eval.oracle_episodes": 40, **other})
        cached_oracle(cfg2, compute, lines.append)
    assert len(calls) == 4
    # flat (single_agent) plays the same oracle: same key
    flat = resolve(
        {
            "env.id": "mgrpo/InvasiveSpecies-v0",
            "eval.oracle_episodes": 40,
            "variant": "single_agent",
        }
    )
    assert oracle_key(flat) == oracle_key(cfg)
    assert len(env_code_version()) == 16


def test_a_corrupt_or_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    cfg = resolve({"env.id": "mgrpo/InvasiveSpecies-v0", "eval.oracle_episodes": 40})
    monkeypatch.setenv("MGRPO_CACHE", str(tmp_path))
    cached_oracle(cfg, lambda: 0.5, lambda m: None)
    for f in (tmp_path / "oracle").glob("*.json"):
        f.write_text("{not json")
    assert cached_oracle(cfg, lambda: 0.25, lambda m: None) == 0.25
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("MGRPO_CACHE", str(blocker))  # a file: the cache cannot be made
    lines = []
    assert cached_oracle(cfg, lambda: 0.75, lines.append) == 0.75
    assert "not cached" in lines[-1]


@pytest.mark.slow
def test_oracle_cache_gives_the_computed_value_exactly(tmp_path, monkeypatch):
    from sim.trainer import Learner

    monkeypatch.setenv("MGRPO_CACHE", str(tmp_path))
    cfg = resolve(
        {
            "env.id": "mgrpo/InvasiveSpecies-v0",
            "eval.oracle_episodes": 32,
            "algo.queries_per_step": 2,
            "algo.group_size": 2,
            "eval.episodes": 2,
        }
    )
    learner = Learner(cfg)
    first = cached_oracle(cfg, learner.oracle, lambda m: None)
    assert first == learner.oracle()
    assert cached_oracle(cfg, lambda: -1.0, lambda m: None) == first
