"""Check a user's clipped policy-gradient loss (DESIGN §3.4) the way our own tests check ours.

The function under test is ``fn(logp, logp_old, advantages, mask) -> loss`` with ``logp``,
``logp_old``, ``mask`` ``(num_rows, seq_len)`` float64 (``logp`` requires grad; ``mask`` is 0/1)
and ``advantages`` ``(num_rows,)``; it returns a scalar tensor, or a tuple whose first item is
one. The declared options ``eps_low``, ``eps_high``, ``agg``, ``ratio_level`` are passed by name
to the parameters ``fn`` has. For other signatures pass
``adapter(fn, logp, logp_old, advantages, mask, **options) -> loss``.

Cases (hand-computed; with the defaults eps_low = 0.2, eps_high = 0.28):

- ``aggregation[MODE]`` (every mode when ``fn`` takes ``agg``, else the declared one): rows of
  3 and 1 valid tokens (padded length 3), A = (1, -2), rho = 1, so the per-token loss is -A:
  row 0 tokens -1, -1, -1, row 1 token +2. ``seq-mean-token-mean`` (-1 + 2) / 2 = 0.5,
  ``token-mean`` (-3 + 2) / 4 = -0.25, ``seq-mean-token-sum`` (-3 + 2) / 2 = -0.5,
  ``seq-mean-token-sum-norm`` (-3 + 2) / (2 rows x 3) = -1/6.
- ``padding_ignored``: the same with log-probs 9 and -3 at padded positions: same loss.
- Two rows of one token (row 1 has A = 0), so every ratio level and aggregation agree; log-ratio
  ``hi = log(1 + eps_high) + 0.2`` (rho = 1.28 e^0.2 = 1.5634) or
  ``lo = log(1 - eps_low) - 0.2`` (rho = 0.8 e^-0.2 = 0.6550):
  ``clip_high`` (A = 1, hi): loss -(1 + eps_high) / 2 = -0.64, gradient 0;
  ``clip_low`` (A = -1, lo): loss (1 - eps_low) / 2 = 0.4, gradient 0;
  ``unclipped_high`` (A = -1, hi): the min keeps rho: loss rho / 2 = 0.7817, gradient rho / 2;
  ``unclipped_low`` (A = 1, lo): loss -rho / 2 = -0.3275, gradient -rho / 2.
- ``gradient_finite_differences``: autograd against central differences (h = 1e-6) at every
  position of a 3 x 4 ragged batch, log-ratios kept away from the clip boundaries.
- ``gradient_matches_reference`` and ``random_vs_reference[LEVEL]`` (every ratio level when ``fn``
  takes ``ratio_level``): against :func:`sim.loss.policy_loss` on random ragged batches.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sim.testing.report import CaseResult, Report, safe_call

__all__ = ["check_policy_loss"]

_F64 = torch.float64
_MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=_F64)
_ADV = torch.tensor([1.0, -2.0], dtype=_F64)
_AGG_VALUES = {
    "seq-mean-token-mean": (-1.0 + 2.0) / 2,
    "token-mean": (-3.0 + 2.0) / 4,
    "seq-mean-token-sum": (-3.0 + 2.0) / 2,
    "seq-mean-token-sum-norm": (-3.0 + 2.0) / (2 * 3),
}


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class _Caller:
    """Calls the user's loss safely with the declared options."""

    def __init__(self, fn: Callable[..., Any], adapter: Any, opts: dict[str, Any]) -> None:
        self.fn, self.adapter, self.opts = fn, adapter, opts

    def __call__(self, logp, old, adv, mask, **over) -> tuple[torch.Tensor | None, str | None]:
        opts = self.opts | over
        args = {"logp": logp, "logp_old": old, "advantages": adv, "mask": mask}
        if self.adapter is not None:
            out, err = safe_call(lambda: self.adapter(self.fn, logp, old, adv, mask, **opts), args)
        else:
            kw = {k: v for k, v in opts.items() if _accepts(self.fn, k)}
            out, err = safe_call(lambda: self.fn(logp, old, adv, mask, **kw), args)
        if err is not None:
            return None, err
        if isinstance(out, tuple | list) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor):
            return None, f"returned {type(out).__name__}, expected a scalar torch tensor"
        if out.numel() != 1 or not out.is_floating_point():
            return None, f"returned shape {tuple(out.shape)} dtype {out.dtype}, expected a scalar"
        if not bool(torch.isfinite(out).all()):
            return None, f"returned {out.item()}"
        return out.reshape(()), None


