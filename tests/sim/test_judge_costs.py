"""Rules of issue 10 in the trainer: an imperfect judge of e_S, time and call costs on the main
reward, flat shaping of a single agent, the time metrics of evaluation, and their config keys.
With the new keys at their defaults, rewards and advantages are bit for bit the old ones."""

import dataclasses

import numpy as np
import pytest
import torch

from experiments.config import ConfigError, resolve
from sim.alignment import align
from sim.rewards import main_reward, sub_reward
from sim.rollout import collect_rollouts
from sim.trainer import HELDOUT, Learner
from sim.update import SUB_ADVANTAGES, _adv_kw, prepare_main, prepare_sub
from tests.sim.conftest import tiny_config

RUBIKS, SPECIES = "mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"


def _collect(learner, step=0):
    """One training batch as ``Learner.train_step`` collects it at ``step``."""
    cfg = learner.cfg
    B, K = cfg.algo.queries_per_step, cfg.algo.group_size
    rng = np.random.default_rng([cfg.seed, step, 1])
    queries = rng.integers(0, HELDOUT, B, dtype=np.int64)
    seeds = rng.integers(0, 2**31, B * K).tolist()
    subs = {r: learner.policies[r] for r in learner.roles}
    return collect_rollouts(learner.env, learner.policies["main"], subs, queries, K, seeds)


def _with_reward(cfg, **reward):
    return dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, **reward))


@pytest.fixture(scope="module")
def hier():
    """A learner on Rubik's (tiny) and one fixed batch of its rollouts (with delegations)."""
    learner = Learner(tiny_config(RUBIKS))
    batch = _collect(learner)
    assert len(batch.trajectories["sub"]) > 0 and batch.total_calls().sum() > 0
    return learner, batch


# ---------------------------------------------------------------------- defaults: no change
def test_defaults_give_the_old_rewards_and_advantages_bit_for_bit(hier):
    # the old step: R_M = f (a1 + a2 c); R_S from the env's e_S as float32; same alignment seed
    learner, batch = hier
    cfg = learner.cfg
    m = prepare_main(cfg, batch, learner.policies["main"], 0, {})
    r_main = main_reward(batch.format_ok, batch.correct, cfg.reward.alpha)
    assert torch.equal(m.rewards, r_main)
    gid = torch.from_numpy(batch.main.rollout) // batch.group_size
    from sim.advantages import group_advantages

    assert torch.equal(m.adv, group_advantages(r_main, gid, **_adv_kw(cfg)).advantages.float())

    s = prepare_sub(cfg, batch, "sub", 0, learner.policies["sub"], 0, {})
    traj = batch.trajectories["sub"]
    rollout = torch.from_numpy(traj.rollout)
    r_sub = sub_reward(
        torch.from_numpy(traj.format_ok).float(),
        torch.from_numpy(batch.correct).float()[rollout],
        torch.from_numpy(traj.expert).float(),
        cfg.reward.betas(),
        cfg.reward.form,
    )
    assert torch.equal(s.rewards, r_sub)
    a = align(
        rollout,
        len(batch.correct),
        cfg.algo.align_target,
        cfg.algo.align_mode,
        seed=np.random.default_rng([cfg.seed, 0, 3, 0]),
    )
    adv, _ = SUB_ADVANTAGES["per_query"](r_sub, a, traj, batch, **_adv_kw(cfg))
    assert torch.equal(s.adv, adv.float()) and torch.equal(s.weight, a.weight.float())


# ---------------------------------------------------------------------- judge
def test_a_noisy_judge_changes_the_sub_rewards_and_logs_both_expert_means(hier):
    learner, batch = hier
    cfg = _with_reward(learner.cfg, judge="flip", judge_noise=0.2)
    metrics = {}
    s = prepare_sub(cfg, batch, "sub", 0, learner.policies["sub"], 0, metrics)
    exact = prepare_sub(learner.cfg, batch, "sub", 0, learner.policies["sub"], 0, {})
    assert not torch.equal(s.rewards, exact.rewards)
    assert 0.0 <= metrics["sub/expert_mean"] <= 1.0  # as judged (flips 0->1 and 1->0 may cancel)
    # expert_true_mean is the env's score; the same step and seed draw the same verdicts
    true = float(torch.from_numpy(batch.trajectories["sub"].expert).float().mean())
    assert metrics["sub/expert_true_mean"] == true
    again = prepare_sub(cfg, batch, "sub", 0, learner.policies["sub"], 0, {})
    assert torch.equal(s.rewards, again.rewards)
    other_step = prepare_sub(cfg, batch, "sub", 0, learner.policies["sub"], 1, {})
    assert not torch.equal(s.rewards, other_step.rewards)


