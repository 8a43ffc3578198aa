"""Benchmark: trials per hour of ``mgrpo sweep`` on the quick preset (default call-rate preset).

Each trial is one seed of ``experiments/configs/quick.toml`` (species env, ``env.preset =
"default"``, B=16, K=8, eval every 5 steps on 128 episodes) at a short budget of ``--steps`` steps
(default 60, the preset's own: 60 x 16 x 8 = 7,680 episodes per trial), D in [1, 16], w in [0, 1].
Rows: the reference measured in the same run (one plain training run of the same config, in
process after a warm-up run: what a trial costs without Optuna; it includes the oracle evaluation
of 1,000 episodes that ``train()`` runs, which a sweep worker computes once), then whole sweeps
run as the CLI would be (``python -m experiments.sweep ... --no-plots``, process start-up and
SQLite included): 1 worker without pruning, 2 workers without pruning, 1 worker with the
MedianPruner. Ratios: a sweep's time per trial over the reference, and trials per hour relative
to the 1-worker sweep.

    python benchmarks/bench_sweep.py [--trials 8] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PRESET = ROOT / "experiments" / "configs" / "quick.toml"


def reference(steps: int) -> float:
    """Seconds of one plain training run of the preset (D and w at their defaults)."""
    from experiments.run import Trainer
    from experiments.sweep import load_sweep

    _flat, cfg, _sweep = load_sweep(PRESET, [f"steps={steps}", f"checkpoint_every={steps}"])
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        Trainer(cfg, Path(d), progress=False).train()
        return time.perf_counter() - t0


def sweep(trials: int, steps: int, workers: int, pruner: str) -> dict:
    """Run one whole sweep in a subprocess; its wall time and trial counts."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [
            sys.executable, "-m", "experiments.sweep", str(PRESET),
            "--trials", str(trials), "--study", "bench", "--workers", str(workers),
            "--out", d, "--no-plots", "--seeds", "1",
            "--set", f"steps={steps}", "--set", f"checkpoint_every={steps}",
            "--set", f'sweep.pruner="{pruner}"',
        ]  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        summary = json.loads((Path(d) / "sweep.json").read_text())
    return {
        "workers": workers,
        "pruner": pruner,
        "trials": trials,
        "complete": summary["counts"]["complete"],
        "pruned": summary["counts"]["pruned"],
        "wall_s": wall,
        "trials_per_hour": trials / wall * 3600,
        "best": summary["best"][0]["values"][0] if summary["best"] else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="trials per sweep (default 8)")
    p.add_argument("--steps", type=int, default=60, help="training steps per trial (default 60)")
    args = p.parse_args()
    if args.trials < 1 or args.steps < 1:
        p.error("--trials and --steps must be >= 1")
    load_before = os.getloadavg()[0]
    reference(1)  # warm-up: imports, first torch ops
    ref = reference(args.steps)
    rows = [
        sweep(args.trials, args.steps, 1, "none"),
        sweep(args.trials, args.steps, 2, "none"),
        sweep(args.trials, args.steps, 1, "median"),
    ]
    base = rows[0]["trials_per_hour"]
    for r in rows:
        r["s_per_trial"] = r["wall_s"] / r["trials"]
        r["ratio_trial_to_reference"] = r["s_per_trial"] / ref
        r["ratio_trials_per_hour"] = r["trials_per_hour"] / base

    print(
        f"quick preset, {args.steps} steps x 16 x 8 = {args.steps * 128} episodes per trial, "
        f"1 seed, {args.trials} trials per sweep, {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after (other processes skew it)"
    )
    head = (
        f"{'what':<26} {'n':>3} {'wall s':>8} {'s/trial':>8} {'trials/h':>9} "
        f"{'x ref':>6} {'x w=1':>6}"
    )
    print(head)
    print("-" * len(head))
    print(f"{'reference: 1 plain run':<26} {1:>3} {ref:>8.1f} {ref:>8.2f} {3600 / ref:>9.0f} "
          f"{1.0:>6.2f} {'':>6}")  # fmt: skip
    for r in rows:
        what = f"sweep w={r['workers']} pruner={r['pruner']}"
        print(
            f"{what:<26} {r['trials']:>3} {r['wall_s']:>8.1f} {r['s_per_trial']:>8.2f} "
            f"{r['trials_per_hour']:>9.0f} {r['ratio_trial_to_reference']:>6.2f} "
            f"{r['ratio_trials_per_hour']:>6.2f}"
        )
        if r["pruned"]:
            print(f"{'':<26} ({r['pruned']} of {r['trials']} trials pruned)")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_sweep.json"
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg()[0],
                },
                "config": {
                    "preset": "quick",
                    "steps": args.steps,
                    "episodes_per_trial": args.steps * 128,
                    "seeds": 1,
                    "trials": args.trials,
                },
                "reference_s": ref,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