def _grad(call: _Caller, lp: torch.Tensor, old, adv, mask, **over):
    """``(loss float, grad (num_rows, seq_len) or None, error)``."""
    x = lp.detach().clone().requires_grad_(True)
    loss, err = call(x, old, adv, mask, **over)
    if err is not None:
        return None, None, err
    assert loss is not None
    if loss.grad_fn is None:
        return float(loss.detach()), None, "the loss has no gradient with respect to logp"
    (g,) = torch.autograd.grad(loss, x, allow_unused=True)
    return float(loss.detach()), (torch.zeros_like(x) if g is None else g.detach()), None


def _value_case(name: str, expected: float, got: float | None, err: str | None, tol) -> CaseResult:
    if err is not None or got is None:
        return CaseResult(name, False, err or "no value", expected, None, float("inf"))
    e = abs(got - expected)
    ok = e <= tol[0] + tol[1] * abs(expected)
    return CaseResult(
        name, ok, "" if ok else f"loss {got:.6g}, expected {expected:.6g}", expected, got, e
    )


def _clip_cases(call: _Caller, eps_low: float, eps_high: float, tol) -> list[CaseResult]:
    hi, lo = math.log1p(eps_high) + 0.2, math.log1p(-eps_low) - 0.2
    old, mask = torch.zeros(2, 1, dtype=_F64), torch.ones(2, 1, dtype=_F64)
    specs = [  # name, log-ratio, A, loss, d loss / d logp[0, 0]
        ("clip_high", hi, 1.0, -(1 + eps_high) / 2, 0.0),
        ("clip_low", lo, -1.0, (1 - eps_low) / 2, 0.0),
        ("unclipped_high", hi, -1.0, math.exp(hi) / 2, math.exp(hi) / 2),
        ("unclipped_low", lo, 1.0, -math.exp(lo) / 2, -math.exp(lo) / 2),
    ]
    out = []
    for name, lr, a, want, want_g in specs:
        lp = torch.tensor([[lr], [0.0]], dtype=_F64)
        adv = torch.tensor([a, 0.0], dtype=_F64)
        got, g, err = _grad(call, lp, old, adv, mask)
        res = _value_case(name, want, got, err, tol)
        if res.passed and g is not None and abs(float(g[0, 0]) - want_g) > 1e-6:
            res = CaseResult(
                name,
                False,
                f"gradient {float(g[0, 0]):.6g}, expected {want_g:.6g}",
                want_g,
                float(g[0, 0]),
                abs(float(g[0, 0]) - want_g),
            )
        out.append(res)
    return out


def _log_rho(lr: torch.Tensor, mask: torch.Tensor, level: str) -> torch.Tensor:
    lr = lr * mask
    if level == "token":
        return lr[mask > 0]
    total = lr.sum(1)
    return total / mask.sum(1) if level == "sequence_mean" else total


def _batch(rng: np.random.Generator, rows: int, seq: int, spread: float):
    mask = np.zeros((rows, seq))
    for i, n in enumerate(rng.integers(1, seq + 1, size=rows)):
        mask[i, :n] = 1.0
    old = rng.normal(-1.0, 0.5, size=(rows, seq))
    lp = old + spread * rng.normal(size=(rows, seq))
    adv = rng.normal(size=rows)
    return tuple(torch.from_numpy(x) for x in (lp, old, adv, mask))


def _smooth_batch(seed: int, eps_low: float, eps_high: float, level: str):
    """A 3 x 4 batch whose ratios are >= 0.02 (log) from both clip boundaries."""
    rng = np.random.default_rng(seed)
    edges = torch.tensor([math.log1p(-eps_low), math.log1p(eps_high)], dtype=_F64)
    for _ in range(200):
        lp, old, adv, mask = _batch(rng, 3, 4, 0.15)
        lr = _log_rho(lp - old, mask, level)
        if float((lr[:, None] - edges).abs().min()) > 0.02:
            return lp, old, adv, mask
    raise RuntimeError("no smooth batch found")  # pragma: no cover


