"""``mgrpo ablate``: a grid of variants x seeds (x envs) in parallel processes, resumable.

    mgrpo ablate CONFIG --variants mgrpo,main_only --seeds 3 --workers 2 --out DIR [--set k=v]

The config is a training config (see ``mgrpo train``) with an optional ``[ablate]`` table::

    [ablate]
    variants = ["mgrpo", "main_only", "single_agent"]   # default: ["mgrpo"]
    seeds = 3                                           # seeds 0..seeds-1 (default 3)
    envs = ["mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"]  # default: env.id
    [ablate.env_overrides."mgrpo/InvasiveSpecies-v0"]  # keys set for one env only
    steps = 80
    [ablate.stage1]                                     # optional: the two-stage protocol
    env.preset = "low"
    [ablate.pilot]                                      # optional: D from a pilot run

Command-line flags (and ``--set ablate.<key>=v``) override the table; ``[sweep]`` is ignored. Keys
of an env's ``env_overrides`` beat the file's, ``--set`` keys beat both. Each cell's variant counts
as given on the command line: keys of the file that contradict it are replaced by the variant's
values (``experiments.config`` explains the rule). Runs go to ``DIR/<env>/<variant>/seed<k>/``.
A finished run (its checkpoint at the last step) is skipped, a partial one resumed, so rerunning
the same command after a crash or Ctrl-C finishes the grid. After the grid: ``summary.csv``,
``summary.md`` and the plots in ``DIR/plots`` (stage-2 runs only).

The paper's protocol (``mgrpo ablate paper_protocol``): ``[ablate.stage1]`` adds one stage-1
run per env and seed (``DIR/<env>/stage1/seed<k>``; ``stage1_flat`` for ``single_agent``) that
every stage-2 run of that seed starts from (``roles.<r>.init_from``) and waits for
(:attr:`AblationRun.needs`; a failed one fails its dependants): see :mod:`experiments.stages`.
Grid names beyond the variants: ``main_only_random_init``. ``[ablate.pilot]`` sets D by the
paper's rule from a pilot run per env: see :mod:`experiments.pilot`. On several machines:
``--storage URL`` puts the cells in a database and ``--join`` works on them
(:mod:`experiments.ablate_remote`).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments import stages
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
from experiments.pilot import PILOT_FILE, PilotSpec, ensure_pilot
from experiments.pilot import read_table as read_pilot_table
from experiments.stages import STAGE1_DIRS
from sim.config import VARIANTS, TrainConfig

__all__ = ["AblationRun", "add_parser", "check_envs", "plan", "run", "run_grid"]

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
    """the run's variant (``main_only`` for the grid name ``main_only_random_init``)"""
    seed: int
    run_dir: Path
    flat: dict[str, Any]
    """the resolved dotted keys of this run"""
    name: str = ""
    """the grid's name of the cell: its dir, ``OUT/<env>/<name>/seed<k>`` (default: variant)"""
    needs: tuple[Path, ...] = ()
    """run dirs of cells that must finish first (its seed's stage-1 run, the pilot's)"""
    pilot: PilotSpec | None = None
    """``[ablate.pilot]``: the env's pilot, whose D becomes ``algo.align_target``"""

    @property
    def stage1(self) -> bool:
        """Whether this is a stage-1 cell (``experiments.stages``)."""
        return self.name in STAGE1_DIRS


def env_short(env_id: str) -> str:
    """``mgrpo/RubiksLogic-v0`` -> ``RubiksLogic``."""
    return env_id.split("/")[-1].split("-v")[0]


TABLE_KEYS = ("variants", "seeds", "envs", "env_overrides", "stage1", "pilot")


def plan(
    config: str | Path | None,
    overrides: list[str],
    out: Path,
    variants: list[str] | None = None,
    seeds: int | None = None,
    envs: list[str] | None = None,
) -> list[AblationRun]:
    """Expand a config (preset name or path) into its grid of runs, validating every cell first.

    Stage-1 cells (``[ablate.stage1]``) come first, then the stage-2 cells of each env."""
    src = read_config(config, overrides, command="ablate")
    table = src.table
    unknown = {k.split(".")[0] for k in table} - set(TABLE_KEYS)
    if unknown:
        raise ConfigError(
            [f"unknown key(s) in [ablate]: {sorted(unknown)}; allowed: {', '.join(TABLE_KEYS)}"]
        )
    base = src.file | src.sets
    problems = _table_problems(table, variants, seeds, envs)
    stage1, more = stages.subtable(table, "stage1")
    problems += more
    pilot_keys, more = stages.subtable(table, "pilot")
    problems += more
    pilot_cfg, more = read_pilot_table(pilot_keys)
    problems += more
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
        if v not in VARIANTS and v not in stages.CELLS:
            allowed = ", ".join([*VARIANTS, *stages.CELLS])
            problems.append(f"unknown variant {v!r}; allowed: {allowed}")
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
    if stage1 is not None:
        problems += stages.stage1_problems(stage1, base)
    if pilot_cfg is not None and "algo.align_target" in base:
        problems.append(
            "algo.align_target: [ablate.pilot] sets D from a pilot run; give "
            "--set ablate.pilot=false to use the config's D"
        )
    if problems:
        raise ConfigError(problems)
    runs = []
    flagged: dict[str, list[str]] = {}  # --set keys a cell ignores -> messages
    for env_id in envs:
        env_file = {"env.id": env_id} if env_id is not None else {}
        env_file |= flatten(table.get("env_overrides", {}).get(env_id or "", {}))
        env_file |= stages.dotted_env_overrides(table, env_id or "")
        layers = (src.file, env_file, src.sets)
        cells = _env_cells(layers, Path(out), variants, seeds, base.get("seed", 0), stage1)
        if pilot_cfg is not None:
            cells = _with_pilot(cells, layers, Path(out), pilot_cfg, stage1 is not None)
        for run, cfg, stated in cells:
            for key, msg in unused_keys(cfg).items():
                if key in stated:
                    flagged.setdefault(key, []).append(f"{run.name} on {env_id}: {msg}")
            runs.append(run)
    runs.sort(key=lambda r: not r.stage1)  # stage 1 first: the pool starts them first
    # a --set key is refused only when every cell of the grid ignores it
    problems = [msgs[0] for msgs in flagged.values() if len(msgs) == len(runs)]
    if problems:
        raise ConfigError(problems)
    return runs


