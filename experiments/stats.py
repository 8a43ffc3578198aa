"""Statistics of run directories (issues 6 and 16), in one namespace: loading
(:mod:`experiments.rundirs`), the numbers of one run (:mod:`experiments.run_metrics`), lines of
runs over seeds (:mod:`experiments.grouping`), the summary table (:mod:`experiments.summary`,
with the intervals and tests of :mod:`experiments.stats_tests`) and its files
(:mod:`experiments.tables`).

Example:
    >>> from experiments import stats
    >>> stats.ema([0.0, 1.0, 1.0], 0.5)
    [0.0, 0.6666666666666666, 0.8571428571428571]
"""

from __future__ import annotations

from experiments.grouping import Line, group_runs
from experiments.run_metrics import (
    COLLAPSE_DROP,
    COLLAPSE_EMA,
    HOLD,
    LAST_EVALS,
    auc,
    collapses,
    ema,
    ema_weight,
    final_counts,
    final_eval,
    final_eval_counts,
    final_mean,
    final_success,
    stability_ratio,
    steps_to_threshold,
    time_to_threshold,
)
from experiments.rundirs import (
    CONFIG,
    COUNTERS,
    METRICS,
    Run,
    find_runs,
    is_run_dir,
    load_run,
    load_runs,
    roles_of,
    specialists_of,
)
from experiments.summary import summary_table
from experiments.tables import columns, format_markdown, write_summary

__all__ = [
    "COLLAPSE_DROP",
    "COLLAPSE_EMA",
    "CONFIG",
    "COUNTERS",
    "HOLD",
    "LAST_EVALS",
    "METRICS",
    "Line",
    "Run",
    "auc",
    "collapses",
    "columns",
    "ema",
    "ema_weight",
    "final_counts",
    "final_eval",
    "final_eval_counts",
    "final_mean",
    "final_success",
    "find_runs",
    "format_markdown",
    "group_runs",
    "is_run_dir",
    "load_run",
    "load_runs",
    "roles_of",
    "specialists_of",
    "stability_ratio",
    "steps_to_threshold",
    "summary_table",
    "time_to_threshold",
    "write_summary",
]