def check_policy_loss(
    fn: Callable[..., Any],
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    agg: str = "seq-mean-token-mean",
    ratio_level: str = "token",
    adapter: Callable[..., Any] | None = None,
    n_random: int = 8,
    seed: int = 0,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    raise_on_fail: bool = False,
) -> Report:
    """Check ``fn``'s clipping, aggregation and gradients (see the module docstring).

    Args:
        fn: ``fn(logp, logp_old, advantages, mask) -> loss`` (or ``(loss, stats)``).
        eps_low, eps_high, agg, ratio_level: the declared conventions (DESIGN §3.4 names).
        adapter: ``adapter(fn, logp, logp_old, advantages, mask, **options)`` for other
            signatures; it should honour the options it is given.
        n_random: random batches per ratio level compared with :func:`sim.loss.policy_loss`.
        seed: seed of the random batches.
        atol, rtol: tolerance on loss values.
        raise_on_fail: raise :class:`~sim.testing.CheckFailed` with a readable diff on failure.

    Returns:
        A :class:`~sim.testing.Report`.

    Example:
        >>> from sim.loss import policy_loss
        >>> check_policy_loss(policy_loss, n_random=2).passed
        True
    """
    from sim.loss import LOSS_AGG_MODES, RATIO_LEVELS, policy_loss

    if agg not in LOSS_AGG_MODES or ratio_level not in RATIO_LEVELS:
        raise ValueError(f"agg must be one of {LOSS_AGG_MODES} and ratio_level {RATIO_LEVELS}")
    opts = {"eps_low": eps_low, "eps_high": eps_high, "agg": agg, "ratio_level": ratio_level}
    call, tol = _Caller(fn, adapter, opts), (atol, rtol)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    report = Report("loss", name, dict(opts))
    aggs = LOSS_AGG_MODES if adapter is None and _accepts(fn, "agg") else (agg,)
    levels = RATIO_LEVELS if adapter is None and _accepts(fn, "ratio_level") else (ratio_level,)

    # aggregation: each mode against its definition, at rho = 1
    lp = torch.tensor([[-0.5, -1.2, -0.3], [-2.0, 0.0, 0.0]], dtype=_F64)
    for mode in aggs:
        loss, err = call(lp.clone(), lp.clone(), _ADV.clone(), _MASK.clone(), agg=mode)
        got = None if loss is None else float(loss.detach())
        report.cases.append(_value_case(f"aggregation[{mode}]", _AGG_VALUES[mode], got, err, tol))
    pad_lp, pad_old = lp.masked_fill(_MASK == 0, 9.0), lp.masked_fill(_MASK == 0, -3.0)
    loss, err = call(pad_lp, pad_old, _ADV.clone(), _MASK.clone())
    got = None if loss is None else float(loss.detach())
    report.cases.append(_value_case("padding_ignored", _AGG_VALUES[agg], got, err, tol))

    # clipping on both sides, and the pessimistic min on the other side
    report.cases.extend(_clip_cases(call, eps_low, eps_high, tol))

    # gradients: finite differences, then against the reference
    lp, old, adv, mask = _smooth_batch(seed, eps_low, eps_high, ratio_level)
    value, g, err = _grad(call, lp, old, adv, mask)
    if err is not None or g is None:
        report.cases.append(CaseResult("gradient_finite_differences", False, err or "no grad"))
    else:
        fd = torch.zeros_like(lp)
        for idx in np.ndindex(*lp.shape):
            vals = []
            for h in (1e-6, -1e-6):
                x = lp.clone()
                x[idx] += h
                loss_h, err = call(x, old, adv, mask)
                vals.append(float(loss_h.detach()) if loss_h is not None else math.nan)
            fd[idx] = (vals[0] - vals[1]) / 2e-6
        e = float((fd - g).abs().max())
        ok = e <= 1e-6 and not math.isnan(e)
        report.cases.append(
            CaseResult(
                "gradient_finite_differences",
                ok,
                "" if ok else f"max |autograd - finite diff| = {e:.3g}",
                fd.numpy().ravel(),
                g.numpy().ravel(),
                e,
            )
        )
        ref_lp = lp.clone().requires_grad_(True)
        ref_loss, _ = policy_loss(ref_lp, old, adv, mask, **opts)
        (ref_g,) = torch.autograd.grad(ref_loss, ref_lp)
        e = float((ref_g - g).abs().max())
        ok = e <= atol + rtol * float(ref_g.abs().max())
        report.cases.append(
            CaseResult(
                "gradient_matches_reference",
                ok,
                "" if ok else f"max |grad - reference grad| = {e:.3g}",
                ref_g.numpy().ravel(),
                g.numpy().ravel(),
                e,
            )
        )

    # random ragged batches against the reference, per ratio level
    rng = np.random.default_rng(seed + 1)
    for level in levels:
        worst = CaseResult(f"random_vs_reference[{level}]", True, f"{n_random} batches")
        for i in range(n_random):
            b_lp, b_old, b_adv, b_mask = _batch(rng, int(rng.integers(1, 6)), 6, 0.3)
            ref, _ = policy_loss(b_lp, b_old, b_adv, b_mask, **(opts | {"ratio_level": level}))
            loss, err = call(b_lp, b_old, b_adv, b_mask, ratio_level=level)
            got = None if loss is None else float(loss.detach())
            res = _value_case(worst.name, float(ref), got, err, tol)
            if not res.passed:
                res.message = f"batch {i}: {res.message}"
                worst = res
                break
            worst.max_error = max(worst.max_error, res.max_error)
        report.cases.append(worst)
    if raise_on_fail:
        report.raise_if_failed()
    return report
