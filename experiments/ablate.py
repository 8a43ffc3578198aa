"""``mgrpo ablate``: a grid of variants x seeds (x envs) in parallel processes, resumable.

    mgrpo ablate CONFIG --variants mgrpo,main_only --seeds 3 --workers 2 --out DIR [--set k=v]

The config is a training config (see ``mgrpo train``) with an optional ``[ablate]`` table::

    [ablate]
    variants = ["mgrpo", "main_only", "single_agent"]   # default: ["mgrpo"]
    seeds = 3                                           # seeds 0..seeds-1 (default 3)
    envs = ["mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"]  # default: env.id
    [ablate.env_overrides."mgrpo/InvasiveSpecies-v0"]  # keys set for one env only
    steps = 80

Command-line flags (and ``--set ablate.<key>=v``) override the table; ``[sweep]`` is ignored. Keys
of an env's ``env_overrides`` beat the file's, ``--set`` keys beat both. Each cell's variant counts
as given on the command line: keys of the file that contradict it are replaced by the variant's
values (``experiments.config`` explains the rule). Runs go to ``DIR/<env>/<variant>/seed<k>/``.
A finished run (its checkpoint at the last step) is skipped, a partial one resumed, so rerunning
the same command after a crash or Ctrl-C finishes the grid. After the grid: ``summary.csv``,
``summary.md`` and the plots in ``DIR/plots``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import (
    ConfigError,
    dump_toml,
    flatten,
    read_config,
    resolve,
    resolve_layers,
    unused_keys,
)
from experiments.env_check import check_env, check_output_dir
from sim.config import VARIANTS, TrainConfig

__all__ = ["AblationRun", "add_parser", "plan", "run", "run_grid"]

SEEDS_MAX = 1000
"""the most seeds per variant"""
RUNS_MAX = 10_000
"""the most runs of one grid (envs x variants x seeds)"""
WORKERS_MAX = 256
"""the most ``--workers`` processes"""


@dataclass(frozen=True)
class AblationRun:
    """One cell of the grid."""

    env_id: str
    variant: str
    seed: int
    run_dir: Path
    flat: dict[str, Any]
    """the resolved dotted keys of this run"""


def env_short(env_id: str) -> str:
    """``mgrpo/RubiksLogic-v0`` -> ``RubiksLogic``."""
    return env_id.split("/")[-1].split("-v")[0]


def plan(
    config: str | Path | None,
    overrides: list[str],
    out: Path,
    variants: list[str] | None = None,
    seeds: int | None = None,
    envs: list[str] | None = None,
) -> list[AblationRun]:
    """Expand a config (preset name or path) into its grid of runs, validating every cell first."""
    src = read_config(config, overrides, command="ablate")
    table = src.table
    unknown = set(table) - {"variants", "seeds", "envs", "env_overrides"}
    if unknown:
        raise ConfigError(
            [
                f"unknown key(s) in [ablate]: {sorted(unknown)}; allowed: variants, seeds, envs, "
                "env_overrides"
            ]
        )
    base = src.file | src.sets
    problems = _table_problems(table, variants, seeds, envs)
    if problems:
        raise ConfigError(problems)
    variants = variants if variants is not None else list(table.get("variants", ["mgrpo"]))
    seeds = seeds if seeds is not None else table.get("seeds", 3)
    envs = envs if envs is not None else list(table.get("envs", [base.get("env.id")]))
    if "variant" in src.sets:
        problems.append("--set variant: the grid sets each run's variant; use --variants a,b")
    if not variants:
        problems.append("the variant list is empty; give --variants a,b or [ablate] variants")
    for v in variants:
        if v not in VARIANTS:
            problems.append(f"unknown variant {v!r}; allowed: {', '.join(VARIANTS)}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= SEEDS_MAX:
        problems.append(
            f"seeds = {seeds!r} is invalid; allowed: an integer >= 1 and <= {SEEDS_MAX}"
        )
    elif len(envs) * len(variants) * seeds > RUNS_MAX:
        problems.append(
            f"the grid has {len(envs)} env(s) x {len(variants)} variant(s) x {seeds} seed(s) = "
            f"{len(envs) * len(variants) * seeds} runs; allowed: at most {RUNS_MAX:_}"
        )
    if len(set(variants)) < len(variants) or len(set(envs)) < len(envs):
        problems.append("the grid lists a variant or env twice; give each once")
    if problems:
        raise ConfigError(problems)
    runs = []
    flagged: dict[str, list[str]] = {}  # --set keys a cell ignores -> messages
    for env_id in envs:
        env_file = {"env.id": env_id} if env_id is not None else {}
        env_file |= flatten(table.get("env_overrides", {}).get(env_id or "", {}))
        for variant in variants:
            for seed in range(seeds):
                grid = {"variant": variant, "seed": base.get("seed", 0) + seed}
                try:  # the grid's variant counts as given on the command line
                    flat, cfg = resolve_layers(
                        src.file, env_file, src.sets | grid, check_unused=False
                    )
                except ConfigError as e:
                    raise ConfigError([f"{variant} on {env_id}: {p}" for p in e.problems]) from e
                for key, msg in unused_keys(cfg).items():
                    if key in src.sets:
                        flagged.setdefault(key, []).append(f"{variant} on {env_id}: {msg}")
                run_dir = Path(out) / env_short(cfg.env.id) / variant / f"seed{cfg.seed}"
                runs.append(AblationRun(cfg.env.id, variant, cfg.seed, run_dir, flat))
    # a --set key is refused only when every cell of the grid ignores it
    problems = [msgs[0] for msgs in flagged.values() if len(msgs) == len(runs)]
    if problems:
        raise ConfigError(problems)
    return runs


def _table_problems(table: dict[str, Any], variants: Any, seeds: Any, envs: Any) -> list[str]:
    """Types of the ``[ablate]`` table's keys (flags given instead are checked by the caller)."""
    problems = []

    def names(key: str, value: Any, example: str) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            problems.append(
                f"[ablate] {key} = {value!r} is invalid; allowed: a list of names, e.g. "
                f"{key} = {example}"
            )

    if variants is None and "variants" in table:
        names("variants", table["variants"], '["mgrpo", "main_only"]')
    if envs is None and "envs" in table:
        names("envs", table["envs"], '["mgrpo/RubiksLogic-v0"]')
    if seeds is None and "seeds" in table:
        v = table["seeds"]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= SEEDS_MAX:
            problems.append(
                f"[ablate] seeds = {v!r} is invalid; allowed: an integer >= 1 and <= {SEEDS_MAX}"
            )
    overrides = table.get("env_overrides", {})
    if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
        problems.append(
            f"[ablate] env_overrides = {overrides!r} is invalid; allowed: tables per env id, e.g. "
            '[ablate.env_overrides."mgrpo/InvasiveSpecies-v0"] steps = 150'
        )
    return problems


