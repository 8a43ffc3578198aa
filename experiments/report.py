"""A Markdown report of an ablation directory (issue 6, items 4 and 7): ``mgrpo report DIR``.

:func:`write_report` finds the run dirs under ``DIR`` (any depth), writes the summary tables
(``DIR/summary.csv``, ``DIR/summary.md``), the figures (``DIR/plots/``, via
:func:`experiments.plots.plot_runs`) and ``REPORT.md`` (or ``out``) with: the settings (budget =
steps x B x K, seeds, variants, keys that differ between runs), the table per env, a short
factual "what was measured" text per env (ordering of final success with 95% CIs, Welch tests at
0.05 against ``mgrpo``, stability and completion time, and the paper's two comparisons where their
variants are present), and the figures as relative links. Study figures already in
``DIR/plots/study_*.png`` (from ``mgrpo plot --storage``) are linked too.

Rows and lines are runs of one env, variant and config over seeds (:mod:`experiments.grouping`):
a variant whose runs differ beyond the seed gets one labelled row and line per config, a notice
on stderr and at the top of the report, and comparisons against the ``baseline`` line of the
same config; ``--strict`` refuses such a directory instead (exit 2, one line per conflict).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.grouping import check_strict, config_key, notices
from experiments.stages import is_stage1_dir

if TYPE_CHECKING:
    from experiments.stats import Run

__all__ = ["write_report", "measured_text", "add_parser", "run"]

ALPHA = 0.05
"""significance level of the Welch tests in the text"""
_FIG_CAPTIONS = {
    "success": "Greedy evaluation success vs training step (mean over seeds, 95% band), "
    "oracle success dashed.",
    "reward_main": "Stability: main agent's training reward, raw per seed (thin) and "
    "EMA-smoothed mean with 95% band.",
    "calls": "Distribution of the per-step mean specialist calls d_k, alignment target D dashed.",
    "alignment": "Alignment counters per step: rows duplicated, dropped and empty.",
    "category_errors": "Category-error rate of tool calls during training.",
    "constraints_kept": "Share of constraints kept during training.",
}


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a nested config dict."""
    from experiments.config import flatten

    return flatten(d)


def _ci(row: dict[str, Any]) -> str:
    m, lo, hi = row["final_success"], row["final_success_lo"], row["final_success_hi"]
    if math.isnan(m):
        return "n/a"
    return f"{m:.3f}" + ("" if math.isnan(lo) else f" [{lo:.3f}, {hi:.3f}]")


def _settings(env: str, runs: list[Run]) -> list[str]:
    """Bullet lines: variants and seeds, steps, B, K, budget, and config keys that differ."""
    from experiments.stats import group_runs

    groups = group_runs(runs)
    lines = [f"- variants: {', '.join(dict.fromkeys(line.variant for line in groups))}"]
    for line, rs in groups.items():
        seeds = ", ".join(str(r.seed) for r in rs)
        lines.append(f"  - `{line.label}`: {len(rs)} seed(s) ({seeds})")
    flats = [_flat(r.config) for r in runs]
    steps = sorted({r.steps for r in runs})
    Bs = sorted({r.batch[0] for r in runs})
    Ks = sorted({r.batch[1] for r in runs})
    budgets = sorted({r.steps * r.batch[0] * r.batch[1] for r in runs})
    lines.append(
        f"- budget: steps x B x K = {_join(steps)} x {_join(Bs)} x {_join(Ks)} = "
        f"{_join(budgets)} episodes per run"
    )
    planned = sorted({int(f.get("steps", 0)) for f in flats})
    if planned != steps:
        lines.append(f"- planned steps {_join(planned)}; some runs stopped early (steps logged)")
    same = {k: flats[0][k] for k in flats[0] if all(f.get(k) == flats[0][k] for f in flats)}
    keys = ("algo.align_target", "algo.align_mode", "reward.alpha", "reward.beta", "optim.lr")
    shown = [f"`{k}` = {same[k]!r}" for k in keys if k in same]
    if shown:
        lines.append("- " + ", ".join(shown))
    norm = [config_key(r, drop=()) for r in runs]  # seed-derived init_from normalised
    differ = {k for f in norm for k in f if any(repr(g.get(k)) != repr(f[k]) for g in norm)}
    differ = sorted(differ - {"seed", "variant"})
    if differ:
        lines.append(f"- keys that differ between runs (beyond variant and seed): {differ}")
    if any(line.differs for line in groups):
        lines.append(
            "- runs of one variant with different configs are separate lines (labelled by the "
            "keys that differ); see the notice above"
        )
    cut = [r.path.name for r in runs if r.truncated]
    if cut:
        lines.append(f"- truncated last metrics line skipped (killed runs): {cut}")
    return lines


