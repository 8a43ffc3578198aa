"""The synchronized M-GRPO trainer (DESIGN §3.5), read top to bottom like CleanRL.

One step: sample B queries, run K rollouts of the whole system per query (sub-agent calls happen
inside the env), compute R_M per main trajectory and R_S per sub trajectory, align the sub rows of
each rollout to D per role, compute group-relative advantages per role, update every trainable
role with its own optimizer (``mu`` epochs over minibatches), log, evaluate, checkpoint.

Every variant of DESIGN §3.6 is a real code path here: ``main_only`` freezes the specialists,
``single_agent`` runs the env in flat mode (one policy, no specialists), ``no_alignment`` trains on
ragged sub groups, ``async_queue`` trains the specialists from a FIFO of past sub trajectories with
``queue_window`` groups, ``gated_reward`` switches the sub reward form, ``shared_policy`` builds one
module for all roles.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the mgrpo/ ids)
from policies import MLPPolicy, relevance_from_text, shared_policies
from sim.advantages import aligned_group_advantages, group_advantages, sub_group_ids
from sim.alignment import align
from sim.checkpoint import (
    CHECKPOINT,
    append_metrics,
    load_checkpoint,
    save_checkpoint,
    truncate_metrics,
)
from sim.config import TrainConfig
from sim.loss import policy_loss
from sim.rewards import main_reward, sub_reward
from sim.rollout import RoleRows, RolloutBatch, collect_rollouts

__all__ = ["TrainingError", "Trainer", "make_env"]

HELDOUT = 2**31


class TrainingError(RuntimeError):
    """A run stopped on bad numbers (NaN/inf loss or reward); the last checkpoint is intact."""


def make_env(cfg: TrainConfig, num_envs: int, *, flat: bool | None = None) -> Any:
    """The unwrapped batched env of the config with ``num_envs`` episodes."""
    kwargs = dict(cfg.env.kwargs)
    if flat is not None:
        kwargs["flat"] = flat
    vec = gym.make_vec(
        cfg.env.id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        preset=cfg.env.preset,
        **kwargs,
    )
    return getattr(vec, "unwrapped", vec)


@dataclass
class _Prepared:
    """A role's training rows for one step (aligned), their advantages and row weights, and the
    rewards of the original (unaligned) rows."""

    rows: RoleRows
    adv: torch.Tensor
    weight: torch.Tensor
    rewards: torch.Tensor


class Trainer:
    """Builds policies and optimizers from a :class:`TrainConfig` and trains into ``run_dir``.

    Args:
        cfg: the resolved config.
        run_dir: output directory (created); holds metrics.jsonl, checkpoint.pt, config.toml.
        resume: continue from ``run_dir/checkpoint.pt``.
        progress: show a tqdm progress bar.
        tensorboard: also write every metric as TensorBoard scalars to ``run_dir/tb`` (needs the
            ``tensorboard`` package: ``pip install mgrpo-sim[tensorboard]``).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        resume: bool = False,
        progress: bool = True,
        tensorboard: bool = False,
    ) -> None:
        self.cfg = cfg
        self.tensorboard = tensorboard
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        torch.set_num_threads(cfg.threads)
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size

        # -- envs ----------------------------------------------------------------------------
        self.env = make_env(cfg, B * K)
        self.eval_env = make_env(cfg, cfg.eval.episodes)
        self.roles: tuple[str, ...] = tuple(self.env.subagent_roles)

        # -- policies ------------------------------------------------------------------------
        specs = {"main": (self.env.single_observation_space, self.env.single_action_space)}
        specs.update({r: self.env.subagent_spaces[r] for r in self.roles})
        hidden = cfg.policy.hidden
        texts = {"main": self.env.text} | {r: self.env.sub_tasks[r].text for r in self.roles}
        rel = {r: relevance_from_text(t) for r, t in texts.items()}
        self.shared_module = None
        if cfg.policy.shared:
            self.shared_module, self.policies = shared_policies(specs, hidden, cfg.seed, rel)
        else:
            self.policies = {
                r: MLPPolicy(o, a, hidden=hidden, seed=cfg.seed * 1000 + 17 * i, relevance=rel[r])
                for i, (r, (o, a)) in enumerate(specs.items())
            }
        for role in specs:
            src = cfg.role(role).init_from
            if src:
                self._init_from(role, Path(src))
        self.frozen = {
            r: cfg.role(r).frozen or (cfg.variant == "main_only" and r != "main") for r in specs
        }
        self.trainable = [r for r in specs if not self.frozen[r]]
        if cfg.policy.shared:
            self.optims = {
                "shared": torch.optim.Adam(self.shared_module.parameters(), cfg.optim.lr)
            }
        else:
            self.optims = {
                r: torch.optim.Adam(self.policies[r].parameters(), cfg.role(r).lr or cfg.optim.lr)
                for r in self.trainable
            }
        self.ref = (
            {r: copy.deepcopy(p).requires_grad_(False) for r, p in self.policies.items()}
            if cfg.loss.kl_coef > 0
            else {}
        )
        self.update_gen = torch.Generator().manual_seed(cfg.seed + 12345)
        self.queue: dict[str, deque] = {r: deque() for r in self.roles}
        self.step = 0
        self.oracle_success: float | None = None
        self._stop = False

        if resume:
            if (self.run_dir / CHECKPOINT).exists():
                self._restore(load_checkpoint(self.run_dir))
            truncate_metrics(self.run_dir, self.step - 1)  # no checkpoint yet: from step 0

    # ------------------------------------------------------------------ public
    def train(self) -> Path:
        """Run until ``cfg.steps`` steps; returns the run directory."""
        cfg = self.cfg
        if self.oracle_success is None and cfg.eval.oracle_episodes > 0:
            self.oracle_success = self._oracle()
        old = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)
        bar = None
        writer = None
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError(
                    "tensorboard output needs the tensorboard package: "
                    "pip install 'mgrpo-sim[tensorboard]'"
                ) from e
            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step)
        try:
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step")
            while self.step < cfg.steps:
                row = self.train_step()
                append_metrics(self.run_dir, row)
                if writer is not None:
                    for k, v in row.items():
                        if k != "step" and isinstance(v, int | float):
                            writer.add_scalar(k, v, row["step"])
                last = self.step == cfg.steps
                if self.step % cfg.checkpoint_every == 0 or last or self._stop:
                    self.save()
                if bar is not None:
                    bar.update(1)
                    post = {"R_M": f"{row['main/reward_mean']:.3f}"}
                    if "eval/success_greedy" in row:
                        post["eval"] = f"{row['eval/success_greedy']:.2f}"
                    bar.set_postfix(post)
                if self._stop:
                    raise KeyboardInterrupt
        finally:
            signal.signal(signal.SIGINT, old)
            if writer is not None:
                writer.close()
            if bar is not None:
                bar.close()
        return self.run_dir

    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = True

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, Any]:
        """One synchronized M-GRPO step; returns its metrics row."""
        cfg, step = self.cfg, self.step
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size
        t0 = time.perf_counter()

        # rollout
        rng = np.random.default_rng([cfg.seed, step, 1])
        queries = rng.integers(0, HELDOUT, B, dtype=np.int64)
        seeds = rng.integers(0, 2**31, B * K).tolist()
        subs = {r: self.policies[r] for r in self.roles}
        batch = collect_rollouts(
            self.env, self.policies["main"], subs, queries, K, seeds, version=step
        )
        t1 = time.perf_counter()

        # rewards, alignment, advantages
        metrics: dict[str, Any] = {"step": step, "samples": (step + 1) * B * K}
        prepared = {"main": self._prepare_main(batch, metrics)}
        self.last_prepared = prepared  # for inspection (tests, notebooks)
        for r_i, role in enumerate(self.roles):
            prep = self._prepare_sub(batch, role, r_i, metrics)
            if cfg.algo.queue_lag > 0:  # async: train on the data of `queue_lag` steps ago
                self.queue[role].append(prep)
                prep = (
                    self.queue[role].popleft()
                    if len(self.queue[role]) > cfg.algo.queue_lag
                    else None
                )
            if prep is not None:
                prepared[role] = prep
                metrics[f"{role}/data_lag"] = float(step - prep.rows.version.float().mean())
        t2 = time.perf_counter()

        # update
        for role in ("main", *self.roles):
            m = {"loss": 0.0, "clip_frac_low": 0.0, "clip_frac_high": 0.0, "approx_kl": 0.0}
            m |= {"entropy": 0.0, "grad_norm": 0.0}
            p = prepared.get(role)
            metrics[f"{role}/rows"] = len(p.rows) if p is not None else 0
            if p is not None and not self.frozen[role] and len(p.rows) > 0:
                m = self._update(role, p)
            elif p is not None and len(p.rows) > 0:
                m["entropy"] = self._entropy(role, p)
            for k, v in m.items():
                metrics[f"{role}/{k}"] = v
        t3 = time.perf_counter()

        # logging
        self.step += 1
        if self.step % cfg.eval.every == 0 or self.step in (1, cfg.steps):
            metrics |= self.evaluate()
        metrics["time/rollout_s"] = t1 - t0
        metrics["time/adv_s"] = t2 - t1
        metrics["time/update_s"] = t3 - t2
        metrics["time/step_s"] = time.perf_counter() - t0
        metrics["time/env_steps"] = batch.env_steps
        return metrics

    def _prepare_main(self, batch: RolloutBatch, metrics: dict[str, Any]) -> _Prepared:
        cfg = self.cfg
        K = batch.group_size
        r = self._checked(
            lambda: main_reward(batch.format_ok, batch.correct, cfg.reward.alpha), "main"
        )
        adv = group_advantages(
            r,
            batch.main.rollout // K,
            ddof=cfg.adv.ddof,
            eps=cfg.adv.eps,
            scale=cfg.adv.scale,
            std_floor=cfg.adv.std_floor,
        )
        metrics["main/reward_mean"] = float(r.mean())
        metrics["main/reward_std"] = float(r.std(correction=0))
        metrics["main/frac_zero_std"] = adv.stats.frac_zero_std
        metrics["main/correct_rate"] = float((batch.correct == 1.0).mean())
        metrics["main/format_rate"] = float(batch.format_ok.mean())
        metrics["tool/category_error_rate"] = float((batch.category_errors > 0).mean())
        metrics["main/sim_time"] = float(batch.sim_time.mean())
        for k, v in batch.extra.items():
            metrics[f"main/{k}"] = float(np.mean(v))
        w = torch.ones(len(r))
        return _Prepared(batch.main, adv.advantages.float(), w, r)

    def _prepare_sub(
        self, batch: RolloutBatch, role: str, r_i: int, metrics: dict[str, Any]
    ) -> _Prepared | None:
        cfg = self.cfg
        rows = batch.subs[role]
        n_roll = len(batch.correct)
        K = batch.group_size
        calls = batch.calls[role]
        metrics[f"{role}/calls_mean"] = float(calls.mean())
        if len(rows) == 0:
            for k in ("reward_mean", "reward_std", "frac_zero_std", "expert_mean"):
                metrics[f"{role}/{k}"] = 0.0
            metrics |= {f"{role}/align_{k}": 0 for k in ("duplicated", "dropped")}
            metrics[f"{role}/align_empty"] = n_roll
            return None
        c_main = torch.from_numpy(batch.correct).float()[rows.rollout]
        r = self._checked(
            lambda: sub_reward(
                rows.format_ok, c_main, rows.expert, cfg.reward.betas(), cfg.reward.form
            ),
            role,
        )
        target = cfg.role(role).align_target or cfg.algo.align_target
        a = align(
            rows.rollout,
            n_roll,
            target,
            cfg.algo.align_mode,
            seed=np.random.default_rng([cfg.seed, self.step, 3, r_i]),
        )
        adv_kw = {
            "ddof": cfg.adv.ddof,
            "eps": cfg.adv.eps,
            "scale": cfg.adv.scale,
            "std_floor": cfg.adv.std_floor,
        }
        query = rows.rollout // K
        if cfg.algo.sub_grouping == "per_query":
            res = aligned_group_advantages(r, a, torch.arange(n_roll) // K, **adv_kw)
            adv = res.advantages
        else:
            if cfg.algo.sub_grouping == "per_invocation":
                gid = sub_group_ids("per_invocation", query, invocation=rows.invocation)
            else:  # queue_window: rollouts in the order they finished, calls in order
                finish_rank = np.argsort(np.argsort(batch.sim_time, kind="stable"), kind="stable")
                arrival = torch.from_numpy(finish_rank)[rows.rollout] * 10_000 + rows.finish_order
                gid = sub_group_ids("queue_window", query, arrival=arrival, window=K)
            res = group_advantages(r, gid, **adv_kw)
            adv = res.advantages[a.index]
        metrics[f"{role}/reward_mean"] = float(r.mean())
        metrics[f"{role}/reward_std"] = float(r.std(correction=0))
        metrics[f"{role}/frac_zero_std"] = res.stats.frac_zero_std
        metrics[f"{role}/expert_mean"] = float(rows.expert.mean())
        for k, v in a.counts().items():
            metrics[f"{role}/align_{k}"] = v
        return _Prepared(rows.select(a.index), adv.float(), a.weight.float(), r)

    def _checked(self, fn, role: str) -> torch.Tensor:
        try:
            return fn()
        except ValueError as e:
            raise TrainingError(f"step {self.step}: bad {role} reward: {e}") from e

    def _logp(self, role: str, rows: RoleRows, idx: torch.Tensor, policy=None):
        pol = policy or self.policies[role]
        n, t = len(idx), rows.valid.shape[1]
        valid = rows.valid[idx]
        masks = rows.masks[idx]
        masks = torch.where(valid[..., None] > 0, masks, torch.ones_like(masks))  # padding
        logp, ent = pol.log_prob(
            rows.inputs[idx].reshape(n * t, -1),
            masks.reshape(n * t, -1),
            rows.actions[idx].reshape(n * t, -1),
        )
        return logp.reshape(n, t), ent.reshape(n, t), valid

    def _update(self, role: str, p: _Prepared) -> dict[str, float]:
        cfg = self.cfg
        pol = self.policies[role]
        opt = self.optims["shared" if cfg.policy.shared else role]
        params = [q for g in opt.param_groups for q in g["params"]]
        n = len(p.rows)
        n_mb = min(cfg.optim.minibatches, n)
        sums: dict[str, float] = {}
        count = 0
        for _epoch in range(cfg.optim.mu):
            perm = torch.randperm(n, generator=self.update_gen)
            for mb in torch.tensor_split(perm, n_mb):
                logp, ent, valid = self._logp(role, p.rows, mb)
                ref = None
                if cfg.loss.kl_coef > 0:
                    with torch.no_grad():
                        ref = self._logp(role, p.rows, mb, self.ref[role])[0]
                loss, st = policy_loss(
                    logp,
                    p.rows.logp_old[mb],
                    p.adv[mb],
                    valid,
                    eps_low=cfg.loss.eps_low,
                    eps_high=cfg.loss.eps_high,
                    ratio_level=cfg.loss.ratio_level,
                    agg=cfg.loss.agg,
                    weights=p.weight[mb],
                    ref_logp=ref,
                    kl_coef=cfg.loss.kl_coef,
                    entropy=ent,
                    entropy_coef=cfg.loss.entropy_coef,
                )
                if not torch.isfinite(loss):
                    raise TrainingError(f"step {self.step}: non-finite {role} loss ({loss.item()})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                max_norm = cfg.optim.max_grad_norm or math.inf
                gn = torch.nn.utils.clip_grad_norm_(params, max_norm)
                if not torch.isfinite(gn):
                    raise TrainingError(f"step {self.step}: non-finite {role} gradient norm")
                opt.step()
                st["loss"] = float(loss.detach())
                st["grad_norm"] = float(gn)
                for k in (
                    "loss",
                    "clip_frac_low",
                    "clip_frac_high",
                    "approx_kl",
                    "entropy",
                    "grad_norm",
                ):
                    sums[k] = sums.get(k, 0.0) + st[k]
                count += 1
        del pol
        return {k: v / max(count, 1) for k, v in sums.items()}

    @torch.no_grad()
    def _entropy(self, role: str, p: _Prepared) -> float:
        _, ent, valid = self._logp(role, p.rows, torch.arange(len(p.rows)))
        return float((ent * valid).sum() / valid.sum().clamp(min=1))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Held-out success (sampled and greedy), category errors, d_k, completion time."""
        cfg = self.cfg
        n = cfg.eval.episodes
        queries = HELDOUT + cfg.seed * n + np.arange(n, dtype=np.int64)
        seeds = [HELDOUT // 2 + i for i in range(n)]
        subs = {r: self.policies[r] for r in self.roles}
        # evaluation samples from its own streams, so it never changes the training trajectory
        saved = {r: p.generator.get_state() for r, p in self.policies.items()}
        for i, p in enumerate(self.policies.values()):
            p.generator.manual_seed(cfg.seed * 1_000_003 + self.step * 101 + i)
        try:
            out = self._evaluate(queries, seeds, subs)
        finally:
            for r, p in self.policies.items():
                p.generator.set_state(saved[r])
        return out

    def _evaluate(self, queries: np.ndarray, seeds: list[int], subs: dict) -> dict[str, float]:
        out: dict[str, float] = {}
        for greedy, key in ((False, "eval/success"), (True, "eval/success_greedy")):
            b = collect_rollouts(
                self.eval_env,
                self.policies["main"],
                subs,
                queries,
                1,
                seeds,
                greedy=greedy,
                record_subs=False,
            )
            success = float(((b.correct == 1.0) & (b.format_ok == 1)).mean())
            out[key] = success
            if greedy:
                out["eval/category_error_rate"] = float((b.category_errors > 0).mean())
                out["eval/sim_time"] = float(b.sim_time.mean())
                for r in self.roles:
                    out[f"eval/calls_mean_{r}"] = float(b.calls[r].mean())
                for k, v in b.extra.items():
                    out[f"eval/{k}"] = float(np.mean(v))
        if self.oracle_success:
            out["eval/oracle_success"] = self.oracle_success
            out["eval/oracle_fraction"] = out["eval/success_greedy"] / self.oracle_success
        return out

    def oracle(self) -> float:
        """Success rate of the env's oracle on ``eval.oracle_episodes`` held-out queries."""
        return self._oracle()

    def _oracle(self) -> float:
        from envs import evaluate_baseline

        kwargs = {k: v for k, v in self.cfg.env.kwargs.items() if k != "flat"}
        res = evaluate_baseline(
            self.cfg.env.id,
            "oracle",
            n_queries=self.cfg.eval.oracle_episodes,
            seed=0,
            preset=self.cfg.env.preset,
            **kwargs,
        )
        return res.success

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resume needs."""
        return {
            "step": self.step,
            "policies": {r: p.state_dict() for r, p in self.policies.items()},
            "generators": {r: p.generator.get_state() for r, p in self.policies.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "update_gen": self.update_gen.get_state(),
            "queue": {r: list(q) for r, q in self.queue.items()},
            "oracle_success": self.oracle_success,
            "env_rngs": [r.bit_generator.state for r in self.env._rngs],
            "config_variant": self.cfg.variant,
        }

    def save(self) -> Path:
        return save_checkpoint(self.run_dir, self.state())

    def _restore(self, st: dict[str, Any]) -> None:
        self.step = int(st["step"])
        for r, sd in st["policies"].items():
            self.policies[r].load_state_dict(sd)
            self.policies[r].generator.set_state(st["generators"][r])
        for k, sd in st["optims"].items():
            self.optims[k].load_state_dict(sd)
        self.update_gen.set_state(st["update_gen"])
        self.queue = {r: deque(q) for r, q in st["queue"].items()}
        self.oracle_success = st["oracle_success"]
        for rng, s in zip(self.env._rngs, st["env_rngs"], strict=False):
            rng.bit_generator.state = s

    def _init_from(self, role: str, src: Path) -> None:
        try:
            st = load_checkpoint(src)
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"roles.{role}.init_from: {e}") from e
        if role not in st.get("policies", {}):
            raise ValueError(
                f"roles.{role}.init_from: {src} has no policy for role {role!r} "
                f"(it has {sorted(st.get('policies', {}))})"
            )
        try:
            self.policies[role].load_state_dict(st["policies"][role])
        except RuntimeError as e:
            raise ValueError(f"roles.{role}.init_from: incompatible policy in {src}: {e}") from e
