"""Clipped policy-gradient loss of M-GRPO (DESIGN §3.4).

Per token (or env step) t of row i::

    rho   = exp(logp - logp_old)                       (see ratio levels below)
    L_it  = -min(rho * A_i, clip(rho, 1 - eps_low, 1 + eps_high) * A_i)
          + kl_coef * (exp(ref - logp) - (ref - logp) - 1)     (k3 estimator, when kl_coef > 0)
          - entropy_coef * entropy_it                          (when entropy_coef > 0)

Ratio levels (``ratio_level``):

================= ==================================================================================
``token``         rho per token (PPO/GRPO; default)
``sequence``      rho = exp(sum_t (logp - logp_old)): the trajectory likelihood ratio, the paper's
                  formula; every token of the row shares it (it clips often on long sequences)
``sequence_mean`` rho = exp(mean_t (logp - logp_old)): GSPO (Zheng et al. 2025), length-averaged
================= ==================================================================================

Aggregation (``agg``, verl's ``loss_agg_mode`` names), with m the token mask and w the row weights
(rows of weight 0 count neither as rows nor as tokens; rows without valid tokens are not counted):

=========================== ========================================================================
``seq-mean-token-mean``     sum_i w_i * mean_t L_it / rows (default)
``token-mean``              sum_it w_i * m_it * L_it / tokens
``seq-mean-token-sum``      sum_i w_i * sum_t L_it / rows
``seq-mean-token-sum-norm`` sum_it w_i * m_it * L_it / (rows * seq_len)  (Dr. GRPO, Liu 2025)
=========================== ========================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from sim._checks import check_choice

__all__ = [
    "AGGREGATIONS",
    "AGG_NORMS",
    "LOSS_AGG_MODES",
    "NORMS",
    "RATIO_LEVELS",
    "RATIO_LEVEL_FNS",
    "aggregate",
    "loss_counts",
    "loss_denominator",
    "policy_loss",
    "register_aggregation",
    "register_ratio_level",
]

AggFn = Callable[..., torch.Tensor]
AGGREGATIONS: dict[str, AggFn] = {}
"""loss aggregation registry (verl's ``loss_agg_mode`` names): ``name -> fn(masked, mask,
row_weight, tokens_per_row, counted, n_rows) -> scalar``, where ``masked`` is the per-token loss
times the mask, ``counted`` the rows that count (weight > 0 and at least one token) and
``n_rows`` their number (at least 1)."""
AGG_NORMS: dict[str, str] = {}
"""aggregation name -> what it divides by (:data:`NORMS`): ``rows`` (counted rows), ``tokens``
(counted tokens) or ``rows_x_len`` (counted rows x padded length). Several processes that share
one minibatch divide by its global count (:func:`loss_denominator`); an aggregation registered
without one trains in one process only."""
NORMS = ("rows", "tokens", "rows_x_len")
RATIO_LEVEL_FNS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
"""ratio-level registry: ``name -> fn(masked log-ratio (num_rows, seq_len), mask) -> log rho``
(``(num_rows, seq_len)`` or ``(num_rows, 1)``, broadcast over the row)."""


def register_aggregation(name: str, *, norm: str | None = None) -> Callable[[AggFn], AggFn]:
    """Decorator adding a loss aggregation mode (``loss.agg``); ``norm`` (one of :data:`NORMS`)
    says what it divides by, which multi-process training needs (:data:`AGG_NORMS`)."""
    if norm is not None:
        check_choice("aggregation norm", norm, NORMS)

    def deco(fn: AggFn) -> AggFn:
        AGGREGATIONS[name] = fn
        if norm is not None:
            AGG_NORMS[name] = norm
        return fn

    return deco


def register_ratio_level(name: str):
    """Decorator adding an importance-ratio level (``loss.ratio_level``)."""

    def deco(fn):
        RATIO_LEVEL_FNS[name] = fn
        return fn

    return deco


@register_aggregation("seq-mean-token-mean", norm="rows")
def _seq_mean_token_mean(masked, mask, row_weight, tokens_per_row, counted, n_rows):
    """Mean over rows of each row's token mean (the default)."""
    row = masked.sum(dim=1) / tokens_per_row.clamp(min=1)
    return (row_weight * row).sum() / n_rows


@register_aggregation("token-mean", norm="tokens")
def _token_mean(masked, mask, row_weight, tokens_per_row, counted, n_rows):
    """Sum over all counted tokens / their number."""
    n_tok = (mask * counted[:, None]).sum().clamp(min=1)
    return (row_weight[:, None] * masked).sum() / n_tok


@register_aggregation("seq-mean-token-sum", norm="rows")
def _seq_mean_token_sum(masked, mask, row_weight, tokens_per_row, counted, n_rows):
    """Mean over rows of each row's token sum."""
    return (row_weight * masked.sum(dim=1)).sum() / n_rows


