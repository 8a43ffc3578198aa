"""Rule: NaN/inf is never silent. A config either trains with every metric finite, or its step
stops with TrainingError naming the step, the role and the quantity (issue 15, item 2).

The table holds the configs that provoke huge numbers (learning rates, clip ranges, reward
weights, loss coefficients), first within the config's ranges, then past them (set on the
resolved config, as Python code can); the divergence guards (``optim.grad_norm_limit``,
``optim.param_norm_limit``) stop a run that is running away."""

import math

import numpy as np
import pytest

from sim.trainer import Learner, TrainingError
from tests.sim.conftest import tiny_config

SPECIES = "mgrpo/InvasiveSpecies-v0"
FAST = {"algo.group_size": 2, "algo.align_target": 2, "eval.episodes": 2, "eval.every": 10}
NOCLIP = {"optim.max_grad_norm": 0.0}
NO_GUARDS = {"optim.param_norm_limit": 0.0, "optim.grad_norm_limit": 0.0}
FINITE = None
PARAM_GUARD = r"parameter norm \S+ exceeds optim.param_norm_limit = "
GRAD_NONFINITE = r"gradient norm is not finite \((inf|nan)\)"
LOSS_OR_GRAD_NONFINITE = r"(gradient norm|loss) is not finite \((-?inf|nan)\)"
"""with the guards off a huge coefficient overflows either the loss or its gradient first,
depending on the minibatch order"""

# name: (config keys, keys forced past their ranges on the resolved config, expected outcome:
# FINITE or a regex of the stop message after "step N, role R: ")
CASES = {
    "lr=10": ({"optim.lr": 10.0}, {}, FINITE),
    "lr=10 no clip": ({"optim.lr": 10.0} | NOCLIP, {}, FINITE),
    "lr=10 clip=1e12 mu=8": (
        {"optim.lr": 10.0, "optim.max_grad_norm": 1e12, "optim.mu": 8},
        {},
        FINITE,
    ),
    "lr=10 clip range 0.999/10": (
        {"optim.lr": 10.0, "loss.eps_low": 0.999, "loss.eps_high": 10.0} | NOCLIP,
        {},
        FINITE,
    ),
    "lr=10 sequence ratio": (
        {"optim.lr": 10.0, "loss.ratio_level": "sequence"} | NOCLIP,
        {},
        FINITE,
    ),
    "lr=10 token sums": ({"optim.lr": 10.0, "loss.agg": "seq-mean-token-sum"} | NOCLIP, {}, FINITE),
    "reward weights 100, no scaling": (
        {"reward.alpha": [100.0, 100.0], "reward.beta": [100.0, 100.0, 100.0], "adv.scale": "none"}
        | {"optim.lr": 10.0}
        | NOCLIP,
        {},
        FINITE,
    ),
    "adv eps=0 std_floor=0": ({"adv.eps": 0.0, "adv.std_floor": 0.0}, {}, FINITE),
    "entropy_coef=100 lr=10": ({"loss.entropy_coef": 100.0, "optim.lr": 10.0} | NOCLIP, {}, FINITE),
    "shared policy lr=10": ({"variant": "shared_policy", "optim.lr": 10.0} | NOCLIP, {}, FINITE),
    "kl_coef=100 lr=10": (
        {"loss.kl_coef": 100.0, "optim.lr": 10.0} | NOCLIP,
        {},
        r"loss is not finite \((nan|inf)\); lower optim.lr",  # which comes first: the draws
    ),
    "param_norm_limit=1": ({"optim.param_norm_limit": 1.0}, {}, PARAM_GUARD + "1:"),
    "grad_norm_limit=1e-6": (
        {"optim.grad_norm_limit": 1e-6},
        {},
        r"gradient norm before clipping \S+ exceeds optim.grad_norm_limit = 1e-06:",
    ),
    # past the config's ranges
    "lr=1e6": ({}, {"optim.lr": 1e6}, PARAM_GUARD + "10000:"),
    "lr=1e30 no clip": (NOCLIP, {"optim.lr": 1e30}, PARAM_GUARD + "10000:"),
    "lr=1e38 guards off": (NO_GUARDS, {"optim.lr": 1e38}, r"optimizer step failed: .*overflow"),
    "lr=1e6 no clip, guards off": (NOCLIP | NO_GUARDS, {"optim.lr": 1e6}, FINITE),
    "eps_high=1e30 lr=1e3": ({}, {"loss.eps_high": 1e30, "optim.lr": 1e3}, PARAM_GUARD),
    "alpha=1e30": ({}, {"reward.alpha": (1e30, 1e30)}, FINITE),
    "alpha=1e38": ({}, {"reward.alpha": (1e38, 1e38)}, FINITE),
    "beta=1e38": ({}, {"reward.beta": (0.1, 1e38, 1e38)}, FINITE),
    "alpha=1e20 no scaling": (
        {"adv.scale": "none"} | NOCLIP,
        {"reward.alpha": (1e20, 1e20)},
        FINITE,
    ),
    "kl_coef=1e30": ({}, {"loss.kl_coef": 1e30}, GRAD_NONFINITE),
    "entropy_coef=1e30": ({}, {"loss.entropy_coef": 1e30}, GRAD_NONFINITE),
    "entropy_coef=1e38 guards off": (
        NO_GUARDS,
        {"loss.entropy_coef": 1e38},
        LOSS_OR_GRAD_NONFINITE,
    ),
}


