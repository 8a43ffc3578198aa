"""The objective of a sweep trial: train its seeds in lock-step, report, score."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, dump_toml, resolve
from experiments.sweep.config import SweepConfig, trial_config

__all__ = ["Objective", "Surplus", "TrainingFailed", "counts_towards_total", "stability"]


def stability(rewards: list[float]) -> float:
    """Minus the std of step-to-step changes of a reward curve (0 for fewer than 2 points)."""
    import numpy as np

    return -float(np.diff(np.asarray(rewards, dtype=float)).std()) if len(rewards) >= 2 else 0.0


class TrainingFailed(Exception):
    """A trial's training diverged (the trial fails and counts towards the total)."""


class Surplus(Exception):
    """The study's total was reached by others while this trial was being created."""


_ORACLE: dict[tuple, float] = {}


def counts_towards_total(t) -> bool:
    from optuna.trial import TrialState

    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and "error" in t.user_attrs
    )


class Objective:
    """Trains the seeds of one trial in lock-step, reporting the mean metric at each eval row."""

    def __init__(
        self,
        flat: dict[str, Any],
        sweep: SweepConfig,
        out: Path,
        n_total: int,
        multi: bool,
        worker: int,
        on_start=None,
    ) -> None:
        self.flat, self.sweep, self.out = flat, sweep, Path(out)
        self.n_total, self.multi, self.worker = n_total, multi, worker
        self.on_start = on_start
        """called first in each trial (the worker's host lock is released there)"""
        self.base = resolve(flat)

    def suggest(self, trial) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.sweep.fixed())
        for name, (lo, hi) in self.sweep.space().items():
            if name == "align_target":
                params[name] = trial.suggest_int(name, int(lo), int(hi))
            else:
                params[name] = trial.suggest_float(name, float(lo), float(hi))
        return params

    def __call__(self, trial) -> float | tuple[float, float]:
        import numpy as np
        import optuna

        from experiments.checkpoint import append_metrics
        from experiments.run import Trainer, TrainingError

        if self.on_start is not None:
            self.on_start()
        # -- the total: a trial created after the total was reached by others is surplus
        before = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
        live = [t for t in before if t.state == optuna.trial.TrialState.RUNNING]
        if sum(map(counts_towards_total, before)) + len(live) >= self.n_total:
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number}: the study's {self.n_total} trials are taken")
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        params = self.suggest(trial)

        # -- runs: one trainer per seed
        seeds = [self.base.seed + k for k in range(self.sweep.seeds)]
        cfgs = [trial_config(self.flat, self.base, params, s) for s in seeds]
        dirs = [self.out / "trials" / str(trial.number) / f"seed{s}" for s in seeds]
        trial.set_user_attr("run_dirs", [str(d.resolve()) for d in dirs])
        trial.set_user_attr("seeds", seeds)
        trainers = []
        for cfg, d in zip(cfgs, dirs, strict=True):
            for stale in ("metrics.jsonl", "checkpoint.pt"):  # left by another study in OUT
                (d / stale).unlink(missing_ok=True)
            d.mkdir(parents=True, exist_ok=True)
            (d / "config.toml").write_text(dump_toml(cfg))
            trainers.append(Trainer(cfg, d, progress=False))
        cfg0 = cfgs[0]
        if cfg0.eval.oracle_episodes > 0:  # the oracle level depends on the env only: once
            key = (cfg0.env.id, cfg0.env.preset, repr(cfg0.env.kwargs), cfg0.eval.oracle_episodes)
            if key not in _ORACLE:
                _ORACLE[key] = trainers[0].oracle()
            for tr in trainers:
                tr.oracle_success = _ORACLE[key]

        # -- train in lock-step, report at each evaluation row
        metric = self.sweep.metric
        rewards: list[list[float]] = [[] for _ in seeds]
        last: list[float] = [math.nan] * len(seeds)
        try:
            for _ in range(cfg0.steps):
                rows = [tr.train_step() for tr in trainers]
                for i, (tr, row) in enumerate(zip(trainers, rows, strict=True)):
                    append_metrics(tr.run_dir, row)
                    rewards[i].append(row["main/reward_mean"])
                    last[i] = row.get(metric, last[i])
                if trainers[0].step == 1 and metric not in rows[0]:  # step 1 always evaluates
                    keys = ", ".join(sorted(k for k in rows[0] if k.startswith("eval/")))
                    raise ConfigError([f"sweep.metric = {metric!r} is not logged; allowed: {keys}"])
                if metric in rows[0] and not self.multi and self.sweep.pruner != "none":
                    step = trainers[0].step
                    trial.report(float(np.mean(last)), step)
                    if trial.should_prune():
                        self._finish(trial, trainers, last, rewards, pruned_at=step)
                        raise optuna.TrialPruned(f"pruned at step {step}")
        except TrainingError as e:
            trial.set_user_attr("error", str(e))
            raise TrainingFailed(str(e)) from e
        if any(v is None or not math.isfinite(v) for v in last):
            trial.set_user_attr("error", f"{metric} is not finite: {last}")
            raise TrainingFailed(f"{metric} is not finite: {last}")
        self._finish(trial, trainers, last, rewards)
        value = float(np.mean(last))
        if self.multi:
            return value, float(np.mean([stability(r) for r in rewards]))
        return value

    def _finish(self, trial, trainers, last, rewards, pruned_at: int | None = None) -> None:
        for tr in trainers:
            tr.save()
        trial.set_user_attr("final", [float(v) for v in last])
        trial.set_user_attr("stability", [stability(r) for r in rewards])
        trial.set_user_attr("steps", trainers[0].step)
        if pruned_at is not None:
            trial.set_user_attr("pruned_at", pruned_at)
