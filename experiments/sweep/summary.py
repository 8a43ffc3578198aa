"""What a sweep prints and writes at the end: counts, best trial(s), study plots."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from experiments.sweep.objective import counts_towards_total
from experiments.sweep.storage import redact

__all__ = ["describe", "print_summary", "summarize", "write_plots"]


def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v}" if isinstance(v, int) else f"{k}={v:.3f}" for k, v in sorted(params.items())
    )


def describe(t) -> str:
    """One line about a finished trial."""
    state = t.state.name.lower()
    if "pruned_at" in t.user_attrs:
        state += f" at step {t.user_attrs['pruned_at']}"
        last = t.intermediate_values.get(t.user_attrs["pruned_at"])
        state += f" (value there {last:.3f})" if last is not None else ""
    elif t.values is not None:
        state += " value=" + "/".join(f"{v:.3f}" for v in t.values)
    if "error" in t.user_attrs:
        state += f" ({t.user_attrs['error']})"
    return f"trial {t.number} {state}: {_fmt_params(t.params)}"


def summarize(study, n_total: int, storage_url: str) -> dict[str, Any]:
    """Counts, best trial(s) and where the study lives (what ``sweep.json`` holds)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    multi = len(study.directions) > 1
    best: list[dict[str, Any]] = []
    if counts["complete"]:
        chosen = study.best_trials if multi else [study.best_trial]
        best = [
            {
                "number": t.number,
                "values": list(t.values),
                "params": t.params,
                "run_dirs": t.user_attrs.get("run_dirs", []),
            }
            for t in chosen
        ]
    return {
        "study": study.study_name,
        "storage": redact(storage_url),
        "directions": [d.name.lower() for d in study.directions],
        "objectives": study.user_attrs.get("objectives", []),
        "target_trials": n_total,
        "counted": sum(map(counts_towards_total, trials)),
        "counts": counts,
        "best": best,
    }


def print_summary(s: dict[str, Any]) -> None:
    c = s["counts"]
    print(f"study: {s['study']}  storage: {s['storage']}")
    print(
        f"trials: {s['counted']}/{s['target_trials']} counted ({c['complete']} complete, "
        f"{c['pruned']} pruned, {c['fail']} failed, {c['running']} running, "
        f"{c['waiting']} waiting)"
    )
    if not s["best"]:
        print("best: none (no completed trial)")
        return
    names = s["objectives"] or [f"value{i}" for i in range(len(s["directions"]))]
    label = "best" if len(s["best"]) == 1 and len(names) == 1 else "best (Pareto front)"
    for b in s["best"]:
        vals = " ".join(f"{n}={v:.3f}" for n, v in zip(names, b["values"], strict=True))
        print(f"{label}: trial {b['number']} {vals} {_fmt_params(b['params'])}")


def write_plots(study, out: Path) -> None:
    """``experiments.plots.study.plot_study(study, OUT/plots)`` when that function exists."""
    try:
        from experiments.plots.study import plot_study
    except ImportError:
        return
    try:
        plot_study(study, out / "plots")
    except Exception as e:  # noqa: BLE001 - a plot must not fail a finished sweep
        print(f"warning: study plots failed: {e}", file=sys.stderr)