@register_aggregation("seq-mean-token-sum-norm", norm="rows_x_len")
def _seq_mean_token_sum_norm(masked, mask, row_weight, tokens_per_row, counted, n_rows):
    """Dr. GRPO: total sum / (rows x padded length)."""
    return (row_weight[:, None] * masked).sum() / (n_rows * masked.shape[1])


@register_ratio_level("token")
def _token_ratio(log_ratio, mask):
    """Per-token ratio (PPO, GRPO)."""
    return log_ratio


@register_ratio_level("sequence")
def _sequence_ratio(log_ratio, mask):
    """The paper: exp of the summed log-ratio of the whole trajectory."""
    return log_ratio.sum(dim=1, keepdim=True)


@register_ratio_level("sequence_mean")
def _sequence_mean_ratio(log_ratio, mask):
    """GSPO: the length-averaged log-ratio."""
    return log_ratio.sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1)


RATIO_LEVELS = tuple(RATIO_LEVEL_FNS)
LOSS_AGG_MODES = tuple(AGGREGATIONS)


def loss_counts(mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(3,)`` float64: the counted rows (weight > 0 and at least one valid token), their valid
    tokens and the padded length of a minibatch (``mask (num_rows, seq_len)``, ``weights
    (num_rows,)``), as :func:`aggregate` counts them."""
    m = mask.detach().to(torch.float64)
    counted = (weights.detach() > 0) & (m.sum(dim=1) > 0)
    tokens = (m * counted[:, None]).sum()
    return torch.stack([counted.sum().to(torch.float64), tokens, m.new_tensor(m.shape[1])])


def loss_denominator(agg: str, counts: torch.Tensor) -> torch.Tensor:
    """What aggregation ``agg`` divides the summed loss by, from :func:`loss_counts` (summed over
    the processes that share a minibatch: its global counts); float64 scalar, at least 1 row or
    token as :func:`aggregate` clamps them. ``ValueError`` for an aggregation registered without
    a norm."""
    check_choice("loss agg", agg, AGGREGATIONS)
    norm = AGG_NORMS.get(agg)
    if norm is None:
        raise ValueError(
            f"loss.agg = {agg!r} was registered without norm=: several processes cannot share "
            f"its minibatches (register it with norm= one of {NORMS})"
        )
    rows, tokens, seq_len = counts[0].clamp(min=1), counts[1].clamp(min=1), counts[2]
    return {"rows": rows, "tokens": tokens, "rows_x_len": rows * seq_len}[norm]


def _check_2d(name: str, t: Any, shape: torch.Size | None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    if t.dim() != 2:
        raise ValueError(f"{name} must be 2-D (num_rows, seq_len), got shape {tuple(t.shape)}")
    if shape is not None and t.shape != shape:
        raise ValueError(
            f"{name} has shape {tuple(t.shape)} but logp has {tuple(shape)}; they must match"
        )
    return t


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, row_weight: torch.Tensor, agg: str
) -> torch.Tensor:
    """Reduce a ``(num_rows, seq_len)`` per-token loss to a scalar with one of LOSS_AGG_MODES.

    Args:
        per_token: ``(num_rows, seq_len)`` values (entries where ``mask == 0`` are ignored).
        mask: ``(num_rows, seq_len)`` float 0/1, valid tokens.
        row_weight: ``(num_rows,)`` >= 0.
        agg: aggregation mode.
    """
    check_choice("loss agg", agg, AGGREGATIONS)
    tokens_per_row = mask.sum(dim=1)
    counted = (row_weight > 0) & (tokens_per_row > 0)
    n_rows = counted.sum().clamp(min=1)
    return AGGREGATIONS[agg](per_token * mask, mask, row_weight, tokens_per_row, counted, n_rows)


def policy_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    ratio_level: str = "token",
    agg: str = "seq-mean-token-mean",
    weights: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with optional k3 KL and entropy terms.

    Args:
        logp: ``(num_rows, seq_len)`` log-probs under the current policy (carries the gradient).
        logp_old: ``(num_rows, seq_len)`` behaviour log-probs.
        advantages: ``(num_rows,)`` or ``(num_rows, seq_len)``.
        mask: ``(num_rows, seq_len)`` bool/0-1, valid tokens.
        eps_low: lower clip range in [0, 1).
        eps_high: upper clip range >= 0.
        ratio_level: one of :data:`RATIO_LEVELS`.
        agg: one of :data:`LOSS_AGG_MODES`.
        weights: optional ``(num_rows,)`` >= 0 row weights (``mask`` alignment padding is 0).
        ref_logp: ``(num_rows, seq_len)`` reference log-probs; needed when ``kl_coef > 0``.
        kl_coef: >= 0.
        entropy: ``(num_rows, seq_len)`` per-token entropies; needed when ``entropy_coef > 0``.
        entropy_coef: >= 0.

    Returns:
        ``(loss, stats)``: the scalar loss and floats ``pg_loss``, ``clip_frac_low`` (share of
        counted tokens with A < 0 and rho < 1 - eps_low), ``clip_frac_high`` (A > 0 and
        rho > 1 + eps_high), ``approx_kl`` (k3 estimate of KL(old || new), token mean),
        ``ratio_mean``, ``kl`` and ``entropy`` (token means, 0 when not given).
    """
    logp = _check_2d("logp", logp, None)
    logp_old = _check_2d("logp_old", logp_old, logp.shape)
    mask = _check_2d("mask", mask, logp.shape).to(logp.dtype)
    check_choice("ratio_level", ratio_level, RATIO_LEVEL_FNS)
    check_choice("loss agg", agg, AGGREGATIONS)
    if not 0.0 <= eps_low < 1.0:
        raise ValueError(f"eps_low must lie in [0, 1), got {eps_low}")
    if not eps_high >= 0.0:
        raise ValueError(f"eps_high must be >= 0, got {eps_high}")
    if not kl_coef >= 0.0 or not entropy_coef >= 0.0:
        raise ValueError(f"kl_coef and entropy_coef must be >= 0, got {kl_coef}, {entropy_coef}")
    n_rows = logp.shape[0]
    adv = torch.as_tensor(advantages, dtype=logp.dtype, device=logp.device)
    if adv.dim() == 1:
        if adv.shape[0] != n_rows:
            raise ValueError(f"advantages has {adv.shape[0]} rows but logp has {n_rows}")
        adv = adv[:, None].expand_as(logp)
    elif adv.shape != logp.shape:
        raise ValueError(f"advantages must be (num_rows,) or {tuple(logp.shape)}, got {adv.shape}")
    if weights is None:
        w = torch.ones(n_rows, dtype=logp.dtype, device=logp.device)
    else:
        w = torch.as_tensor(weights, dtype=logp.dtype, device=logp.device)
        if w.shape != (n_rows,):
            raise ValueError(f"weights must have shape ({n_rows},), got {tuple(w.shape)}")
        if not bool(((w >= 0) & (w < math.inf)).all()):  # NaN fails both
            raise ValueError("weights must be finite and >= 0")
    valid = mask > 0
    # one pass: x * 0 is NaN exactly where x is NaN or +-inf, and a sum is NaN/inf wherever one
    # of its terms is (an overflow of the sum alone finds no culprit below and goes on)
    if bool((((logp.detach() + logp_old + adv) * 0 != 0) & valid).any()):
        for name, t in (("logp", logp), ("logp_old", logp_old), ("advantages", adv)):
            if not bool(torch.isfinite(t[valid]).all()):
                raise ValueError(f"{name} has NaN/inf at valid tokens")

    log_ratio = (logp - logp_old.detach()) * mask
    log_rho = RATIO_LEVEL_FNS[ratio_level](log_ratio, mask).expand_as(logp)
    rho = torch.exp(log_rho)
    clipped = torch.clamp(rho, 1.0 - eps_low, 1.0 + eps_high)
    pg = torch.maximum(-rho * adv, -clipped * adv)
    per_token = pg

    kl_mean = 0.0
    counted_tok = mask * ((w > 0)[:, None].to(mask.dtype))
    n_tok = counted_tok.sum().clamp(min=1)
    if kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp (reference log-probs)")
        ref = _check_2d("ref_logp", ref_logp, logp.shape)
        delta = ref.detach() - logp
        kl = torch.exp(delta) - delta - 1.0
        per_token = per_token + kl_coef * kl
        kl_mean = float((kl.detach() * counted_tok).sum() / n_tok)
    ent_mean = 0.0
    if entropy is not None:
        ent = _check_2d("entropy", entropy, logp.shape)
        ent_mean = float((ent.detach() * counted_tok).sum() / n_tok)
        if entropy_coef > 0:
            per_token = per_token - entropy_coef * ent
    elif entropy_coef > 0:
        raise ValueError("entropy_coef > 0 needs entropy (per-token entropies)")

    loss = aggregate(per_token, mask, w, agg)
    with torch.no_grad():
        lr = log_ratio.detach()
        r = rho.detach()
        # one stacked reduction for the two clip counts (whole numbers: exact in any order);
        # the float sums keep their own reductions, so the values match a term-by-term pass
        clip = torch.stack([(r < 1 - eps_low) & (adv < 0), (r > 1 + eps_high) & (adv > 0)])
        vals = [
            loss.detach() if per_token is pg else aggregate(pg.detach(), mask, w, agg),
            *((clip * counted_tok).sum(dim=(1, 2)) / n_tok).unbind(),
            ((torch.exp(lr) - 1 - lr) * counted_tok).sum() / n_tok,
            (r * counted_tok).sum() / n_tok,
        ]
        pg_loss, low, high, approx_kl, ratio_mean = torch.stack(vals).tolist()
        stats = {
            "pg_loss": pg_loss,
            "clip_frac_low": low,
            "clip_frac_high": high,
            "approx_kl": approx_kl,
            "ratio_mean": ratio_mean,
            "kl": kl_mean,
            "entropy": ent_mean,
        }
    return loss, stats
