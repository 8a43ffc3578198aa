"""The "what was measured" sentences of ``mgrpo report`` (:func:`measured_text`): facts from
one env's rows of :func:`experiments.summary.summary_table`, with their intervals and
Holm-adjusted p-values."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["ALPHA", "measured_text"]

ALPHA = 0.05
"""significance level of the sentences (on Holm-adjusted p)"""


def _name(row: dict[str, Any]) -> str:
    return row.get("line") or row["variant"]


def _ci(row: dict[str, Any], col: str = "final_success") -> str:
    m, lo, hi = row[col], row[f"{col}_lo"], row[f"{col}_hi"]
    if m is None or math.isnan(m):
        return "n/a"
    exact = " (exact)" if row.get(f"{col}_method") == "exact" else ""
    return f"{m:.3f}" + ("" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]{exact}")


def _order(rows: list[dict[str, Any]], col: str) -> str:
    order = sorted(rows, key=lambda r: -r[col])
    text = f"`{_name(order[0])}` {_ci(order[0], col)}"
    for prev, r in zip(order, order[1:], strict=False):
        rel = ">" if prev[col] > r[col] else "="
        text += f" {rel} `{_name(r)}` {_ci(r, col)}"
    return text


def _comparison(r: dict[str, Any]) -> str:
    against, n = r["baseline_line"], r["n_pairs"]
    d = f"{r['diff_vs_baseline']:+.3f}"
    if not math.isnan(r["diff_lo"]):
        d += f" [{r['diff_lo']:+.3f}, {r['diff_hi']:+.3f}]"
    if r["p_value"] is None:
        return f"`{_name(r)}` vs `{against}`: difference {d}; no seed pairs, no test."
    verdict = "significant" if r["p_holm"] < ALPHA else "not significant"
    return (
        f"`{_name(r)}` vs `{against}` ({n} seed pairs): difference in final success {d}; "
        f"paired permutation p = {r['p_value']:.3g}, Holm p = {r['p_holm']:.3g} (smallest "
        f"possible with {n} pairs: {r['p_min']:.3g}), {verdict} at {ALPHA}."
    )


def measured_text(table: list[dict[str, Any]], baseline: str = "mgrpo") -> list[str]:
    """Factual sentences for one env's rows of :func:`~experiments.summary.summary_table`. Rows
    are named by their line (the variant, plus the differing config keys when a variant has
    several configs); each is compared with its own baseline line (``baseline_line``)."""
    rows = [r for r in table if not math.isnan(r["final_success"])]
    if not rows:
        return ["No run has an evaluation yet."]
    out = [
        "Final greedy success (each run's last 3 evaluations), mean over seeds [95% CI], "
        f"highest first: {_order(rows, 'final_success')}."
    ]
    fin = [r for r in table if not math.isnan(r["final_eval"])]
    if fin:
        eps = sorted({n for r in fin for n in r["final_eval_episodes"]})
        out.append(
            f"Final evaluation after the last step ({'/'.join(f'{n:,}' for n in eps)} episodes "
            f"per run), highest first: {_order(fin, 'final_eval')}."
        )
    if not any(r["variant"] == baseline for r in table):
        out.append(f"No `{baseline}` runs, so no comparison against it.")
    for r in table:
        if r.get("baseline_line") == _name(r):
            continue
        if r.get("baseline_line") is None:
            out.append(f"`{_name(r)}`: no `{baseline}` line with the same config, no comparison.")
        else:
            out.append(_comparison(r))
    stab = [r for r in table if not math.isnan(r["stability_ratio"])]
    if stab:
        stab.sort(key=lambda r: r["stability_ratio"])
        out.append(
            "Stability ratio of the main agent's training success (variance of its step-to-step "
            "change / binomial variance at its level; lower is steadier), lowest first: "
            + ", ".join(f"`{_name(r)}` {_ci(r, 'stability_ratio')}" for r in stab)
            + "; collapses (EMA, weight 0.9, drops > 0.3): "
            + ", ".join(f"`{_name(r)}` {r['collapses']}" for r in table)
            + "."
        )
    out.append(
        "Steps until 3 consecutive evaluations at >= 0.9 of the oracle (Kaplan-Meier median; "
        "seeds reached, the others censored): "
        + ", ".join(
            f"`{_name(r)}` "
            + (
                "median not reached"
                if r["steps_to_threshold"] is None
                else f"{r['steps_to_threshold']:.0f}"
            )  # fmt: skip
            + f" ({r['reached']}/{r['n_seeds']})"
            for r in table
        )
        + "."
    )
    timed = [r for r in table if r["sim_time_ratio"] is not None and not math.isnan(r["sim_time"])]
    if timed:
        out.append(
            "Simulated completion time of an evaluation episode (last 3 evaluations; ratio to "
            "the baseline line): "
            + ", ".join(
                f"`{_name(r)}` {r['sim_time']:.3g} (x{r['sim_time_ratio']:.3f})" for r in timed
            )
            + "."
        )
    return out
