"""The run figures of one env (:func:`env_figures`; listed in :mod:`experiments.plots`). Each
returns ``(path, caption)``; the caption (also printed under the figure) states the seeds, the
band, the EMA weight and what was left out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.grouping import Line  # noqa: E402
from experiments.plots.draw import (  # noqa: E402
    BAND,
    curves_of,
    draw,
    finish,
    line_looks,
    samples_axis,
    seeds_text,
    smoothing,
)
from experiments.stats import (  # noqa: E402
    COUNTERS,
    Run,
    final_eval_counts,
    roles_of,
    specialists_of,
)
from experiments.stats_tests import rate_ci  # noqa: E402

__all__ = ["env_figures"]

Figure = tuple[Path, str] | None
_STEP = "training step (updates)"


def env_figures(
    env: str, by_var: dict[Line, list[Run]], out: Path, short: str, oracle_queries: int = 0
) -> list[tuple[Path, str]]:
    """Every figure of ``env`` into ``out`` (file names ``<short>_<kind>.png``)."""
    runs = [r for rs in by_var.values() for r in rs]
    figs: list[Figure] = [success(env, by_var, out / f"{short}_success.png")]
    for role in roles_of(runs):
        figs.append(reward(env, by_var, role, out / f"{short}_reward_{role}.png"))
    figs.append(calls(env, by_var, out / f"{short}_calls.png", oracle_queries))
    figs.append(alignment(env, by_var, out / f"{short}_alignment.png"))
    figs.append(
        eval_share(env, by_var, "category_error_rate", "category-error rate",
                   out / f"{short}_category_errors.png", zero_undefined=False)
    )  # fmt: skip
    figs.append(
        eval_share(env, by_var, "constraints_kept", "share of constraints kept",
                   out / f"{short}_constraints_kept.png", zero_undefined=True)
    )  # fmt: skip
    return [f for f in figs if f is not None]


def _steps(ax: plt.Axes) -> None:
    """The x axis in whole training steps."""
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel(_STEP, fontsize=9)


def _legend(ax: plt.Axes, **kw: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, framealpha=0.85, **kw)


def _hide_unused(axes: np.ndarray, used: int) -> None:
    """Hide the panels after the first ``used``; the lowest shown panel of each column gets
    the x tick labels and the step label."""
    nrow, ncol = axes.shape
    for i, ax in enumerate(axes.flat):
        if i >= used:
            ax.set_visible(False)
            continue
        if i + ncol >= used:  # nothing shown below it
            ax.xaxis.set_tick_params(labelbottom=True)
            _steps(ax)


# ------------------------------------------------------------------------------- success
def success(env: str, by_var: dict[Line, list[Run]], out: Path) -> Figure:
    """Greedy held-out success per evaluation: per-seed thin lines, mean and band per line;
    the final evaluation (``eval.final_episodes``) as a marker with its interval at the right;
    the oracle's success dashed."""
    looks = line_looks(list(by_var))
    fig, ax = plt.subplots(figsize=(10.5, 4.8))
    drawn, finals = False, False
    last = max(r.steps for rs in by_var.values() for r in rs)
    for i, (v, rs) in enumerate(by_var.items()):
        c, ls = looks[v.label]
        cs = curves_of(rs, "eval/success_greedy")  # bimodal seeds: the thin lines show them
        drawn |= draw(ax, cs, c, v.label, marker="o", ls=ls, seed_alpha=0.55, band_alpha=0.1)
        kn = [final_eval_counts(r) for r in rs]
        if any(n for _, n in kn):
            m, lo, hi, _ = rate_ci([k for k, _ in kn], [n for _, n in kn])
            x = last * (1.03 + 0.012 * i)
            err = None if math.isnan(lo) else [[m - lo], [hi - m]]
            dark = tuple(0.65 * v for v in matplotlib.colors.to_rgb(c))  # the mean line's shade
            ax.errorbar(x, m, yerr=err, color=dark, marker="D", ms=6, capsize=3, lw=1.5)
            finals = True
    if not drawn:
        plt.close(fig)
        return None
    oracle = [y[-1] for r in (x for rs in by_var.values() for x in rs)
              for _, y in [r.series("eval/oracle_success")] if len(y)]  # fmt: skip
    if oracle:
        level = float(np.mean(oracle))
        ax.axhline(level, color="k", ls="--", lw=1.2, label=f"oracle success ({level:.2f})")
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(f"{env}: greedy held-out success", fontsize=10)
    _steps(ax)
    ax.set_ylabel("success rate (fraction of eval episodes)")
    ax.grid(alpha=0.3)
    samples_axis(ax, [r for rs in by_var.values() for r in rs])
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    cap = (
        f"Greedy success on held-out queries at each evaluation ({seeds_text(by_var)}): thin "
        f"lines one seed each, thick line the mean over seeds, {BAND}."
    )
    if finals:
        cap += (
            " Diamonds right of the last step: the larger final evaluation after the last step "
            "(mean over seeds; 95% seed-bootstrap interval, or Clopper-Pearson over the pooled "
            "episodes when all seeds are equal)."
        )
    return finish(fig, out, cap, width=150), cap


