"""Rewards of the main agent and the sub-agents (DESIGN §3.1).

Main agent (M)::

    R_M = f_M * (a1 + a2 * c_M)                      defaults a = (0.1, 0.9)

Sub-agent (S), form ``linear`` (the paper, Hong et al. 2025, arXiv 2511.13288)::

    R_S = f_S * (b1 + b2 * c_M + b3 * e_S)           defaults b = (0.1, 0.4, 0.5)

``c_M`` is the main agent's correctness *of the same rollout* (the global part) and ``e_S`` the
expert score of S's own subtask (the local part). Other forms, selected by name:

- ``gated``: the released code (AQ-MedAI/MrlX): 0 if f_S = 0, else 1.0 if the main answer is correct
  (c_M == 1) else 0.1.
- ``global_only``: ``linear`` with local share w = 0, i.e. b = (b1, 1 - b1, 0).
- ``local_only``: ``linear`` with local share w = 1, i.e. b = (b1, 0, 1 - b1).

Optional terms of the main reward (issue 10; each 0 by default, and then left out, so the reward is
bit for bit the one above)::

    R_M' = f_M (a1 + a2 c_M) + b3 * e_flat - time_cost * sim_time - call_cost * calls

``e_flat`` (flat shaping, the ``single_agent`` variant only) is the mean expert score of the
episode's tool sessions, weighted by the sub reward's expert weight b3, so a single agent gets the
same dense expert term the co-trained sub-agent gets; ``sim_time`` is the episode's simulated
completion time (seconds) and ``calls`` its sub-agent calls of all roles. The sub reward's c_M
stays the correctness, never the cost.

The expert score may come from an imperfect judge (:func:`judge_expert`, kinds in :data:`JUDGES`),
as the paper's r_expert is an LLM judge: ``exact`` (the env's score), ``flip`` (each verdict
e -> 1 - e with probability ``noise``) or ``gaussian`` (e + N(0, noise**2)); then a constant bias
is added and the result clipped to [0, 1].

All functions take tensors (or array-likes) of shape ``(num_rows,)`` and return float tensors of the
same shape. NaN/inf inputs raise ``ValueError`` naming the offending rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sim._checks import as_float_tensor, check_finite, check_in_range, check_same_length

__all__ = [
    "JUDGES",
    "SUB_REWARD_FORMS",
    "betas_from_local_share",
    "judge_expert",
    "main_reward",
    "register_judge",
    "sub_reward",
]

DEFAULT_ALPHA = (0.1, 0.9)
DEFAULT_BETA = (0.1, 0.4, 0.5)


def _check_coeffs(name: str, coeffs: Sequence[float], n: int) -> tuple[float, ...]:
    coeffs = tuple(float(c) for c in coeffs)
    if len(coeffs) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(coeffs)}: {coeffs}")
    for i, c in enumerate(coeffs):
        if not (c == c and abs(c) != float("inf")) or c < 0:
            raise ValueError(f"{name}[{i}] must be a finite number >= 0, got {c}")
    return coeffs


def _flag(name: str, x: Any) -> torch.Tensor:
    t = as_float_tensor(name, x)
    check_finite(name, t)
    bad = (t != 0) & (t != 1)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise ValueError(f"{name} must be 0 or 1; row {i} is {t[i].item()}")
    return t


def _score(name: str, x: Any) -> torch.Tensor:
    t = as_float_tensor(name, x)
    check_finite(name, t)
    check_in_range(name, t, 0.0, 1.0)
    return t


def betas_from_local_share(w: float, b1: float = 0.1) -> tuple[float, float, float]:
    """Sub-reward coefficients from the local share ``w = b3 / (b2 + b3)`` with ``b1`` fixed.

    ``b2 = (1 - b1)(1 - w)``, ``b3 = (1 - b1) w``; the default w = 5/9 gives the paper's
    (0.1, 0.4, 0.5).

    Args:
        w: local share in [0, 1].
        b1: format bonus in [0, 1].
    """
    w, b1 = float(w), float(b1)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"local_share must lie in [0, 1], got {w}")
    if not 0.0 <= b1 <= 1.0:
        raise ValueError(f"b1 must lie in [0, 1], got {b1}")
    return (b1, (1.0 - b1) * (1.0 - w), (1.0 - b1) * w)


def _weight(name: str, x: float) -> float:
    x = float(x)
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x}")
    return x


def _nonneg(name: str, x: Any, like: torch.Tensor) -> torch.Tensor:
    t = as_float_tensor(name, x).to(like.device)
    check_finite(name, t)
    check_in_range(name, t, 0.0, math.inf)
    return t


def main_reward(
    format_ok: Any,
    correct: Any,
    alpha: Sequence[float] = DEFAULT_ALPHA,
    *,
    expert: Any = None,
    expert_weight: float = 0.0,
    sim_time: Any = None,
    time_cost: float = 0.0,
    calls: Any = None,
    call_cost: float = 0.0,
) -> torch.Tensor:
    """``R_M = f_M * (a1 + a2 * c_M)``, with the optional terms of issue 10::

        R_M' = f_M (a1 + a2 c_M) + expert_weight * e_flat - time_cost * sim_time
               - call_cost * calls

    A term whose weight is 0 is left out (its input may then be None), so the defaults give
    ``f_M (a1 + a2 c_M)`` bit for bit.

    Args:
        format_ok: ``(num_rows,)`` f_M in {0, 1}.
        correct: ``(num_rows,)`` c_M in [0, 1].
        alpha: ``(a1, a2)``, both >= 0.
        expert: ``(num_rows,)`` e_flat in [0, 1]: the (judged) mean expert score of the
            episode's tool sessions (flat shaping of a single agent).
        expert_weight: its weight (the sub reward's b3), >= 0.
        sim_time: ``(num_rows,)`` simulated completion time in seconds, >= 0.
        time_cost: reward lost per simulated second, >= 0.
        calls: ``(num_rows,)`` sub-agent calls of all roles in the episode, >= 0.
        call_cost: reward lost per call, >= 0.

    Returns:
        ``(num_rows,)`` float tensor.
    """
    a1, a2 = _check_coeffs("alpha", alpha, 2)
    f = _flag("format_ok", format_ok)
    c = _score("correct", correct).to(f.device)
    check_same_length(format_ok=f, correct=c)
    r = f * (a1 + a2 * c)
    terms = (
        ("expert", expert, "expert_weight", expert_weight, 1.0),
        ("sim_time", sim_time, "time_cost", time_cost, -1.0),
        ("calls", calls, "call_cost", call_cost, -1.0),
    )
    for name, x, wname, w, sign in terms:
        if _weight(wname, w) == 0.0:
            continue
        if x is None:
            raise ValueError(f"{wname} = {w} needs {name} (one value per row)")
        t = _score(name, x).to(f.device) if name == "expert" else _nonneg(name, x, f)
        check_same_length(format_ok=f, **{name: t})
        r = r + (sign * w) * t.to(r.dtype)
    return r


def _linear(f, c, e, beta):
    b1, b2, b3 = beta
    return f * (b1 + b2 * c + b3 * e)


def _gated(f, c, e, beta):
    return f * torch.where(c >= 1.0, torch.ones_like(c), torch.full_like(c, 0.1))


def _global_only(f, c, e, beta):
    return _linear(f, c, e, betas_from_local_share(0.0, beta[0]))


def _local_only(f, c, e, beta):
    return _linear(f, c, e, betas_from_local_share(1.0, beta[0]))


SUB_REWARD_FORMS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": _linear,
    "gated": _gated,
    "global_only": _global_only,
    "local_only": _local_only,
}
"""Name -> ``fn(format_ok, main_correct, expert, beta) -> R_S``."""


def sub_reward(
    format_ok: Any,
    main_correct: Any,
    expert: Any,
    beta: Sequence[float] = DEFAULT_BETA,
    form: str = "linear",
) -> torch.Tensor:
    """Hybrid sub-agent reward ``R_S`` in one of :data:`SUB_REWARD_FORMS`.

    Args:
        format_ok: ``(num_rows,)`` f_S in {0, 1}.
        main_correct: ``(num_rows,)`` c_M of the rollout each sub row belongs to, in [0, 1].
        expert: ``(num_rows,)`` e_S in [0, 1].
        beta: ``(b1, b2, b3)``, each >= 0 (``gated`` ignores it; ``global_only`` and
            ``local_only`` use only b1).
        form: ``linear`` | ``gated`` | ``global_only`` | ``local_only``.

    Returns:
        ``(num_rows,)`` float tensor.
    """
    if form not in SUB_REWARD_FORMS:
        raise ValueError(
            f"unknown reward form {form!r}; valid: {', '.join(map(repr, SUB_REWARD_FORMS))}"
        )
    beta = _check_coeffs("beta", beta, 3)
    f = _flag("format_ok", format_ok)
    c = _score("main_correct", main_correct).to(f.device)
    e = _score("expert", expert).to(f.device)
    check_same_length(format_ok=f, main_correct=c, expert=e)
    return SUB_REWARD_FORMS[form](f, c, e, beta)


# ---------------------------------------------------------------------- imperfect judge
Judge = Callable[[np.ndarray, float, np.random.Generator | None], np.ndarray]
JUDGES: dict[str, Judge] = {}
"""Name -> ``fn(expert, noise, rng) -> noisy expert`` (float64 ``(num_rows,)``, before the bias
and the clipping of :func:`judge_expert`)."""
JUDGE_NOISE_MAX: dict[str, float] = {"flip": 0.5}
"""the largest ``noise`` of a judge kind (a flip rate above 0.5 would invert the judge); kinds
not listed take any noise >= 0"""


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"a noisy judge needs a numpy Generator (rng), got {type(rng).__name__}")
    return rng


def register_judge(name: str) -> Callable[[Judge], Judge]:
    """Decorator adding a judge kind (``reward.judge``)."""

    def deco(fn: Judge) -> Judge:
        JUDGES[name] = fn
        return fn

    return deco


@register_judge("exact")
def _exact(e: np.ndarray, noise: float, rng: np.random.Generator | None) -> np.ndarray:
    """The env's own expert score (a perfect judge; ``noise`` is ignored, nothing is drawn)."""
    return e


@register_judge("flip")
def _flip(e: np.ndarray, noise: float, rng: np.random.Generator | None) -> np.ndarray:
    """Each verdict flipped, e -> 1 - e, with probability ``noise`` (one uniform per row)."""
    return np.where(_rng(rng).random(len(e)) < noise, 1.0 - e, e)


@register_judge("gaussian")
def _gaussian(e: np.ndarray, noise: float, rng: np.random.Generator | None) -> np.ndarray:
    """e + N(0, noise**2) (one normal per row)."""
    return e + _rng(rng).normal(0.0, noise, len(e))


def judge_expert(
    expert: Any,
    kind: str = "exact",
    noise: float = 0.0,
    bias: float = 0.0,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """The expert scores e_S as an imperfect judge reports them.

    ``judged = clip(JUDGES[kind](e, noise, rng) + bias, 0, 1)``: ``exact`` is the identity (with
    ``bias = 0`` the input comes back bit for bit), ``flip`` replaces e by 1 - e with probability
    ``noise`` per row, ``gaussian`` adds N(0, noise**2) per row. Draws come only from ``rng``
    (seed it per step and role for reproducible runs); ``exact`` draws nothing.

    Args:
        expert: ``(num_rows,)`` true e_S in [0, 1].
        kind: a name in :data:`JUDGES` (``exact``, ``flip``, ``gaussian``).
        noise: the flip probability (``flip``: in [0, 0.5]) or the std (``gaussian``: >= 0).
        bias: a constant added before clipping (any finite number).
        rng: the generator of the noise (required by ``flip`` and ``gaussian``).

    Returns:
        ``(num_rows,)`` tensor of the input's dtype, in [0, 1].
    """
    if kind not in JUDGES:
        raise ValueError(f"unknown judge {kind!r}; valid: {', '.join(map(repr, JUDGES))}")
    noise, bias = float(noise), float(bias)
    high = JUDGE_NOISE_MAX.get(kind, math.inf)
    if not (math.isfinite(noise) and 0.0 <= noise <= high):
        allowed = f"[0, {high}]" if high < math.inf else ">= 0 (finite)"
        raise ValueError(f"judge noise of {kind!r} must be {allowed}, got {noise}")
    if not math.isfinite(bias):
        raise ValueError(f"judge bias must be finite, got {bias}")
    e = _score("expert", expert)
    if kind == "exact" and bias == 0.0:
        return e.clone()
    x = e.detach().cpu().to(torch.float64).numpy()
    y = np.clip(JUDGES[kind](x, noise, rng) + bias, 0.0, 1.0)
    return torch.from_numpy(np.ascontiguousarray(y)).to(dtype=e.dtype, device=e.device)
