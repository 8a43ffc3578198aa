"""Figures of run dirs, per env (:func:`plot_runs`; the list of figures is in
:mod:`experiments.plots`, the figures in :mod:`experiments.plots.curves`, what they share in
:mod:`experiments.plots.draw`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from experiments.grouping import Line, check_strict, notices
from experiments.plots import curves
from experiments.plots.draw import (
    BAND,
    DPI,
    env_prefix,
    line_looks,
    variant_colors,
    variant_styles,
)
from experiments.stages import is_stage1_dir
from experiments.stats import Run, group_runs, load_runs

__all__ = [
    "BAND",
    "DPI",
    "env_prefix",
    "line_looks",
    "plot_runs",
    "plot_runs_captioned",
    "variant_colors",
    "variant_styles",
]


# ------------------------------------------------------------------------------- plot_runs
def plot_runs_captioned(
    run_dirs: Iterable[str | Path | Run],
    out_dir: str | Path,
    *,
    strict: bool = False,
    notify: bool = True,
    oracle_queries: int = 0,
) -> list[tuple[Path, str]]:
    """:func:`plot_runs`, with each figure's caption (seeds, band, EMA weight, what was left
    out): ``[(png path, caption), ...]``."""
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
    written: list[tuple[Path, str]] = []
    for env, by_var in by_env.items():
        written += curves.env_figures(env, by_var, out_dir, env_prefix(env), oracle_queries)
    return written


def plot_runs(
    run_dirs: Iterable[str | Path | Run],
    out_dir: str | Path,
    *,
    strict: bool = False,
    notify: bool = True,
    oracle_queries: int = 0,
) -> list[Path]:
    """Write the figures of :mod:`experiments.plots` for ``run_dirs`` (run dirs, dirs holding
    run dirs, or loaded :class:`~experiments.stats.Run`) into ``out_dir``; returns the PNG
    paths. One line per env, variant and config (:mod:`experiments.grouping`): a variant whose
    runs have several configs is drawn as several labelled lines, with a notice on stderr
    (unless ``notify`` is False), or refused with :class:`~experiments.grouping.MixedConfigs`
    when ``strict``. ``oracle_queries``: held-out queries of the oracle's d_k line in the d_k
    figure (0: left out). Raises ``ValueError`` on a missing/corrupt run dir or when no runs
    are found."""
    found = plot_runs_captioned(
        run_dirs, out_dir, strict=strict, notify=notify, oracle_queries=oracle_queries
    )
    return [p for p, _ in found]
