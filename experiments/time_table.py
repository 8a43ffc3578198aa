"""Success versus simulated time (issue 10, item 7): the table and figure of ``mgrpo report``.

The paper claims a hierarchy is faster; simulated time alone favours whoever answers fast, so
each line (variant, over seeds) is shown as a point (mean simulated time of an evaluation
episode, greedy success) beside the env's ``oracle`` and ``oracle_flat`` (the best hierarchical
and the best single agent, :func:`envs.evaluate_baseline` on held-out queries). Columns:

=====================  =====================================================================
``greedy success``     ``eval/success_greedy``, each run's mean over its last 3 evaluations
                       (as the summary's final success), mean over seeds
``mean sim time``      ``eval/sim_time`` (simulated seconds per episode), likewise
``time per success``   ``eval/time_per_success`` (total simulated time / successes), likewise
                       over the last 3 evaluations that logged it (one without a success
                       does not)
=====================  =====================================================================

A metric a run never logged (runs older than the metric) is left out of the mean, and a line
without it shows "n/a" and no point: never 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.stats import Run

__all__ = [
    "BASELINE_NAMES",
    "baseline_result",
    "baseline_rows",
    "format_time_table",
    "plot_success_vs_time",
    "time_rows",
]

BASELINE_NAMES = ("oracle", "oracle_flat")
"""the reference points of every env"""
KEYS = {
    "success": "eval/success_greedy",
    "sim_time": "eval/sim_time",
    "time_per_success": "eval/time_per_success",
}


def _last(run: Run, key: str) -> float | None:
    """Mean of ``key`` over the run's last 3 evaluations that logged it (None: never)."""
    from experiments.run_metrics import final_mean

    v = final_mean(run, key)
    return None if math.isnan(v) else v


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def _name(label: str, variant: str, rs: Sequence[Run]) -> str:
    """The grid's cell name (the run dirs' parent: ``main_only``, ``main_only_random_init``)
    when all runs share one that starts with the variant, else the line's label."""
    parents = {r.path.parent.name for r in rs}
    if len(parents) == 1:
        (name,) = parents
        if name.startswith(variant):
            return name
    return label


def time_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One row per line (:func:`experiments.grouping.group_runs`): ``env``, ``name``,
    ``n_seeds``, ``success``, ``sim_time``, ``time_per_success`` (None where no run has it)."""
    from experiments.grouping import group_runs

    rows = []
    groups = group_runs(runs)
    for line, rs in groups.items():
        row: dict[str, Any] = {"env": line.env, "name": _name(line.label, line.variant, rs)}
        row["n_seeds"] = len(rs)
        for col, key in KEYS.items():
            row[col] = _mean([_last(r, key) for r in rs])
        rows.append(row)
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        seen[row["env"], row["name"]] = seen.get((row["env"], row["name"]), 0) + 1
    for row, line in zip(rows, groups, strict=True):  # lines of one cell: their config labels
        if seen[row["env"], row["name"]] > 1:
            row["name"] = line.label
    return rows


def baseline_rows(
    env_id: str, env_kwargs: dict[str, Any], n_queries: int = 2000
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ``oracle`` and ``oracle_flat`` rows of one env (``env_kwargs``: preset and knobs,
    ``flat`` left out), and notes for what could not be computed (a baseline or field the
    installed envs lack)."""
    import envs

    kwargs = {k: v for k, v in env_kwargs.items() if k != "flat"}
    rows, notes = [], []
    for name in BASELINE_NAMES:
        if name not in getattr(envs, "BASELINES", ()):
            notes.append(
                f"{env_id}: baseline {name!r} is not provided by this version of envs "
                f"(envs.BASELINES: {', '.join(getattr(envs, 'BASELINES', ()))}); row left out"
            )
            continue
        res = _cached(env_id, name, n_queries, kwargs)
        missing = [f for f in ("sim_time", "time_per_success") if getattr(res, f, None) is None]
        if missing:
            notes.append(
                f"{env_id}: envs.BaselineResult has no {', '.join(missing)} in this version of "
                f"envs; {name}'s time is n/a"
            )
        rows.append(
            {
                "env": env_id,
                "name": name,
                "n_seeds": None,
                "success": float(res.success),
                "sim_time": getattr(res, "sim_time", None),
                "time_per_success": getattr(res, "time_per_success", None),
                "baseline": True,
                "n_queries": n_queries,
            }
        )
    return rows, notes


