"""Figures of run dirs: stability curves, success, d_k, alignment and share figures per env
(:func:`plot_runs`; the list of figures is in :mod:`experiments.plots`)."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

from experiments.grouping import Line, check_strict, notices  # noqa: E402
from experiments.stages import is_stage1_dir
from experiments.stats import (  # noqa: E402
    COUNTERS,
    Run,
    ema,
    ema_weight,
    group_runs,
    load_runs,
    roles_of,
    specialists_of,
)
from sim.config import VARIANTS  # noqa: E402

__all__ = ["DPI", "env_prefix", "line_looks", "plot_runs", "variant_colors", "variant_styles"]

DPI = 120
"""resolution of every figure (runs and studies)"""
_VARIANTS = tuple(VARIANTS)  # fixed colour and style order: the order of sim.config.VARIANTS


def variant_colors(variants: Iterable[str]) -> dict[str, Any]:
    """A fixed colour per variant (the same variant has the same colour in every figure)."""
    cmap = plt.get_cmap("tab10")
    out = {}
    extra = 0
    for v in variants:
        if v in _VARIANTS:
            out[v] = cmap(_VARIANTS.index(v))
        else:
            out[v] = cmap((len(_VARIANTS) + extra) % 10)
            extra += 1
    return out


_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)))


def variant_styles(variants: Iterable[str]) -> dict[str, Any]:
    """A fixed line style per variant (identical curves of two variants stay distinguishable,
    and so do the variants in greyscale)."""
    variants = list(variants)
    out = {}
    for i, v in enumerate(variants):
        j = _VARIANTS.index(v) if v in _VARIANTS else len(_VARIANTS) + i
        out[v] = _LINESTYLES[j % len(_LINESTYLES)]
    return out


def line_looks(lines: Sequence[Line]) -> dict[str, tuple[Any, Any]]:
    """``label -> (colour, line style)``. A variant's first line (its only one in an ablation)
    gets the variant's colour and style; its further lines (other configs) get the colours no
    variant uses, then cycle, and the next line styles."""
    firsts = list(dict.fromkeys(line.variant for line in lines))
    colors, styles = variant_colors(firsts), variant_styles(firsts)
    cmap = plt.get_cmap("tab10")
    spare = len(_VARIANTS) + sum(v not in _VARIANTS for v in firsts)
    seen: dict[str, int] = {}
    out = {}
    for line in lines:
        i = seen[line.variant] = seen.get(line.variant, -1) + 1
        if i == 0:
            out[line.label] = (colors[line.variant], styles[line.variant])
            continue
        j = _LINESTYLES.index(styles[line.variant]) + i
        out[line.label] = (cmap(spare % 10), _LINESTYLES[j % len(_LINESTYLES)])
        spare += 1
    return out


def env_prefix(env_id: str) -> str:
    """The file name prefix of an env's figures: ``mgrpo/RubiksLogic-v0`` -> ``rubikslogic``."""
    name = env_id.split("/")[-1]
    return name.split("-v")[0].lower() or "env"


