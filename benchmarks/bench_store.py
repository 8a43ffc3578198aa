"""Benchmark: the split trainers' store (experiments.store) at the paper's shape, SQLite and
PostgreSQL.

One step's sub rows: B=16 queries x K=8 rollouts x D=8 calls = 1,024 sub rows, with the records
of real Rubik's sub-agent trajectories (one rollout of ``mgrpo/RubiksLogic-v0`` at B=16, K=8 with
the untrained MLP policies, its rows drawn with replacement and renumbered to 8 calls per
rollout: the same fields, dtypes and step counts as a training step writes). Per backend and
step (a new step each time; the median over ``--steps``):

* write: ``put_sub_rows`` (one transaction) and read: ``get_sub_rows`` (ordered by query,
  rollout, invocation), in rows per second;
* protocol: what one synchronized step costs in store calls, run back to back in one process:
  main writes the rows and marks them, the sub side waits (marker present), reads them,
  publishes its weights (the MLP sub policy's state dict) with metrics and a marker, and main
  waits and reads the weights. Waiting for the other side is not included.

The reference measured in the same run is one in-process training step of the same config
(``Learner.train_step``, median over ``--steps`` after a warm-up, no evaluation), so ``x step``
is the store's cost as a fraction of a training step. PostgreSQL runs on a throwaway local
server (fsync off, as a test server; experiments.store.testing); a row is reported skipped when
none can start.

    python benchmarks/bench_store.py [--steps 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from experiments.config import resolve
from experiments.store import Store, state_dict_to_bytes
from experiments.store.testing import PostgresUnavailable, throwaway_postgres
from sim.records import Trajectories
from sim.rollout import collect_rollouts
from sim.trainer import HELDOUT, Learner

RESULTS = Path(__file__).resolve().parent / "results"
B, K, D = 16, 8, 8


def learner() -> Learner:
    cfg = resolve(
        {
            "env.id": "mgrpo/RubiksLogic-v0",
            "algo.queries_per_step": B,
            "algo.group_size": K,
            "algo.align_target": D,
            "steps": 1000,
            "eval.every": 1000,
            "eval.episodes": 8,
        }
    )
    return Learner(cfg)


def paper_step(lrn: Learner, seed: int = 0) -> tuple[Trajectories, np.ndarray]:
    """1,024 sub rows with real Rubik's records and ``(B*K,)`` c_M."""
    rng = np.random.default_rng(seed)
    queries = rng.integers(0, HELDOUT, B)
    seeds = rng.integers(0, 2**31, B * K).tolist()
    subs = {r: lrn.policies[r] for r in lrn.roles}
    batch = collect_rollouts(lrn.env, lrn.policies["main"], subs, queries, K, seeds)
    real = batch.trajectories["sub"]
    rows = real.select(rng.integers(0, real.num_rows, B * K * D))
    ids = np.arange(B * K * D)
    traj = dataclasses.replace(rows, rollout=ids // D, invocation=ids % D)
    return traj, batch.correct


def train_step_s(lrn: Learner, steps: int) -> float:
    """Median seconds of one training step (after a warm-up step with evaluation)."""
    lrn.train_step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        lrn.train_step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(url: str, traj: Trajectories, correct: np.ndarray, weights: bytes, steps: int):
    """Median seconds of write, read and the whole protocol of one step."""
    write, read, proto = [], [], []
    with Store(url) as store:
        run = store.open_run("bench", "bench config\n")
        for step in range(steps):
            t0 = time.perf_counter()
            run.put_sub_rows(step, traj, correct, group_size=K)
            t1 = time.perf_counter()
            got = run.get_sub_rows(step, "sub")
            t2 = time.perf_counter()
            assert len(got) == traj.num_rows
            write.append(t1 - t0)
            read.append(t2 - t1)
        for step in range(steps, 2 * steps):
            t0 = time.perf_counter()
            run.put_sub_rows(step, traj, correct, group_size=K)  # main
            run.mark(step, "sub", "written")
            run.wait_for(step, "sub", "written", timeout=60)  # sub
            run.get_sub_rows(step, "sub")
            run.put_weights(step, "sub", weights)
            run.put_metrics(step, "sub", {"sub/loss": 0.1, "sub/rows": traj.num_rows})
            run.mark(step, "sub", "published")
            run.wait_for(step, "sub", "published", timeout=60)  # main
            run.get_weights(step, "sub")
            run.put_metrics(step, "main", {"main/loss": 0.1})
            proto.append(time.perf_counter() - t0)
    return statistics.median(write), statistics.median(read), statistics.median(proto)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=5, help="steps per measurement (default 5)")
    args = p.parse_args()
    if args.steps < 1:
        p.error("--steps must be >= 1")
    load_before = os.getloadavg()[0]
    lrn = learner()
    traj, correct = paper_step(lrn)
    weights = state_dict_to_bytes(lrn.policies["sub"].state_dict())
    ref = train_step_s(lrn, args.steps)
    n = traj.num_rows
    rec_bytes = traj.num_steps * (
        traj.actions[0].nbytes
        + 16
        + sum(v[0].nbytes if v.ndim > 1 else v.itemsize for v in traj.obs.values())
    )

    rows = []
    with ExitStack() as stack, tempfile.TemporaryDirectory() as d:
        backends = {"sqlite": f"sqlite:///{d}/store.db", "postgresql": None}
        try:
            backends["postgresql"] = stack.enter_context(throwaway_postgres())
        except PostgresUnavailable as e:
            skipped = str(e)
        for name, url in backends.items():
            if url is None:
                rows.append({"backend": name, "skipped": skipped})
                continue
            w, r, pr = measure(url, traj, correct, weights, args.steps)
            rows.append(
                {
                    "backend": name,
                    "write_s": w,
                    "read_s": r,
                    "write_rows_per_s": n / w,
                    "read_rows_per_s": n / r,
                    "step_cost_s": w + r,
                    "protocol_s": pr,
                    "ratio_step_cost_to_train_step": (w + r) / ref,
                    "ratio_protocol_to_train_step": pr / ref,
                }
            )

    print(
        f"store at the paper's shape: B={B} x K={K} x D={D} = {n} sub rows per step "
        f"({traj.num_steps} env steps, {rec_bytes / 1e3:.0f} kB of records; sub weights "
        f"{len(weights) / 1e3:.0f} kB), median of {args.steps} steps, {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after"
    )
    head = f"{'what':<34} {'n':>5} {'median ms':>10} {'rows/s':>9} {'x step':>7}"
    print(head)
    print("-" * len(head))
    print(f"{'reference: 1 training step':<34} {1:>5} {ref * 1e3:>10.1f} {'':>9} {1.0:>7.3f}")
    for r in rows:
        b = r["backend"]
        if "skipped" in r:
            print(f"{b + ': skipped':<34} ({r['skipped']})")
            continue
        print(f"{b + ' write (put_sub_rows)':<34} {n:>5} {r['write_s'] * 1e3:>10.1f} "
              f"{r['write_rows_per_s']:>9.0f} {r['write_s'] / ref:>7.3f}")  # fmt: skip
        print(f"{b + ' read (get_sub_rows)':<34} {n:>5} {r['read_s'] * 1e3:>10.1f} "
              f"{r['read_rows_per_s']:>9.0f} {r['read_s'] / ref:>7.3f}")  # fmt: skip
        print(f"{b + ' step cost (write + read)':<34} {n:>5} {r['step_cost_s'] * 1e3:>10.1f} "
              f"{'':>9} {r['ratio_step_cost_to_train_step']:>7.3f}")  # fmt: skip
        print(f"{b + ' protocol of one step':<34} {n:>5} {r['protocol_s'] * 1e3:>10.1f} "
              f"{'':>9} {r['ratio_protocol_to_train_step']:>7.3f}")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "bench_store.json"
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
                    "env": "mgrpo/RubiksLogic-v0",
                    "B": B,
                    "K": K,
                    "D": D,
                    "sub_rows_per_step": n,
                    "env_steps_per_step": traj.num_steps,
                    "record_bytes_per_step": rec_bytes,
                    "weights_bytes": len(weights),
                    "steps": args.steps,
                },
                "reference_train_step_s": ref,
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
