"""Benchmark: the M-GRPO training step with the small MLP policies, against its floor.

For each env (B=32, K=8 by default), the median over the timed steps of:

* the step and where it goes: ``gen`` (generating the step's queries: the puzzle or knowledge
  base generator), ``act`` (the policies' acting forward passes and sampling), ``stepping``
  (the rest of the rollout: stepping the envs, sub-agent episodes, records), ``adv`` (rewards,
  alignment, advantages, packing), ``update`` (``mu`` epochs of minibatch gradient steps),
  and ``eval`` (one held-out evaluation, measured once after the steps, divided by
  ``eval.every`` of the default config: what evaluation adds to a step on average; not part of
  ``step``);
* the **floor**, measured in the same run on the same data: the policies' own compute, without
  envs or bookkeeping. ``floor act``: every acting call of the step replayed on its recorded
  observations (the policies' generators restored after); ``floor upd``: for each trained role,
  ``mu`` epochs of forward + backward + Adam step over the step's sampled tokens (distinct rows:
  alignment's copies are the same tokens), in as many minibatches as the update, on a copy of
  the policy. ``x floor`` = step / floor; the goal is <= 2x and one step <= 0.1 s.

``--sweep 8,32,128`` adds step time against B (K fixed), showing the fixed cost per step;
``--make-quick`` times one whole ``make quick`` (``mgrpo ablate quick --workers 2``) in a
temporary directory. MLP policies only (``benchmarks/bench_lm.py`` measures the LM step).

    python benchmarks/bench_train.py [--steps 12] [--warmup 2] [--queries 32] [--group-size 8]
        [--envs rubiks,species] [--sweep 8,32,128] [--make-quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import sim.trainer as trainer_mod
from experiments.config import resolve
from experiments.run import Trainer
from sim.update import distinct_rows

RESULTS = Path(__file__).resolve().parent / "results"
ENVS = {"rubiks": "mgrpo/RubiksLogic-v0", "species": "mgrpo/InvasiveSpecies-v0"}
PARTS = ("gen", "act", "stepping", "adv", "update")


class _Probe:
    """Times the generator and every policy's ``act`` of a trainer, records what acted, and
    captures each role's prepared rows (for the floor)."""

    def __init__(self, tr: Trainer) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.acts: list[tuple[str, dict, bool]] = []
        self.prepared: dict[str, object] = {}
        gen = tr.env.generator
        tr.env.generator = self._timed(gen, "gen")
        for role, pol in tr.policies.items():
            pol.act = self._timed_act(role, pol.act)
        self._update = trainer_mod._update_role

        def spy(cfg, role, p, *a, **k):
            self.prepared[role] = p
            return self._update(cfg, role, p, *a, **k)

        trainer_mod._update_role = spy

    def close(self) -> None:
        trainer_mod._update_role = self._update

    def _timed(self, fn, key: str):
        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[key] += time.perf_counter() - t0

        return wrapped

    def _timed_act(self, role: str, act):
        def wrapped(obs, greedy: bool = False):
            self.acts.append((role, {k: np.array(v, copy=True) for k, v in obs.items()}, greedy))
            t0 = time.perf_counter()
            try:
                return act(obs, greedy)
            finally:
                self.t["act"] += time.perf_counter() - t0

        return wrapped

    def reset(self) -> None:
        self.t.clear()
        self.acts.clear()
        self.prepared.clear()


def _floor_act(tr: Trainer, acts: list[tuple[str, dict, bool]]) -> float:
    """Seconds to replay every recorded acting call (generators restored after)."""
    states = {r: p.generator.get_state() for r, p in tr.policies.items()}
    t0 = time.perf_counter()
    for role, obs, greedy in acts:
        type(tr.policies[role]).act(tr.policies[role], obs, greedy)
    dt = time.perf_counter() - t0
    for r, p in tr.policies.items():
        p.generator.set_state(states[r])
    return dt


def _floor_update(tr: Trainer, prepared: dict) -> float:
    """Seconds of ``mu`` epochs x ``minibatches`` of forward + backward + Adam over each trained
    role's distinct sampled tokens, on a copy of its policy."""
    cfg = tr.cfg
    total = 0.0
    g = torch.Generator().manual_seed(0)
    for role, p in prepared.items():
        rows = torch.arange(len(p)) if p.source is None else distinct_rows(p.source)[0]
        b = p.tokens.select(rows)
        on = b.mask > 0
        x, m, a = (b.data[k][on] for k in ("inputs", "masks", "actions"))
        adv = p.adv[rows][:, None].expand_as(b.mask)[on]
        pol = copy.deepcopy(tr.policies[role])
        opt = torch.optim.Adam(pol.parameters(), cfg.optim.lr)
        n_mb = min(cfg.optim.minibatches, len(p))
        t0 = time.perf_counter()
        for _ in range(cfg.optim.mu):
            for mb in torch.tensor_split(torch.randperm(len(x), generator=g), n_mb):
                logp, _ent = pol.log_prob(x[mb], m[mb], a[mb])
                loss = -(adv[mb] * logp).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        total += time.perf_counter() - t0
    return total


def _config(env_id: str, steps: int, b: int, k: int, variant: str):
    return resolve(
        {
            "env.id": env_id,
            "variant": variant,
            "steps": steps,
            "algo.queries_per_step": b,
            "algo.group_size": k,
            "eval.every": 10**6,
            "eval.oracle_episodes": 0,
            "eval.final_episodes": 0,
        }
    )