def _join(xs: list[Any]) -> str:
    return str(xs[0]) if len(xs) == 1 else "{" + ", ".join(map(str, xs)) + "}"


def _pvalue_text(row: dict[str, Any]) -> str:
    p = row.get("p_value")
    if p is None:
        return "Welch p n/a (fewer than 2 seeds on a side or zero variance)"
    verdict = "significant" if p < ALPHA else "not significant"
    return f"Welch p = {p:.3g}, {verdict} at {ALPHA}"


def _name(row: dict[str, Any]) -> str:
    return row.get("line") or row["variant"]


def measured_text(table: list[dict[str, Any]], baseline: str = "mgrpo") -> list[str]:
    """Factual sentences for one env's rows of :func:`~experiments.stats.summary_table`. Rows
    are named by their line (the variant, plus the differing config keys when a variant has
    several configs); each is compared with its own baseline line (``baseline_line``)."""
    rows = [r for r in table if not math.isnan(r["final_success"])]
    out: list[str] = []
    if not rows:
        return ["No run has an evaluation yet."]
    order = sorted(rows, key=lambda r: -r["final_success"])
    text = f"`{_name(order[0])}` {_ci(order[0])}"
    for prev, r in zip(order, order[1:], strict=False):
        rel = ">" if prev["final_success"] > r["final_success"] else "="
        text += f" {rel} `{_name(r)}` {_ci(r)}"
    out.append(f"Final greedy success, mean over seeds [95% CI], highest first: {text}.")
    bases = [r for r in table if r["variant"] == baseline]
    if not bases:
        out.append(f"No `{baseline}` runs, so no comparison against it.")
    else:
        for r in table:
            against = r.get("baseline_line", baseline)
            if r["variant"] == baseline and against == _name(r):
                continue
            if against is None:
                out.append(
                    f"`{_name(r)}`: no `{baseline}` line with the same config, so no comparison."
                )
                continue
            out.append(
                f"`{_name(r)}` vs `{against}`: difference in final success "
                f"{r['diff_vs_baseline']:+.3f}; {_pvalue_text(r)}."
            )
    stab = [r for r in table if not math.isnan(r["reward_change_std"])]
    if stab:
        stab.sort(key=lambda r: r["reward_change_std"])
        out.append(
            "Stability of the main reward (std of step-to-step change, lower first): "
            + ", ".join(f"`{_name(r)}` {r['reward_change_std']:.4f}" for r in stab)
            + "; worst EMA drawdown: "
            + ", ".join(f"`{_name(r)}` {r['worst_drawdown']:.4f}" for r in stab)
            + "."
        )
    if any(b["sim_time"] and not math.isnan(b["sim_time"]) for b in bases):
        parts = [
            f"`{_name(r)}` {r['sim_time']:.3g} (x{r['sim_time_ratio']:.3f})"
            for r in table
            if r["sim_time_ratio"] is not None and not math.isnan(r["sim_time"])
        ]
        out.append(
            f"Simulated completion time of an evaluation episode (ratio to `{baseline}`): "
            + ", ".join(parts)
            + "."
        )
    variants = [r["variant"] for r in table]
    by = {r["variant"]: r for r in table if variants.count(r["variant"]) == 1}
    out += _paper_claims(by, baseline)
    return out


def _paper_claims(by: dict[str, dict[str, Any]], baseline: str) -> list[str]:
    """The paper's two comparisons, stated against the measured numbers (only with variants
    drawn as one line each: ``by`` holds those)."""
    out = []
    trio = ["mgrpo", "main_only", "single_agent"]
    if all(v in by for v in trio) and baseline == "mgrpo":
        means = [by[v]["final_success"] for v in trio]
        holds = means[0] > means[1] > means[2]
        p1 = by["main_only"]["p_value"]
        sig = "significant" if p1 is not None and p1 < ALPHA else "not significant"
        out.append(
            "Paper's ordering co-train > main-only > single-agent: the measured means "
            + ("follow" if holds else "do not follow")
            + " it ("
            + ", ".join(f"{v} {m:.3f}" for v, m in zip(trio, means, strict=True))
            + f"); mgrpo vs main_only is {sig} at {ALPHA}."
        )
    if all(v in by for v in ("mgrpo", "no_alignment", "async_queue")):
        s = {v: by[v]["reward_change_std"] for v in ("mgrpo", "no_alignment", "async_queue")}
        low = min(s, key=lambda v: s[v])
        out.append(
            "Paper's synchronization claim (mgrpo more stable than no_alignment and "
            f"async_queue): the lowest std of reward change is `{low}` ("
            + ", ".join(f"{v} {x:.4f}" for v, x in s.items())
            + ")."
        )
    return out