# -------------------------------------------------------------------------------- reward
def reward(env: str, by_var: dict[Line, list[Run]], role: str, out: Path) -> Figure:
    """One panel per line: each seed's raw ``<role>/reward_mean``, the EMA-smoothed mean over
    seeds and its band. Lines without the role (the single agent has no sub-agent) are left
    out and named in the caption."""
    key = f"{role}/reward_mean"
    have = {v: rs for v, rs in by_var.items() if curves_of(rs, key)}
    if not have:
        return None
    looks = line_looks(list(by_var))
    w = smoothing(have, key)
    ncol = min(3, len(have))
    nrow = math.ceil(len(have) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.0 * nrow + 0.6), sharex=True,
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, (v, rs) in zip(axes.flat, have.items(), strict=False):
        draw(ax, curves_of(rs, key), looks[v.label][0], v.label, weight=w)
        ax.set_title(f"{v.label} (n={len(rs)})", fontsize=9)
        ax.grid(alpha=0.3)
    _hide_unused(axes, len(have))
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{role} training reward", fontsize=9)
    fig.suptitle(f"{env}: {role} agent's training reward per step", fontsize=10)
    missing = [v.label for v in by_var if v not in have]
    cap = (
        f"Mean training reward of the {role} agent per step, one panel per line "
        f"({seeds_text(have)}): thin lines one seed each (raw), thick line the mean over seeds "
        f"of the EMA-smoothed curves (EMA weight {w:.2f} per step), {BAND}."
    )
    if missing:
        cap += f" Not drawn (no {role} role): {', '.join(missing)}."
    return finish(fig, out, cap, width=int(45 * ncol)), cap


# --------------------------------------------------------------------------------- calls
def _align_targets(runs: Sequence[Run], role: str) -> list[float]:
    out = set()
    for run in runs:
        d = run.config.get("roles", {}).get(role, {}).get("align_target")
        d = d if d is not None else run.config.get("algo", {}).get("align_target")
        if d is not None:
            out.add(float(d))
    return sorted(out)


def _oracle_calls(runs: Sequence[Run], n: int) -> dict[str, float]:
    """The env's oracle's mean d_k per role on ``n`` held-out queries (cached; {} when
    ``n`` is 0 or the envs cannot say)."""
    if n <= 0 or not runs:
        return {}
    from experiments.time_table import baseline_result

    env = dict(runs[0].config.get("env", {}))
    env_id = str(env.pop("id", ""))
    try:
        return dict(getattr(baseline_result(env_id, "oracle", n, env), "calls", None) or {})
    except (ValueError, TypeError):
        return {}


def calls(env: str, by_var: dict[Line, list[Run]], out: Path, oracle_queries: int) -> Figure:
    """Per specialist role: d_k (``<role>/calls_mean``, training episodes) against the step,
    EMA-smoothed mean over seeds and band per line, the oracle's d_k and the alignment
    target D."""
    runs = [r for rs in by_var.values() for r in rs]
    roles = specialists_of(runs)
    if not roles:
        return None
    looks = line_looks(list(by_var))
    oracle = _oracle_calls(runs, oracle_queries)
    fig, axes = plt.subplots(1, len(roles), figsize=(8.5 * len(roles), 4.6), squeeze=False)
    w = 0.0
    for ax, role in zip(axes[0], roles, strict=True):
        key = f"{role}/calls_mean"
        w = smoothing(by_var, key)
        for v, rs in by_var.items():
            c, ls = looks[v.label]
            draw(ax, curves_of(rs, key), c, v.label, weight=w, seeds=False, ls=ls)
        if role in oracle:
            ax.axhline(oracle[role], color="k", ls="--", lw=1.3,
                       label=f"oracle d_k = {oracle[role]:.2f}")  # fmt: skip
        for d in _align_targets(runs, role):
            ax.axhline(d, color="0.4", ls=":", lw=1.5, label=f"alignment target D = {d:g}")
        ax.set_ylim(bottom=0)
        _steps(ax)
        ax.set_ylabel(f"calls d_k of {role} per episode")
        ax.set_title(f"{env}: d_k of {role} during training", fontsize=10)
        ax.grid(alpha=0.3)
        _legend(ax, loc="best")
    ref = (
        f"the env's oracle on {oracle_queries:,} held-out queries (dashed)"
        if oracle
        else "the oracle's d_k not computed (mgrpo plot --oracle-queries N)"
    )
    cap = (
        f"Mean sub-agent calls d_k per training episode against the step ({seeds_text(by_var)}; "
        f"EMA weight {w:.2f} per step; {BAND}); {ref}; the alignment target D dotted. Lines "
        "without specialists (the single agent) have no d_k."
    )
    return finish(fig, out, cap, width=int(130 * len(roles))), cap


