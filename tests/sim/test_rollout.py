"""Rules of sim/rollout.py: what the collector records per role, for any policy kind."""

import numpy as np
import pytest
import torch

from policies import RoleSpec, build_policies
from sim.rollout import collect_rollouts
from sim.trainer import make_env
from tests.sim.conftest import tiny_config

B, K = 3, 4


class TokenLike:
    """A policy that keeps records of its own (as a language model does) and returns handles:
    the collector must store them and ask the policy for its records of exactly those steps."""

    def __init__(self, inner):
        self.inner, self.nvec, self.generator = inner, inner.nvec, inner.generator
        self.count = 0

    def act(self, obs, greedy=False):
        a, lp = self.inner.act(obs, greedy)
        h = self.count + np.arange(len(a))
        self.count += len(a)
        return a, lp, h

    __call__ = act

    def export_records(self, handles):
        return {"echo": np.asarray(handles) * 10}


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config("mgrpo/InvasiveSpecies-v0")
    env = make_env(cfg, B * K)
    specs = {"main": RoleSpec(env.single_observation_space, env.single_action_space, env.text)}
    specs |= {
        r: RoleSpec(*env.subagent_spaces[r], env.sub_tasks[r].text) for r in env.subagent_roles
    }
    pols = build_policies("mlp", specs, cfg.policy, 0).policies
    rng = np.random.default_rng(1)
    queries = rng.integers(0, 2**31, B)
    seeds = rng.integers(0, 2**31, B * K).tolist()
    return env, pols, queries, seeds


def _collect(setup, main=None, **kw):
    env, pols, queries, seeds = setup
    subs = {r: pols[r] for r in env.subagent_roles}
    return collect_rollouts(env, main or pols["main"], subs, queries, K, seeds, version=7, **kw)


def test_main_has_one_row_per_rollout_with_its_turns(setup):
    batch = _collect(setup)
    env = setup[0]
    main = batch.main
    assert main.rollout.tolist() == list(range(B * K))
    assert main.lengths.tolist() == [i["turns"] for i in env.final_infos]
    assert (main.version == 7).all() and (main.handle == -1).all()
    assert main.format_ok.tolist() == [i["format_ok"] for i in env.final_infos]


def test_sub_rows_are_the_delegations_sorted_by_rollout_and_invocation(setup):
    batch = _collect(setup)
    sub = batch.trajectories["sub"]
    assert len(sub) == int(batch.calls["sub"].sum()) > 0
    key = sub.rollout * 1000 + sub.invocation
    assert (np.diff(key) > 0).all()
    assert np.bincount(sub.rollout, minlength=B * K).tolist() == batch.calls["sub"].tolist()


def test_recomputed_log_probs_equal_the_behaviour_log_probs(setup):
    # on-policy: the packed tokens scored by the same parameters give the recorded log-probs
    batch = _collect(setup)
    pols = setup[1]
    for role, traj in batch.trajectories.items():
        tokens = pols[role].pack(traj)
        with torch.no_grad():
            logp, _ = pols[role].token_logprobs(tokens)
        m = tokens.mask > 0
        assert int(m.sum()) == traj.num_steps
        assert torch.allclose(logp[m], tokens.logp_old[m], atol=1e-5), role


def test_policy_handles_and_records_reach_the_trajectories(setup):
    env, pols, queries, seeds = setup
    main, sub = TokenLike(pols["main"]), TokenLike(pols["sub"])
    batch = collect_rollouts(env, main, {"sub": sub}, queries, K, seeds)
    # handles are the ids each policy returned for the rows that acted, row-major; the sub
    # handles travel through the env's sub-agent protocol
    for traj in (batch.main, batch.trajectories["sub"]):
        assert (traj.handle >= 0).all() and len(np.unique(traj.handle)) == traj.num_steps
        np.testing.assert_array_equal(traj.extras["echo"], traj.handle * 10)


def test_evaluation_collects_outcomes_without_trajectories(setup):
    batch = _collect(setup, greedy=True, record_subs=False)
    assert batch.trajectories == {} and batch.correct.shape == (B * K,)


def test_records_that_do_not_match_the_policy_name_the_role(setup):
    batch = _collect(setup)
    pols = setup[1]
    with pytest.raises(ValueError, match="role 'sub': the records lack observation field"):
        pols["main"].pack(batch.trajectories["sub"])
