"""The synchronized M-GRPO training step (DESIGN §3.5), read top to bottom like CleanRL.

:class:`Learner` holds what a run trains (envs, the policies of every role, their optimizers,
generators, the async queue, the step counter) and :meth:`Learner.train_step` is one step:
sample B queries, run K rollouts of the whole system per query (sub-agent calls happen inside the
env), compute R_M per main trajectory and R_S per sub trajectory, align the sub rows of each
rollout to D per role, compute group-relative advantages per role, update every trainable role
with its own optimizer (``mu`` epochs over minibatches), and return the step's metrics.

The learner knows no files, signals or progress bars: the run directory, checkpoints,
``metrics.jsonl``, TensorBoard, Ctrl-C, ``init_from`` and resume live in
``experiments.run.Trainer``, which drives it. Its whole state is :meth:`Learner.state_dict`.

Every variant of DESIGN §3.6 is a real code path: ``main_only`` freezes the specialists,
``single_agent`` runs the env in flat mode (one policy, no specialists), ``no_alignment`` trains
on ragged sub groups, ``async_queue`` trains the specialists from a FIFO of past sub trajectories
with ``queue_window`` groups, ``gated_reward`` switches the sub reward form, ``shared_policy``
builds one module for all roles.

**Rollout engine** (``policy.engine = "vllm"``): see :mod:`sim.engine_sync`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers the mgrpo/ ids)
from policies import RoleSpec, build_policies
from policies.lm_fsdp import full_params
from sim.config import TrainConfig
from sim.distributed import RankSync, check_ranks, init_ranks, shard_optimizer
from sim.engine_sync import EngineSync
from sim.rollout import RolloutBatch, collect_rollouts, own_streams
from sim.update import (
    Prepared,
    TrainingError,
    prepare_main,
    prepare_sub,
    role_entropy,
)
from sim.update import update_role as _update_role

__all__ = ["HELDOUT", "UPDATE_KEYS", "Learner", "TrainingError", "make_env"]

HELDOUT = 2**31
UPDATE_KEYS = (
    "loss",
    "clip_frac_low",
    "clip_frac_high",
    "approx_kl",
    "entropy",
    "grad_norm",
    "rollout_logp_diff",
    "tokens",
)
"""what :meth:`Learner.update` logs per role (``<role>/<key>``; also ``<role>/rows``)"""
"""query ids from here up are the held-out evaluation split"""


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


def _role_seed(seed: int, role: str) -> int:
    """A stable 63-bit seed of (run seed, role name) (no Python ``hash``: it is salted)."""
    digest = hashlib.sha256(f"{seed}/{role}/update".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _reference(policy: Any) -> Any:
    """The KL reference of a policy: its own view when it has one (LoRA: the model with its
    adapters disabled), else a frozen copy."""
    ref = getattr(policy, "reference", lambda: None)()
    return ref if ref is not None else copy.deepcopy(policy).requires_grad_(False)


def _no_records() -> None:
    """A policy kind that keeps no records of its own (an MLP)."""


def _no_progress(phase: str) -> None:
    pass


def _check_metrics(metrics: dict[str, Any], step: int, roles: Any) -> None:
    """Every logged value is finite (an undefined metric is left out where it is made)."""
    for k, v in metrics.items():
        if isinstance(v, float | int) and not isinstance(v, bool) and not math.isfinite(v):
            prefix = k.split("/", 1)[0]
            where = f"role {prefix}" if prefix in roles else prefix
            raise TrainingError(f"step {step + 1}, {where}: metric {k} is not finite ({v})")


class Learner(EngineSync, RankSync):
    """The trainable state of one run and its training step (no I/O).

    Args:
        cfg: the resolved config.
        role_params: role -> ``(state_dict, source)``: parameters to load into that role's policy
            before the optimizers and the KL reference are made (``roles.<name>.init_from``);
            ``source`` names where they came from, for error messages.
    """

    def __init__(
        self, cfg: TrainConfig, *, role_params: dict[str, tuple[dict, str]] | None = None
    ) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size
        # several processes (a launcher's WORLD_SIZE > 1): this rank's share of the queries
        self.ranks = check_ranks(init_ranks(), cfg)

        # -- envs ----------------------------------------------------------------------------
        self.env = make_env(cfg, self.ranks.count(B) * K)
        self.eval_env = make_env(cfg, self.ranks.count(cfg.eval.episodes))
        self.roles: tuple[str, ...] = tuple(self.env.subagent_roles)

        # -- policies (by kind, from the registry) -------------------------------------------
        specs = {
            "main": RoleSpec(
                self.env.single_observation_space, self.env.single_action_space, self.env.text
            )
        }
        for r in self.roles:
            obs_space, act_space = self.env.subagent_spaces[r]
            specs[r] = RoleSpec(obs_space, act_space, self.env.sub_tasks[r].text)
        built = build_policies(cfg.policy.kind, specs, cfg.policy, cfg.seed)
        self.policies: dict[str, Any] = built.policies
        for p in self.policies.values():  # without an entropy bonus entropy is only logged
            if hasattr(p, "entropy_grad"):
                p.entropy_grad = cfg.loss.entropy_coef > 0
        self.shared_module = built.shared_module
        if self.ranks.world > 1:  # each rank samples its own queries from its own stream
            for r, p in self.policies.items():
                p.generator.manual_seed(_role_seed(cfg.seed, f"{r}/rank{self.ranks.rank}"))
        for role, (sd, source) in (role_params or {}).items():
            self.load_role(role, sd, source)

        # -- optimizers, frozen roles, KL reference ------------------------------------------
        self.frozen = {
            r: cfg.role(r).frozen or (cfg.variant == "main_only" and r != "main") for r in specs
        }
        self.trainable = [r for r in specs if not self.frozen[r]]
        # one process: the multi-tensor Adam (the same numbers as the per-tensor loop torch
        # picks on CPU, in fewer ops); sharded parameters keep torch's default
        adam = {"foreach": True} if self.ranks.world == 1 else {}
        if self.shared_module is not None:
            self.optims = {
                "shared": torch.optim.Adam(self.shared_module.parameters(), cfg.optim.lr, **adam)
            }
        else:
            self.optims = {
                r: torch.optim.Adam(
                    self.policies[r].parameters(), cfg.role(r).lr or cfg.optim.lr, **adam
                )
                for r in self.trainable
            }
        self.ref = (
            {r: _reference(p) for r, p in self.policies.items()} if cfg.loss.kl_coef > 0 else {}
        )
        # each role's minibatch permutations from its own generator, seeded by (seed, role), so
        # a role's numbers do not depend on the order of updates (split trainers, issue 13)
        self.update_gens = {
            r: torch.Generator().manual_seed(_role_seed(cfg.seed, r)) for r in specs
        }
        self.queue: dict[str, deque] = {r: deque() for r in self.roles}
        self.step = 0
        self.oracle_success: float | None = None
        self.last_prepared: dict[str, Prepared] = {}

        self._init_engine()

    # ------------------------------------------------------------------ one step
    def train_step(self, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """One synchronized M-GRPO step; returns its metrics row (``step`` = updates done,
        from 1, ``samples`` = episodes so far).

        Every value of the row is finite: a non-finite reward, advantage, log-prob, loss,
        gradient, parameter or metric, or a divergence guard (``optim.grad_norm_limit``,
        ``optim.param_norm_limit``), raises :class:`TrainingError` naming the step, the role
        and the quantity. ``on_progress(phase)``, when given, is called as the step enters each
        phase (``"rollout"``, ``"advantages"``, ``"update ROLE epoch e/mu"``, ``"eval"``); it
        must be cheap (the shell shows the phase of a slow step).

        The phases are public so that split trainers (one process per role,
        :mod:`experiments.split`) run the same code: :meth:`rollout`, :meth:`prepare`,
        :meth:`update`, :meth:`finish_step`.
        """
        progress = on_progress or _no_progress
        roles = ("main", *self.roles)
        t0 = time.perf_counter()
        progress("rollout")
        batch = self.rollout()
        t1 = time.perf_counter()
        progress("advantages")
        metrics = self.step_header()
        gaps: dict[str, float] = {}  # engine roles: the engine/trainer log-prob gap
        prepared = self.prepare(batch, roles, metrics, gaps)
        self.last_prepared = prepared  # for inspection (tests, notebooks)
        t2 = time.perf_counter()
        self.update(prepared, roles, metrics, gaps, on_progress)
        t3 = time.perf_counter()
        return self.finish_step(metrics, (t0, t1, t2, t3), batch.env_steps, progress)

    def step_header(self) -> dict[str, Any]:
        """The first keys of this step's metrics row: ``step`` (updates done after it, from 1)
        and ``samples`` (episodes so far)."""
        B, K = self.cfg.algo.queries_per_step, self.cfg.algo.group_size
        return {"step": self.step + 1, "samples": (self.step + 1) * B * K}

    def rollout(self) -> RolloutBatch:
        """Phase 1: this step's B queries x K rollouts of the whole system (every role acts with
        its current parameters; the sub-agents' records are kept for their updates)."""
        cfg, step = self.cfg, self.step
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size
        rng = np.random.default_rng([cfg.seed, step, 1])
        queries = rng.integers(0, HELDOUT, B, dtype=np.int64)
        seeds = rng.integers(0, 2**31, B * K).tolist()
        for p in self.policies.values():  # records of earlier steps are packed already
            getattr(p, "clear_records", _no_records)()
        subs = {r: self.policies[r] for r in self.roles}
        mine = self.ranks.split(B)  # all B with one process
        with full_params(self.policies.values()):
            local = collect_rollouts(
                self.env,
                self.policies["main"],
                subs,
                queries[mine],
                K,
                seeds[mine.start * K : mine.stop * K],
                version=step,
            )
        return self._gathered(local)

    def prepare(
        self,
        batch: RolloutBatch,
        roles: tuple[str, ...],
        metrics: dict[str, Any],
        gaps: dict[str, float],
    ) -> dict[str, Prepared]:
        """Phase 2 for ``roles``: rewards, alignment and advantages (``prepare_main`` /
        ``prepare_sub``; engine roles rescored; the async queue of ``queue_lag`` steps). Logs
        the roles' reward keys into ``metrics``; returns role -> the rows to train on (a role
        with nothing to train this step is left out)."""
        cfg, step = self.cfg, self.step
        prepared: dict[str, Prepared] = {}
        if "main" in roles:
            main = prepare_main(cfg, batch, self.policies["main"], step, metrics)
            prepared["main"] = self._rescored("main", main, metrics, gaps)
        for r_i, role in enumerate(self.roles):
            if role not in roles:
                continue
            prep = prepare_sub(cfg, batch, role, r_i, self.policies[role], step, metrics)
            prep = self._rescored(role, prep, metrics, gaps)
            if cfg.algo.queue_lag > 0:  # async: train on the data of `queue_lag` steps ago
                self.queue[role].append(prep)
                prep = (
                    self.queue[role].popleft()
                    if len(self.queue[role]) > cfg.algo.queue_lag
                    else None
                )
            if prep is not None:
                prepared[role] = prep
                metrics[f"{role}/data_lag"] = float(step - prep.version.float().mean())
        return prepared

    def update(
        self,
        prepared: dict[str, Prepared],
        roles: tuple[str, ...],
        metrics: dict[str, Any],
        gaps: dict[str, float],
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Phase 3 for ``roles``: each trainable role's ``mu`` epochs over minibatches with its
        own optimizer and minibatch generator (a frozen role logs its entropy only); logs
        ``<role>/rows``, ``loss``, ``clip_frac_*``, ``approx_kl``, ``entropy``, ``grad_norm``,
        ``rollout_logp_diff``, ``tokens``."""
        cfg, step = self.cfg, self.step
        for role in roles:
            m = dict.fromkeys(UPDATE_KEYS, 0.0)
            p = prepared.get(role)
            metrics[f"{role}/rows"] = len(p) if p is not None else 0
            if p is not None and not self.frozen[role] and len(p) > 0:
                opt = self.optims["shared" if self.shared_module is not None else role]
                m = _update_role(
                    cfg,
                    role,
                    p,
                    self.policies[role],
                    opt,
                    self.update_gens[role],
                    step,
                    self.ref.get(role),
                    on_progress,
                    self.ranks,
                )
                if getattr(self.policies[role], "engine", None) is not None:
                    self._push(role)  # the server samples the next step with the new adapter
            elif p is not None and len(p) > 0:
                m |= role_entropy(p, self.policies[role])
            if role in gaps:  # recomputed logp_old: the update's own diff would be ~0
                m["rollout_logp_diff"] = gaps[role]
            for k, v in m.items():
                metrics[f"{role}/{k}"] = v

    def finish_step(
        self,
        metrics: dict[str, Any],
        times: tuple[float, float, float, float],
        env_steps: int,
        progress: Callable[[str], None] = _no_progress,
        evaluate: bool = True,
    ) -> dict[str, Any]:
        """Phase 4: count the step, evaluate when due (``evaluate=False``: the caller does),
        add the ``time/*`` keys (``times`` = perf_counter at rollout, advantages, update and
        update end) and check that every value is finite; returns ``metrics``."""
        t0, t1, t2, t3 = times
        step = self.step
        self.step += 1
        if evaluate and self.eval_due():
            progress("eval")
            metrics |= self.evaluate()
        metrics["time/rollout_s"] = t1 - t0
        metrics["time/adv_s"] = t2 - t1
        metrics["time/update_s"] = t3 - t2
        metrics["time/step_s"] = time.perf_counter() - t0
        metrics["time/env_steps"] = env_steps
        _check_metrics(metrics, step, self.policies)
        return metrics

    def eval_due(self) -> bool:
        """Whether the step just counted is an evaluation step (every ``eval.every``, the
        first and the last)."""
        return self.step % self.cfg.eval.every == 0 or self.step in (1, self.cfg.steps)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, float]:
        """Held-out success (sampled and greedy), category errors, d_k, completion time.

        Time keys, over the greedy episodes: ``eval/sim_time`` (mean simulated time),
        ``eval/time_per_success`` (total simulated time / successes) and
        ``eval/sim_time_success`` (mean over successful episodes only); the last two are left
        out of the row when no episode succeeded.
        """
        cfg = self.cfg
        n = cfg.eval.episodes
        queries = HELDOUT + cfg.seed * n + np.arange(n, dtype=np.int64)
        seeds = [HELDOUT // 2 + i for i in range(n)]
        # evaluation samples from its own streams, so it never changes the training trajectory
        base = cfg.seed * 1_000_003 + self.step * 101 + 7_919 * self.ranks.rank
        with own_streams(self.policies, base), full_params(self.policies.values()):
            return self._evaluate(queries, seeds)

    def _evaluate(self, queries: np.ndarray, seeds: list[int]) -> dict[str, float]:
        out: dict[str, float] = {}
        subs = {r: self.policies[r] for r in self.roles}
        mine = self.ranks.split(len(queries))  # each rank its share; all episodes gathered
        for greedy, key in ((False, "eval/success"), (True, "eval/success_greedy")):
            b = self._gathered(
                collect_rollouts(
                    self.eval_env,
                    self.policies["main"],
                    subs,
                    queries[mine],
                    1,
                    seeds[mine],
                    greedy=greedy,
                    record_subs=False,
                )
            )
            success = (b.correct == 1.0) & (b.format_ok == 1)
            out[key] = float(success.mean())
            if greedy:
                out["eval/category_error_rate"] = float((b.category_errors > 0).mean())
                out["eval/sim_time"] = float(b.sim_time.mean())
                if success.any():  # undefined without a success: left out of the row
                    out["eval/time_per_success"] = float(b.sim_time.sum() / success.sum())
                    out["eval/sim_time_success"] = float(b.sim_time[success].mean())
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

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs: parameters, generators, optimizer states, the async
        queue, the env generators, the oracle reference and the step."""
        st = {
            "step": self.step,
            "policies": {r: p.state_dict() for r, p in self.policies.items()},
            "generators": {r: p.generator.get_state() for r, p in self.policies.items()},
            "optims": {k: o.state_dict() for k, o in self.optims.items()},
            "update_gens": {r: g.get_state() for r, g in self.update_gens.items()},
            "queue": {r: list(q) for r, q in self.queue.items()},
            "oracle_success": self.oracle_success,
            "env_keys": self.env._keys.tolist(),
            "config_variant": self.cfg.variant,
            "policy_kind": self.cfg.policy.kind,
        }
        return self._whole(st)  # several processes: sharded tensors gathered, every rank's streams

    def load_state_dict(self, st: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a resume)."""
        self.step = int(st["step"])
        st = self._own_rank(st)
        for r, sd in st["policies"].items():
            self.policies[r].load_state_dict(self._sharded(r, sd))
            self.policies[r].generator.set_state(st["generators"][r])
        for k, sd in st["optims"].items():
            self.optims[k].load_state_dict(shard_optimizer(sd, self.optims[k]))
        if "update_gens" not in st:  # an older checkpoint: one generator for all roles
            warnings.warn(
                "the checkpoint predates per-role update generators: its minibatch order "
                "cannot be restored, so a resumed run will not reproduce an uninterrupted one",
                stacklevel=2,
            )
        for r, g in st.get("update_gens", {}).items():
            self.update_gens[r].set_state(g)
        self.queue = {r: deque(q) for r, q in st["queue"].items()}
        self.oracle_success = st["oracle_success"]
        if len(st.get("env_keys", ())) == self.env.num_envs:  # older checkpoints: env_rngs
            self.env._keys[:] = np.array(st["env_keys"], dtype=np.uint64)
        self.sync_engine()

    def load_role(self, role: str, state_dict: dict, source: str) -> None:
        """Load ``role``'s policy parameters (``roles.<role>.init_from``)."""
        if role not in self.policies:
            raise ValueError(
                f"roles.{role}.init_from: this run has no role {role!r} "
                f"(roles: {', '.join(self.policies)})"
            )
        try:
            self.policies[role].load_state_dict(self._sharded(role, state_dict))
        except RuntimeError as e:
            raise ValueError(f"roles.{role}.init_from: incompatible policy in {source}: {e}") from e
        if getattr(self, "adapter_dir", None) is not None:  # after construction: re-push
            self._push(role)
