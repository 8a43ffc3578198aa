import numpy as np
import pytest

from envs import evaluate_baseline
from envs.baselines import BASELINES

ID = "mgrpo/RubiksLogic-v0"


def test_default_preset_is_well_posed_on_held_out_queries():
    # DESIGN 4.2: random, memorizer <= 0.5 x oracle; oracle_main+random_sub <= 0.6 x oracle
    res = {b: evaluate_baseline(ID, b, n_queries=2000, seed=0) for b in BASELINES}
    oracle = res["oracle"].success
    assert oracle >= 0.9
    assert res["random"].ci_high <= 0.5 * oracle
    assert res["memorizer"].ci_high <= 0.5 * oracle  # no clue-only shortcut
    assert res["memorizer"].calls["sub"] == 0
    assert res["oracle_main+random_sub"].ci_high <= 0.6 * oracle
    assert res["oracle_main+vague"].success < oracle  # the constraint is essential
    for r in res.values():
        assert r.ci_low <= r.success <= r.ci_high and r.n == 2000


@pytest.mark.parametrize("preset", ["low", "heavy"])
def test_oracle_beats_random_by_a_wide_margin(preset):
    o = evaluate_baseline(ID, "oracle", n_queries=500, preset=preset)
    r = evaluate_baseline(ID, "random", n_queries=500, preset=preset)
    assert o.success - r.success > 0.5


def test_presets_give_clearly_different_call_counts_under_the_oracle():
    calls = [
        evaluate_baseline(ID, "oracle", n_queries=500, preset=p).calls_mean["sub"]
        for p in ("low", "default", "heavy")
    ]
    assert calls[0] + 0.4 < calls[1] < calls[2] - 0.5


@pytest.mark.parametrize("preset", ["low", "heavy"])
def test_memorizer_stays_at_most_half_the_oracle_on_every_preset(preset):
    o = evaluate_baseline(ID, "oracle", n_queries=500, preset=preset)
    m = evaluate_baseline(ID, "memorizer", n_queries=500, preset=preset)
    assert m.success <= 0.5 * o.success


def test_unknown_baseline_lists_the_valid_ones():
    with pytest.raises(ValueError, match="oracle_main"):
        evaluate_baseline(ID, "genius")


def test_reasoner_subagent_and_flat_have_baselines_too():
    for kw in (dict(reasoner="subagent"), dict(flat=True)):
        o = evaluate_baseline(ID, "oracle", n_queries=300, **kw)
        r = evaluate_baseline(ID, "random", n_queries=300, **kw)
        assert o.success > 0.9 and r.success < 0.5 * o.success
    assert np.isfinite(o.ci_low)
