"""Training configuration: one dataclass per TOML section, every field documented and checked.

TOML keys are the field names (``algo.group_size``, ``roles.sub.frozen``, ...). Each
``__post_init__`` raises ``ValueError`` naming the key, the bad value and what is allowed. Every
number has a documented maximum (``<= ...`` in its docstring), chosen so that a run cannot take
for ever or exhaust memory unnoticed; booleans are not integers (``adv.ddof = true`` is refused).
Importing this module loads no torch: the registries of names (``adv.scale``, ``loss.agg``,
``policy.kind``, ...) are read when a config is validated.
Variants (DESIGN §3.6) are named presets of keys, applied by :func:`apply_variant`; an explicit key
that contradicts the chosen variant is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sim.config_checks import (  # noqa: F401 - BUILTIN_NAMES, _Registry: re-exported
    BUILTIN_NAMES,
    _choice,
    _fail,
    _int,
    _names,
    _num,
    _Registry,
)
from sim.config_policy import PolicyConfig

__all__ = [
    "VARIANTS",
    "AdvConfig",
    "AlgoConfig",
    "EnvConfig",
    "EvalConfig",
    "LossConfig",
    "OptimConfig",
    "PolicyConfig",
    "RewardConfig",
    "RoleConfig",
    "TrainConfig",
    "apply_variant",
]


SEED_MAX = 2**32 - 1
"""the largest ``seed`` (policies and evaluation streams derive larger seeds from it)"""
STEPS_MAX = 10_000_000
"""the largest ``steps``, ``checkpoint_every`` and ``eval.every``"""
EPISODES_PER_STEP_MAX = 2**20
"""the most episodes of one step: ``algo.queries_per_step x algo.group_size``"""
JUDGE_NOISE_MAX = 10.0
"""the largest ``reward.judge_noise`` (the std of the ``gaussian`` judge)"""
FLIP_NOISE_MAX = 0.5
"""the largest ``reward.judge_noise`` of the ``flip`` judge (``sim.rewards.JUDGE_NOISE_MAX``)"""


@dataclass
class EnvConfig:
    id: str = "mgrpo/RubiksLogic-v0"
    """registered env id (``mgrpo/RubiksLogic-v0`` or ``mgrpo/InvasiveSpecies-v0``)"""
    preset: str = "default"
    """call-rate preset: ``low``, ``default`` or ``heavy``"""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """other env keyword arguments (``env.<name>`` keys, e.g. ``env.reasoner``); the env validates
    them"""

    def __post_init__(self) -> None:
        _choice("env.preset", self.preset, ("low", "default", "heavy"))
        if not isinstance(self.id, str) or not self.id:
            _fail("env.id", self.id, "a registered env id")


@dataclass
class AlgoConfig:
    queries_per_step: int = 32
    """B: queries sampled per training step (<= 65_536; B x K <= 2**20)"""
    group_size: int = 8
    """K: rollouts per query (>= 2, <= 1024; the paper uses 8)"""
    align_target: int = 8
    """D: sub-agent rows per rollout after alignment (the paper's D_max = 8; <= 1024)"""
    align_mode: str = "duplicate_drop"
    """``duplicate_drop`` (paper), ``balanced``, ``mask`` or ``none`` (ragged)"""
    sub_grouping: str = "per_query"
    """sub-agent advantage groups: ``per_query`` (paper), ``per_invocation``, ``queue_window``"""
    queue_lag: int = 0
    """steps between collecting sub-agent data and training on it (``async_queue`` needs >= 1;
    <= 1000; other variants train on-policy: 0)"""

    def __post_init__(self) -> None:
        _int("algo.queries_per_step", self.queries_per_step, 1, 65_536)
        _int("algo.group_size", self.group_size, 2, 1024)
        _int("algo.align_target", self.align_target, 1, 1024)
        _choice("algo.align_mode", self.align_mode, _names("sim.alignment", "ALIGN_MODES"))
        _choice("algo.sub_grouping", self.sub_grouping, _names("sim.advantages", "SUB_GROUPINGS"))
        _int("algo.queue_lag", self.queue_lag, 0, 1000)
        n = self.queries_per_step * self.group_size
        if n > EPISODES_PER_STEP_MAX:
            _fail(
                "algo.queries_per_step x algo.group_size",
                n,
                f"at most {EPISODES_PER_STEP_MAX:_} episodes per step",
            )


@dataclass
class AdvConfig:
    ddof: int = 0
    """0: population std (paper); 1: sample std (TRL/verl)"""
    eps: float = 1e-6
    """added to the std in the advantage denominator (<= 1)"""
    scale: str = "group"
    """``group`` (own std), ``batch`` (std over the role's batch) or ``none`` (mean only)"""
    std_floor: float = 1e-6
    """groups with std <= std_floor get advantage 0 (<= 1)"""

    def __post_init__(self) -> None:
        _choice("adv.ddof", self.ddof, (0, 1))
        _num("adv.eps", self.eps, 0.0, 1.0)
        _choice("adv.scale", self.scale, _names("sim.advantages", "ADV_SCALES"))
        _num("adv.std_floor", self.std_floor, 0.0, 1.0)


@dataclass
class RewardConfig:
    alpha: tuple[float, float] = (0.1, 0.9)
    """main reward ``R_M = f_M (a1 + a2 c_M)`` (each in [0, 100])"""
    beta: tuple[float, float, float] = (0.1, 0.4, 0.5)
    """sub reward ``R_S = f_S (b1 + b2 c_M + b3 e_S)`` (form ``linear``; each in [0, 100])"""
    local_share: float | None = None
    """w = b3 / (b2 + b3) in [0, 1]; when set, b2 and b3 are derived from it with b1 kept"""
    form: str = "linear"
    """``linear`` (paper), ``gated`` (released code), ``global_only``, ``local_only``"""
    judge: str = "exact"
    """how the expert score e_S is judged before it enters R_S (the paper's r_expert is an LLM
    judge): ``exact`` (the env's score, a perfect judge), ``flip`` (each verdict e -> 1 - e with
    probability ``judge_noise``) or ``gaussian`` (e + N(0, judge_noise**2)); then ``judge_bias``
    is added and the result clipped to [0, 1]. Drawn per step and role from a generator seeded by
    (seed, step, role), so runs stay reproducible; also judges the flat expert score of
    ``flat_shaping``"""
    judge_noise: float = 0.0
    """the judge's noise: flip probability (``flip``: in [0, 0.5]; above 0.5 the judge would be
    inverted) or standard deviation (``gaussian``: in [0, 10]); ``exact`` ignores it"""
    judge_bias: float = 0.0
    """constant added to every judged expert score before clipping to [0, 1] (any judge, ``exact``
    included; in [-1, 1])"""
    time_cost: float = 0.0
    """main reward lost per simulated second (issue 10): ``R_M' = R_M - time_cost * sim_time -
    call_cost * calls``; the sub reward's c_M stays the correctness (0 disables it; <= 100)"""
    call_cost: float = 0.0
    """main reward lost per sub-agent call of any role in the episode (a single agent: per
    finished tool session; 0 disables it; <= 100)"""
    flat_shaping: bool = False
    """give a single agent (variant ``single_agent`` or ``env.flat = true``; an error with any
    other variant) the dense expert term the co-trained sub-agent gets:
    ``R_M'' = f_M (a1 + a2 c_M) + b3 * e_flat``, with b3 the sub reward's expert weight
    (``reward.beta[2]``, or derived from ``reward.local_share``) and e_flat the (judged) mean
    expert score of the episode's finished tool sessions (0 without any)"""

    def __post_init__(self) -> None:
        for key, vals, n in (("reward.alpha", self.alpha, 2), ("reward.beta", self.beta, 3)):
            if not isinstance(vals, list | tuple) or len(vals) != n:
                _fail(key, vals, f"a list of {n} numbers in [0, 100]")
            for v in vals:
                _num(key, v, 0.0, 100.0)
        self.alpha, self.beta = tuple(self.alpha), tuple(self.beta)
        if self.local_share is not None:
            _num("reward.local_share", self.local_share, 0.0, 1.0)
        _choice("reward.form", self.form, _names("sim.rewards", "SUB_REWARD_FORMS"))
        _choice("reward.judge", self.judge, _names("sim.rewards", "JUDGES"))
        _num("reward.judge_noise", self.judge_noise, 0.0, JUDGE_NOISE_MAX)
        _num("reward.judge_bias", self.judge_bias, -1.0, 1.0)
        _num("reward.time_cost", self.time_cost, 0.0, 100.0)
        _num("reward.call_cost", self.call_cost, 0.0, 100.0)
        _choice("reward.flat_shaping", self.flat_shaping, (True, False))
        if self.judge == "flip" and self.judge_noise > FLIP_NOISE_MAX:
            _fail(
                "reward.judge_noise",
                self.judge_noise,
                f"a flip probability in [0, {FLIP_NOISE_MAX}] with reward.judge = 'flip' "
                "(above 0.5 the judge would be inverted)",
            )

    def betas(self) -> tuple[float, float, float]:
        """The effective (b1, b2, b3)."""
        if self.local_share is None:
            return self.beta
        from sim.rewards import betas_from_local_share

        return betas_from_local_share(self.local_share, self.beta[0])


@dataclass
class LossConfig:
    eps_low: float = 0.2
    """lower clip range (released scripts: 0.2; < 1)"""
    eps_high: float = 0.28
    """upper clip range (released scripts: 0.28; <= 10)"""
    agg: str = "seq-mean-token-mean"
    """loss aggregation (verl names): seq-mean-token-mean, token-mean, seq-mean-token-sum,
    seq-mean-token-sum-norm"""
    ratio_level: str = "token"
    """``token``, ``sequence`` (paper) or ``sequence_mean`` (GSPO)"""
    kl_coef: float = 0.0
    """k3 KL penalty to the initial policy (0 disables it; <= 100)"""
    entropy_coef: float = 0.0
    """entropy bonus (<= 100)"""

    def __post_init__(self) -> None:
        _num("loss.eps_low", self.eps_low, 0.0, 0.999)
        _num("loss.eps_high", self.eps_high, 0.0, 10.0)
        _choice("loss.agg", self.agg, _names("sim.loss", "LOSS_AGG_MODES"))
        _choice("loss.ratio_level", self.ratio_level, _names("sim.loss", "RATIO_LEVELS"))
        _num("loss.kl_coef", self.kl_coef, 0.0, 100.0)
        _num("loss.entropy_coef", self.entropy_coef, 0.0, 100.0)


@dataclass
class OptimConfig:
    lr: float = 3e-3
    """Adam learning rate (> 0, <= 10)"""
    mu: int = 2
    """epochs over each step's data (<= 1000)"""
    minibatches: int = 2
    """minibatches per epoch (per role; <= 4096)"""
    max_grad_norm: float = 1.0
    """gradient clipping (global norm; 0 disables it; <= 1e12)"""
    param_norm_limit: float = 1e4
    """divergence guard: stop the run when a role's parameter norm (global L2) exceeds this
    (0 disables it; <= 1e12)"""
    grad_norm_limit: float = 1e6
    """divergence guard: stop the run when a role's gradient norm before clipping exceeds this
    (0 disables it; <= 1e12)"""

    def __post_init__(self) -> None:
        _num("optim.lr", self.lr, 0.0, 10.0, low_open=True)
        _int("optim.mu", self.mu, 1, 1000)
        _int("optim.minibatches", self.minibatches, 1, 4096)
        _num("optim.max_grad_norm", self.max_grad_norm, 0.0, 1e12)
        _num("optim.param_norm_limit", self.param_norm_limit, 0.0, 1e12)
        _num("optim.grad_norm_limit", self.grad_norm_limit, 0.0, 1e12)


@dataclass
class EvalConfig:
    every: int = 20
    """evaluate on held-out queries every this many steps (and at the first and last step;
    <= 10_000_000)"""
    episodes: int = 256
    """held-out episodes per evaluation (<= 65_536)"""
    oracle_episodes: int = 2000
    """held-out episodes for the oracle reference (``eval/oracle_fraction``); 0 skips it
    (<= 100_000)"""
    final_episodes: int = 2000
    """held-out episodes of one larger evaluation after the last step, logged in the last row as
    ``eval/final_*`` (``eval/final_success_greedy``, ``eval/final_episodes``, ...); 0 skips it
    (<= 65_536)"""

    def __post_init__(self) -> None:
        _int("eval.every", self.every, 1, STEPS_MAX)
        _int("eval.episodes", self.episodes, 1, 65_536)
        _int("eval.oracle_episodes", self.oracle_episodes, 0, 100_000)
        _int("eval.final_episodes", self.final_episodes, 0, 65_536)


@dataclass
class RoleConfig:
    frozen: bool = False
    """do not train this role (its policy still acts)"""
    init_from: str | None = None
    """a run directory whose last checkpoint supplies this role's policy parameters (a string;
    checked before training: it must hold a checkpoint with this role)"""
    align_target: int | None = None
    """this role's D (default ``algo.align_target``; <= 1024)"""
    lr: float | None = None
    """this role's learning rate (default ``optim.lr``; <= 10; not for a frozen role)"""

    def __post_init__(self) -> None:
        _choice("roles.<name>.frozen", self.frozen, (True, False))
        if self.init_from is not None and (
            not isinstance(self.init_from, str) or not self.init_from
        ):
            _fail("roles.<name>.init_from", self.init_from, "a run directory (a string)")
        if self.align_target is not None:
            _int("roles.<name>.align_target", self.align_target, 1, 1024)
        if self.lr is not None:
            _num("roles.<name>.lr", self.lr, 0.0, 10.0, low_open=True)


VARIANTS: dict[str, dict[str, Any]] = {
    "mgrpo": {},
    "main_only": {"roles.*.frozen": True},
    "single_agent": {"env.flat": True},
    "no_alignment": {"algo.align_mode": "none"},
    "async_queue": {"algo.sub_grouping": "queue_window", "algo.queue_lag": ">=1"},
    "gated_reward": {"reward.form": "gated"},
    "shared_policy": {"policy.shared": True},
}
"""variant -> the keys it sets (``">=1"``: at least 1, default 1; ``roles.*``: every
specialist role). Every variant but ``async_queue`` trains on-policy: ``algo.queue_lag`` > 0
contradicts it."""


_FLAT_SHAPING_NEEDS = (
    "reward.flat_shaping = true needs a single agent (variant 'single_agent' or env.flat = "
    "true): it gives the single agent the expert term a co-trained sub-agent gets itself"
)


@dataclass
class TrainConfig:
    variant: str = "mgrpo"
    """one of VARIANTS: mgrpo, main_only, single_agent, no_alignment, async_queue,
    gated_reward, shared_policy"""
    seed: int = 0
    """seeds everything (queries, episodes, policies, alignment); in [0, 2**32 - 1]"""
    steps: int = 400
    """training steps; the sample budget is steps x B x K episodes (<= 10_000_000)"""
    threads: int = 1
    """torch threads (fixes results bit for bit on one machine; <= 1024)"""
    checkpoint_every: int = 10
    """write a checkpoint every this many steps (and at the end; <= 10_000_000)"""
    env: EnvConfig = field(default_factory=EnvConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    adv: AdvConfig = field(default_factory=AdvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    roles: dict[str, RoleConfig] = field(default_factory=dict)
    """per-role overrides, ``roles.<name>.<key>`` (``main`` or a specialist role)"""

    def __post_init__(self) -> None:
        _choice("variant", self.variant, tuple(VARIANTS))
        _int("seed", self.seed, 0, SEED_MAX)
        _int("steps", self.steps, 1, STEPS_MAX)
        _int("threads", self.threads, 1, 1024)
        _int("checkpoint_every", self.checkpoint_every, 1, STEPS_MAX)
        if self.reward.flat_shaping and not self.flat:
            raise ValueError(f"{_FLAT_SHAPING_NEEDS}; variant {self.variant!r} is not flat")

    def role(self, name: str) -> RoleConfig:
        """The overrides of role ``name`` (defaults when none are given)."""
        return self.roles.get(name, RoleConfig())

    @property
    def flat(self) -> bool:
        return bool(self.env.kwargs.get("flat", False))


SECTIONS: dict[str, type] = {
    "env": EnvConfig,
    "algo": AlgoConfig,
    "adv": AdvConfig,
    "reward": RewardConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "eval": EvalConfig,
    "policy": PolicyConfig,
}
"""TOML table name -> section dataclass"""


def apply_variant(
    variant: str, flat: dict[str, Any], *, overridable: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """Apply ``variant``'s preset to flat dotted keys; raise on contradicting explicit keys.

    A key of ``flat`` that the variant owns (see :data:`VARIANTS`) and that contradicts it is an
    error, unless the key is in ``overridable``: keys that came from a lower-precedence source than
    the variant (a preset file under ``--set variant=...``), which the variant's value replaces.

    Args:
        variant: a name in :data:`VARIANTS`.
        flat: ``{"algo.group_size": 8, "roles.sub.frozen": False, ...}`` as the user gave them.
        overridable: keys of ``flat`` stated below the variant's source (replaced, not errors).

    Returns:
        A new flat dict with the preset keys added.
    """
    _choice("variant", variant, tuple(VARIANTS))
    out = dict(flat)

    def contradiction(key: str, needs: str) -> None:
        raise ValueError(f"{key} = {flat[key]!r} contradicts variant {variant!r}, which {needs}")

    for key, value in VARIANTS[variant].items():
        if key == "roles.*.frozen":
            for k, v in flat.items():
                if k.startswith("roles.") and k.endswith(".frozen") and k != "roles.main.frozen":
                    if v is not value:
                        if k not in overridable:
                            contradiction(k, "freezes every specialist role")
                        out[k] = value
            continue
        if value == ">=1":
            if key in flat and (not isinstance(flat[key], int) or flat[key] < 1):
                if key not in overridable:
                    contradiction(key, "needs >= 1")
                out[key] = 1
            out.setdefault(key, 1)
            continue
        if key in flat and flat[key] != value and key not in overridable:
            contradiction(key, f"sets {value!r}")
        out[key] = value
    if out.get("reward.flat_shaping") is True and out.get("env.flat") is not True:
        if "reward.flat_shaping" not in overridable:
            raise ValueError(f"{_FLAT_SHAPING_NEEDS}; variant {variant!r} is not flat")
        out["reward.flat_shaping"] = False
    lag = flat.get("algo.queue_lag")
    if variant != "async_queue" and isinstance(lag, int) and not isinstance(lag, bool) and lag > 0:
        if "algo.queue_lag" not in overridable:
            contradiction(
                "algo.queue_lag", "trains on-policy (0; variant 'async_queue' trains with a lag)"
            )
        out["algo.queue_lag"] = 0
    return out