def test_a_tiny_run_with_a_flip_judge_logs_judged_and_true_expert_means():
    learner = Learner(tiny_config(RUBIKS, **{"reward.judge": "flip", "reward.judge_noise": 0.2}))
    rows = [learner.train_step() for _ in range(3)]
    # flips both ways may cancel in one step's mean, not in three steps'
    assert any(r["sub/expert_mean"] != r["sub/expert_true_mean"] for r in rows)
    assert all(0.0 <= r["sub/expert_mean"] <= 1.0 for r in rows)


# ---------------------------------------------------------------------- costs
@pytest.mark.parametrize("key", ["call_cost", "time_cost"])
def test_a_cost_lowers_the_main_reward_on_the_same_rollouts(hier, key):
    # mean(R_M - cost * x) = mean(R_M) - cost * mean(x), x = total calls or sim time
    learner, batch = hier
    base, costly = {}, {}
    prepare_main(learner.cfg, batch, learner.policies["main"], 0, base)
    prepare_main(
        _with_reward(learner.cfg, **{key: 0.05}), batch, learner.policies["main"], 0, costly
    )
    x = batch.total_calls() if key == "call_cost" else batch.sim_time
    assert costly["main/reward_mean"] < base["main/reward_mean"]
    assert costly["main/reward_mean"] == pytest.approx(base["main/reward_mean"] - 0.05 * x.mean())
    assert costly["main/calls_total_mean"] == base["main/calls_total_mean"]


def test_the_sub_reward_keeps_the_correctness_under_costs(hier):
    learner, batch = hier
    cfg = _with_reward(learner.cfg, call_cost=0.5, time_cost=0.1)
    pol = learner.policies["sub"]
    a = prepare_sub(cfg, batch, "sub", 0, pol, 0, {})
    b = prepare_sub(learner.cfg, batch, "sub", 0, pol, 0, {})
    assert torch.equal(a.rewards, b.rewards)


def test_total_calls_count_every_role():
    cfg = tiny_config(RUBIKS, **{"env.reasoner": "subagent", "reward.call_cost": 0.1})
    learner = Learner(cfg)
    batch = _collect(learner)
    assert set(batch.calls) == {"sub", "math"}
    assert np.array_equal(batch.total_calls(), batch.calls["sub"] + batch.calls["math"])
    row = {}
    prepare_main(cfg, batch, learner.policies["main"], 0, row)
    assert row["main/calls_total_mean"] == pytest.approx(batch.total_calls().mean())


# ---------------------------------------------------------------------- flat shaping
def test_flat_shaping_adds_b3_times_the_judged_flat_expert_score():
    cfg = tiny_config(SPECIES, variant="single_agent", **{"reward.flat_shaping": True})
    learner = Learner(cfg)
    batch = _collect(learner)
    infos = learner.env.final_infos  # the env's flat expert score and tool sessions, if any
    assert batch.flat_expert.tolist() == [i.get("flat_expert", 0.0) for i in infos]
    assert batch.total_calls().tolist() == [i.get("flat_sessions", 0) for i in infos]
    batch.flat_expert = np.linspace(0.0, 0.5, len(batch.correct))  # known, mean 0.25
    pol = learner.policies["main"]
    off, on, noisy = {}, {}, {}
    p_off = prepare_main(_with_reward(cfg, flat_shaping=False), batch, pol, 0, off)
    p_on = prepare_main(cfg, batch, pol, 0, on)
    # R_M'' = R_M + b3 e_flat, b3 = 0.5 (reward.beta[2])
    expect = p_off.rewards + 0.5 * torch.from_numpy(batch.flat_expert)
    assert torch.allclose(p_on.rewards, expect, rtol=0, atol=1e-12)
    assert on["main/flat_expert_mean"] == on["main/flat_expert_true_mean"] == pytest.approx(0.25)
    assert "main/flat_expert_mean" not in off
    # the same judge applies to the flat expert score
    prepare_main(_with_reward(cfg, judge="flip", judge_noise=0.5), batch, pol, 0, noisy)
    assert noisy["main/flat_expert_mean"] != noisy["main/flat_expert_true_mean"]


