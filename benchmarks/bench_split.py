"""Benchmark: the extra time per training step that split trainers add over one process
(issue 13; goal: under 10%).

The same run (Rubik's at the paper's shape: B=16 queries x K=8 rollouts, D=8, MLP policies, no
evaluation) is trained three ways in the same session, one after the other:

* ``one process``: ``mgrpo train`` (the reference);
* ``split, SQLite``: ``mgrpo train --role main`` and ``--role sub`` as two processes sharing a
  SQLite store;
* ``split, PostgreSQL``: the same on a throwaway local PostgreSQL server (skipped when none can
  start).

A step's time is the main process's ``time/step_s`` (rollout, rewards, update and, in the split,
writing the sub rows, waiting for the sub side's update and loading its weights); the table shows
the median over the steps after the first two (warm-up), its ratio to the one-process median, and
each run's wall time. On a machine with fewer free cores than processes the two sides compete
for CPU as well as exchange data: the load average is printed.

    python benchmarks/bench_split.py [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from experiments.store.testing import PostgresUnavailable, throwaway_postgres

RESULTS = Path(__file__).resolve().parent / "results"
B, K, D = 16, 8, 8


def _keys(steps: int) -> list[str]:
    keys = {
        "env.id": '"mgrpo/RubiksLogic-v0"',
        "algo.queries_per_step": B,
        "algo.group_size": K,
        "algo.align_target": D,
        "steps": steps,
        "checkpoint_every": steps,
        "eval.every": 10_000,
        "eval.episodes": 2,
        "eval.oracle_episodes": 0,
    }
    return [a for k, v in keys.items() for a in ("--set", f"{k}={v}")]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", "train", *args, "--quiet"]


def _step_times(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["time/step_s"] for r in rows]


def one_process(d: Path, steps: int) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    subprocess.run(_cmd(*_keys(steps), "--out", str(d / "one")), check=True)
    return _step_times(d / "one"), time.perf_counter() - t0


def split(d: Path, steps: int, url: str, name: str) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            _cmd(*_keys(steps), "--out", str(d / f"{name}-{r}"), "--role", r, "--storage", url)
        )
        for r in ("main", "sub")
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a split process failed ({name})")
    return _step_times(d / f"{name}-main"), time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="training steps per run (default 12)")
    args = p.parse_args()
    if args.steps < 4:
        p.error("--steps must be >= 4 (two warm-up steps are left out)")
    load_before = os.getloadavg()[0]
    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        times, wall = one_process(d, args.steps)
        ref = statistics.median(times[2:])
        rows.append({"how": "one process", "step_s": ref, "ratio": 1.0, "wall_s": wall})
        backends = {"split, SQLite": f"sqlite:///{d}/store.db"}
        try:
            backends["split, PostgreSQL"] = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as e:
            rows.append({"how": "split, PostgreSQL", "skipped": str(e)})
        for i, (how, url) in enumerate(backends.items()):
            times, wall = split(d, args.steps, url, f"split{i}")
            med = statistics.median(times[2:])
            rows.append({"how": how, "step_s": med, "ratio": med / ref, "wall_s": wall})
    print(
        f"split trainers vs one process: Rubik's, B={B} x K={K}, D={D}, MLP, {args.steps} steps "
        f"(median of steps 3..{args.steps}), {os.cpu_count()} CPUs, load average "
        f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    head = f"{'how':<20} {'step ms':>9} {'x one process':>14} {'wall s':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if "skipped" in r:
            print(f"{r['how']:<20} skipped ({r['skipped']})")
            continue
        print(f"{r['how']:<20} {r['step_s'] * 1e3:>9.1f} {r['ratio']:>14.3f} {r['wall_s']:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_split.json"
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    config = {"env": "mgrpo/RubiksLogic-v0", "B": B, "K": K, "D": D, "steps": args.steps}
    out.write_text(json.dumps({"machine": machine, "config": config, "rows": rows}, indent=2))
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
