"""The claims table (issue 16, item 3): each claim of the M-GRPO paper (Hong et al. 2025) and of
the article about it, the metric that measures it, the measured effect with its interval and
corrected p, and a verdict. ``mgrpo report`` writes it as ``claims.md`` and ``claims.json``.

A claim says that line A beats line B on one per-seed metric of
:func:`experiments.summary.summary_table` (``row["per_seed"]``). Per env:

- the pairs are the seeds both lines have (runs of one seed share their evaluation queries);
- the effect is the mean per-seed difference A - B (``relative``: ``mean(A) / mean(B) - 1``)
  with its 95% seed-pair bootstrap percentile interval;
- p is the exact two-sided paired permutation test (:mod:`experiments.stats_tests`),
  Holm-adjusted over every comparison of the env's claims table;
- the verdict: ``supported`` (Holm p < 0.05, effect in the claimed direction),
  ``contradicted`` (Holm p < 0.05, the other direction), ``not significant``, or
  ``not measured in these runs`` (a line or the env is missing: it says which).

When a variant has several lines (configs), A's line is the one whose differing keys have B's
values (:func:`experiments.grouping.matches`), and every line of B is compared. The balance claim
pairs the ``mgrpo`` line with the paper's sub-reward split (b2 : b3 = 0.4 : 0.5, local share
w = 5/9, linear form) with each ``mgrpo`` line of another split that agrees on every other key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments import stats_tests as tests
from experiments.grouping import Line, group_runs, matches
from experiments.rundirs import Run
from experiments.summary import paired

__all__ = ["ALPHA", "CLAIMS", "Claim", "claims_table", "format_claims", "write_claims"]

ALPHA = 0.05
"""significance level of the verdicts (on Holm-adjusted p)"""
RUBIKS, SPECIES = "mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"
_BALANCE_KEYS = ("reward.local_share", "reward.beta", "reward.form")
_DEFAULT_W = 5 / 9


@dataclass(frozen=True)
class Claim:
    """One claim: line ``a`` beats line ``b`` on ``metric``."""

    name: str
    """short id"""
    text: str
    """the claim, as the source states it"""
    source: str
    """``paper`` or ``article``"""
    metric: str
    """a per-seed key of the summary rows"""
    what: str
    """the metric in words"""
    a: str
    """the variant claimed better"""
    b: str
    """the variant it is compared with (``balance``: other splits of ``mgrpo``)"""
    better: str = "higher"
    """``higher`` or ``lower``"""
    relative: bool = False
    """effect as ``mean(A) / mean(B) - 1`` instead of ``mean(A - B)``"""
    envs: tuple[str, ...] = ()
    """the envs it is about (empty: every env)"""


_SUCCESS = "final greedy held-out success (mean of the last 3 evaluations)"
_STAB = "stability ratio: variance of the step-to-step change of the training success over binomial noise at its level"  # noqa: E501
CLAIMS: tuple[Claim, ...] = (
    Claim("cotrain>main", "co-training beats training the main agent alone", "paper",
          "final_success", _SUCCESS, "mgrpo", "main_only"),
    Claim("main>single", "main-only beats a single agent with every tool", "paper",
          "final_success", _SUCCESS, "main_only", "single_agent"),
    Claim("cotrain>single", "co-training beats a single agent", "paper", "final_success",
          _SUCCESS, "mgrpo", "single_agent"),
    Claim("sync>async", "synchronized training beats unsynchronized", "paper", "final_success",
          _SUCCESS, "mgrpo", "async_queue"),
    Claim("stable>async", "synchronized training is more stable", "paper", "stability_ratio",
          _STAB, "mgrpo", "async_queue", better="lower"),
    Claim("stable>ragged", "aligned sub-agent batches are more stable than ragged ones",
          "paper", "stability_ratio", _STAB, "mgrpo", "no_alignment", better="lower"),
    Claim("collapses>async", "synchronized training collapses less", "paper", "collapses",
          "collapses: EMA (weight 0.9) drops of the main reward > 0.3", "mgrpo", "async_queue",
          better="lower"),
    Claim("data>main", "co-training needs less data to reach a level", "paper",
          "threshold_episodes", "episodes until 3 consecutive evaluations at >= 0.9 of the "
          "oracle (not reached: the run's episodes)", "mgrpo", "main_only", better="lower"),
    Claim("data>single", "co-training needs less data than a single agent", "paper",
          "threshold_episodes", "episodes until 3 consecutive evaluations at >= 0.9 of the "
          "oracle (not reached: the run's episodes)", "mgrpo", "single_agent", better="lower"),
    Claim("faster", "teams with a leader finish about 10% faster", "article", "sim_time",
          "simulated completion time of an evaluation episode (last 3 evaluations)", "mgrpo",
          "single_agent", better="lower", relative=True),
    Claim("reasoner", "the trained main agent picks the reasoner instead of the browser",
          "paper", "category_error_rate", "category-error rate of evaluation episodes (logic "
          "sent to the search sub-agent; last 3 evaluations)", "mgrpo", "main_only",
          better="lower", envs=(RUBIKS,)),
    Claim("precise", "the trained main agent writes more precise instructions", "paper",
          "constraints_kept", "share of the essential constraints kept in instructions "
          "(evaluation, last 3 evaluations)", "mgrpo", "main_only", envs=(SPECIES,)),
    Claim("balance", "the 0.4/0.5 balance of the sub reward matters", "paper",
          "final_success", _SUCCESS, "mgrpo", "balance"),
)  # fmt: skip
"""the claims, in table order"""


def _local_share(run: Run) -> float | str:
    """The sub reward's local share w of a run's config (``gated`` for the gated form)."""
    reward = run.config.get("reward", {})
    form = reward.get("form", "linear")
    if form != "linear":
        return {"global_only": 0.0, "local_only": 1.0}.get(form, form)
    if reward.get("local_share") is not None:
        return float(reward["local_share"])
    beta = reward.get("beta", (0.1, 0.4, 0.5))
    return float(beta[2]) / (float(beta[1]) + float(beta[2]))


def _is_default(w: float | str) -> bool:
    return isinstance(w, float) and abs(w - _DEFAULT_W) < 1e-9


def _pairs(claim: Claim, groups: dict[Line, list[Run]]) -> list[tuple[Line, Line]]:
    """``(A line, B line)`` pairs of one env's lines for ``claim``."""
    if claim.b == "balance":
        lines = [ln for ln in groups if ln.variant == claim.a]

        def rest(ln: Line) -> tuple:
            return tuple((k, repr(v)) for k, v in ln.differs if k not in _BALANCE_KEYS)

        ws = {ln: _local_share(groups[ln][0]) for ln in lines}
        base = [ln for ln in lines if _is_default(ws[ln])]
        return [(a, b) for b in lines if not _is_default(ws[b]) for a in base if rest(a) == rest(b)]
    a_lines = [ln for ln in groups if ln.variant == claim.a]
    out = []
    for b in (ln for ln in groups if ln.variant == claim.b):
        cands = a_lines if len(a_lines) == 1 else [a for a in a_lines if matches(a, groups[b][0])]
        out += [(cands[0], b)] if cands else []
    return out