def baseline_result(env_id: str, name: str, n: int, kwargs: dict[str, Any]) -> Any:
    """``envs.evaluate_baseline(env_id, name, n_queries=n, **kwargs)``'s ``success``,
    ``sim_time``, ``time_per_success`` and ``calls`` (mean d_k per role), cached beside the
    oracle reference (:mod:`experiments.oracle_cache`: keyed by the env's code version; a cache
    that cannot be read or written is skipped, never an error)."""
    return _cached(env_id, name, n, {k: v for k, v in kwargs.items() if k != "flat"})


def _cached(env_id: str, name: str, n: int, kwargs: dict[str, Any]) -> Any:
    """``envs.evaluate_baseline``, cached (see :func:`baseline_result`)."""
    import hashlib
    import json
    from types import SimpleNamespace

    import envs
    from experiments.oracle_cache import cache_dir, env_code_version

    key = json.dumps([env_id, name, n, sorted(kwargs.items()), env_code_version()], default=str)
    path = cache_dir() / "baselines" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    fields = ("success", "sim_time", "time_per_success", "calls")
    try:
        rec = json.loads(path.read_text())
        if all(f in rec for f in fields):  # an older record without calls: recompute
            return SimpleNamespace(**rec)
    except (OSError, ValueError, TypeError):
        pass
    res = envs.evaluate_baseline(env_id, name, n_queries=n, **kwargs)
    rec = {f: getattr(res, f, None) for f in fields}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec))
    except OSError:
        pass
    return SimpleNamespace(**rec)


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None or not math.isfinite(v) else format(v, spec)


def format_time_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: variant (or baseline), seeds, greedy success, mean sim time [s], time per
    success [s]; baselines last, marked as references."""
    head = (
        "| variant | seeds | greedy success | mean sim time [s] | time per success [s] |\n"
        "|---|---:|---:|---:|---:|\n"
    )
    body = []
    for r in rows:
        name = f"{r['name']} (reference)" if r.get("baseline") else r["name"]
        seeds = "-" if r.get("n_seeds") is None else str(r["n_seeds"])
        body.append(
            f"| `{name}` | {seeds} | {_fmt(r['success'])} | {_fmt(r['sim_time'], '.3g')} "
            f"| {_fmt(r['time_per_success'], '.3g')} |"
        )
    return head + "\n".join(body) + "\n"


def plot_success_vs_time(
    rows: Sequence[dict[str, Any]], path: str | Path, title: str
) -> Path | None:
    """Scatter of greedy success against mean simulated time, one marker per line and per
    baseline (rows without both values are left out); None when no row has both."""
    pts = [r for r in rows if r["success"] is not None and r["sim_time"] is not None]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.4))
    markers = {"oracle": "*", "oracle_flat": "P"}
    shapes = "os^Dv<>ph"  # distinct shapes: points of equal value stay visible
    for i, r in enumerate(pts):
        base = r.get("baseline")
        ax.scatter(
            r["sim_time"],
            r["success"],
            marker=markers.get(r["name"], "o") if base else shapes[i % len(shapes)],
            s=160 if base else 70 - 4 * (i % 8),
            alpha=1.0 if base else 0.75,
            color="black" if base else f"C{i % 10}",
            label=f"{r['name']} (reference)" if base else r["name"],
            zorder=3,
        )
    ax.set_xlabel("mean simulated time per evaluation episode [s]")
    ax.set_ylabel("greedy success rate (held-out queries)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