def _cell(layers: tuple, grid: dict[str, Any], name: str) -> tuple[dict[str, Any], Any]:
    """``resolve_layers`` of one cell; problems prefixed by the cell's name."""
    try:  # the grid's keys count as given on the command line
        return resolve_layers(*layers[:-1], layers[-1] | grid, check_unused=False)
    except ConfigError as e:
        env = next((la["env.id"] for la in reversed(layers) if "env.id" in la), None)
        raise ConfigError([f"{name} on {env}: {p}" for p in e.problems]) from e


def _env_cells(
    layers: tuple, out: Path, variants: list[str], seeds: int, seed0: int, stage1: dict | None
) -> list[tuple[AblationRun, Any, set[str]]]:
    """The cells of one env: ``(run, cfg, keys stated with the variant)``, stage 1 first."""
    cells: list[tuple[AblationRun, Any, set[str]]] = []
    stage1_cells: dict[tuple[str, int], tuple[AblationRun, Any]] = {}
    checked: set[tuple] = set()
    for variant_name in variants:
        variant, from_stage1, extra = stages.CELLS.get(variant_name, (variant_name, True, {}))
        for k in range(seeds):
            grid = {"variant": variant, "seed": seed0 + k, **extra}
            flat, cfg = _cell(layers, grid, variant_name)
            needs: tuple[Path, ...] = ()
            if stage1 is not None and from_stage1:
                s1_name = stages.STAGE1_FLAT if cfg.flat else stages.STAGE1
                if (s1_name, cfg.seed) not in stage1_cells:
                    g1 = {"variant": "single_agent" if cfg.flat else "mgrpo", "seed": cfg.seed}
                    f1, c1 = _cell((*layers, stage1), g1, s1_name)
                    d1 = out / env_short(c1.env.id) / s1_name / f"seed{c1.seed}"
                    r1 = AblationRun(c1.env.id, c1.variant, c1.seed, d1, f1, s1_name)
                    stage1_cells[(s1_name, cfg.seed)] = (r1, c1)
                    cells.append((r1, c1, set(layers[-1])))
                r1, c1 = stage1_cells[(s1_name, cfg.seed)]
                roles = stages.env_roles(cfg)
                if (s1_name, variant) not in checked:
                    checked.add((s1_name, variant))
                    problems = stages.check_compatible(c1, cfg, r1.run_dir, roles)
                    if problems:
                        raise ConfigError([f"{variant_name}: {p}" for p in problems])
                grid |= {f"roles.{r}.init_from": str(r1.run_dir.absolute()) for r in roles}
                flat, cfg = _cell(layers, grid, variant_name)
                needs = (r1.run_dir,)
            run_dir = out / env_short(cfg.env.id) / variant_name / f"seed{cfg.seed}"
            run = AblationRun(cfg.env.id, variant, cfg.seed, run_dir, flat, variant_name, needs)
            cells.append((run, cfg, set(layers[-1]) | set(grid)))
    return cells