def _verdict(effect: float, p: float | None, better: str) -> str:
    if p is None or math.isnan(effect):
        return "not measured in these runs"
    if p >= ALPHA:
        return "not significant"
    good = effect > 0 if better == "higher" else effect < 0
    return "supported" if good else "contradicted"


def claims_table(
    runs: Sequence[Run], table: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per claim, env and compared pair of lines (a claim with nothing to compare: one
    row ``not measured in these runs``). ``table``: the runs' summary table (computed when
    None). Keys: ``env``, ``claim``, ``text``, ``source``, ``metric``, ``what``, ``a``, ``b``,
    ``better``, ``n_pairs``, ``effect``, ``lo``, ``hi``, ``relative``, ``p_value``, ``p_holm``,
    ``p_min``, ``verdict``, ``note``, ``a_seeds``, ``b_seeds`` (per-seed values, seed order of
    ``seeds``)."""
    if table is None:
        from experiments.summary import summary_table

        table = summary_table(runs)
    groups = group_runs(runs)
    envs = sorted({ln.env for ln in groups})
    out: list[dict[str, Any]] = []
    for env in envs:
        env_groups = {ln: rs for ln, rs in groups.items() if ln.env == env}
        rows = {r["line"]: r for r in table if r["env"] == env}
        start = len(out)
        for claim in CLAIMS:
            base = {k: v for k, v in asdict(claim).items() if k not in ("name", "envs")}
            base |= {"env": env, "claim": claim.name}
            if claim.envs and env not in claim.envs:
                continue
            pairs = _pairs(claim, env_groups)
            if not pairs:
                out.append(base | _missing(claim, env_groups))
                continue
            for a, b in pairs:
                out.append(base | _measure(claim, rows[a.label], rows[b.label]))
        env_rows = out[start:]
        for r, p in zip(env_rows, tests.holm([r["p_value"] for r in env_rows]), strict=True):
            r["p_holm"] = p
            r["verdict"] = _verdict(r["effect"], p, r["better"]) if r["n_pairs"] else r["verdict"]
    present = set(envs)
    for claim in CLAIMS:  # a claim about an env without runs
        for env in claim.envs:
            if env not in present:
                row = {k: v for k, v in asdict(claim).items() if k not in ("name", "envs")}
                out.append(row | {"env": env, "claim": claim.name} | _missing(claim, {}, env))
    return out


def _missing(claim: Claim, groups: dict[Line, list[Run]], env: str | None = None) -> dict:
    have = sorted({ln.variant for ln in groups})
    if env is not None:
        why = f"no runs of {env}"
    elif claim.b == "balance":
        why = "needs `mgrpo` lines with the 0.4/0.5 split and another split (reward.local_share)"
    else:
        need = [v for v in (claim.a, claim.b) if v not in have]
        why = f"needs runs of {', '.join(f'`{v}`' for v in need)}" if need else "no paired lines"
    empty = dict.fromkeys(("effect", "lo", "hi"), math.nan)
    b = "other splits of the sub reward" if claim.b == "balance" else claim.b
    return empty | {"a": claim.a, "b": b, "n_pairs": 0, "p_value": None, "p_min": None,
                    "verdict": "not measured in these runs", "note": why, "a_seeds": [],
                    "b_seeds": [], "seeds": []}  # fmt: skip


def _measure(claim: Claim, ra: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    va, vb = paired(ra, rb, claim.metric)
    seeds = sorted(set(ra["per_seed"]["seed"]) & set(rb["per_seed"]["seed"]))
    finite = [(x, y) for x, y in zip(va, vb, strict=True) if _ok(x) and _ok(y)]
    ci = tests.paired_ratio_ci(va, vb) if claim.relative else tests.paired_diff_ci(va, vb)
    note = ""
    if claim.metric == "threshold_episodes" and len({ra["samples"], rb["samples"]}) > 1:
        note = "runs of different length: not-reached seeds count different budgets"
    if claim.name == "faster" and not math.isnan(ci[1]):
        inside = ci[1] <= -0.1 <= ci[2]
        note = f"-10% is {'inside' if inside else 'outside'} the interval"
    if finite and tests.smallest_p(len(finite)) >= ALPHA:
        note = "; ".join(filter(None, [note, f"{len(finite)} pairs cannot give p < {ALPHA}"]))
    if not finite:
        note = f"`{claim.metric}` is undefined for these lines"
    return {
        "a": ra["line"],
        "b": rb["line"],
        "n_pairs": len(finite),
        "effect": ci[0],
        "lo": ci[1],
        "hi": ci[2],
        "p_value": tests.paired_permutation_p(va, vb) if finite else None,
        "p_min": tests.smallest_p(len(finite)) if finite else None,
        "verdict": "" if finite else "not measured in these runs",
        "note": note,
        "seeds": seeds,
        "a_seeds": va,
        "b_seeds": vb,
    }


def _ok(v: Any) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


# ---------------------------------------------------------------------------------- output
def _num(v: float, relative: bool) -> str:
    return f"{v:+.1%}" if relative else f"{v:+,.0f}" if abs(v) >= 100 else f"{v:+.3f}"


def _effect(r: dict[str, Any]) -> str:
    if r["effect"] is None or math.isnan(r["effect"]):
        return "n/a"
    rel = r["relative"]
    ci = "" if math.isnan(r["lo"]) else f" [{_num(r['lo'], rel)}, {_num(r['hi'], rel)}]"
    return _num(r["effect"], rel) + ci


def _per_seed(r: dict[str, Any]) -> str:
    diffs = [x - y for x, y in zip(r["a_seeds"], r["b_seeds"], strict=True) if _ok(x) and _ok(y)]
    return ", ".join(f"{d:+,.0f}" if abs(d) >= 100 else f"{d:+.3g}" for d in diffs) or "-"


def format_claims(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one table per env (claim, source, metric, A vs B, pairs, effect [95% CI],
    per-seed differences, Holm p (raw p), verdict, note), then how to read it."""
    out: list[str] = []
    for env in dict.fromkeys(r["env"] for r in rows):
        out += [f"#### {env}", ""]
        out.append(
            "| claim | source | metric (better) | A vs B | pairs | effect A - B [95% CI] | "
            "per seed A - B | p Holm (raw) | verdict | note |"
        )
        out.append("|---|---|---|---|---:|---:|---|---:|---|---|")
        for r in (r for r in rows if r["env"] == env):
            p = "n/a" if r.get("p_holm") is None else f"{r['p_holm']:.3g} ({r['p_value']:.3g})"
            rel = " (relative)" if r["relative"] else ""
            out.append(
                f"| {r['text']} | {r['source']} | {r['what']}{rel} ({r['better']}) | "
                f"`{r['a']}` vs `{r['b']}` | {r['n_pairs']} | {_effect(r)} | {_per_seed(r)} | "
                f"{p} | **{r['verdict']}** | {r['note']} |"
            )
        out.append("")
    pairs = sorted({r["n_pairs"] for r in rows if r["n_pairs"]})
    smallest = ", ".join(f"{n} pairs: {tests.smallest_p(n):.3g}" for n in pairs) or "none"
    out.append(
        "*Pairs: seeds both lines have (their runs share evaluation queries). Effect: mean of the "
        "per-seed differences (relative: mean(A) / mean(B) - 1) with a 95% seed-pair bootstrap "
        "percentile interval. p: exact two-sided paired permutation test, Holm-adjusted over the "
        f"env's table; verdicts at Holm p < {ALPHA}. Smallest raw p the design allows "
        f"({smallest}).*"
    )
    return "\n".join(out) + "\n"


def write_claims(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``claims.md`` (:func:`format_claims`) and ``claims.json`` (every row, NaN as
    null) into ``out_dir``."""
    from experiments.tables import jsonable

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "claims.md", out_dir / "claims.json"
    md.write_text("# Claims\n\n" + format_claims(rows))
    js.write_text(json.dumps(jsonable(list(rows)), indent=1) + "\n")
    return md, js
