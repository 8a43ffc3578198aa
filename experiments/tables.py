"""Summary tables of :func:`experiments.summary.summary_table` as files: ``summary.csv`` and
Markdown per env (:func:`format_markdown`: the summary; :func:`format_per_seed`: every per-seed
value), written by :func:`write_summary`."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["columns", "format_markdown", "format_per_seed", "jsonable", "notes", "write_summary"]

_NOT_COLUMNS = ("per_seed", "line", "baseline_line")
"""row keys that are not table columns"""
_TEXT = ("variant", "config")
"""left-aligned Markdown columns"""
_ORDER = [
    "env", "variant", "config", "n_seeds", "steps", "steps_min", "samples", "final_success",
    "final_success_lo", "final_success_hi", "final_success_method", "final_eval",
    "final_eval_lo", "final_eval_hi", "final_eval_method", "final_eval_episodes",
    "diff_vs_baseline", "diff_lo", "diff_hi", "n_pairs", "p_value", "p_holm", "p_min",
    "final_success_sampled", "auc", "steps_to_threshold", "reached", "censored",
    "stability_ratio", "stability_ratio_lo", "stability_ratio_hi", "collapses", "collapse_seeds",
]  # fmt: skip
_TAIL = ["sim_time", "sim_time_ratio", "final_category_error_rate", "final_constraints_kept"]
_HIDDEN = (
    "env", "steps_min", "final_success_lo", "final_success_hi", "final_success_method",
    "final_eval_lo", "final_eval_hi", "final_eval_method", "final_eval_episodes", "diff_lo",
    "diff_hi", "n_pairs", "p_value", "p_min", "reached", "censored", "stability_ratio_lo",
    "stability_ratio_hi", "collapse_seeds",
)  # fmt: skip
"""columns shown inside another column's Markdown cell (or only in the CSV)"""


def columns(table: Sequence[dict[str, Any]]) -> list[str]:
    """All columns of ``table`` in a stable order (the fixed ones, then ``dk_<role>`` and the
    counters, then completion time and env-specific ones); per-seed values and the line
    labels excluded."""
    keys: list[str] = []
    for row in table:
        keys += [k for k in row if k not in keys and k not in _NOT_COLUMNS]
    mid = [k for k in keys if k not in _ORDER and k not in _TAIL]
    return [k for k in _ORDER if k in keys] + mid + [k for k in _TAIL if k in keys]


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.3f}"
    return str(v)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}" if p < 0.001 else f"{p:.3f}"


def _ci(m: float, lo: float, hi: float, method: str = "") -> str:
    """``m [lo, hi]``; a ``*`` marks a Clopper-Pearson interval; ``m`` alone without one."""
    if m is None or math.isnan(m):
        return "n/a"
    if lo is None or math.isnan(lo):
        return f"{m:.3f}"
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]" + ("*" if method == "exact" else "")


def _cell(r: dict[str, Any], c: str, baseline: str) -> str:
    if c == "final_success":
        return _ci(r[c], r["final_success_lo"], r["final_success_hi"], r["final_success_method"])
    if c == "final_eval":
        return _ci(r[c], r["final_eval_lo"], r["final_eval_hi"], r["final_eval_method"])
    if c == "per_seed_success":
        vals = r["per_seed"]["final_success"]
        return ", ".join("n/a" if math.isnan(v) else f"{v:.2f}" for v in vals)
    if c == "steps":
        lo = r.get("steps_min", r[c])
        return str(r[c]) if lo == r[c] else f"{lo}-{r[c]}"
    if c == "steps_to_threshold":
        frac = f"({r['reached']}/{r['n_seeds']})"
        return f"{r[c]:.0f} {frac}" if r[c] is not None else f"median not reached {frac}"
    if c in ("p_holm", "diff_vs_baseline") and r.get("baseline_line") == r["line"]:
        return "-"  # the baseline row itself
    if c == "diff_vs_baseline":
        return _ci(r[c], r["diff_lo"], r["diff_hi"]).replace(f"{r[c]:.3f}", f"{r[c]:+.3f}", 1)
    if c == "p_holm":
        return _p(r[c]) + ("" if r[c] is None else f" ({_p(r['p_value'])})")
    if c == "stability_ratio":
        return _ci(r[c], r["stability_ratio_lo"], r["stability_ratio_hi"])
    if c == "collapses":
        return f"{r[c]} ({r['collapse_seeds']}/{r['n_seeds']})"
    return _fmt(r.get(c)).replace("|", "\\|")


