"""Rules of experiments/ablate.py: the grid, validation, parallel runs, skip and resume."""

from pathlib import Path

import pytest

from experiments.ablate import AblationRun, _train_one, plan
from experiments.checkpoint import read_metrics
from experiments.config import ConfigError, resolve
from experiments.run import Trainer
from tests.experiments.conftest import mgrpo, set_args

TINY = [
    "steps=4",
    "algo.queries_per_step=4",
    "algo.group_size=2",
    "eval.episodes=8",
    "eval.oracle_episodes=0",
    "eval.every=2",
    "checkpoint_every=2",
    'env.id="mgrpo/InvasiveSpecies-v0"',
]


def test_plan_expands_variants_seeds_envs_and_env_overrides(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "steps = 5\n[ablate]\nvariants = ['mgrpo', 'gated_reward']\nseeds = 2\n"
        "envs = ['mgrpo/RubiksLogic-v0', 'mgrpo/InvasiveSpecies-v0']\n"
        "[ablate.env_overrides.'mgrpo/InvasiveSpecies-v0']\nsteps = 3\n"
    )
    runs = plan(cfg, [], tmp_path / "out")
    assert len(runs) == 2 * 2 * 2
    assert runs[0].run_dir == tmp_path / "out" / "RubiksLogic" / "mgrpo" / "seed0"
    steps = {(r.env_id, resolve(r.flat).steps) for r in runs}
    assert steps == {("mgrpo/RubiksLogic-v0", 5), ("mgrpo/InvasiveSpecies-v0", 3)}
    # --set ablate.env_overrides."<id>".key beats the table's, for that env only
    sets = ['ablate.env_overrides."mgrpo/InvasiveSpecies-v0".steps=7']
    steps = {(r.env_id, resolve(r.flat).steps) for r in plan(cfg, sets, tmp_path / "o2")}
    assert steps == {("mgrpo/RubiksLogic-v0", 5), ("mgrpo/InvasiveSpecies-v0", 7)}
    # flags override the table
    assert (
        len(plan(cfg, [], tmp_path, variants=["mgrpo"], seeds=1, envs=["mgrpo/RubiksLogic-v0"]))
        == 1
    )


def test_bad_grids_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="the variant list is empty"):
        plan(None, [], tmp_path, variants=[])
    with pytest.raises(ConfigError, match="unknown variant 'fancy'"):
        plan(None, [], tmp_path, variants=["fancy"])
    with pytest.raises(ConfigError, match="main_only on None: roles.sub.frozen"):
        plan(None, ["roles.sub.frozen=false"], tmp_path, variants=["main_only"])


def test_finished_runs_are_skipped_and_partial_ones_resumed(tmp_path):
    from experiments.config import parse_overrides

    flat = parse_overrides(TINY) | {"variant": "mgrpo", "seed": 0}
    run = AblationRun("mgrpo/InvasiveSpecies-v0", "mgrpo", 0, tmp_path / "r", flat)
    # a run that died after its step-2 checkpoint
    tr = Trainer(resolve(flat | {"steps": 2}), tmp_path / "r", progress=False)
    tr.train()
    res = _train_one(run, tensorboard=False)
    assert res["status"] == "trained"
    assert [r["step"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2, 3, 4]
    assert _train_one(run, tensorboard=False)["status"] == "skipped"


def test_ablate_cli_runs_the_grid_in_parallel_and_reruns_skip(tmp_path):
    out = tmp_path / "grid"
    args = ["ablate", "--variants", "mgrpo,main_only", "--seeds", "2", "--workers", "2"]
    args += ["--out", str(out), *set_args(TINY)]
    r = mgrpo(*args)
    assert "grid finished" in r.stdout
    dirs = sorted(Path(p).parent for p in out.glob("*/*/seed*/metrics.jsonl"))
    assert len(dirs) == 4
    again = mgrpo(*args)
    assert again.stdout.count("skipped:") == 4


def test_ablate_cli_bad_input_exits_2(tmp_path):
    r = mgrpo("ablate", "--variants", "", "--out", str(tmp_path), check=False)
    assert r.returncode == 2 and "variant list is empty" in r.stderr
    assert "Traceback" not in r.stderr