def _env_kwargs(runs: list[Run]) -> dict[str, Any]:
    """The env settings of the oracle rows: the most common among the runs (``flat`` aside)."""
    seen: dict[str, tuple[int, dict[str, Any]]] = {}
    for r in runs:
        env = {k: v for k, v in r.config.get("env", {}).items() if k not in ("id", "flat")}
        key = repr(sorted(env.items()))
        seen[key] = (seen.get(key, (0, env))[0] + 1, env)
    return max(seen.values(), key=lambda x: x[0])[1] if seen else {}


def _time_section(env: str, runs: list[Run], fig: Path, here: Path, n: int) -> list[str]:
    """``### Success versus time``: the table and the scatter figure of one env."""
    from experiments import time_table as tt

    rows = tt.time_rows(runs)
    notes: list[str] = []
    if n > 0:
        base, notes = tt.baseline_rows(env, _env_kwargs(runs), n)
        rows += base
    for note in notes:
        print(f"notice: {note}", file=sys.stderr)
    out = ["### Success versus time", "", tt.format_time_table(rows)]
    out += [f"- {note}" for note in notes]
    if notes:
        out.append("")
    path = tt.plot_success_vs_time(rows, fig, f"{env}: success vs simulated time")
    if path is not None:
        out += [
            f"![success_vs_time]({_rel(path, here)})",
            "",
            "*Greedy success against mean simulated time of an evaluation episode, one point per "
            "variant (mean over seeds) and the env's `oracle` / `oracle_flat`.*",
            "",
        ]
    return out


def _time_notes(n: int) -> list[str]:
    if n <= 0:
        return []
    return [
        f"Time columns: `eval/sim_time` (simulated seconds per episode) and "
        f"`eval/time_per_success` (total simulated time / successes) at each run's last "
        f"evaluation, mean over seeds (n/a: no run of the line logged it); reference rows from "
        f"`envs.evaluate_baseline` on {n:,} held-out queries.",
        "",
    ]