def format_markdown(table: Sequence[dict[str, Any]], baseline: str = "mgrpo") -> str:
    """A Markdown table per env (a header line ``### <env>`` before each when there are several;
    a ``config`` column when some variant has several configurations), then :func:`notes`:
    intervals as ``mean [lo, hi]``, per-seed final successes, Holm-adjusted p with the raw p in
    parentheses, ``n/a`` where undefined and ``-`` on the ``baseline`` row."""
    out: list[str] = []
    envs = list(dict.fromkeys(r["env"] for r in table))
    for env in envs:
        rows = [r for r in table if r["env"] == env]
        cols = [c for c in columns(rows) if c not in _HIDDEN]
        if not any(r.get("config") for r in rows):  # every variant of the env is one line
            cols = [c for c in cols if c != "config"]
        if not any(r["final_eval_method"] for r in rows):
            cols = [c for c in cols if c != "final_eval"]
        i = cols.index("final_success") + 1
        cols[i:i] = ["per_seed_success"]
        heads = [_head(c, rows) for c in cols]
        if len(envs) > 1:
            out += [f"### {env}", ""]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "|".join("---" if c in _TEXT else "---:" for c in cols) + "|")
        out += ["| " + " | ".join(_cell(r, c, baseline) for c in cols) + " |" for r in rows]
        out += ["", *notes(rows, baseline), ""]
    return "\n".join(out)


def _head(c: str, rows: Sequence[dict[str, Any]]) -> str:
    if c.startswith("dk_"):
        return f"d_k {c[3:]}"
    if c == "final_eval":
        eps = sorted({n for r in rows for n in (r["final_eval_episodes"] or [])})
        return f"final eval ({'/'.join(f'{n:,}' for n in eps)} episodes, 95% CI)"
    return _HEADS.get(c, c)


def notes(rows: Sequence[dict[str, Any]], baseline: str = "mgrpo") -> list[str]:
    """The lines under a summary table: what the intervals and p-values are, with the
    smallest p the design allows."""
    m = sum(r.get("p_value") is not None for r in rows)
    pairs = sorted({r["n_pairs"] for r in rows if r.get("p_value") is not None})
    out = [
        "Intervals: 95% seed-bootstrap percentile (9,999 resamples); `*`: Clopper-Pearson over "
        "the pooled evaluation episodes (the seeds all equal). Final success = mean of each "
        "run's last 3 evaluations.",
    ]
    if m:
        smallest = ", ".join(f"{n} pairs: {2 / 2**n:.3g}" for n in pairs)
        out.append(
            f"p: exact two-sided paired permutation test by seed against `{baseline}` (runs of "
            f"one seed share their evaluation queries), Holm-adjusted over the {m} comparison(s) "
            f"of this table, raw p in parentheses. Smallest p the design allows ({smallest}); "
            f"after Holm at least {m} x that."
        )
    return [f"*{line}*" for line in out]


def format_per_seed(table: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of every run's own values: one row per line and seed."""
    cols = ["final_success", "final_eval", "auc", "threshold", "stability_ratio", "collapses",
            "sim_time"]  # fmt: skip
    heads = ["final success", "final eval", "AUC", "steps to threshold", "stability ratio",
             "collapses", "sim time"]  # fmt: skip
    out = ["| line | seed | " + " | ".join(heads) + " |", "|---|---:|" + "---:|" * len(cols)]
    for r in table:
        ps = r["per_seed"]
        for i, seed in enumerate(ps["seed"]):
            cells = []
            for c in cols:
                if c == "threshold":
                    step, ok = ps["threshold_step"][i], ps["threshold_reached"][i]
                    cells.append(str(step) if ok else f"not reached (censored at {step})")
                else:
                    cells.append(_fmt(ps[c][i]))
            out.append(f"| {r['line']} | {seed} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


_HEADS = {
    "n_seeds": "seeds", "steps_min": "steps (min)", "samples": "episodes",
    "final_success": "final success (greedy, last 3 evals, 95% CI)",
    "per_seed_success": "per seed", "final_success_sampled": "final success (sampled)",
    "auc": "AUC", "steps_to_threshold": "steps to threshold (KM median; seeds reached)",
    "stability_ratio": "stability ratio (95% CI)", "collapses": "collapses (seeds)",
    "align_duplicated": "duplicated/rollout", "align_dropped": "dropped/rollout",
    "align_empty": "empty/rollout", "sim_time": "sim time",
    "sim_time_ratio": "sim time / baseline", "diff_vs_baseline": "diff vs baseline (95% CI)",
    "p_holm": "p Holm (raw)", "final_category_error_rate": "category errors (eval)",
    "final_constraints_kept": "constraints kept (eval)",
}  # fmt: skip


def write_summary(
    table: Sequence[dict[str, Any]], out_dir: str | Path, baseline: str = "mgrpo"
) -> tuple[Path, Path]:
    """Write ``summary.csv`` (every column, empty cell for None/NaN, plus ``per_seed``: the
    per-seed values as JSON) and ``summary.md`` (:func:`format_markdown`, then
    :func:`format_per_seed`) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = [*columns(table), "per_seed"]
    csv_path = out_dir / "summary.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in table:
            cells = []
            for c in cols:
                v = r.get(c)
                if c == "per_seed" or isinstance(v, list):
                    cells.append(json.dumps(jsonable(v)))
                elif v is None or (isinstance(v, float) and math.isnan(v)):
                    cells.append("")
                else:
                    cells.append(v)
            w.writerow(cells)
    md_path = out_dir / "summary.md"
    md_path.write_text(
        format_markdown(table, baseline) + "\n#### Per seed\n\n" + format_per_seed(table)
    )
    return csv_path, md_path


def jsonable(v: Any) -> Any:
    """NaN as None (JSON has no NaN), recursively."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
