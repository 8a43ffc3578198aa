"""envs.evaluate_baseline (envs/baselines.py): names, flat mode, time and calls."""

import numpy as np
import pytest

import envs  # noqa: F401
from envs import BASELINES, evaluate_baseline
from envs.baselines import wilson

SPECIES = "mgrpo/InvasiveSpecies-v0"


def test_the_six_baselines_and_unknown_names_listing_them():
    assert BASELINES == (
        "oracle",
        "oracle_main+random_sub",
        "oracle_main+vague",
        "random",
        "memorizer",
        "oracle_flat",
    )
    with pytest.raises(ValueError, match="memorizer.*oracle_flat"):
        evaluate_baseline(SPECIES, "genius", n_queries=2)
    with pytest.raises(ValueError, match="n_queries"):
        evaluate_baseline(SPECIES, "oracle", n_queries=0)


def test_oracle_flat_runs_the_single_agent_rules():
    # evaluate_baseline builds the env with flat=True (and refuses flat=False)
    res = evaluate_baseline(SPECIES, "oracle_flat", n_queries=50)
    assert res.calls == {} and res.flat_sessions >= 2.0 and res.success > 0.9
    assert evaluate_baseline(SPECIES, "oracle_flat", n_queries=50, flat=True) == res
    with pytest.raises(ValueError, match="flat=True"):
        evaluate_baseline(SPECIES, "oracle_flat", n_queries=5, flat=False)


def test_result_carries_time_and_calls_and_time_per_success():
    res = evaluate_baseline(SPECIES, "oracle", n_queries=100, seed=1)
    assert res.calls_mean == res.calls and set(res.calls) == {"sub"} and res.calls["sub"] >= 2
    assert res.sim_time > 0 and res.flat_sessions is None
    # total time / successes = mean time / success rate
    assert res.time_per_success == pytest.approx(res.sim_time / res.success)
    assert res.ci_low <= res.success <= res.ci_high and res.n == 100
    # no success: no time per success
    none = evaluate_baseline(SPECIES, "memorizer", n_queries=20)
    assert none.success == 0.0 and none.time_per_success is None


def test_hook_names_outside_the_envs_modes_are_errors():
    # oracle_flat needs the flat env; the hierarchical baselines need the hierarchical one
    from envs.species.env import InvasiveSpeciesVectorEnv

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="oracle_flat.*flat=True"):
        InvasiveSpeciesVectorEnv(flat=False).baseline_policies("oracle_flat", rng)
    with pytest.raises(ValueError, match="oracle_main\\+vague"):
        InvasiveSpeciesVectorEnv(flat=True).baseline_policies("oracle_main+vague", rng)


def test_wilson_interval_hand_case():
    # 0 of 0: no information; k of n: the interval holds k / n
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.19, abs=0.01)