def _status(run: AblationRun, cfg: TrainConfig) -> str:
    """``done``, ``partial`` or ``new``."""
    ckpt = run.run_dir / "checkpoint.pt"
    if not ckpt.exists():
        return "partial" if (run.run_dir / "metrics.jsonl").exists() else "new"
    from experiments.checkpoint import load_checkpoint

    try:
        step = int(load_checkpoint(run.run_dir)["step"])
    except (ValueError, KeyError):
        return "partial"
    return "done" if step >= cfg.steps else "partial"


def _train_one(run: AblationRun, tensorboard: bool) -> dict[str, Any]:
    """Worker: train (or resume) one run; returns a small result record."""
    from experiments.checkpoint import read_metrics
    from experiments.run import Trainer, TrainingError

    cfg = resolve(run.flat)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    status = _status(run, cfg)
    t0 = time.perf_counter()
    if status != "done":
        try:
            Trainer(
                cfg,
                run.run_dir,
                resume=status == "partial",
                progress=False,
                tensorboard=tensorboard,
                config_text=dump_toml(cfg),  # written once the run directory is locked
            ).train()
        except (TrainingError, ConfigError) as e:  # bad numbers; a run directory in use
            return {"run": str(run.run_dir), "status": "failed", "error": str(e)}
    rows = read_metrics(run.run_dir / "metrics.jsonl")
    evals = [r for r in rows if "eval/success_greedy" in r]
    return {
        "run": str(run.run_dir),
        "status": "skipped" if status == "done" else "trained",
        "success": evals[-1]["eval/success_greedy"] if evals else None,
        "seconds": time.perf_counter() - t0,
    }


