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

All functions take tensors (or array-likes) of shape ``(num_rows,)`` and return float tensors of the
same shape. NaN/inf inputs raise ``ValueError`` naming the offending rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from sim._checks import as_float_tensor, check_finite, check_in_range, check_same_length

__all__ = [
    "SUB_REWARD_FORMS",
    "betas_from_local_share",
    "main_reward",
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


def main_reward(
    format_ok: Any, correct: Any, alpha: Sequence[float] = DEFAULT_ALPHA
) -> torch.Tensor:
    """``R_M = f_M * (a1 + a2 * c_M)``.

    Args:
        format_ok: ``(num_rows,)`` f_M in {0, 1}.
        correct: ``(num_rows,)`` c_M in [0, 1].
        alpha: ``(a1, a2)``, both >= 0.

    Returns:
        ``(num_rows,)`` float tensor.
    """
    a1, a2 = _check_coeffs("alpha", alpha, 2)
    f = _flag("format_ok", format_ok)
    c = _score("correct", correct).to(f.device)
    check_same_length(format_ok=f, correct=c)
    return f * (a1 + a2 * c)


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
