"""Figures of runs and studies (issue 6, item 3): ``mgrpo plot RUN_DIR... [--out DIR]``.

:func:`plot_runs` writes, per environment (file names start with the env's short name, e.g.
``invasivespecies_``):

- ``reward_<role>.png`` per role (``main``, each specialist): the stability curves of the M-GRPO
  paper: each seed's raw ``<role>/reward_mean`` as a thin transparent line, and per variant the
  mean over seeds of the EMA-smoothed curve with a 95% t band across seeds;
- ``success.png``: greedy evaluation success vs training step, mean and 95% band per variant, the
  oracle's success as a dashed line;
- ``calls.png``: the distribution of the per-step mean calls ``d_k`` of each specialist
  (``<role>/calls_mean``, pooled over steps and seeds) per variant, with the alignment target D;
- ``alignment.png``: alignment counters (duplicated, dropped, empty rows per step) per specialist;
- ``category_errors.png`` (when any step has category errors, i.e. Rubik's) and
  ``constraints_kept.png`` (species): per-step share over training.

A line is a variant over its seeds; runs of one variant whose configs differ beyond the seed are
separate lines labelled by the keys that differ (:mod:`experiments.grouping`), with a notice on
stderr (``mgrpo plot --strict`` refuses them instead).

The x axis is the training step (updates done when the row was logged, from 1); the top axis
gives the samples (episodes, ``step x B x K``) when all runs of the env share B x K.
:func:`plot_study` draws an Optuna study (history, importances, D x w contour).
Matplotlib's Agg backend; Optuna's plots inside ``plt.style.context("default")``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "add_parser": "experiments.plots.cli",
    "run": "experiments.plots.cli",
    "plot_runs": "experiments.plots.runs",
    "variant_colors": "experiments.plots.runs",
    "variant_styles": "experiments.plots.runs",
    "plot_study": "experiments.plots.study",
}
"""names imported on first use (PEP 562): ``mgrpo --help`` loads no matplotlib"""

__all__ = ["plot_runs", "plot_study", "add_parser", "run", "variant_colors", "variant_styles"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'experiments.plots' has no attribute {name!r}")