def test_flat_shaping_trains_a_single_agent_end_to_end():
    cfg = tiny_config(SPECIES, variant="single_agent", **{"reward.flat_shaping": True})
    row = Learner(cfg).train_step()
    assert np.isfinite(row["main/reward_mean"]) and "main/flat_expert_true_mean" in row


# ---------------------------------------------------------------------- evaluation time metrics
def test_time_per_success_is_total_time_over_successes(hier, monkeypatch):
    learner, _ = hier
    import sim.trainer as trainer_mod

    real = trainer_mod.collect_rollouts
    seen = {}

    def half_right(env, main, subs, *args, **kwargs):
        b = real(env, main, subs, *args, **kwargs)
        b.correct = (np.arange(len(b.correct)) % 2).astype(np.float64)  # odd episodes succeed
        b.format_ok = np.ones_like(b.correct)
        seen["b"] = b
        return b

    monkeypatch.setattr(trainer_mod, "collect_rollouts", half_right)
    out = learner.evaluate()
    t = seen["b"].sim_time  # the greedy batch (evaluated last)
    assert out["eval/time_per_success"] == pytest.approx(t.sum() / (len(t) // 2))
    assert out["eval/sim_time_success"] == pytest.approx(t[1::2].mean())
    assert out["eval/sim_time"] == pytest.approx(t.mean())


def test_time_metrics_are_left_out_without_a_success(hier, monkeypatch):
    learner, _ = hier
    import sim.trainer as trainer_mod

    real = trainer_mod.collect_rollouts

    def all_wrong(*args, **kwargs):
        b = real(*args, **kwargs)
        b.correct = np.zeros_like(b.correct)
        return b

    monkeypatch.setattr(trainer_mod, "collect_rollouts", all_wrong)
    out = learner.evaluate()
    assert "eval/sim_time" in out
    assert "eval/time_per_success" not in out and "eval/sim_time_success" not in out


# ---------------------------------------------------------------------- config keys
@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"reward.judge": "llm"}, "reward.judge = 'llm' is invalid; allowed: 'exact', 'flip'"),
        ({"reward.judge": "flip", "reward.judge_noise": 0.6}, "reward.judge_noise = 0.6"),
        ({"reward.judge": "gaussian", "reward.judge_noise": -0.1}, "reward.judge_noise = -0.1"),
        ({"reward.judge_noise": 11.0}, "reward.judge_noise = 11.0"),
        ({"reward.judge_bias": 1.5}, "reward.judge_bias = 1.5"),
        ({"reward.time_cost": -0.01}, "reward.time_cost = -0.01"),
        ({"reward.call_cost": -1}, "reward.call_cost = -1"),
        ({"reward.call_cost": 101.0}, "reward.call_cost = 101.0"),
        ({"reward.flat_shaping": 1}, "reward.flat_shaping = 1"),
        ({"reward.flat_shaping": True}, "reward.flat_shaping = true needs a single agent"),
        (
            {"variant": "main_only", "reward.flat_shaping": True},
            "variant 'main_only' is not flat",
        ),
    ],
)
def test_bad_judge_cost_and_shaping_keys_name_the_key(over, needle):
    with pytest.raises(ConfigError, match="invalid config") as e:
        resolve(over)
    assert any(needle in p for p in e.value.problems), e.value.problems


def test_good_keys_resolve():
    cfg = resolve(
        {
            "variant": "single_agent",
            "reward.flat_shaping": True,
            "reward.judge": "gaussian",
            "reward.judge_noise": 2.0,
            "reward.judge_bias": -0.1,
            "reward.time_cost": 0.01,
            "reward.call_cost": 0.05,
        }
    )
    assert cfg.flat and cfg.reward.flat_shaping and cfg.reward.judge == "gaussian"
    assert resolve({"env.flat": True, "reward.flat_shaping": True}).reward.flat_shaping
    assert resolve({"reward.judge": "flip", "reward.judge_noise": 0.5}).reward.judge_noise == 0.5