def _config(keys: dict, forced: dict):
    cfg = tiny_config(SPECIES, **(FAST | keys))
    for k, v in forced.items():  # past the validated ranges, as Python code can set them
        section, name = k.split(".")
        setattr(getattr(cfg, section), name, v)
    return cfg


@pytest.mark.parametrize("name", list(CASES))
def test_a_numeric_fault_trains_finite_or_stops_naming_step_role_quantity(name):
    keys, forced, expected = CASES[name]
    learner = Learner(_config(keys, forced))
    rows = []
    try:
        while learner.step < learner.cfg.steps:
            rows.append(learner.train_step())
    except TrainingError as e:
        assert expected is not FINITE, f"{name}: stopped unexpectedly: {e}"
        assert __import__("re").match(rf"step [1-3], role (main|sub): {expected}", str(e)), str(e)
        return
    assert expected is FINITE, f"{name}: finished, expected a stop matching {expected!r}"
    bad = {
        k: v for r in rows for k, v in r.items() if isinstance(v, float) and not math.isfinite(v)
    }
    assert not bad


def _poisoned(monkeypatch, poison):
    """Make ``collect_rollouts`` return batches changed in place by ``poison(batch)``."""
    import sim.trainer as trainer_mod

    real = trainer_mod.collect_rollouts

    def collect(*args, **kwargs):
        batch = real(*args, **kwargs)
        poison(batch)
        return batch

    monkeypatch.setattr(trainer_mod, "collect_rollouts", collect)


@pytest.mark.parametrize(
    ("poison", "message"),
    [
        # an env reporting c_M = NaN: the main reward names the rows
        (lambda b: b.correct.__setitem__(1, np.nan), r"step 1, role main: bad reward: .*rows 1"),
        # a sub-agent's expert score NaN: the sub reward
        (
            lambda b: b.trajectories["sub"].expert.__setitem__(0, np.nan),
            r"step 1, role sub: bad reward: .*expert",
        ),
        # behaviour log-probs NaN: the loss inputs
        (
            lambda b: b.main.logp.__setitem__(slice(None), np.nan),
            r"step 1, role main: loss inputs are not finite: logp_old",
        ),
        # a metric's source NaN: the metric itself is named
        (
            lambda b: b.sim_time.__setitem__(0, np.nan),
            r"step 1, role main: metric main/sim_time is not finite \(nan\)",
        ),
    ],
    ids=["reward-main", "reward-sub", "logp-old", "metric"],
)
def test_nonfinite_inputs_stop_the_step_naming_role_and_quantity(monkeypatch, poison, message):
    _poisoned(monkeypatch, poison)
    learner = Learner(_config({}, {}))
    with pytest.raises(TrainingError, match=message):
        learner.train_step()


def test_the_step_reports_its_phases_to_on_progress():
    learner = Learner(_config({"optim.mu": 2}, {}))
    phases = []
    learner.train_step(on_progress=phases.append)
    assert phases[:2] == ["rollout", "advantages"]
    assert "update main epoch 1/2" in phases and "update sub epoch 2/2" in phases
    assert phases[-1] == "eval"  # step 1 always evaluates
