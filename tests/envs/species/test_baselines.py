"""The baseline table of DESIGN §4.2 on held-out queries (mgrpo/InvasiveSpecies-v0)."""

import numpy as np
import pytest

import envs  # noqa: F401
from envs import BASELINES, evaluate_baseline
from envs.species.env import InvasiveSpeciesVectorEnv

ENV_ID = "mgrpo/InvasiveSpecies-v0"


@pytest.fixture(scope="module")
def table():
    return {b: evaluate_baseline(ENV_ID, b, n_queries=2000, seed=3) for b in BASELINES}


def test_default_preset_is_well_posed(table):
    oracle = table["oracle"].success
    assert oracle >= 0.95
    assert table["random"].success <= 0.5 * oracle
    assert table["memorizer"].success <= 0.5 * oracle
    assert table["oracle_main+random_sub"].success <= 0.6 * oracle
    # "clearly below": the whole CI of the vague M under the oracle's CI
    assert table["oracle_main+vague"].ci_high < 0.5 * table["oracle"].ci_low


def test_vague_main_rejects_mismatched_reports_as_the_oracle_does(table):
    # it retries a hop whose report does not match (M reads the report) until no call is left
    assert table["oracle_main+vague"].calls["sub"] == 6.0
    assert table["oracle"].calls["sub"] < 3.0


def test_memorizer_answers_at_once_without_a_call(table):
    # the answer (2-4 zip codes of 90,000, drawn per query) cannot be guessed from the question
    m = table["memorizer"]
    assert m.success == 0.0 and m.calls == {"sub": 0.0} and m.time_per_success is None
    assert m.sim_time == 1.0  # one turn of thinking


def test_flat_oracle_matches_the_oracle_under_the_single_agent_rules(table):
    # no call cap in flat mode, 40 turns: the single agent finds every hop too, but slower
    # (every hop costs an extra turn to state its session, and nothing runs in parallel)
    flat, oracle = table["oracle_flat"], table["oracle"]
    assert flat.ci_low > 0.95 and flat.calls == {} and flat.flat_sessions > 2.0
    assert flat.sim_time > oracle.sim_time
    assert flat.time_per_success == pytest.approx(flat.sim_time / flat.success)


@pytest.mark.parametrize("preset", ["low", "heavy"])
def test_oracle_beats_every_baseline_on_other_presets(preset):
    res = {b: evaluate_baseline(ENV_ID, b, n_queries=500, seed=4, preset=preset) for b in BASELINES}
    for b in ("oracle_main+random_sub", "oracle_main+vague", "random", "memorizer"):
        assert res[b].ci_high < res["oracle"].ci_low, b
    assert res["oracle_flat"].ci_low > 0.95


def _oracle_calls(preset, n=1000):
    vec = InvasiveSpeciesVectorEnv(num_envs=n, preset=preset)
    main, subs = vec.baseline_policies("oracle", np.random.default_rng(0))
    vec.set_subagent("sub", subs["sub"])
    obs, _ = vec.reset(seed=0, options={"query": 2**31 + np.arange(n)})
    while not vec.done.all():
        obs, *_ = vec.step(main(obs))
    return np.array([i["calls"]["sub"] for i in vec.final_infos])


def test_presets_have_clearly_different_call_distributions():
    # d_k comes from hops and retries after failed calls, never from a knob that sets it
    low, default, heavy = (_oracle_calls(p) for p in ("low", "default", "heavy"))
    assert low.mean() + 0.5 < default.mean() < heavy.mean() - 1.5
    assert set(np.unique(low)) <= {1, 2, 3} and (heavy >= 3).all()
    assert default.min() == 2 and (default > 2).mean() > 0.2  # retries after failures
    # heavy exceeds the paper's alignment target D = 8 in a visible share of episodes
    assert 0.1 < (heavy > 8).mean() < 0.3
