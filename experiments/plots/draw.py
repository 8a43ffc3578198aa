"""What the run figures share: a fixed colour and line style per variant, curves of seeds with
their bootstrap band (:func:`draw`), and captions under the figures (:func:`finish`)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.grouping import Line  # noqa: E402
from experiments.stats import Run, ema, ema_weight  # noqa: E402
from experiments.stats_tests import bootstrap_band  # noqa: E402
from sim.config import VARIANTS  # noqa: E402

__all__ = [
    "BAND",
    "DPI",
    "curves_of",
    "draw",
    "env_prefix",
    "finish",
    "line_looks",
    "samples_axis",
    "seeds_text",
    "smoothing",
    "stack",
    "variant_colors",
    "variant_styles",
]

DPI = 120
"""resolution of every figure (runs and studies)"""
BAND = "band: 95% seed-bootstrap percentile interval of the mean (2,000 resamples)"
"""what every band of the run figures is"""
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
    gets the variant's colour and style; its further lines (other configs) get colours no line
    of the figure has yet (tab10, then tab20, then Dark2), and the next line styles."""
    firsts = list(dict.fromkeys(line.variant for line in lines))
    colors, styles = variant_colors(firsts), variant_styles(firsts)
    used = {matplotlib.colors.to_rgb(colors[v]) for v in firsts}
    spare = [
        c
        for name in ("tab10", "tab20", "Dark2")
        for c in (matplotlib.colors.to_rgb(x) for x in plt.get_cmap(name).colors)
        if c not in used
    ]
    seen: dict[str, int] = {}
    out = {}
    for line in lines:
        i = seen[line.variant] = seen.get(line.variant, -1) + 1
        if i == 0:
            out[line.label] = (colors[line.variant], styles[line.variant])
            continue
        j = _LINESTYLES.index(styles[line.variant]) + i
        c = spare.pop(0) if spare else plt.get_cmap("tab10")(len(out) % 10)
        used.add(c)
        out[line.label] = (c, _LINESTYLES[j % len(_LINESTYLES)])
    return out


def env_prefix(env_id: str) -> str:
    """The file name prefix of an env's figures: ``mgrpo/RubiksLogic-v0`` -> ``rubikslogic``."""
    name = env_id.split("/")[-1]
    return name.split("-v")[0].lower() or "env"


# ------------------------------------------------------------------------- curve helpers
def stack(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Align curves of different lengths on the union of their x: ``(x, Y)`` with
    ``Y.shape == (num_seeds, len(x))`` and NaN where a seed has no point."""
    xs = np.unique(np.concatenate([c[0] for c in curves])) if curves else np.zeros(0, int)
    Y = np.full((len(curves), len(xs)), np.nan)
    for i, (x, y) in enumerate(curves):
        Y[i, np.searchsorted(xs, x)] = y
    return xs, Y


def curves_of(runs: Sequence[Run], key: str, per_rollout: bool = False) -> list[tuple]:
    """``(x, y)`` of ``key`` for each run that has it (``per_rollout``: y / (B x K))."""
    out = []
    for r in runs:
        x, y = r.series(key)
        if len(x):
            n = r.batch[0] * r.batch[1]
            out.append((x, y / n if per_rollout and n > 0 else y))
    return out


def draw(
    ax: plt.Axes,
    curves: Sequence[tuple[np.ndarray, np.ndarray]],
    color: Any,
    label: str,
    *,
    weight: float = 0.0,
    seeds: bool = True,
    marker: str | None = None,
    ls: Any = "-",
    seed_alpha: float = 0.3,
    band_alpha: float = 0.25,
) -> bool:
    """Each seed's raw curve as a thin line (``seeds``), then the mean over seeds of the
    EMA-smoothed curves (``weight``; 0: raw) and its bootstrap band (:data:`BAND`); the mean
    is a darker shade when the seeds are drawn. False when there is no curve."""
    if not curves:
        return False
    if seeds:
        for x, y in curves:
            ax.plot(x, y, color=color, lw=0.6 + seed_alpha, alpha=seed_alpha, marker=marker, ms=2)
    if weight > 0:
        curves = [(x, np.asarray(ema(y, weight))) for x, y in curves]
    x, Y = stack(curves)
    m, lo, hi = bootstrap_band(Y)
    if len(Y) >= 2:
        ax.fill_between(x, lo, hi, color=color, alpha=band_alpha, lw=0)
    dark = tuple(0.65 * c for c in matplotlib.colors.to_rgb(color)) if seeds else color
    ax.plot(x, m, color=dark, lw=2.2, ls=ls, marker=marker, ms=4, label=f"{label} (n={len(Y)})")
    return True


def smoothing(by_var: dict[Line, list[Run]], key: str) -> float:
    """The EMA weight of ``key``'s curves in one figure (:func:`~experiments.stats.ema_weight`
    of the longest curve)."""
    n = max((len(r.series(key)[0]) for rs in by_var.values() for r in rs), default=0)
    return ema_weight(n)


def samples_axis(ax: plt.Axes, runs: Sequence[Run]) -> None:
    """A top axis in samples (episodes) when all runs share B x K."""
    bk = {r.batch[0] * r.batch[1] for r in runs}
    if len(bk) == 1 and (k := bk.pop()) > 0:
        top = ax.secondary_xaxis("top", functions=(lambda s: s * k, lambda e: e / k))
        top.set_xlabel(f"samples (episodes; B x K = {k} per step)", fontsize=9)
        top.tick_params(labelsize=8)


def seeds_text(by_var: dict[Line, list[Run]]) -> str:
    """``3 seeds per line`` or ``3-5 seeds per line``."""
    ns = sorted({len(rs) for rs in by_var.values()})
    n = str(ns[0]) if len(ns) == 1 else f"{ns[0]}-{ns[-1]}"
    return f"{n} seed{'s' if ns != [1] else ''} per line"


def finish(fig: plt.Figure, path: Path, caption: str, width: int = 120) -> Path:
    """Write the caption under the figure (wrapped), save at :data:`DPI` and close."""
    text = textwrap.fill(caption, width)
    lines = text.count("\n") + 1
    h = fig.get_size_inches()[1]
    fig.set_size_inches(fig.get_size_inches()[0], h + 0.17 * lines)
    fig.text(0.01, 0.005, text, fontsize=7.5, va="bottom", ha="left", color="0.25")
    fig.tight_layout(rect=(0, (0.17 * lines + 0.08) / (h + 0.17 * lines), 1, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path
