"""The summary table of runs (issues 6 and 16): one row per line (env, variant and config, over
seeds; :mod:`experiments.grouping`), with the per-run numbers of :mod:`experiments.stats`
summarised over seeds by :mod:`experiments.stats_tests`.

========================  ========================================================================
column                    meaning
========================  ========================================================================
``config``                the keys that set the line apart from other lines of its variant
                          (``D=4, w=0.3``); only when some variant has several configurations
``n_seeds``               runs in the line (one per seed)
``steps``                 training steps of the longest run (``steps_min`` of the shortest)
``samples``               episodes of the longest run (``steps x B x K``)
``final_success``         primary outcome: greedy held-out success, mean of each run's last 3
                          evaluations, mean over seeds; ``_lo``/``_hi``: 95% seed-bootstrap
                          percentile interval, or Clopper-Pearson over the pooled episodes when
                          the seeds cannot vary (``_method``: ``bootstrap`` / ``exact``)
``final_eval``            greedy success of the larger evaluation after the last step
                          (``eval.final_episodes`` per run, ``final_eval_episodes``), mean over
                          seeds with its interval as above; NaN when no run has one
``diff_vs_baseline``      mean over seed pairs of final success minus the baseline line's (runs
                          of one seed share their evaluation queries), ``diff_lo``/``diff_hi``
                          its seed-pair bootstrap interval, ``n_pairs`` the pairs
``p_value``               exact paired permutation test of that difference (two-sided);
                          ``p_holm``: Holm-adjusted over the comparisons of the env's table;
                          ``p_min``: the smallest p possible with ``n_pairs`` pairs
``final_success_sampled`` the same as ``final_success`` for sampled (not greedy) actions
``auc``                   mean greedy success over all evaluations, mean over seeds
``steps_to_threshold``    Kaplan-Meier median of the first step of 3 consecutive evaluations with
                          ``eval/oracle_fraction >= threshold`` (not reached: censored); None when
                          the median is not reached; ``reached`` / ``censored`` count the seeds
``stability_ratio``       level-adjusted variance of the step-to-step change of the main
                          agent's training success (:func:`~experiments.run_metrics.
                          stability_ratio`), mean over seeds with its seed-bootstrap interval
                          (``_lo``/``_hi``)
``collapses``             EMA drops of the main reward by > 0.3 (EMA weight 0.9), summed over seeds;
                          ``collapse_seeds``: seeds with at least one
``dk_<role>``             mean of ``<role>/calls_mean`` (calls d_k per episode) over steps, seeds
``align_duplicated``,     alignment counters per rollout (per step / (B x K)), summed over the
``align_dropped``,        specialist roles, mean over steps and seeds
``align_empty``
``sim_time``              ``eval/sim_time`` (simulated seconds per episode), last 3 evaluations,
                          mean over seeds; ``sim_time_ratio`` = / the baseline line's
``final_<metric>``        ``eval/category_error_rate`` and ``eval/constraints_kept``: last 3
                          evaluations, mean over seeds (only when some run logs them)
========================  ========================================================================

Each row also holds ``line`` (its label), ``baseline_line`` (the line it is compared with, or
None) and ``per_seed`` (every per-seed value, by column, with the ``seed`` list): not columns.
The baseline line of a row: the only ``baseline`` line of its env, or the one whose differing
keys have the row's values (none or several match: no comparison).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from experiments import run_metrics as st
from experiments import rundirs
from experiments import stats_tests as tests
from experiments.grouping import Line, group_runs, matches
from experiments.rundirs import Run

__all__ = ["PER_SEED", "summary_table"]

PER_SEED = (
    "final_success",
    "final_eval",
    "final_success_sampled",
    "auc",
    "threshold_step",
    "threshold_reached",
    "threshold_episodes",
    "stability_ratio",
    "collapses",
    "sim_time",
    "category_error_rate",
    "constraints_kept",
)
"""the per-seed values kept in ``row["per_seed"]`` (besides ``seed``)"""
_ENV_EXTRA = ("category_error_rate", "constraints_kept")


def summary_table(
    runs: Iterable[Run], baseline: str = "mgrpo", threshold: float = 0.9
) -> list[dict[str, Any]]:
    """One row per line (see the module docstring); ``baseline``: the variant compared
    against; ``threshold``: the oracle fraction of ``steps_to_threshold``."""
    groups = group_runs(runs)
    several = any(line.differs for line in groups)
    table: list[dict[str, Any]] = []
    for line, rs in groups.items():
        row = _line_row(line, rs, threshold)
        if several:
            row = {"env": row.pop("env"), "variant": row.pop("variant"), "config": line.config,
                   **row}  # fmt: skip
        table.append(row)
    for row, line in zip(table, groups, strict=True):
        b = _baseline_row(line, groups, table, baseline)
        row["baseline_line"] = None if b is None else b["line"]
        _compare(row, b)
    for env in dict.fromkeys(r["env"] for r in table):  # Holm within each env's table
        rows = [r for r in table if r["env"] == env]
        for r, p in zip(rows, tests.holm([r["p_value"] for r in rows]), strict=True):
            r["p_holm"] = p
    return table


def _compare(row: dict[str, Any], b: dict[str, Any] | None) -> None:
    """The comparison columns of ``row`` against the baseline row ``b``."""
    if b is None:
        keys = ("diff_vs_baseline", "diff_lo", "diff_hi", "n_pairs", "p_value", "p_min")
        row.update(dict.fromkeys((*keys, "sim_time_ratio")))
        return
    row["sim_time_ratio"] = row["sim_time"] / b["sim_time"] if b["sim_time"] else None
    a_vals, b_vals = paired(row, b, "final_success")
    row["diff_vs_baseline"], row["diff_lo"], row["diff_hi"] = tests.paired_diff_ci(a_vals, b_vals)
    row["n_pairs"] = len(a_vals)
    is_self = row is b
    row["p_value"] = None if is_self else tests.paired_permutation_p(a_vals, b_vals)
    row["p_min"] = None if is_self else tests.smallest_p(len(a_vals))


def paired(
    a: dict[str, Any], b: dict[str, Any], key: str
) -> tuple[list[float | None], list[float | None]]:
    """Per-seed values of ``key`` of rows ``a`` and ``b`` on the seeds both have (in seed
    order): the pairs of the paired statistics."""
    va = dict(zip(a["per_seed"]["seed"], a["per_seed"][key], strict=True))
    vb = dict(zip(b["per_seed"]["seed"], b["per_seed"][key], strict=True))
    common = sorted(set(va) & set(vb))
    return [va[s] for s in common], [vb[s] for s in common]


def _baseline_row(
    line: Line, groups: dict[Line, list[Run]], table: list[dict[str, Any]], baseline: str
) -> dict[str, Any] | None:
    """The row of ``line``'s baseline: the only ``baseline`` line of its env, or the one whose
    differing keys have ``line``'s values (None if none or several match)."""
    lines = list(groups)
    cands = [i for i, b in enumerate(lines) if b.env == line.env and b.variant == baseline]
    if len(cands) > 1:
        cands = [i for i in cands if matches(lines[i], groups[line][0])]
    return table[cands[0]] if len(cands) == 1 else None


