"""Benchmark: M-GRPO training step time with the small policies (B=32, K=8 by default).

For each env: median wall time of one training step and where it goes (rollout = env + policy
sampling, adv = rewards + alignment + advantages, update = mu epochs of minibatch gradient steps),
training steps per second and environment steps (main + sub-agent) per second during training.
The reference measured in the same run is the rollout alone (the env-bound floor of a step), so
the table reports each step's time as a ratio to it. Evaluation is excluded (``eval.every`` set
past the run).

    python benchmarks/bench_train.py [--steps 12] [--warmup 2] [--queries 32] [--group-size 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from experiments.config import resolve
from experiments.run import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
ENVS = {"rubiks": "mgrpo/RubiksLogic-v0", "species": "mgrpo/InvasiveSpecies-v0"}


def bench(env_id: str, steps: int, warmup: int, b: int, k: int, variant: str) -> dict:
    cfg = resolve(
        {
            "env.id": env_id,
            "variant": variant,
            "steps": steps + warmup,
            "algo.queries_per_step": b,
            "algo.group_size": k,
            "eval.every": 10**6,
            "eval.episodes": 1,
            "eval.oracle_episodes": 0,
        }
    )
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, Path(d), progress=False)
        rows = []
        for i in range(steps + warmup):
            row = tr.train_step()
            if i >= warmup:
                rows.append(row)
    med = {
        k: float(np.median([r[f"time/{k}"] for r in rows]))
        for k in ("step_s", "rollout_s", "adv_s", "update_s")
    }
    env_steps = float(np.median([r["time/env_steps"] for r in rows]))
    return {
        "env": env_id,
        "variant": variant,
        "B": b,
        "K": k,
        **med,
        "env_steps_per_step": env_steps,
        "steps_per_s": 1.0 / med["step_s"],
        "env_steps_per_s": env_steps / med["step_s"],
        "ratio_step_to_rollout": med["step_s"] / med["rollout_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="timed steps per env (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps (JIT, caches)")
    p.add_argument("--queries", type=int, default=32, help="B (default 32)")
    p.add_argument("--group-size", type=int, default=8, help="K (default 8)")
    p.add_argument("--envs", default="rubiks,species", help="comma list of rubiks, species")
    p.add_argument("--variant", default="mgrpo", help="variant to time (default mgrpo)")
    args = p.parse_args()
    names = [e.strip() for e in args.envs.split(",") if e.strip()]
    bad = [e for e in names if e not in ENVS]
    if bad or args.steps < 1 or args.warmup < 0:
        p.error(f"--envs must name {list(ENVS)}, --steps >= 1, --warmup >= 0 (got {bad})")
    torch.set_num_threads(1)
    results = [
        bench(ENVS[e], args.steps, args.warmup, args.queries, args.group_size, args.variant)
        for e in names
    ]
    print(
        f"\nM-GRPO step, B={args.queries}, K={args.group_size}, variant {args.variant}, "
        f"torch threads 1, median of {args.steps} steps"
    )
    head = (
        f"{'env':<28} {'step s':>8} {'rollout':>8} {'adv':>8} {'update':>8} {'steps/s':>8} "
        f"{'env steps/s':>12} {'x rollout':>10}"
    )
    print(head)
    for r in results:
        print(
            f"{r['env']:<28} {r['step_s']:>8.3f} {r['rollout_s']:>8.3f} {r['adv_s']:>8.4f} "
            f"{r['update_s']:>8.3f} {r['steps_per_s']:>8.2f} {r['env_steps_per_s']:>12,.0f} "
            f"{r['ratio_step_to_rollout']:>10.2f}"
        )
    print("goal: one step under 0.5 s")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_train.json"
    path.write_text(json.dumps({"machine": platform.platform(), "results": results}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
