"""Rules of the paper's two-stage protocol in a grid (experiments/stages.py, ablate.py), the
pilot rule for D (experiments/pilot.py) and the success-versus-time table (time_table.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from experiments import pilot
from experiments.ablate import _train_one, plan, run_grid
from experiments.checkpoint import load_checkpoint
from experiments.config import ConfigError, resolve

SPECIES = "mgrpo/InvasiveSpecies-v0"
TINY = [
    "steps=2",
    "algo.queries_per_step=2",
    "algo.group_size=2",
    "eval.episodes=4",
    "eval.oracle_episodes=0",
    "eval.every=2",
    "checkpoint_every=2",
    f'env.id="{SPECIES}"',
    "ablate.stage1.steps=1",
    "ablate.stage1.eval.every=1",
    "ablate.pilot.batches=1",
]


def _plan(tmp_path, variants, extra=(), seeds=2):
    return plan("paper_protocol", [*TINY, *extra], tmp_path, variants, seeds, [SPECIES])


def test_grid_plans_stage1_first_and_stage2_starts_from_the_same_seed(tmp_path):
    runs = _plan(tmp_path, ["mgrpo", "main_only", "single_agent", "main_only_random_init"])
    names = [r.name for r in runs]
    # 2 seeds: stage1 x2, stage1_flat x2 first, then 4 variants x 2 seeds
    assert names[:4] == ["stage1", "stage1", "stage1_flat", "stage1_flat"] and len(runs) == 12
    s1 = {(r.name, r.seed): r.run_dir for r in runs if r.stage1}
    assert s1[("stage1", 1)] == tmp_path / "InvasiveSpecies" / "stage1" / "seed1"
    assert resolve(runs[0].flat).env.preset == "low"  # [ablate.stage1] keys
    for r in runs:
        if r.stage1:
            assert r.needs == () and not any(k.endswith("init_from") for k in r.flat)
            continue
        cfg = resolve(r.flat)
        assert cfg.env.preset == "default" and r.pilot is not None
        if r.name == "main_only_random_init":  # the labelled ablation: random initial policies
            assert r.variant == "main_only" and not any(k.endswith("init_from") for k in r.flat)
            continue
        want = s1[("stage1_flat" if cfg.flat else "stage1", r.seed)]
        roles = ["main"] if cfg.flat else ["main", "sub"]
        assert {k: v for k, v in r.flat.items() if k.endswith("init_from")} == {
            f"roles.{x}.init_from": str(want.absolute()) for x in roles
        }
        assert r.needs[0] == want


def test_single_agent_shaped_is_single_agent_with_the_dense_expert_term(tmp_path):
    runs = _plan(tmp_path, ["single_agent", "single_agent_shaped"], seeds=1)
    by = {r.name: r for r in runs}
    assert set(by) == {"stage1_flat", "single_agent", "single_agent_shaped"}
    plain, shaped = resolve(by["single_agent"].flat), resolve(by["single_agent_shaped"].flat)
    assert shaped.variant == plain.variant == "single_agent" and shaped.flat
    assert shaped.reward.flat_shaping and not plain.reward.flat_shaping
    assert by["single_agent_shaped"].needs == by["single_agent"].needs  # same flat warm-up


def test_bad_stage_tables_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\[ablate.stage1\] variant: the grid sets it"):
        _plan(tmp_path, ["mgrpo"], ["ablate.stage1.variant=main_only"])
    with pytest.raises(ConfigError, match="roles.sub.init_from: a stage-1 grid sets"):
        _plan(tmp_path, ["mgrpo"], ['roles.sub.init_from="x"'])
    with pytest.raises(ConfigError, match=r"\[ablate.pilot\] quantile = 2"):
        _plan(tmp_path, ["mgrpo"], ["ablate.pilot.quantile=2"])
    with pytest.raises(ConfigError, match="algo.align_target: \\[ablate.pilot\\] sets D"):
        _plan(tmp_path, ["mgrpo"], ["algo.align_target=4"])
    # stage 1 with another policy size than stage 2: the key, what differs
    with pytest.raises(ConfigError, match=r"roles.main.init_from: policy settings differ.*hidden"):
        _plan(tmp_path, ["mgrpo"], ["ablate.stage1.policy.hidden=8"])
    # the protocol off: a plain grid
    runs = _plan(tmp_path, ["mgrpo"], ["ablate.stage1=false", "ablate.pilot=false"], seeds=1)
    assert [r.name for r in runs] == ["mgrpo"] and runs[0].needs == ()


def test_stage1_runs_once_per_seed_main_only_keeps_its_sub_agent_and_reruns_skip(tmp_path):
    runs = _plan(tmp_path, ["mgrpo", "main_only"], seeds=1)
    res = run_grid(runs, workers=1, progress=False)
    assert [r["status"] for r in res] == ["trained"] * 3, res
    s1 = load_checkpoint(runs[0].run_dir)["policies"]
    main_only = next(r for r in runs if r.name == "main_only")
    st = load_checkpoint(main_only.run_dir)["policies"]
    for k, v in s1["sub"].items():  # frozen: bitwise the stage-1 sub-agent
        assert torch.equal(v, st["sub"][k]), k
    d = pilot.ensure_pilot(main_only.pilot)  # the pilot's D recorded in config.toml
    assert f"align_target = {d}" in (main_only.run_dir / "config.toml").read_text()
    again = run_grid(runs, workers=1, progress=False)
    assert [r["status"] for r in again] == ["skipped"] * 3


def test_a_mismatched_stage1_checkpoint_fails_the_cell_naming_the_key(tmp_path):
    runs = _plan(tmp_path, ["mgrpo"], ["ablate.pilot=false"], seeds=1)
    s1, cell = runs
    # a stage-1 dir trained with another policy size (e.g. left from an older table)
    other = plan("paper_protocol", [*TINY, "policy.hidden=8"], tmp_path / "o", ["mgrpo"], 1)
    assert _train_one(other[0], False)["status"] == "trained"
    bad = type(cell)(**{**cell.__dict__, "flat": cell.flat | {
        "roles.main.init_from": str(other[0].run_dir), "roles.sub.init_from": str(other[0].run_dir)
    }})  # fmt: skip
    res = _train_one(bad, False)
    assert res["status"] == "failed"
    assert "roles.main.init_from: incompatible policy" in res["error"], res
    assert "size mismatch" in res["error"] and "\n" not in res["error"]
    # a dependant of a failed stage-1 cell is not run
    s1_bad = type(s1)(**{**s1.__dict__, "flat": s1.flat | {"optim.lr": float("nan")}})
    res = run_grid([s1_bad, cell], workers=1, progress=False)
    assert res[1]["status"] == "failed" and "not run" in res[1]["error"]


def test_pilot_returns_the_099_quantile_of_d_k(monkeypatch):
    # 100 rollouts: d_k = 0..9 ten times each; P(d <= 9) = 1.0 is the first >= 0.99
    counts = np.repeat(np.arange(10), 10)
    assert pilot.target_from_pilot({"sub": counts}, 0.99) == 9
    # 0.9: P(d <= 8) = 0.9 -> 8; pooled over roles
    assert pilot.target_from_pilot({"sub": counts[:50], "math": counts[50:]}, 0.9) == 8
    monkeypatch.setattr(pilot, "pilot_counts", lambda cfg, batches: {"sub": counts})
    assert pilot.pilot_align_target(resolve({}), batches=1) == 9
    assert pilot.target_from_pilot({}, 0.99) is None  # flat: no specialist


def test_pilot_runs_the_env_with_the_initial_policies():
    cfg = resolve({"env.id": SPECIES, "algo.queries_per_step": 2, "algo.group_size": 2})
    counts = pilot.pilot_counts(cfg, batches=2)
    assert set(counts) == {"sub"} and counts["sub"].shape == (8,)
    assert pilot.pilot_align_target(cfg, batches=2) == max(int(counts["sub"].max()), 1)


def test_report_time_table_has_oracle_rows(tmp_path):
    from experiments.report import write_report
    from tests.experiments.conftest import write_run

    for s in (0, 1):
        write_run(tmp_path / "InvasiveSpecies" / "mgrpo" / f"seed{s}", seed=s)
        write_run(tmp_path / "InvasiveSpecies" / "stage1" / f"seed{s}", seed=s)
    text = Path(write_report(tmp_path, baseline_queries=20)).read_text()
    table = text.split("### Success versus time")[1]
    assert "| `oracle (reference)` |" in table and "| `oracle_flat (reference)` |" in table
    assert "| `mgrpo` | 2 |" in table and "stage1" not in table.split("###")[0]
    assert "stage-1 runs (the checkpoints stage 2 starts from" in text
    assert (tmp_path / "plots" / "invasivespecies_success_vs_time.png").is_file()


def test_time_rows_name_each_config_of_one_cell(tmp_path):
    """Lines of one variant in one cell name (several configs) keep their config labels, and
    each run counts the mean of its last 3 evaluations."""
    from experiments.rundirs import load_runs
    from experiments.time_table import time_rows
    from tests.experiments.conftest import write_run

    for noise in (0.0, 0.3):
        for s in (0, 1):
            d = tmp_path / f"n{noise}" / "InvasiveSpecies" / "mgrpo" / f"seed{s}"
            success = {0: 0.0, 1: 0.5, 2: 0.75, 3: 1.0}
            write_run(d, seed=s, success=success, config={"reward.judge_noise": noise})
    rows = time_rows(load_runs([tmp_path]))
    names = sorted(r["name"] for r in rows)
    assert len(names) == 2 and len(set(names)) == 2, names
    assert all("judge_noise" in n for n in names), names
    assert all(abs(r["success"] - 0.75) < 1e-12 for r in rows)  # mean of 0.5, 0.75, 1.0