def _nanmean(values: Iterable[float | None]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _per_seed(rs: list[Run], threshold: float) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"seed": [r.seed for r in rs]}
    tt = [st.time_to_threshold(r, threshold) for r in rs]
    out["final_success"] = [st.final_success(r) for r in rs]
    out["final_eval"] = [st.final_eval(r) for r in rs]
    out["final_success_sampled"] = [st.final_mean(r, "eval/success") for r in rs]
    out["auc"] = [st.auc(r) for r in rs]
    out["threshold_step"] = [t for t, _ in tt]
    out["threshold_reached"] = [ok for _, ok in tt]
    out["threshold_episodes"] = [  # restricted: a seed that never reached it counts its run
        (t if ok else r.steps) * r.batch[0] * r.batch[1] for r, (t, ok) in zip(rs, tt, strict=True)
    ]
    out["stability_ratio"] = [st.stability_ratio(r) for r in rs]
    out["collapses"] = [st.collapses(r) for r in rs]
    out["sim_time"] = [st.final_mean(r, "eval/sim_time") for r in rs]
    for name in _ENV_EXTRA:
        out[name] = [st.final_mean(r, f"eval/{name}") for r in rs]
    return out


def _line_row(line: Line, rs: list[Run], threshold: float) -> dict[str, Any]:
    seeds = _per_seed(rs, threshold)
    fc = [st.final_counts(r) for r in rs]
    if all(n > 0 for _, n in fc):
        fin = tests.rate_ci([k for k, _ in fc], [n for _, n in fc])
    else:  # episodes unknown (an old config): the seed bootstrap alone
        fin = (*tests.bootstrap_ci(seeds["final_success"]), "bootstrap")
    fe = [st.final_eval_counts(r) for r in rs]
    fev = tests.rate_ci([k for k, _ in fe], [n for _, n in fe])
    spec = rundirs.specialists_of(rs)
    B, K = max((r.batch for r in rs), key=lambda bk: bk[0] * bk[1])
    stab = tests.bootstrap_ci(seeds["stability_ratio"])
    times, reached = seeds["threshold_step"], seeds["threshold_reached"]
    row: dict[str, Any] = {
        "env": line.env,
        "variant": line.variant,
        "n_seeds": len(rs),
        "steps": max(r.steps for r in rs),
        "steps_min": min(r.steps for r in rs),
        "samples": max(r.steps for r in rs) * B * K,
        "final_success": fin[0],
        "final_success_lo": fin[1],
        "final_success_hi": fin[2],
        "final_success_method": fin[3],
        "final_eval": fev[0],
        "final_eval_lo": fev[1],
        "final_eval_hi": fev[2],
        "final_eval_method": fev[3],
        "final_eval_episodes": sorted({n for _, n in fe if n > 0}) or None,
        "final_success_sampled": _nanmean(seeds["final_success_sampled"]),
        "auc": _nanmean(seeds["auc"]),
        "steps_to_threshold": tests.km_median(times, reached),
        "reached": int(sum(reached)),
        "censored": len(rs) - int(sum(reached)),
        "stability_ratio": stab[0],
        "stability_ratio_lo": stab[1],
        "stability_ratio_hi": stab[2],
        "collapses": int(sum(seeds["collapses"])),
        "collapse_seeds": int(sum(c > 0 for c in seeds["collapses"])),
    }
    for role in spec:
        row[f"dk_{role}"] = _nanmean(
            _nanmean(r.series(f"{role}/calls_mean")[1].tolist()) for r in rs
        )
    for c in rundirs.COUNTERS:
        per_run = []
        for r in rs:
            n = r.batch[0] * r.batch[1]
            tot = [sum(float(x.get(f"{s}/{c}", 0.0)) for s in spec) / n for x in r.rows]
            per_run.append(float(np.mean(tot)) if spec and n > 0 else math.nan)
        row[c] = _nanmean(per_run)
    row["sim_time"] = _nanmean(seeds["sim_time"])
    for name in _ENV_EXTRA:
        if any(f"eval/{name}" in x for r in rs for x in r.rows):
            row[f"final_{name}"] = _nanmean(seeds[name])
    row["line"] = line.label
    row["per_seed"] = seeds
    return row
