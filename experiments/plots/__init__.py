"""Figures of runs and studies (issues 6 and 16): ``mgrpo plot RUN_DIR... [--out DIR]``.

:func:`plot_runs` writes, per environment (file names start with the env's short name, e.g.
``invasivespecies_``; the figures are drawn by :mod:`experiments.plots.curves`):

- ``success.png``: greedy held-out success at each evaluation: each seed a thin line (bimodal
  seeds stay visible), the mean over seeds thick with its band; the larger final evaluation
  (``eval.final_episodes``) as a diamond with its interval right of the last step; the oracle's
  success dashed;
- ``reward_<role>.png`` per role (``main``, each specialist): one panel per line, each seed's raw
  ``<role>/reward_mean`` thin, the mean over seeds of the EMA-smoothed curves thick with its band;
  lines without the role (the single agent's ``sub``) left out and named;
- ``calls.png``: d_k (``<role>/calls_mean``) against the step per specialist, EMA mean and band
  per line, with the env's oracle's d_k (``--oracle-queries``) and the alignment target D;
- ``alignment.png``: alignment counters per rollout (duplicated and dropped rows, rollouts with
  no sub row); counters that are 0 at every step and lines that do not align are left out and
  named;
- ``category_errors.png`` and ``constraints_kept.png``: ``eval/category_error_rate`` and
  ``eval/constraints_kept`` of the evaluation episodes; lines without the metric (and, for the
  constraints, lines at 0 in every evaluation: undefined) left out and named; no figure when
  every value is 0.

Every band is the 95% seed-bootstrap percentile interval of the mean (2,000 resamples); every
figure states its seeds, band and EMA weight in a caption under the plot
(:func:`~experiments.plots.runs.plot_runs_captioned` returns the captions too). A line is a
variant over its seeds; runs of one variant whose configs differ beyond the seed are separate
lines labelled by the keys that differ (:mod:`experiments.grouping`), with a notice on stderr
(``mgrpo plot --strict`` refuses them instead). The x axis is the training step (updates done
when the row was logged, from 1); the top axis gives the samples (episodes, ``step x B x K``)
when all runs of the env share B x K. :func:`plot_study` draws an Optuna study (history,
importances, D x w contour). Matplotlib's Agg backend; Optuna's plots inside
``plt.style.context("default")``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "add_parser": "experiments.plots.cli",
    "run": "experiments.plots.cli",
    "plot_runs": "experiments.plots.runs",
    "plot_runs_captioned": "experiments.plots.runs",
    "variant_colors": "experiments.plots.runs",
    "variant_styles": "experiments.plots.runs",
    "plot_study": "experiments.plots.study",
}
"""names imported on first use (PEP 562): ``mgrpo --help`` loads no matplotlib"""

__all__ = [
    "add_parser",
    "plot_runs",
    "plot_runs_captioned",
    "plot_study",
    "run",
    "variant_colors",
    "variant_styles",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'experiments.plots' has no attribute {name!r}")
