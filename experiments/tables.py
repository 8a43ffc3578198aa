"""Summary tables of :func:`experiments.stats.summary_table` as files: ``summary.csv`` and a
Markdown table per env (:func:`format_markdown`, :func:`write_summary`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["columns", "format_markdown", "write_summary"]

_NOT_COLUMNS = ("final_success_seeds", "line", "baseline_line")
"""row keys that are not table columns"""
_TEXT = ("variant", "config")
"""left-aligned Markdown columns"""
_ORDER = [
    "env", "variant", "config", "n_seeds", "steps", "steps_min", "samples", "final_success",
    "final_success_lo", "final_success_hi", "diff_vs_baseline", "p_value",
    "final_success_sampled", "auc", "steps_to_threshold", "reached", "reward_change_std",
    "worst_drawdown",
]  # fmt: skip
_TAIL = ["sim_time", "sim_time_ratio", "final_category_error_rate", "final_constraints_kept"]


def columns(table: Sequence[dict[str, Any]]) -> list[str]:
    """All columns of ``table`` in a stable order (the fixed ones, then ``dk_<role>`` and the
    counters, then completion time and env-specific ones); per-seed lists and the line labels
    excluded."""
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


def format_markdown(table: Sequence[dict[str, Any]], baseline: str = "mgrpo") -> str:
    """A Markdown table per env (a header line ``### <env>`` before each when there are several;
    a ``config`` column when some variant has several configurations):
    final success as ``mean [lo, hi]``, p-values with 3 decimals, ``n/a`` where undefined and
    ``-`` on the ``baseline`` row."""
    out: list[str] = []
    envs = list(dict.fromkeys(r["env"] for r in table))
    for env in envs:
        rows = [r for r in table if r["env"] == env]
        hidden = ("env", "final_success_lo", "final_success_hi", "reached", "steps_min")
        cols = [c for c in columns(rows) if c not in hidden]
        if not any(r.get("config") for r in rows):  # every variant of the env is one line
            cols = [c for c in cols if c != "config"]
        heads = [_HEADS.get(c, f"d_k {c[3:]}" if c.startswith("dk_") else c) for c in cols]
        if len(envs) > 1:
            out += [f"### {env}", ""]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "|".join("---" if c in _TEXT else "---:" for c in cols) + "|")
        for r in rows:
            cells = []
            for c in cols:
                v = r.get(c)
                if c == "final_success":
                    ci = (r["final_success_lo"], r["final_success_hi"])
                    ci_s = "" if math.isnan(ci[0]) else f" [{ci[0]:.3f}, {ci[1]:.3f}]"
                    cells.append(_fmt(v) + ci_s)
                elif c == "steps":
                    lo_s = r.get("steps_min", v)
                    cells.append(str(v) if lo_s == v else f"{lo_s}-{v}")
                elif c == "steps_to_threshold":
                    cells.append(_fmt(v) + f" ({r['reached']}/{r['n_seeds']})")
                elif c in ("p_value", "diff_vs_baseline") and r["variant"] == baseline:
                    cells.append("-")
                else:
                    cells.append(_fmt(v).replace("|", "\\|"))
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


_HEADS = {
    "n_seeds": "seeds", "steps_min": "steps (min)", "samples": "episodes",
    "final_success": "final success (greedy, 95% CI)",
    "final_success_sampled": "final success (sampled)", "auc": "AUC",
    "steps_to_threshold": "steps to threshold (seeds reached)",
    "reward_change_std": "std of reward change", "worst_drawdown": "worst drawdown (EMA)",
    "align_duplicated": "duplicated/step", "align_dropped": "dropped/step",
    "align_empty": "empty/step", "sim_time": "sim time", "sim_time_ratio": "sim time / baseline",
    "diff_vs_baseline": "diff vs baseline", "p_value": "Welch p",
    "final_category_error_rate": "category errors (eval)",
    "final_constraints_kept": "constraints kept (eval)",
}  # fmt: skip


def write_summary(
    table: Sequence[dict[str, Any]], out_dir: str | Path, baseline: str = "mgrpo"
) -> tuple[Path, Path]:
    """Write ``summary.csv`` (every column, empty cell for None/NaN, plus the per-seed final
    successes as a JSON list) and ``summary.md`` (:func:`format_markdown`) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cols = [*columns(table), "final_success_seeds"]
    csv_path = out_dir / "summary.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in table:
            cells = []
            for c in cols:
                v = r.get(c)
                if c == "final_success_seeds":
                    cells.append(json.dumps(v))
                elif v is None or (isinstance(v, float) and math.isnan(v)):
                    cells.append("")
                else:
                    cells.append(v)
            w.writerow(cells)
    md_path = out_dir / "summary.md"
    md_path.write_text(format_markdown(table, baseline))
    return csv_path, md_path
