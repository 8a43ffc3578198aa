"""A Markdown report of an ablation directory (issues 6 and 16): ``mgrpo report DIR``.

:func:`write_report` finds the run dirs under ``DIR`` (any depth), writes the summary tables
(``DIR/summary.csv``, ``DIR/summary.md``: :mod:`experiments.summary`), the claims table
(``DIR/claims.md``, ``DIR/claims.json``: :mod:`experiments.claims`), the figures
(``DIR/plots/``, via :func:`experiments.plots.plot_runs`) and ``REPORT.md`` (or ``out``) with:
the settings (budget = steps x B x K, seeds, variants, keys that differ between runs), the claims
of the paper and the article against the measurements, and per env the summary table, every
run's own values, a short factual "what was measured" text (:mod:`experiments.report_text`:
final success with seed-bootstrap intervals, paired permutation tests by seed against the
baseline with Holm's correction, stability, steps to threshold, completion time), the success
versus time table, and the figures with captions (seeds, band, EMA weight) as relative links.
Study figures already in ``DIR/plots/study_*.png`` (from ``mgrpo plot --storage``) are linked
too.

Rows and lines are runs of one env, variant and config over seeds (:mod:`experiments.grouping`):
a variant whose runs differ beyond the seed gets one labelled row and line per config, a notice
on stderr and at the top of the report, and comparisons against the ``baseline`` line of the
same config; ``--strict`` refuses such a directory instead (exit 2, one line per conflict).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.grouping import check_strict, config_key, notices
from experiments.report_text import ALPHA, measured_text
from experiments.stages import is_stage1_dir

if TYPE_CHECKING:
    from experiments.stats import Run

__all__ = ["ALPHA", "add_parser", "measured_text", "run", "write_report"]


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a nested config dict."""
    from experiments.config import flatten

    return flatten(d)


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
        f"`eval/time_per_success` (total simulated time / successes), each run's mean over its "
        f"last 3 evaluations (as greedy success), mean over seeds (n/a: no run of the line "
        f"logged it); reference rows from "
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
    from experiments.claims import claims_table, format_claims, write_claims
    from experiments.plots.runs import env_prefix, plot_runs_captioned
    from experiments.stats import group_runs, load_runs, summary_table
    from experiments.tables import format_markdown, format_per_seed, write_summary

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
    claims = claims_table(runs, table)  # per-seed values: the same for any baseline
    write_claims(claims, root)
    plots_dir = root / "plots"
    figs = plot_runs_captioned(runs, plots_dir, notify=False, oracle_queries=baseline_queries)
    here = out_path.parent

    lines = [f"# Report: {root.name}", ""]
    lines += [
        f"Generated by `mgrpo report` from {len(runs)} run(s) under `{_rel(root, here)}/`. "
        f"Baseline for the comparisons: `{baseline}`. Tables also in `summary.csv`/`summary.md` "
        "and `claims.md`/`claims.json`.",
        "",
        "Columns: final success = greedy held-out success (`eval/success_greedy`), mean of each "
        "run's last 3 evaluations, mean over seeds with a 95% seed-bootstrap percentile interval "
        "(inside [0, 1]; `*`: Clopper-Pearson over the pooled evaluation episodes when the seeds "
        "are all equal), then each seed's value; final eval = the larger evaluation after the "
        "last step (`eval.final_episodes`); diff vs baseline = mean over seed pairs of the "
        "difference (runs of one seed share their evaluation queries) with its bootstrap "
        f"interval; p = exact two-sided paired permutation test against `{baseline}`, "
        "Holm-adjusted over the env's table (raw p in parentheses); AUC = mean greedy success "
        "over the evaluations; steps to threshold = Kaplan-Meier median of the first step of 3 "
        "consecutive evaluations with `eval/oracle_fraction` >= 0.9 (seeds that never get there "
        "censored; seeds reached in parentheses); stability ratio = variance of the step-to-step "
        "change of the main agent's training success (`main/correct_rate`) over the binomial "
        "variance at its level (lower: steadier; levels at 0 or 1 left out); collapses = drops "
        "of its EMA (weight 0.9) by more than 0.3 (seeds with one); d_k = mean specialist calls "
        "per episode; duplicated/dropped/empty = alignment rows per rollout (all specialists); "
        "sim time = `eval/sim_time`, last 3 evaluations.",
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
    lines += ["## Claims of the paper and the article", "", format_claims(claims)]
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
        lines += ["### Summary", "", format_markdown(rows, baseline)]
        lines += ["### Per seed", "", format_per_seed(rows), "### What was measured", ""]
        lines += [f"- {s}" for s in measured_text(rows, baseline)] + [""]
        short = env_prefix(env)
        fig = plots_dir / f"{short}_success_vs_time.png"
        lines += _time_section(env, by_env[env], fig, here, baseline_queries)
        lines += _time_notes(baseline_queries)
        env_figs = [(f, cap) for f, cap in figs if f.name.startswith(short + "_")]
        if env_figs:
            lines += ["### Figures", ""]
            for f, cap in env_figs:
                kind = f.stem.removeprefix(short + "_")
                lines += [f"![{kind}]({_rel(f, here)})", "", f"*{cap}*", ""]
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
        help="Markdown report (tables, claims, figures, measured comparisons) of an ablation "
        "directory",
        description="Write DIR/REPORT.md (or --out), DIR/summary.{csv,md}, DIR/claims.{md,json} "
        "and DIR/plots/*.png. Intervals: 95%% seed-bootstrap percentile (Clopper-Pearson over "
        "pooled episodes when the seeds are all equal); tests: exact paired permutation by "
        "seed, Holm-adjusted per table.",
    )
    p.add_argument(
        "dir",
        metavar="DIR",
        nargs="?",
        help="directory holding run dirs (any depth); with --storage: where the grid's run "
        "dirs are copied",
    )
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
        "and of the oracle's d_k in the d_k figure (default 2000; 0: leave them out)",
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