def bench(env_id: str, steps: int, warmup: int, b: int, k: int, variant: str) -> dict:
    """One env's medians (seconds per step) of the step, its parts and its floor."""
    cfg = _config(env_id, steps + warmup, b, k, variant)
    every = resolve({"env.id": env_id}).eval.every
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(cfg, Path(d), progress=False)
        probe = _Probe(tr)
        try:
            for i in range(steps + warmup):
                probe.reset()
                row = tr.train_step()
                if i < warmup:
                    continue
                t = dict(probe.t)
                r = {
                    "step": row["time/step_s"],
                    "gen": t.get("gen", 0.0),
                    "act": t.get("act", 0.0),
                    "adv": row["time/adv_s"],
                    "update": row["time/update_s"],
                    "floor_act": _floor_act(tr, probe.acts),
                    "floor_update": _floor_update(tr, probe.prepared),
                    "env_steps": row["time/env_steps"],
                }
                r["stepping"] = row["time/rollout_s"] - r["gen"] - r["act"]
                r["floor"] = r["floor_act"] + r["floor_update"]
                r["x_floor"] = r["step"] / r["floor"]
                rows.append(r)
            t0 = time.perf_counter()
            tr.evaluate()
            t_eval = time.perf_counter() - t0
        finally:
            probe.close()
            tr.close()
    med = {key: float(np.median([r[key] for r in rows])) for key in rows[0]}
    return {
        "env": env_id,
        "variant": variant,
        "B": b,
        "K": k,
        "steps": steps,
        **med,
        "eval_one_s": t_eval,
        "eval_every": every,
        "eval_per_step": t_eval / every,
        "steps_per_s": 1.0 / med["step"],
        "env_steps_per_s": med["env_steps"] / med["step"],
    }


def _quick_wall() -> float:
    """Seconds of one whole ``make quick`` (its command, in a temporary output directory)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "experiments.cli", "ablate", "quick", "--workers", "2"]
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--out", d, "--quiet"], check=True, env=os.environ.copy())
        return time.perf_counter() - t0


def _table(results: list[dict]) -> None:
    head = f"{'env':<26} {'step s':>7} " + " ".join(f"{p[:7]:>7}" for p in PARTS)
    head += (
        f" {'eval/st':>7} {'floor':>7} {'fl act':>7} {'fl upd':>7} {'x floor':>7} {'steps/s':>7}"
    )
    print(head)
    for r in results:
        line = f"{r['env']:<26} {r['step']:>7.3f} " + " ".join(f"{r[p]:>7.4f}" for p in PARTS)
        line += (
            f" {r['eval_per_step']:>7.4f} {r['floor']:>7.4f} {r['floor_act']:>7.4f}"
            f" {r['floor_update']:>7.4f} {r['x_floor']:>7.2f} {r['steps_per_s']:>7.2f}"
        )
        print(line)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=12, help="timed steps per env (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed first steps (JIT, caches)")
    p.add_argument("--queries", type=int, default=32, help="B (default 32)")
    p.add_argument("--group-size", type=int, default=8, help="K (default 8)")
    p.add_argument("--envs", default="rubiks,species", help="comma list of rubiks, species")
    p.add_argument("--variant", default="mgrpo", help="variant to time (default mgrpo)")
    p.add_argument("--sweep", default="", help="comma list of B for step time vs B, e.g. 8,32,128")
    p.add_argument("--make-quick", action="store_true", help="also time one whole `make quick`")
    args = p.parse_args()
    names = [e.strip() for e in args.envs.split(",") if e.strip()]
    bad = [e for e in names if e not in ENVS]
    if bad or args.steps < 1 or args.warmup < 0:
        p.error(f"--envs must name {list(ENVS)}, --steps >= 1, --warmup >= 0 (got {bad})")
    try:
        sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    except ValueError:
        p.error(f"--sweep must be a comma list of integers, got {args.sweep!r}")
    if any(b < 1 for b in sweep):
        p.error(f"--sweep values must be >= 1, got {sweep}")
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    B, K = args.queries, args.group_size
    results = [bench(ENVS[e], args.steps, args.warmup, B, K, args.variant) for e in names]
    print(
        f"\nM-GRPO step, B={B}, K={K}, variant {args.variant}, torch threads 1, median of "
        f"{args.steps} steps (seconds per step), load average {load:.2f} at start"
    )
    _table(results)
    print("goal: step <= 0.1 s and <= 2x floor (x floor = step / floor)")
    out = {"machine": platform.platform(), "load_avg": load, "results": results}
    if sweep:
        rows = [
            bench(ENVS[e], args.steps, args.warmup, b, K, args.variant)
            for e in names
            for b in sweep
        ]
        print(f"\nstep time against B (K={K}): the fixed cost per step")
        print(f"{'env':<26} {'B':>5} {'step s':>8} {'ms/query':>9} {'floor':>8} {'x floor':>8}")
        for r in rows:
            print(
                f"{r['env']:<26} {r['B']:>5} {r['step']:>8.3f} {1e3 * r['step'] / r['B']:>9.2f} "
                f"{r['floor']:>8.4f} {r['x_floor']:>8.2f}"
            )
        out["sweep"] = rows
    if args.make_quick:
        wall = _quick_wall()
        print(f"\nmake quick (mgrpo ablate quick --workers 2): {wall:.1f} s wall")
        out["make_quick_s"] = wall
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_train.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