def run_grid(
    runs: list[AblationRun], workers: int, *, tensorboard: bool = False, progress: bool = True
) -> list[dict[str, Any]]:
    """Train every run of the grid with ``workers`` processes; returns one record per run."""
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), desc="ablate", unit="run")
    ctx = mp.get_context("spawn")
    from experiments.procs import die_with_parent  # workers never outlive `mgrpo ablate`

    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent) as pool:
        pending = {pool.submit(_train_one, r, tensorboard): r for r in runs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                r = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # a crashed worker: report, keep going
                    res = {"run": str(r.run_dir), "status": "failed", "error": repr(e)}
                results.append(res)
                if bar is not None:
                    bar.update(1)
                    succ = res.get("success")
                    msg = f"{res['status']}: {r.run_dir}"
                    if succ is not None:
                        msg += f" (eval success {succ:.3f})"
                    bar.write(msg)
    if bar is not None:
        bar.close()
    return results


def summarize(out: Path, runs: list[AblationRun]) -> list[Path]:
    """Summary tables and plots of a finished grid; returns the files written."""
    written: list[Path] = []
    try:
        from experiments import stats
    except ImportError:
        return written
    loaded = stats.load_runs([r.run_dir for r in runs])
    table = stats.summary_table(loaded)
    written += stats.write_summary(table, out)
    try:
        from experiments.plots import plot_runs
    except ImportError:
        return written
    written += plot_runs([r.run_dir for r in runs], out / "plots")
    return written


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("ablate", help="run a grid of variants x seeds in parallel")
    p.add_argument("config", nargs="?", help="TOML config (may hold an [ablate] table)")
    p.add_argument("--variants", help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--seeds", type=int, help="number of seeds per variant (default 3)")
    p.add_argument("--envs", help="comma list of env ids (default: env.id of the config)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--out", default="runs/ablate", help="output directory (default runs/ablate)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key for every run (repeatable)",
    )
    p.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= WORKERS_MAX:
        print(
            f"error: --workers must be in [1, {WORKERS_MAX}], got {args.workers}", file=sys.stderr
        )
        return 2
    variants = None
    if args.variants is not None:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    envs = [e.strip() for e in args.envs.split(",") if e.strip()] if args.envs else None
    out = Path(args.out)
    runs = plan(args.config, args.set, out, variants, args.seeds, envs)
    check_output_dir(out)
    checked = set()
    for r in runs:  # env settings, role names, memory: once per distinct env and variant
        cfg = resolve(r.flat)
        key = (cfg.env.id, cfg.env.preset, repr(cfg.env.kwargs), repr(cfg.roles), cfg.variant)
        if key not in checked:
            checked.add(key)
            check_env(cfg)
    if not args.quiet:
        print(f"{len(runs)} runs -> {out} with {args.workers} worker(s)")
    t0 = time.perf_counter()
    results = run_grid(runs, args.workers, tensorboard=args.tensorboard, progress=not args.quiet)
    failed = [r for r in results if r["status"] == "failed"]
    files = summarize(out, runs) if len(failed) < len(results) else []
    wall = time.perf_counter() - t0
    if not args.quiet:
        print(f"grid finished in {wall:.1f} s")
        for f in files:
            print(f"wrote {f}")
        if files:
            print(f"plots are in {out / 'plots'}")
    for r in failed:
        print(f"error: {r['run']}: {r.get('error')}", file=sys.stderr)
    return 1 if failed else 0