def _check_out(out_path: Path, out: str | Path | None) -> None:
    """The report's file must be writable (ValueError saying why), checked before any work."""
    from experiments.config import ConfigError
    from experiments.env_check import check_output_dir

    flag = "--out" if out else "DIR"
    if out_path.is_dir():
        raise ValueError(f"{flag} {out_path}: a directory; give the report's file name")
    try:
        check_output_dir(out_path.parent, flag)
    except ConfigError as e:
        raise ValueError(e.problems[0]) from e


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def write_report(
    dir: str | Path,
    out: str | Path | None = None,
    *,
    baseline: str = "mgrpo",
    strict: bool = False,
    baseline_queries: int = 2000,
) -> Path:
    """Write the report of the ablation in ``dir`` (see the module docstring) and return its
    path. Runs of one variant with different configs (:mod:`experiments.grouping`) are separate
    lines, with a notice on stderr and in the report; with ``strict`` they are refused
    (:class:`~experiments.grouping.MixedConfigs`, before anything is written). Raises
    ``ValueError`` when ``dir`` is missing, holds no run dirs or a corrupt one.

    Stage-1 runs of the paper's protocol (``<env>/stage1[_flat]/seed<k>``: warm-up checkpoints,
    :mod:`experiments.stages`) are left out of the tables and figures and listed in the
    settings. Each env gets a success-versus-time table and figure
    (:mod:`experiments.time_table`) with ``oracle`` and ``oracle_flat`` on
    ``baseline_queries`` held-out queries (0: no reference rows)."""
    from experiments.plots.runs import env_prefix, plot_runs
    from experiments.stats import (
        format_markdown,
        group_runs,
        load_runs,
        summary_table,
        write_summary,
    )

    root = Path(dir)
    if not root.is_dir():
        raise ValueError(f"{root}: no such directory")
    out_path = Path(out) if out else root / "REPORT.md"
    _check_out(out_path, out)
    runs = load_runs([root])
    warmups = [r for r in runs if is_stage1_dir(r.path)]
    runs = [r for r in runs if not is_stage1_dir(r.path)]
    if not runs:
        raise ValueError(f"{root}: holds only stage-1 runs (warm-ups); no stage-2 run to report")
    present = sorted({r.variant for r in runs})
    if baseline not in present:
        raise ValueError(
            f"--baseline {baseline!r} is not a variant of these runs; present: {', '.join(present)}"
        )
    groups = group_runs(runs)
    if strict:
        check_strict(groups)
    notes = notices(groups)
    for note in notes:
        print(note, file=sys.stderr)
    out_path = Path(out) if out else root / "REPORT.md"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    table = summary_table(runs, baseline=baseline)
    write_summary(table, root, baseline)
    plots_dir = root / "plots"
    figs = plot_runs(runs, plots_dir, notify=False)
    here = out_path.parent

    lines = [f"# Report: {root.name}", ""]
    lines += [
        f"Generated by `mgrpo report` from {len(runs)} run(s) under `{_rel(root, here)}/`. "
        f"Baseline for the comparisons: `{baseline}`. Tables also in `summary.csv`/`summary.md`.",
        "",
        "Columns: final success = `eval/success_greedy` at each run's last evaluation, mean over "
        "seeds with a 95% t interval (not clipped to [0, 1]; figures clip their bands); "
        "AUC = mean greedy success over the evaluation points; "
        "steps to threshold = first step with `eval/oracle_fraction` >= 0.9 (mean over the seeds "
        "that reached it); std of reward change = std of step-to-step changes of "
        "`main/reward_mean`; worst drawdown = largest drop of its EMA below the running maximum; "
        "d_k = mean specialist calls per episode; duplicated/dropped/empty = alignment rows per "
        "step (all specialists); sim time = `eval/sim_time` at the last evaluation; Welch p = "
        f"two-sided Welch t-test of final success against `{baseline}`.",
        "",
    ]
    if notes:
        lines += [
            "**Runs that are not seeds of one experiment.** Runs of one variant whose configs "
            "differ beyond the seed are separate lines in the tables and figures, labelled by the "
            "keys that differ:",
            "",
            "```text",
            *notes,
            "```",
            "",
        ]
    by_env: dict[str, list[Run]] = {}
    for r in runs:
        by_env.setdefault(r.env_id, []).append(r)
    for env in sorted(by_env):
        rows = [r for r in table if r["env"] == env]
        lines += [f"## {env}", "", "### Settings", ""]
        lines += _settings(env, by_env[env])
        warm = [r for r in warmups if r.env_id == env]
        if warm:
            names = ", ".join(sorted({_rel(r.path, root) for r in warm}))
            lines.append(
                f"- stage-1 runs (the checkpoints stage 2 starts from; not in the tables): {names}"
            )
        lines += [""]
        lines += ["### Summary", "", format_markdown(rows, baseline), "### What was measured", ""]
        lines += [f"- {s}" for s in measured_text(rows, baseline)] + [""]
        short = env_prefix(env)
        fig = plots_dir / f"{short}_success_vs_time.png"
        lines += _time_section(env, by_env[env], fig, here, baseline_queries)
        lines += _time_notes(baseline_queries)
        env_figs = [f for f in figs if f.name.startswith(short + "_")]
        if env_figs:
            lines += ["### Figures", ""]
            for f in env_figs:
                kind = f.stem.removeprefix(short + "_")
                cap = _FIG_CAPTIONS.get(kind)
                if cap is None and kind.startswith("reward_"):
                    role = kind.removeprefix("reward_")
                    cap = (
                        f"Stability: specialist `{role}`'s training reward, raw per seed (thin) "
                        "and EMA-smoothed mean with 95% band."
                    )
                lines += [f"![{kind}]({_rel(f, here)})", "", f"*{cap or kind}*", ""]
    study = sorted(plots_dir.glob("study_*.png")) if plots_dir.is_dir() else []
    if study:
        lines += ["## Hyperparameter study", ""]
        for f in study:
            lines += [f"![{f.stem}]({_rel(f, here)})", ""]
    out_path.write_text("\n".join(lines).rstrip() + "\n")
    return out_path


# ----------------------------------------------------------------------------------- CLI
def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo report`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "report",
        help="Markdown report (tables, figures, measured comparisons) of an ablation directory",
        description="Write DIR/REPORT.md (or --out), DIR/summary.{csv,md} and DIR/plots/*.png.",
    )
    p.add_argument("dir", metavar="DIR", help="directory holding run dirs (any depth)")
    p.add_argument("--out", metavar="FILE", help="report path (default: DIR/REPORT.md)")
    p.add_argument("--baseline", default="mgrpo", help="variant compared against (default mgrpo)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse runs of one variant whose configs differ beyond the seed (exit 2) "
        "instead of one row and line per config",
    )
    p.add_argument(
        "--baseline-queries",
        type=int,
        default=2000,
        metavar="N",
        help="held-out queries of the oracle and oracle_flat rows of the success-vs-time table "
        "(default 2000; 0: leave them out)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo report``: 0 on success, 2 on bad input (one line on stderr)."""
    try:
        path = write_report(
            args.dir,
            args.out,
            baseline=getattr(args, "baseline", "mgrpo"),
            strict=getattr(args, "strict", False),
            baseline_queries=getattr(args, "baseline_queries", 2000),
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
