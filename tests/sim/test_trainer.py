"""Rules of sim/trainer.py: every variant runs and shows its defining property; determinism;
bad numbers stop the run with the last checkpoint intact."""

import numpy as np
import pytest
import torch

from experiments.checkpoint import read_metrics
from experiments.run import Trainer
from sim.config import VARIANTS as VARIANT_PRESETS
from sim.records import Trajectories
from tests.sim.conftest import tiny_config

ENVS = ["mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"]
VARIANTS = list(VARIANT_PRESETS)  # every variant of DESIGN §3.6


tiny = tiny_config


def run(tmp_path, cfg, name="run"):
    tr = Trainer(cfg, tmp_path / name, progress=False)
    tr.train()
    return tr, read_metrics(tmp_path / name / "metrics.jsonl")


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_three_steps(tmp_path, env_id, variant):
    tr, rows = run(tmp_path, tiny(env_id, variant=variant))
    assert [r["step"] for r in rows] == [1, 2, 3]  # updates done, from 1
    for r in rows:
        assert r["main/rows"] == 16
        assert all(v is None or np.isfinite(v) for v in r.values() if isinstance(v, float))
    assert "eval/success_greedy" in rows[0] and "eval/success_greedy" in rows[2]


def test_main_only_leaves_every_specialist_bitwise_unchanged(tmp_path):
    cfg = tiny(ENVS[0], variant="main_only", **{"env.reasoner": "subagent"})
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    before = {r: {k: v.clone() for k, v in tr.policies[r].state_dict().items()} for r in tr.roles}
    main_before = [p.clone() for p in tr.policies["main"].parameters()]
    tr.train()
    assert tr.roles == ("sub", "math")
    for r in tr.roles:
        for k, v in tr.policies[r].state_dict().items():
            assert torch.equal(v, before[r][k]), (r, k)
    after = list(tr.policies["main"].parameters())
    assert any(not torch.equal(a, b) for a, b in zip(main_before, after, strict=True))


def test_no_alignment_trains_on_ragged_groups(tmp_path):
    tr, rows = run(tmp_path, tiny(ENVS[0], variant="no_alignment"))
    for r in rows:  # every original row once: rows == total calls, nothing added or dropped
        assert r["sub/rows"] == round(r["sub/calls_mean"] * 16)
        assert r["sub/align_duplicated"] == 0 and r["sub/align_dropped"] == 0
    mgrpo = run(tmp_path, tiny(ENVS[0]), "m")[1]
    assert all(r["sub/rows"] % 3 == 0 for r in mgrpo)  # aligned: D = 3 rows per rollout


@pytest.mark.parametrize("lag", [1, 2])
def test_async_queue_trains_on_data_lagging_by_the_configured_steps(tmp_path, lag):
    tr, rows = run(tmp_path, tiny(ENVS[0], variant="async_queue", **{"algo.queue_lag": lag}))
    for r in rows:
        if r["step"] <= lag:
            assert r["sub/rows"] == 0 and "sub/data_lag" not in r  # queue still filling
        else:
            assert r["sub/data_lag"] == lag
    assert tr.cfg.algo.sub_grouping == "queue_window"
    assert len(tr.queue["sub"]) == lag  # the newest `lag` steps wait in the FIFO


def test_gated_reward_uses_the_gated_form(tmp_path):
    tr, _ = run(tmp_path, tiny(ENVS[0], variant="gated_reward"))
    values = {round(v, 6) for v in tr.last_prepared["sub"].rewards.tolist()}
    assert values <= {0.0, 0.1, 1.0}


def test_single_agent_uses_the_flat_mode(tmp_path):
    tr, rows = run(tmp_path, tiny(ENVS[1], variant="single_agent"))
    assert tr.env.flat and tr.roles == () and list(tr.policies) == ["main"]
    assert not any(k.startswith("sub/") for k in rows[0])


def test_shared_policy_has_one_module(tmp_path):
    tr, _ = run(tmp_path, tiny(ENVS[0], variant="shared_policy"))
    assert tr.shared_module is not None and list(tr.optims) == ["shared"]
    assert tr.policies["main"].trunk is tr.policies["sub"].trunk


def _strip_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_same_seed_same_metrics(tmp_path):
    cfg = tiny(ENVS[1])
    a = run(tmp_path, cfg, "a")[1]
    b = run(tmp_path, cfg, "b")[1]
    assert _strip_time(a) == _strip_time(b)
    c = run(tmp_path, tiny(ENVS[1], seed=1), "c")[1]
    assert _strip_time(a) != _strip_time(c)


def test_a_step_without_any_delegation_trains_main_only(tmp_path, monkeypatch):
    # regression: a batch in which no rollout delegated must not crash the sub rows
    tr = Trainer(tiny(ENVS[0]), tmp_path / "r", progress=False)
    import sim.trainer as trainer_mod

    real = trainer_mod.collect_rollouts

    def no_calls(env, main, subs, *args, **kwargs):
        batch = real(env, main, subs, *args, **kwargs)
        for r in subs:
            obs_space, act_space = env.subagent_spaces[r]
            fields = {k: (sp.shape, sp.dtype) for k, sp in obs_space.spaces.items()}
            batch.trajectories[r] = Trajectories.empty(r, fields, len(act_space.nvec))
        batch.calls = {r: np.zeros_like(c) for r, c in batch.calls.items()}
        return batch

    monkeypatch.setattr(trainer_mod, "collect_rollouts", no_calls)
    row = tr.train_step()
    assert row["sub/rows"] == 0 and row["sub/align_empty"] == 16 and row["main/rows"] == 16


def test_evaluation_does_not_change_the_training_trajectory(tmp_path):
    # eval draws from its own streams: training metrics are the same whatever eval.every is
    a = run(tmp_path, tiny(ENVS[0], **{"eval.every": 1}), "a")[1]
    b = run(tmp_path, tiny(ENVS[0], **{"eval.every": 5}), "b")[1]

    def train_keys(rows):
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/"))} for r in rows]

    assert train_keys(a) == train_keys(b)


@pytest.mark.parametrize(
    "over",
    [
        {"loss.kl_coef": 0.1, "loss.entropy_coef": 0.01},
        {"loss.ratio_level": "sequence", "loss.agg": "token-mean"},
        {"loss.ratio_level": "sequence_mean", "loss.agg": "seq-mean-token-sum-norm"},
        {"algo.align_mode": "mask", "adv.scale": "batch", "adv.ddof": 1},
        {"algo.align_mode": "balanced", "algo.sub_grouping": "per_invocation"},
        {"reward.local_share": 0.2, "reward.form": "local_only", "roles.sub.lr": 0.01},
        {"env.reasoner": "subagent", "roles.math.align_target": 2, "roles.sub.frozen": True},
    ],
)
def test_config_options_run_end_to_end(tmp_path, over):
    tr, rows = run(tmp_path, tiny(ENVS[0], steps=2, **over))
    assert len(rows) == 2
    for r in rows:
        assert all(np.isfinite(v) for v in r.values() if isinstance(v, float))
    if "env.reasoner" in over:  # the math specialist is trained with its own target
        assert rows[-1]["math/rows"] % 2 == 0 and tr.frozen["sub"] and not tr.frozen["math"]
