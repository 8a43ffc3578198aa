"""The baseline table of DESIGN §4.2 on held-out queries (mgrpo/InvasiveSpecies-v0)."""

import numpy as np
import pytest

import envs  # noqa: F401
from envs import evaluate_baseline
from envs.species.env import InvasiveSpeciesVectorEnv

ENV_ID = "mgrpo/InvasiveSpecies-v0"


@pytest.fixture(scope="module")
def table():
    return {
        b: evaluate_baseline(ENV_ID, b, n_queries=2000, seed=3, preset="default")
        for b in ("oracle", "oracle_main+random_sub", "oracle_main+vague", "random")
    }


def test_default_preset_is_well_posed(table):
    oracle = table["oracle"].success
    assert oracle >= 0.95
    assert table["random"].success <= 0.5 * oracle
    assert table["oracle_main+random_sub"].success <= 0.6 * oracle
    # "clearly below": the whole CI of the vague M under the oracle's CI
    assert table["oracle_main+vague"].ci_high < 0.5 * table["oracle"].ci_low


@pytest.mark.parametrize("preset", ["low", "heavy"])
def test_oracle_beats_every_baseline_on_other_presets(preset):
    res = {
        b: evaluate_baseline(ENV_ID, b, n_queries=500, seed=4, preset=preset)
        for b in ("oracle", "oracle_main+random_sub", "oracle_main+vague", "random")
    }
    for b in ("oracle_main+random_sub", "oracle_main+vague", "random"):
        assert res[b].ci_high < res["oracle"].ci_low, b


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
