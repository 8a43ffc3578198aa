"""Env throughput: the batched numpy env vs ``gymnasium.vector.SyncVectorEnv`` over single envs.

For each env (``--envs rubiks,species``; an env whose module is missing is skipped) and each
main policy (uniform random over allowed actions, the oracle), measure full hierarchical
episodes per second and main-agent env steps per second at N parallel episodes (default
1024), best of ``--repeat`` alternating runs:

* batched: ``gymnasium.make_vec(id, N, vectorization_mode="vector_entry_point")``; a round is a
  reset over N training queries then steps until all N are done (only active steps counted);
* reference: ``SyncVectorEnv`` over N ``gymnasium.make(id)`` envs (SAME_STEP autoreset), each
  env cycling through the same query pool; the same policy, computed per env for the oracle;
  ``--sync-steps`` step rounds at N = 1024, scaled by 1024 / N (at least 2) so every N times
  about the same number of env steps.

Puzzles are generated before timing for both (a pure function of the query id, cached), so the
timings compare stepping, not instance generation. Sub-agents: the env's default random policy
under ``random``, the oracle sub-agents under ``oracle``. Also prints the d_k histogram per
preset under the oracle (2,000 held-out queries). Writes ``benchmarks/results/bench_envs.json``.

    .venv/bin/python benchmarks/bench_envs.py [--envs rubiks,species] [--n 1024,4096] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs
from envs.baselines import HELDOUT_START, random_main_policy
from envs.core.spaces import sample_masked

IDS = {"rubiks": "mgrpo/RubiksLogic-v0", "species": "mgrpo/InvasiveSpecies-v0"}


class _QueryPool(gym.Wrapper):
    """Resets each episode with the next query id of a fixed pool (for SAME_STEP autoreset)."""

    def __init__(self, env: gym.Env, pool: np.ndarray) -> None:
        super().__init__(env)
        self._pool, self._next = pool, 0

    def reset(self, *, seed=None, options=None):
        q = int(self._pool[self._next % len(self._pool)])
        self._next += 1
        return self.env.reset(seed=seed, options={"query": q})


def _available(env_id: str) -> bool:
    module = gym.spec(env_id).entry_point.split(":")[0]
    try:
        importlib.import_module(module)
    except ModuleNotFoundError:
        return False
    return True


def bench_batched(env_id: str, policy: str, n: int, rounds: int, pool: np.ndarray) -> dict:
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    base = vec.unwrapped
    rng = np.random.default_rng(0)
    if policy == "oracle":
        main, subs = base.baseline_policies("oracle", rng)
        for role, p in subs.items():
            base.set_subagent(role, p)
    else:
        main = random_main_policy(base.nvec, rng)
    base.reset(seed=0, options={"query": pool[:n]})  # warm the puzzle cache
    episodes = steps = sub_steps = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        obs, _ = base.reset(seed=r * n, options={"query": pool[:n]})
        while not base.done.all():
            steps += int((~base.done).sum())
            obs, *_ = base.step(main(obs))
        episodes += n
        sub_steps += int(base.sub_records.steps().sum())
    dt = time.perf_counter() - t0
    return dict(episodes=episodes, steps=steps, sub_steps=sub_steps, seconds=dt)


def bench_sync(env_id: str, policy: str, n: int, step_rounds: int, pool: np.ndarray) -> dict:
    fns = [(lambda i=i: _QueryPool(gym.make(env_id), np.roll(pool[:n], -i))) for i in range(n)]
    sync = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    rng = np.random.default_rng(0)
    nvec = sync.single_action_space.nvec
    if policy == "oracle":
        mains = []
        for e in sync.envs:
            main, subs = e.unwrapped.vec.baseline_policies("oracle", rng)
            for role, p in subs.items():
                e.unwrapped.set_subagent(role, p)
            mains.append(main)

        def act(obs):
            return np.stack(
                [m({k: v[i : i + 1] for k, v in obs.items()})[0] for i, m in enumerate(mains)]
            )
    else:

        def act(obs):
            return sample_masked(obs["action_mask"], nvec, rng.random((n, len(nvec))))[0]

    obs, _ = sync.reset(seed=0)
    episodes = 0
    t0 = time.perf_counter()
    for _ in range(step_rounds):
        obs, _, term, trunc, _ = sync.step(act(obs))
        episodes += int((term | trunc).sum())
    dt = time.perf_counter() - t0
    sync.close()
    return dict(episodes=episodes, steps=step_rounds * n, seconds=dt)


def dk_histograms(env_id: str, n: int = 2000) -> dict[str, list[int]]:
    out = {}
    for preset in ("low", "default", "heavy"):
        vec = gym.make_vec(
            env_id, num_envs=n, vectorization_mode="vector_entry_point", preset=preset
        )
        base = vec.unwrapped
        main, subs = base.baseline_policies("oracle", np.random.default_rng(0))
        for role, p in subs.items():
            base.set_subagent(role, p)
        obs, _ = base.reset(seed=0, options={"query": HELDOUT_START + np.arange(n)})
        while not base.done.all():
            obs, *_ = base.step(main(obs))
        calls = base.calls[:, 0]
        out[preset] = np.bincount(calls).tolist()
    return out


def _row(
    env_id: str,
    name: str,
    policy: str,
    n: int,
    rounds: int,
    sync_steps: int,
    repeat: int,
    pool: np.ndarray,
) -> dict:
    """Best of ``repeat`` alternating batched / SyncVectorEnv runs (the machine may be shared)."""
    bs, ss = [], []
    for _ in range(repeat):
        bs.append(bench_batched(env_id, policy, n, rounds, pool))
        ss.append(bench_sync(env_id, policy, n, sync_steps, pool))
    b = min(bs, key=lambda x: x["seconds"] / x["episodes"])
    s = min(ss, key=lambda x: x["seconds"] / max(x["episodes"], 1))
    row = dict(env=name, policy=policy, n=n, batched=b, sync=s)
    row["episodes_per_s"] = [b["episodes"] / b["seconds"], s["episodes"] / s["seconds"]]
    row["steps_per_s"] = [b["steps"] / b["seconds"], s["steps"] / s["seconds"]]
    row["ratio_episodes"] = row["episodes_per_s"][0] / max(row["episodes_per_s"][1], 1e-9)
    row["ratio_steps"] = row["steps_per_s"][0] / row["steps_per_s"][1]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", default="rubiks,species", help="comma list of: rubiks, species")
    ap.add_argument("--n", default="1024,4096", help="comma list of parallel episodes N")
    ap.add_argument("--rounds", type=int, default=3, help="batched rounds (reset + episodes)")
    ap.add_argument(
        "--sync-steps", type=int, default=16, help="SyncVectorEnv step rounds at N = 1024"
    )
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--no-hist", action="store_true", help="skip the d_k histograms")
    ap.add_argument("--out", default="benchmarks/results/bench_envs.json")
    args = ap.parse_args()
    ns = [int(x) for x in args.n.split(",")]
    pool = np.arange(max(ns), dtype=np.int64) + 1_000
    rows, hists = [], {}
    for name in args.envs.split(","):
        name = name.strip()
        if name not in IDS:
            raise SystemExit(f"unknown env {name!r}; choose from {sorted(IDS)}")
        env_id = IDS[name]
        if not _available(env_id):
            print(f"[skip] {env_id}: module not available yet")
            continue
        for n in ns:
            sync_steps = max(2, args.sync_steps * 1024 // n)
            for policy in ("random", "oracle"):
                rows.append(
                    _row(env_id, name, policy, n, args.rounds, sync_steps, args.repeat, pool)
                )
        if not args.no_hist:
            hists[name] = dk_histograms(env_id)
    head = (
        f"{'env':8} {'policy':7} {'N':>5} {'batched ep/s':>13} {'sync ep/s':>10} "
        f"{'ratio':>6} {'batched st/s':>13} {'sync st/s':>10} {'ratio':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['env']:8} {r['policy']:7} {r['n']:>5} {r['episodes_per_s'][0]:>13.0f} "
            f"{r['episodes_per_s'][1]:>10.0f} {r['ratio_episodes']:>5.1f}x "
            f"{r['steps_per_s'][0]:>13.0f} {r['steps_per_s'][1]:>10.0f} {r['ratio_steps']:>5.1f}x"
        )
    if hists:
        print(
            "\nd_k histogram under the oracle (2,000 held-out queries; counts for d_k = 0, 1, ...):"
        )
    for name, h in hists.items():
        for preset, counts in h.items():
            mean = float(np.dot(np.arange(len(counts)), counts) / max(sum(counts), 1))
            print(f"{name:8} {preset:8} mean {mean:4.2f}  {counts}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(rows=rows, dk_hist=hists), indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    _ = envs
    main()