def _with_pilot(
    cells: list[tuple[AblationRun, Any, set[str]]],
    layers: tuple,
    out: Path,
    pilot: dict[str, Any],
    stage1: bool,
) -> list[tuple[AblationRun, Any, set[str]]]:
    """Every stage-2 cell of one env gets the env's pilot (``[ablate.pilot]``): played with
    the policies the first seed's ``mgrpo`` cell starts from (its stage-1 run, if any)."""
    stage2 = [c for c in cells if not c[0].stage1]
    hier = [c for c in cells if c[0].stage1 and c[0].name == stages.STAGE1]
    first = min((c[1].seed for c in stage2), default=0)
    grid: dict[str, Any] = {"variant": "mgrpo", "seed": first}
    needs: tuple[Path, ...] = ()
    if stage1 and hier:
        r1 = min(hier, key=lambda c: c[0].seed)[0]
        roles = stages.env_roles(hier[0][1])
        grid |= {f"roles.{r}.init_from": str(r1.run_dir.absolute()) for r in roles}
        needs = (r1.run_dir,)
    flat, cfg = _cell(layers, grid, "pilot")
    path = out / env_short(cfg.env.id) / PILOT_FILE
    spec = PilotSpec(path, flat, pilot["batches"], pilot["quantile"])
    out_cells = [c for c in cells if c[0].stage1]
    for run, cfg, stated in stage2:
        deps = tuple(dict.fromkeys((*run.needs, *needs)))
        out_cells.append((dataclasses.replace(run, needs=deps, pilot=spec), cfg, stated))
    return out_cells


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

    flat = run.flat
    t0 = time.perf_counter()
    try:
        if run.pilot is not None:  # the paper's D, from the env's pilot (ablate.pilot)
            d = ensure_pilot(run.pilot)
            flat = flat if d is None else flat | {"algo.align_target": d}
        cfg = resolve(flat)
        text = dump_toml(cfg)
        stale = stages.stale_stage1(run.run_dir, text) if run.stage1 else None
        if stale:
            return {"run": str(run.run_dir), "status": "failed", "error": stale}
        run.run_dir.mkdir(parents=True, exist_ok=True)
        status = _status(run, cfg)
        if status != "done":
            Trainer(
                cfg,
                run.run_dir,
                resume=status == "partial",
                progress=False,
                tensorboard=tensorboard,
                config_text=text,  # written once the run directory is locked
            ).train()
    except (TrainingError, ValueError) as e:  # bad numbers; a run dir in use; init_from
        msg = "; ".join(line.strip() for line in str(e).splitlines() if line.strip())
        return {"run": str(run.run_dir), "status": "failed", "error": msg}
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
    """Train every run of the grid with ``workers`` processes; returns one record per run.

    A run starts once every run dir in its ``needs`` has finished (trained or skipped); when
    one of them failed, the run fails too (not run), naming it."""
    results: list[dict[str, Any]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(runs), desc="ablate", unit="run")

    def report(r: AblationRun, res: dict[str, Any]) -> None:
        results.append(res)
        if bar is not None:
            bar.update(1)
            succ = res.get("success")
            msg = f"{res['status']}: {r.run_dir}"
            if succ is not None:
                msg += f" (eval success {succ:.3f})"
            bar.write(msg)

    ctx = mp.get_context("spawn")
    from experiments.procs import die_with_parent  # workers never outlive `mgrpo ablate`

    in_grid = {r.run_dir for r in runs}
    ok: set[Path] = set()
    failed: set[Path] = set()
    waiting = list(runs)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=die_with_parent) as pool:
        pending: dict[Any, AblationRun] = {}
        while waiting or pending:
            for r in list(waiting):
                needs = [n for n in r.needs if n in in_grid]
                bad = [n for n in needs if n in failed]
                if bad:
                    waiting.remove(r)
                    failed.add(r.run_dir)
                    why = f"not run: it starts from {bad[0]}, which failed"
                    report(r, {"run": str(r.run_dir), "status": "failed", "error": why})
                elif all(n in ok for n in needs):
                    waiting.remove(r)
                    pending[pool.submit(_train_one, r, tensorboard)] = r
            if not pending:  # cannot happen (needs are earlier cells); never spin
                for r in waiting:
                    why = "not run: a run it needs is not in the grid"
                    report(r, {"run": str(r.run_dir), "status": "failed", "error": why})
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                r = pending.pop(fut)
                try:
                    res = fut.result()
                except Exception as e:  # a crashed worker: report, keep going
                    res = {"run": str(r.run_dir), "status": "failed", "error": repr(e)}
                (failed if res["status"] == "failed" else ok).add(r.run_dir)
                report(r, res)
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
    runs = [r for r in runs if not r.stage1]  # stage-1 runs are warm-ups, not grid cells
    loaded = stats.load_runs([r.run_dir for r in runs if r.run_dir.is_dir()])
    table = stats.summary_table(loaded)
    written += stats.write_summary(table, out)
    try:
        from experiments.plots import plot_runs
    except ImportError:
        return written
    written += plot_runs([r.run_dir for r in runs if r.run_dir.is_dir()], out / "plots")
    return written


def check_envs(runs: list[AblationRun]) -> None:
    """``check_env`` (env settings, role names, memory) once per distinct env and variant."""
    checked = set()
    for r in runs:
        grid_init = {k for k in r.flat if k.endswith(".init_from") and r.needs}
        cfg = resolve({k: v for k, v in r.flat.items() if k not in grid_init})
        key = (cfg.env.id, cfg.env.preset, repr(cfg.env.kwargs), repr(cfg.roles), cfg.variant)
        if key not in checked:
            checked.add(key)
            check_env(cfg)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("ablate", help="run a grid of variants x seeds in parallel")
    p.add_argument("config", nargs="?", help="TOML config (may hold an [ablate] table)")
    p.add_argument(
        "--variants",
        help=f"comma list of {', '.join(VARIANTS)}; grid cells: {', '.join(stages.CELLS)}",
    )
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
    return p


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
    check_envs(runs)
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