# ------------------------------------------------------------------------- curve helpers
def _stack(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Align curves of different lengths on the union of their x: ``(x, Y)`` with
    ``Y.shape == (num_seeds, len(x))`` and NaN where a seed has no point."""
    xs = np.unique(np.concatenate([c[0] for c in curves])) if curves else np.zeros(0, int)
    Y = np.full((len(curves), len(xs)), np.nan)
    for i, (x, y) in enumerate(curves):
        Y[i, np.searchsorted(xs, x)] = y
    return xs, Y


def _band(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and the 95% t band per column (NaN where fewer than 2 seeds)."""
    n = np.sum(np.isfinite(Y), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(Y, axis=0)
        sd = np.nanstd(Y, axis=0, ddof=1) if Y.shape[0] > 1 else np.full(Y.shape[1], np.nan)
    tq = np.where(n >= 2, sps.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
    half = tq * sd / np.sqrt(np.maximum(n, 1))
    return m, m - half, m + half


def _draw(
    ax: plt.Axes,
    runs: Sequence[Run],
    key: str,
    color: Any,
    label: str,
    *,
    smooth: bool,
    raw: bool,
    marker: str | None = None,
    ls: Any = "-",
    clip: tuple[float, float] | None = None,
) -> bool:
    """Per-seed raw lines (thin), then the mean over seeds (of the EMA-smoothed curves when
    ``smooth``) and its 95% band. Returns False when no run has ``key``."""
    curves = [r.series(key) for r in runs]
    curves = [c for c in curves if len(c[0])]
    if not curves:
        return False
    if raw:
        for x, y in curves:
            ax.plot(x, y, color=color, lw=0.7, alpha=0.3)
    if smooth:
        w = ema_weight(max(len(c[0]) for c in curves))
        curves = [(x, np.asarray(ema(y, w))) for x, y in curves]
    x, Y = _stack(curves)
    m, lo, hi = _band(Y)
    if clip is not None:  # a 95% band of a bounded quantity, cut at its bounds
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    n = len(curves)
    ax.plot(x, m, color=color, lw=2, ls=ls, marker=marker, ms=4, label=f"{label} (n={n})")
    if n >= 2:
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
    return True


def _samples_axis(ax: plt.Axes, runs: Sequence[Run]) -> None:
    """A top axis in samples (episodes) when all runs share B x K."""
    bk = {r.batch[0] * r.batch[1] for r in runs}
    if len(bk) == 1 and (k := bk.pop()) > 0:
        top = ax.secondary_xaxis("top", functions=(lambda s: s * k, lambda e: e / k))
        top.set_xlabel(f"samples (episodes; B x K = {k} per step)", fontsize=9)
        top.tick_params(labelsize=8)


def _finish(fig: plt.Figure, ax: plt.Axes, path: Path, legend: bool = True) -> Path:
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _title(env: str, what: str, n_by_line: dict[Line, int]) -> str:
    seeds = sorted(set(n_by_line.values()))
    s = "/".join(map(str, seeds))
    per = "line" if any(line.differs for line in n_by_line) else "variant"
    return f"{env}: {what}\n({s} seed{'s' if seeds != [1] else ''} per {per})"


# ------------------------------------------------------------------------------- figures
def _fig_reward(env: str, by_var: dict[Line, list[Run]], role: str, out: Path) -> Path | None:
    looks = line_looks(list(by_var))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    drawn = False
    for v, rs in by_var.items():
        drawn |= _draw(  # every reward form lies in [0, 1]: the band is cut there
            ax,
            rs,
            f"{role}/reward_mean",
            looks[v.label][0],
            v.label,
            smooth=True,
            raw=True,
            ls=looks[v.label][1],
            clip=(0.0, 1.0),
        )
    if not drawn:
        plt.close(fig)
        return None
    n = {v: len(rs) for v, rs in by_var.items()}
    ax.set_title(
        _title(env, f"{role} reward (raw per seed: thin; EMA mean, 95% band)", n), fontsize=10
    )
    ax.set_xlabel("training step (updates)")
    ax.set_ylabel(f"mean training reward of {role} (per trajectory)")
    _samples_axis(ax, [r for rs in by_var.values() for r in rs])
    return _finish(fig, ax, out)


def _fig_success(env: str, by_var: dict[Line, list[Run]], out: Path) -> Path | None:
    looks = line_looks(list(by_var))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    drawn = False
    for v, rs in by_var.items():
        drawn |= _draw(
            ax,
            rs,
            "eval/success_greedy",
            looks[v.label][0],
            v.label,
            smooth=False,
            raw=False,
            marker="o",
            ls=looks[v.label][1],
            clip=(0.0, 1.0),
        )
    if not drawn:
        plt.close(fig)
        return None
    oracle = [y[-1] for r in (x for rs in by_var.values() for x in rs)
              for _, y in [r.series("eval/oracle_success")] if len(y)]  # fmt: skip
    if oracle:
        level = float(np.mean(oracle))
        ax.axhline(level, color="k", ls="--", lw=1.2, label=f"oracle success ({level:.2f})")
    ax.set_ylim(-0.03, 1.05)
    n = {v: len(rs) for v, rs in by_var.items()}
    ax.set_title(_title(env, "greedy evaluation success (mean, 95% band)", n), fontsize=10)
    ax.set_xlabel("training step (updates)")
    ax.set_ylabel("success rate (fraction of eval episodes)")
    _samples_axis(ax, [r for rs in by_var.values() for r in rs])
    return _finish(fig, ax, out)


def _align_target(run: Run, role: str) -> float | None:
    d = run.config.get("roles", {}).get(role, {}).get("align_target")
    d = d if d is not None else run.config.get("algo", {}).get("align_target")
    return float(d) if d is not None else None


def _fig_calls(env: str, by_var: dict[Line, list[Run]], out: Path) -> Path | None:
    all_runs = [r for rs in by_var.values() for r in rs]
    roles = specialists_of(all_runs)
    if not roles:
        return None
    looks = line_looks(list(by_var))
    fig, axes = plt.subplots(1, len(roles), figsize=(6.5 * len(roles), 4.4), squeeze=False)
    for ax, role in zip(axes[0], roles, strict=True):
        data = {}
        for v, rs in by_var.items():
            vals = np.concatenate([r.series(f"{role}/calls_mean")[1] for r in rs])
            if len(vals):
                data[v.label] = vals
        if not data:
            ax.set_visible(False)
            continue
        hi = max(float(v.max()) for v in data.values())
        targets = {t for r in all_runs if (t := _align_target(r, role)) is not None}
        hi = max([hi, *targets]) if targets else hi
        bins = np.linspace(0, max(hi, 1e-6) * 1.02, 21)
        for v, vals in data.items():
            ax.hist(vals, bins=bins, color=looks[v][0], alpha=0.25)
            ax.hist(vals, bins=bins, color=looks[v][0], histtype="step", lw=1.6, ls=looks[v][1],
                    label=f"{v} (mean {vals.mean():.2f}, {len(vals)} steps)")  # fmt: skip
        for t in sorted(targets):
            ax.axvline(t, color="k", ls="--", lw=1.2, label=f"alignment target D = {t:g}")
        ax.set_xlabel(f"mean calls d_k of {role} per episode, in one training step")
        ax.set_ylabel("training steps (count, all seeds)")
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_title(f"{role}: distribution of the per-step mean d_k", fontsize=10)
        ax.legend(fontsize=8, framealpha=0.85)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{env}: specialist calls d_k\n(per-step means, pooled over steps and seeds)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _fig_alignment(env: str, by_var: dict[Line, list[Run]], out: Path) -> Path | None:
    all_runs = [r for rs in by_var.values() for r in rs]
    roles = specialists_of(all_runs)
    if not roles:
        return None
    looks = line_looks(list(by_var))
    fig, axes = plt.subplots(
        len(roles), 3, figsize=(13, 3.6 * len(roles) + 0.6), squeeze=False, sharex=True
    )
    for i, role in enumerate(roles):
        for j, c in enumerate(COUNTERS):
            ax = axes[i, j]
            for v, rs in by_var.items():
                _draw(ax, rs, f"{role}/{c}", looks[v.label][0], v.label, smooth=False,
                      raw=False, ls=looks[v.label][1])  # fmt: skip
            lo, hi = ax.get_ylim()
            ax.set_ylim(0, max(hi, 1.0))
            ax.set_title(f"{role}: {c.removeprefix('align_')} rows", fontsize=10)
            ax.set_ylabel("trajectories per step")
            ax.grid(alpha=0.3)
            if i == len(roles) - 1:
                ax.set_xlabel("training step (updates)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9)
    n = {v: len(rs) for v, rs in by_var.items()}
    fig.suptitle(
        _title(env, "alignment to D rows per specialist (mean over seeds, 95% band)", n).replace(
            "\n", " "
        ),
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return out


def _fig_share(
    env: str, by_var: dict[Line, list[Run]], key: str, what: str, out: Path
) -> Path | None:
    """Per-step share ``key`` (category errors, constraints kept), EMA mean and 95% band."""
    looks = line_looks(list(by_var))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    drawn = False
    for v, rs in by_var.items():
        c, ls = looks[v.label]
        drawn |= _draw(ax, rs, key, c, v.label, smooth=True, raw=True, ls=ls, clip=(0.0, 1.0))
    if not drawn:
        plt.close(fig)
        return None
    n = {v: len(rs) for v, rs in by_var.items()}
    ax.set_title(_title(env, f"{what} during training (EMA mean, 95% band)", n), fontsize=10)
    ax.set_xlabel("training step (updates)")
    ax.set_ylabel(f"{what} (fraction of training episodes)")
    ax.set_ylim(-0.03, 1.05)
    _samples_axis(ax, [r for rs in by_var.values() for r in rs])
    return _finish(fig, ax, out)


def _has_nonzero(runs: Iterable[Run], key: str) -> bool:
    return any(len(y) and np.any(y != 0) for y in (r.series(key)[1] for r in runs))


def plot_runs(
    run_dirs: Iterable[str | Path | Run],
    out_dir: str | Path,
    *,
    strict: bool = False,
    notify: bool = True,
) -> list[Path]:
    """Write the figures of the module docstring for ``run_dirs`` (run dirs, dirs holding run
    dirs, or loaded :class:`~experiments.stats.Run`) into ``out_dir``; returns the PNG paths.
    One line per env, variant and config (:mod:`experiments.grouping`): a variant whose runs
    have several configs is drawn as several labelled lines, with a notice on stderr (unless
    ``notify`` is False), or refused with :class:`~experiments.grouping.MixedConfigs` when
    ``strict``. Raises ``ValueError`` on a missing/corrupt run dir or when no runs are found."""
    items = list(run_dirs)
    runs = [x for x in items if isinstance(x, Run)]
    paths = [x for x in items if not isinstance(x, Run)]
    runs += load_runs(paths) if paths else []
    warmups = [r for r in runs if is_stage1_dir(r.path)]
    if warmups and len(warmups) < len(runs):  # a paper-protocol grid: plot stage 2 only
        runs = [r for r in runs if not is_stage1_dir(r.path)]
        if notify:
            print(f"note: left out {len(warmups)} stage-1 runs (warm-ups)", file=sys.stderr)
    if not runs:
        raise ValueError("no runs to plot")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    if strict:
        check_strict(groups)
    if notify:
        for line in notices(groups):
            print(line, file=sys.stderr)
    by_env: dict[str, dict[Line, list[Run]]] = {}
    for line, rs in groups.items():
        by_env.setdefault(line.env, {})[line] = rs
    written: list[Path] = []
    for env, by_var in by_env.items():
        short = env_prefix(env)
        env_runs = [r for rs in by_var.values() for r in rs]
        figs = [_fig_success(env, by_var, out_dir / f"{short}_success.png")]
        for role in roles_of(env_runs):
            figs.append(_fig_reward(env, by_var, role, out_dir / f"{short}_reward_{role}.png"))
        figs.append(_fig_calls(env, by_var, out_dir / f"{short}_calls.png"))
        figs.append(_fig_alignment(env, by_var, out_dir / f"{short}_alignment.png"))
        if _has_nonzero(env_runs, "tool/category_error_rate"):
            figs.append(
                _fig_share(
                    env,
                    by_var,
                    "tool/category_error_rate",
                    "category-error rate",
                    out_dir / f"{short}_category_errors.png",
                )  # fmt: skip
            )
        if any("main/constraints_kept" in row for r in env_runs for row in r.rows):
            figs.append(
                _fig_share(
                    env,
                    by_var,
                    "main/constraints_kept",
                    "constraints-kept share",
                    out_dir / f"{short}_constraints_kept.png",
                )  # fmt: skip
            )
        written += [f for f in figs if f is not None]
    return written