# ----------------------------------------------------------------------------- alignment
_COUNTER_TITLES = {
    "align_duplicated": "rows duplicated (d_k < D)",
    "align_dropped": "rows dropped (d_k > D)",
    "align_empty": "rollouts without a sub row (empty)",
}


def alignment(env: str, by_var: dict[Line, list[Run]], out: Path) -> Figure:
    """Alignment counters per rollout (per-step count / (B x K)), one panel per specialist role
    and counter; counters identically 0 and lines that do not align (``align_mode = none``)
    are left out and named in the caption."""
    runs = [r for rs in by_var.values() for r in rs]
    roles = specialists_of(runs)
    aligned = {
        v: rs
        for v, rs in by_var.items()
        if specialists_of(rs)
        and any(r.config.get("algo", {}).get("align_mode", "duplicate_drop") != "none" for r in rs)
    }
    if not roles or not aligned:
        return None
    panels, zero = [], []
    for role in roles:
        for c in COUNTERS:
            vals = [y for rs in aligned.values() for _, y in curves_of(rs, f"{role}/{c}")]
            if any(np.any(y != 0) for y in vals):
                panels.append((role, c))
            else:
                zero.append(f"{role} {c.removeprefix('align_')}")
    if not panels:
        return None
    looks = line_looks(list(by_var))
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.0 * ncol, 3.4 * nrow + 0.8), squeeze=False)
    w = smoothing(aligned, f"{panels[0][0]}/{panels[0][1]}")
    for ax, (role, c) in zip(axes.flat, panels, strict=False):
        for v, rs in aligned.items():
            col, ls = looks[v.label]
            draw(ax, curves_of(rs, f"{role}/{c}", per_rollout=True), col, v.label,
                 weight=w, seeds=False, ls=ls)  # fmt: skip
        ax.set_ylim(bottom=0)
        ax.set_title(f"{role}: {_COUNTER_TITLES[c]}", fontsize=10)
        ax.set_ylabel("share of rollouts" if c == "align_empty" else "rows per rollout")
        ax.grid(alpha=0.3)
    _hide_unused(axes, len(panels))
    _legend(axes.flat[0], loc="best")
    fig.suptitle(f"{env}: alignment of the sub rows to D, per rollout", fontsize=10)
    cap = (
        f"Alignment counters per rollout (a step's count / (B x K)): sub rows duplicated "
        "(d_k < D), dropped (d_k > D) and rollouts without a sub row (empty); mean over seeds "
        f"of the EMA-smoothed curves ({seeds_text(aligned)}; EMA weight {w:.2f} per step; "
        f"{BAND})."
    )
    if zero:
        cap += f" Omitted, 0 at every step of every run: {', '.join(zero)}."
    left = [v.label for v in by_var if v not in aligned]
    if left:
        cap += f" Left out (no alignment or no specialist): {', '.join(left)}."
    return finish(fig, out, cap, width=int(55 * ncol)), cap


# ---------------------------------------------------------------------------- eval share
def eval_share(
    env: str,
    by_var: dict[Line, list[Run]],
    name: str,
    what: str,
    out: Path,
    *,
    zero_undefined: bool,
) -> Figure:
    """``eval/<name>`` at each evaluation: per-seed thin lines, mean and band per line. Lines
    without the metric are left out; with ``zero_undefined`` so are lines at 0 in every
    evaluation (the env reports 0 where the metric is undefined, e.g. no instruction); the
    whole figure is left out when no line is drawn or every value is 0."""
    key = f"eval/{name}"
    have, gone = {}, []
    for v, rs in by_var.items():
        cs = curves_of(rs, key)
        if cs and not (zero_undefined and all(np.all(y == 0) for _, y in cs)):
            have[v] = cs
        else:
            gone.append(v.label)
    if not have or all(np.all(y == 0) for cs in have.values() for _, y in cs):
        return None
    looks = line_looks(list(by_var))
    fig, ax = plt.subplots(figsize=(10.5, 4.6))
    for v, cs in have.items():
        c, ls = looks[v.label]
        draw(ax, cs, c, v.label, marker="o", ls=ls, seed_alpha=0.55, band_alpha=0.1)
    ax.set_ylim(-0.03, 1.05)
    ax.set_title(f"{env}: {what} in evaluation", fontsize=10)
    _steps(ax)
    ax.set_ylabel(f"{what} (greedy eval episodes)")
    ax.grid(alpha=0.3)
    _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    cap = (
        f"{what[0].upper() + what[1:]} in the greedy evaluation episodes at each evaluation "
        f"({seeds_text(by_var)}): thin lines one seed each, thick line the mean, {BAND}."
    )
    if gone:
        why = "not logged or 0 at every evaluation (undefined)" if zero_undefined else "not logged"
        cap += f" Left out ({why}): {', '.join(gone)}."
    return finish(fig, out, cap, width=150), cap
