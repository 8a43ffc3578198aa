"""``mgrpo sweep``: an Optuna study over the alignment target D and the sub-agent reward mixing.

    mgrpo sweep CONFIG --trials N --study NAME [--storage URL] [--workers W] [--out DIR]
                [--seeds S] [--multi-objective] [--no-plots] [--set key=value ...]

Each trial trains ``S`` seeds of the config with ``algo.align_target`` = D,
``reward.local_share`` = w (``w = b3 / (b2 + b3)``, see :func:`sim.rewards.betas_from_local_share`)
and optionally ``reward.beta[0]`` = b1, and scores them by the greedy held-out success at the
budget (``eval/success_greedy`` at the last step), averaged over the seeds.

The ``[sweep]`` table
---------------------
The config is a training config (see ``mgrpo train``) with an optional ``[sweep]`` table; it is not
a training section and is read here before the rest goes to :func:`experiments.config.resolve`
(other commands' tables, ``[ablate]``, are ignored, so presets like ``quick`` work as they are).
``--set sweep.<key>=value`` and the flags override it::

    [sweep]
    align_target = [2, 16]     # D: integers [low, high]; one int fixes it (default [1, 16])
    local_share = [0.0, 1.0]   # w: in [0, 1]; one number fixes it (default [0, 1])
    b1 = [0.0, 0.3]            # b1 = reward.beta[0] in [0, 1] (default: fixed, the config's)
    seeds = 2                  # seeds seed, seed+1, ... per trial (default 1; --seeds overrides)
    metric = "eval/success_greedy"  # an eval/ key, read at each evaluation row (default shown)
    direction = "maximize"     # or "minimize", for the metric (default "maximize")
    pruner = "median"          # "median" (MedianPruner) or "none"; single-objective only
    n_startup_trials = 2       # MedianPruner: trials finished before any pruning (default 2)
    n_warmup_steps = 0         # MedianPruner: training steps before a trial can be pruned
    population_size = 16       # NSGA-II population (multi-objective only, default 16)
    heartbeat_interval = 60    # seconds between heartbeats of a running trial (RDB storages)
    grace_period = 120         # a trial without heartbeat for this long is stale: failed, retried
    max_retry = 3              # retries of a stale trial (default 3)

Objectives
----------
Single-objective (default): the metric at the budget, mean over seeds; TPE sampler; the seeds of a
trial train in lock-step (one step of each seed in turn), so at every evaluation row the
intermediate value ``trial.report(mean over seeds, step)`` is comparable across trials and a
``MedianPruner`` stops trials below the median of earlier trials at the same step.
``--multi-objective``: (metric, stability) with stability = minus the std of the step-to-step
changes of ``main/reward_mean`` (mean over seeds; higher is steadier), NSGA-II, and no pruning
(Optuna cannot prune multi-objective trials).

Runs, storage and workers
-------------------------
Each trial's runs go to ``OUT/trials/<trial number>/seed<seed>/`` (``config.toml``,
``metrics.jsonl``, ``checkpoint.pt``: ``mgrpo plot``/``report`` read them); the trial's user
attributes hold ``run_dirs``, ``final`` (the metric per seed), ``stability`` per seed, ``host`` and
``pid``. One study per ``OUT``. The storage defaults to ``sqlite:///OUT/study.db``; any Optuna
storage URL works (``postgresql+psycopg://user@host/db``, ``mysql+pymysql://...``), and
``journal:PATH`` is an Optuna ``JournalStorage`` on a ``JournalFileBackend`` (a log file several
processes can share, e.g. on NFS).

``--trials N`` is the study's total: trials COMPLETE, PRUNED, or failed with a training error
(``user_attrs["error"]``, e.g. NaN) count; trials of killed workers do not. Under a file lock in
``OUT`` a worker counts the counted and running trials and, below N, creates the next trial (a
WAITING retry first), so the workers of one host never overshoot. Workers on other machines
(their own ``OUT``) can race; a trial that finds the total reached when it starts is then marked
FAIL with ``user_attrs["surplus"]`` (it does not count). A rerun of the same command continues
the study. ``--workers W`` starts W processes, each loading the study from the storage (SQLite is
fine for a few workers: connections wait up to 60 s for a lock).

Killed workers: on RDB storages (SQLite, PostgreSQL, MySQL) a running trial writes a heartbeat every
``heartbeat_interval`` s; a trial silent for ``grace_period`` s is failed by the next worker and
re-enqueued with the same parameters (``RetryHeartbeatStaleTrialCallback``, up to ``max_retry``
times); completed trials are in the storage already and are never lost. A worker that has nothing
left to start waits for the running trials of others, so it picks up their retries. Optuna's
``JournalStorage`` has no heartbeat: there, at each start a worker fails and retries the running
trials whose worker process was on this host and is gone (``host``/``pid`` user attributes), and a
trial whose worker died on another machine stays RUNNING (it does not count; finish it with
``optuna.Study.tell(number, state=FAIL)``). The same local check speeds up RDB storages too.

At the end: the study name, the storage URL (password hidden), trial counts and a ``best`` line are
printed, ``OUT/sweep.json`` holds the same, and ``experiments.plots.plot_study`` (when present)
writes ``OUT/plots/study_*.png``. Exit codes: 0 done, 1 a worker or every trial failed, 2 bad
config, ranges, storage URL or an incompatible existing study, 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import os
import socket
import sys
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, _flatten, dump_toml, parse_overrides, resolve
from sim.config import TrainConfig

__all__ = [
    "SweepConfig",
    "StorageError",
    "add_parser",
    "load_sweep",
    "open_storage",
    "run",
    "run_worker",
    "stability",
    "summarize",
]

DEFAULT_METRIC = "eval/success_greedy"


# ---------------------------------------------------------------------------------- config
@dataclass
class SweepConfig:
    """The ``[sweep]`` table: the search space and how trials are scored, pruned and retried."""

    align_target: tuple[int, int] = (1, 16)
    """D range ``[low, high]`` (integers >= 1); low == high fixes D"""
    local_share: tuple[float, float] = (0.0, 1.0)
    """w range ``[low, high]`` in [0, 1]; low == high fixes w"""
    b1: tuple[float, float] | None = None
    """b1 = ``reward.beta[0]`` range in [0, 1]; None keeps the config's b1"""
    seeds: int = 1
    """seeds per trial: the config's seed, seed + 1, ..."""
    metric: str = DEFAULT_METRIC
    """the eval/ metric scored at each evaluation row and at the budget"""
    direction: str = "maximize"
    """``maximize`` or ``minimize`` the metric"""
    pruner: str = "median"
    """``median`` or ``none`` (single-objective only)"""
    n_startup_trials: int = 2
    """MedianPruner: no pruning until this many trials have finished"""
    n_warmup_steps: int = 0
    """MedianPruner: no pruning before this many training steps"""
    population_size: int = 16
    """NSGA-II population size (multi-objective)"""
    heartbeat_interval: int = 60
    """seconds between heartbeats of a running trial (RDB storages)"""
    grace_period: int = 120
    """seconds without heartbeat after which a running trial is stale (failed and retried)"""
    max_retry: int = 3
    """how many times a stale trial is re-enqueued"""

    def __post_init__(self) -> None:
        problems = []
        self.align_target = _range("sweep.align_target", self.align_target, int, 1, None, problems)  # type: ignore[assignment]
        self.local_share = _range("sweep.local_share", self.local_share, float, 0.0, 1.0, problems)  # type: ignore[assignment]
        if self.b1 is not None:
            self.b1 = _range("sweep.b1", self.b1, float, 0.0, 1.0, problems)  # type: ignore
        for key, lo in (
            ("seeds", 1),
            ("n_startup_trials", 0),
            ("n_warmup_steps", 0),
            ("population_size", 2),
            ("heartbeat_interval", 1),
            ("grace_period", 1),
            ("max_retry", 0),
        ):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                problems.append(f"sweep.{key} = {v!r} is invalid; allowed: an integer >= {lo}")
        if not isinstance(self.metric, str) or not self.metric.startswith("eval/"):
            problems.append(
                f"sweep.metric = {self.metric!r} is invalid; allowed: an eval/ key, "
                "e.g. eval/success_greedy, eval/success, eval/sim_time"
            )
        if self.direction not in ("maximize", "minimize"):
            problems.append(
                f"sweep.direction = {self.direction!r} is invalid; allowed: maximize, minimize"
            )
        if self.pruner not in ("median", "none"):
            problems.append(f"sweep.pruner = {self.pruner!r} is invalid; allowed: median, none")
        if (
            isinstance(self.heartbeat_interval, int)
            and isinstance(self.grace_period, int)
            and self.grace_period <= self.heartbeat_interval
        ):
            problems.append(
                f"sweep.grace_period = {self.grace_period} must exceed sweep.heartbeat_interval = "
                f"{self.heartbeat_interval} (a live trial would look stale)"
            )
        if not problems and self.space() == {}:
            problems.append(
                "nothing to sweep: align_target, local_share and b1 are all fixed; give at least "
                "one a range [low, high] with low < high"
            )
        if problems:
            raise ConfigError(problems)

    def space(self) -> dict[str, tuple[float, float]]:
        """The swept parameters (name -> (low, high)), fixed ones left out."""
        out: dict[str, tuple[float, float]] = {}
        for name in ("align_target", "local_share", "b1"):
            r = getattr(self, name)
            if r is not None and r[0] < r[1]:
                out[name] = r
        return out

    def fixed(self) -> dict[str, float]:
        """The parameters given as one value (name -> value)."""
        out: dict[str, float] = {}
        for name in ("align_target", "local_share", "b1"):
            r = getattr(self, name)
            if r is not None and r[0] == r[1]:
                out[name] = r[0]
        return out


def _range(key: str, value: Any, kind: type, lo: float, hi: float | None, problems: list[str]):
    """``[low, high]`` or one value -> a checked ``(low, high)`` tuple (problems appended)."""
    what = "integers" if kind is int else "numbers"
    bounds = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    allowed = f"allowed: [low, high] with low <= high, {what} {bounds}, or one such value"
    vals = list(value) if isinstance(value, list | tuple) else [value, value]
    ok_type = (
        (lambda v: isinstance(v, int) and not isinstance(v, bool))
        if kind is int
        else (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
    )
    if (
        len(vals) != 2
        or not all(ok_type(v) for v in vals)
        or vals[0] > vals[1]
        or vals[0] < lo
        or (hi is not None and vals[1] > hi)
    ):
        problems.append(f"{key} = {value!r} is invalid; {allowed}")
        return value
    return (kind(vals[0]), kind(vals[1]))


def load_sweep(
    config_path: str | Path | None, overrides: list[str] | None = None, seeds: int | None = None
) -> tuple[dict[str, Any], TrainConfig, SweepConfig]:
    """Read a config with a ``[sweep]`` table; returns (base flat keys, base config, sweep).

    ``--set sweep.<key>=v`` overrides the table, ``seeds`` (``--seeds``) overrides ``sweep.seeds``.
    Every trial's config (the ends of each range) is resolved here, so bad input fails before any
    work. Raises :class:`ConfigError` listing every problem.
    """
    raw: dict[str, Any] = {}
    if config_path is not None:
        p = Path(config_path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r} does not exist"])
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{p}: not valid TOML ({e})"]) from e
    for other in ("ablate", "plot", "report"):  # other commands' tables (shared presets)
        raw.pop(other, None)
    table = raw.pop("sweep", {})
    if not isinstance(table, dict):
        raise ConfigError(["sweep must be a table: [sweep]"])
    sets = parse_overrides(overrides or [])
    table = dict(table) | {k[6:]: v for k, v in sets.items() if k.startswith("sweep.")}
    if seeds is not None:
        table["seeds"] = seeds
    allowed = [f.name for f in dataclasses.fields(SweepConfig)]
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(
            [f"unknown key(s) in [sweep]: {', '.join(unknown)}; allowed: {', '.join(allowed)}"]
        )
    sweep = SweepConfig(**table)
    flat = _flatten(raw) | {k: v for k, v in sets.items() if not k.startswith("sweep.")}
    base = resolve(flat)
    problems = [
        f"roles.{r}.align_target = {rc.align_target} would shadow the swept algo.align_target; "
        "remove it from the config"
        for r, rc in base.roles.items()
        if rc.align_target is not None and "align_target" in sweep.space()
    ]
    if problems:
        raise ConfigError(problems)
    for end in (0, 1):  # the corners of the space must resolve too (variants may contradict)
        params = {k: (r[end] if r is not None else None) for k, r in _ranges(sweep).items()}
        trial_config(flat, base, params, base.seed)
    return flat, base, sweep


def _ranges(sweep: SweepConfig) -> dict[str, tuple[float, float] | None]:
    return {"align_target": sweep.align_target, "local_share": sweep.local_share, "b1": sweep.b1}


def trial_config(
    flat: dict[str, Any], base: TrainConfig, params: dict[str, Any], seed: int
) -> TrainConfig:
    """The training config of one seed of a trial with ``params`` (D, w, b1; None: unchanged)."""
    keys: dict[str, Any] = {"seed": seed}
    if params.get("align_target") is not None:
        keys["algo.align_target"] = int(params["align_target"])
    if params.get("local_share") is not None:
        keys["reward.local_share"] = float(params["local_share"])
    if params.get("b1") is not None:
        keys["reward.beta"] = [float(params["b1"]), *base.reward.beta[1:]]
    return resolve(flat | keys)


# ---------------------------------------------------------------------------------- storage
class StorageError(RuntimeError):
    """The storage URL is invalid or the storage cannot be reached."""


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for printing)."""
    if url.startswith("journal:") or "@" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - printing only
        return url.split("://")[0] + "://***"


def default_storage(out: Path) -> str:
    """``sqlite:///OUT/study.db`` (absolute path)."""
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def _retry_callback() -> tuple[type, str]:
    """Optuna's retry callback for stale trials and the RDBStorage keyword that takes it."""
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback

        return RetryHeartbeatStaleTrialCallback, "heartbeat_stale_trial_callback"
    except ImportError:  # Optuna < 4.9
        from optuna.storages import RetryFailedTrialCallback

        return RetryFailedTrialCallback, "failed_trial_callback"


def open_storage(url: str, sweep: SweepConfig):
    """An Optuna storage for ``url``: an RDB URL (heartbeats and retries on) or ``journal:PATH``.

    Raises :class:`StorageError` with a one-line reason when the URL is invalid, its driver is
    missing or the database cannot be reached.
    """
    import optuna
    from optuna.storages import RDBStorage

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(url[len("journal:") :])
        if not str(path) or not path.parent.is_dir():
            raise StorageError(
                f"journal storage {url!r}: the folder {str(path.parent)!r} does not exist; "
                "use journal:PATH with PATH a file in an existing folder"
            )
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise StorageError(f"journal storage {url!r}: {e}") from e
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; use e.g. sqlite:///study.db, "
            "postgresql+psycopg://user@host/db or journal:PATH"
        )
    dialect = url.split("://")[0].split("+")[0]
    connect_args: dict[str, Any] = {}
    if dialect == "sqlite":
        connect_args = {"timeout": 60}  # seconds a writer waits for the lock (several workers)
    elif dialect in ("postgresql", "mysql"):
        connect_args = {"connect_timeout": 10}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            retry, keyword = _retry_callback()
            return RDBStorage(
                url,
                engine_kwargs={"connect_args": connect_args, "pool_pre_ping": True},
                heartbeat_interval=sweep.heartbeat_interval,
                grace_period=sweep.grace_period,
                **{keyword: retry(max_retry=sweep.max_retry)},
            )
        except ModuleNotFoundError as e:
            extra = " (pip install 'psycopg[binary]')" if dialect == "postgresql" else ""
            raise StorageError(
                f"storage {redact(url)!r} needs the Python module {e.name!r}{extra}"
            ) from e
        except Exception as e:  # noqa: BLE001 - sqlalchemy/driver errors of many kinds
            msg = str(getattr(e, "orig", None) or e).strip().splitlines()
            reason = msg[0] if msg else type(e).__name__
            raise StorageError(f"cannot open storage {redact(url)!r}: {reason}") from e


# ---------------------------------------------------------------------------------- objective
def stability(rewards: list[float]) -> float:
    """Minus the std of step-to-step changes of a reward curve (0 for fewer than 2 points)."""
    import numpy as np

    return -float(np.diff(np.asarray(rewards, dtype=float)).std()) if len(rewards) >= 2 else 0.0


class _TrainingFailed(Exception):
    """A trial's training diverged (the trial fails and counts towards the total)."""


class _Surplus(Exception):
    """The study's total was reached by others while this trial was being created."""


_ORACLE: dict[tuple, float] = {}


def _counts_towards_total(t) -> bool:
    from optuna.trial import TrialState

    return t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (
        t.state == TrialState.FAIL and "error" in t.user_attrs
    )


class _Objective:
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
        if sum(map(_counts_towards_total, before)) + len(live) >= self.n_total:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number}: the study's {self.n_total} trials are taken")
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
            raise _TrainingFailed(str(e)) from e
        if any(v is None or not math.isfinite(v) for v in last):
            trial.set_user_attr("error", f"{metric} is not finite: {last}")
            raise _TrainingFailed(f"{metric} is not finite: {last}")
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


# ---------------------------------------------------------------------------------- workers
def _sampler(sweep: SweepConfig, multi: bool, seed: int):
    import optuna

    if multi:
        return optuna.samplers.NSGAIISampler(population_size=sweep.population_size, seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def _pruner(sweep: SweepConfig, multi: bool):
    import optuna

    if multi or sweep.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=sweep.n_startup_trials, n_warmup_steps=sweep.n_warmup_steps
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_dead_local_trials(study, sweep: SweepConfig) -> list[int]:
    """Fail (and re-enqueue) RUNNING trials whose worker process on this host is gone."""
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=True, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or pid == os.getpid():
            continue
        if _pid_alive(pid):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another worker finished or failed it first
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _retry_callback()[0](max_retry=sweep.max_retry)(study, t)
        failed.append(t.number)
    return failed


class _HostLock:
    """An exclusive ``flock`` on ``OUT/.sweep.lock``: the workers of this host count the trials
    and create the next one (Optuna's ask, inside ``optimize``) one at a time."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - held for the worker's life
        self._held = False

    def acquire(self) -> None:
        import fcntl

        fcntl.flock(self._file, fcntl.LOCK_EX)
        self._held = True

    def release(self) -> None:
        import fcntl

        if self._held:
            self._held = False
            fcntl.flock(self._file, fcntl.LOCK_UN)


def _log(worker: int, msg: str) -> None:
    print(f"[worker {worker}] {msg}", flush=True)


def run_worker(
    worker: int,
    storage_url: str,
    study_name: str,
    flat: dict[str, Any],
    sweep: SweepConfig,
    out: str,
    n_total: int,
    multi: bool,
) -> int:
    """One worker: start trials until the study holds ``n_total`` counted trials; 0 on success.

    It loads the study from the storage (so it can run on any machine that reaches it), counts
    before each trial, and once nothing is left to start waits for the running trials of other
    workers (one that dies is failed after ``grace_period`` and its retry picked up here).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    try:
        storage = open_storage(storage_url, sweep)
        n0 = len(optuna.load_study(study_name=study_name, storage=storage).trials)
        study = optuna.load_study(
            study_name=study_name,
            storage=storage,
            sampler=_sampler(sweep, multi, seed=resolve(flat).seed * 100_003 + 7919 * n0 + worker),
            pruner=_pruner(sweep, multi),
        )
    except (StorageError, KeyError) as e:
        print(f"error: worker {worker}: {e}", file=sys.stderr)
        return 2
    journal = storage_url.startswith("journal:")
    Path(out).mkdir(parents=True, exist_ok=True)
    lock = _HostLock(Path(out) / ".sweep.lock")
    objective = _Objective(flat, sweep, Path(out), n_total, multi, worker, on_start=lock.release)
    try:
        return _work(worker, study, objective, lock, sweep, n_total, journal)
    except Exception as e:
        from sqlalchemy.exc import SQLAlchemyError

        if not isinstance(e, SQLAlchemyError | OSError):
            raise
        reason = (str(getattr(e, "orig", None) or e).strip().splitlines() or [type(e).__name__])[0]
        print(f"error: worker {worker}: storage or file error: {reason}", file=sys.stderr)
        print("completed trials are kept; rerun the same command to continue", file=sys.stderr)
        return 1


def _work(worker: int, study, objective, lock, sweep: SweepConfig, n_total: int, journal: bool):
    """The worker loop of :func:`run_worker`; returns 0 once the study's total is reached."""
    import optuna
    from optuna.trial import TrialState

    while True:
        for n in _fail_dead_local_trials(study, sweep):
            _log(worker, f"trial {n}: its worker process is gone; failed and re-enqueued")
        if not journal:
            optuna.storages.fail_stale_trials(study)
        lock.acquire()  # released by the objective once its trial exists, or below
        try:
            trials = study.get_trials(deepcopy=False)
            done = sum(map(_counts_towards_total, trials))
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if done >= n_total:
                return 0
            if done + running >= n_total:  # the rest is running elsewhere
                lock.release()
                if journal:  # no heartbeats: a remote dead worker's trial would never end
                    return 0
                time.sleep(min(2.0, sweep.heartbeat_interval))
                continue
            t0 = time.perf_counter()
            ended: list = []
            study.optimize(  # pops a WAITING retry first, else samples a new trial
                objective,
                n_trials=1,
                catch=(_TrainingFailed, _Surplus),
                callbacks=[_Collect(ended)],
                gc_after_trial=False,
            )
        finally:
            lock.release()
        if ended and not ended[-1].user_attrs.get("surplus"):
            _log(worker, f"{_describe(ended[-1])} ({time.perf_counter() - t0:.1f} s)")


class _Collect:
    """Study callback that appends each finished trial to a list."""

    def __init__(self, into: list) -> None:
        self.into = into

    def __call__(self, study, trial) -> None:
        self.into.append(trial)


def _worker_main(*args) -> None:
    """Process entry point (spawned): exit code of :func:`run_worker`."""
    try:
        code = run_worker(*args)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


# ---------------------------------------------------------------------------------- summary
def _fmt_params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v}" if isinstance(v, int) else f"{k}={v:.3f}" for k, v in sorted(params.items())
    )


def _describe(t) -> str:
    """One line about a finished trial."""
    state = t.state.name.lower()
    if "pruned_at" in t.user_attrs:
        state += f" at step {t.user_attrs['pruned_at']}"
        last = t.intermediate_values.get(t.user_attrs["pruned_at"])
        state += f" (value there {last:.3f})" if last is not None else ""
    elif t.values is not None:
        state += " value=" + "/".join(f"{v:.3f}" for v in t.values)
    if "error" in t.user_attrs:
        state += f" ({t.user_attrs['error']})"
    return f"trial {t.number} {state}: {_fmt_params(t.params)}"


def summarize(study, n_total: int, storage_url: str) -> dict[str, Any]:
    """Counts, best trial(s) and where the study lives (what ``sweep.json`` holds)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    multi = len(study.directions) > 1
    best: list[dict[str, Any]] = []
    if counts["complete"]:
        chosen = study.best_trials if multi else [study.best_trial]
        best = [
            {
                "number": t.number,
                "values": list(t.values),
                "params": t.params,
                "run_dirs": t.user_attrs.get("run_dirs", []),
            }
            for t in chosen
        ]
    return {
        "study": study.study_name,
        "storage": redact(storage_url),
        "directions": [d.name.lower() for d in study.directions],
        "objectives": study.user_attrs.get("objectives", []),
        "target_trials": n_total,
        "counted": sum(map(_counts_towards_total, trials)),
        "counts": counts,
        "best": best,
    }


def _print_summary(s: dict[str, Any]) -> None:
    c = s["counts"]
    print(f"study: {s['study']}  storage: {s['storage']}")
    print(
        f"trials: {s['counted']}/{s['target_trials']} counted ({c['complete']} complete, "
        f"{c['pruned']} pruned, {c['fail']} failed, {c['running']} running, "
        f"{c['waiting']} waiting)"
    )
    if not s["best"]:
        print("best: none (no completed trial)")
        return
    names = s["objectives"] or [f"value{i}" for i in range(len(s["directions"]))]
    label = "best" if len(s["best"]) == 1 and len(names) == 1 else "best (Pareto front)"
    for b in s["best"]:
        vals = " ".join(f"{n}={v:.3f}" for n, v in zip(names, b["values"], strict=True))
        print(f"{label}: trial {b['number']} {vals} {_fmt_params(b['params'])}")


def _plot(study, out: Path) -> None:
    """``experiments.plots.plot_study(study, OUT/plots)`` when that function exists."""
    try:
        from experiments.plots import plot_study
    except ImportError:
        return
    try:
        plot_study(study, out / "plots")
    except Exception as e:  # noqa: BLE001 - a plot must not fail a finished sweep
        print(f"warning: study plots failed: {e}", file=sys.stderr)


# ---------------------------------------------------------------------------------- CLI
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``mgrpo sweep`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "sweep",
        help="Optuna study over the alignment target D and the reward mixing w (and b1)",
        description="An Optuna study over the alignment target D and the sub-agent reward "
        "mixing w (and b1); ranges, seeds, metric, pruner and heartbeats come from the config's "
        "[sweep] table (documented in experiments/sweep.py). --trials is the study's total: "
        "rerun the same command to continue it.",
    )
    p.add_argument("config", nargs="?", help="TOML config (with a [sweep] table) or preset name")
    p.add_argument("--trials", type=int, required=True, help="the study's total number of trials")
    p.add_argument("--study", required=True, help="study name (a rerun continues it)")
    p.add_argument(
        "--storage",
        help="Optuna storage URL (postgresql+psycopg://..., sqlite:///...) or journal:PATH "
        "(default sqlite:///OUT/study.db)",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes here (default 1)")
    p.add_argument("--out", help="output directory (default sweeps/<study>)")
    p.add_argument("--seeds", type=int, help="seeds per trial (overrides [sweep] seeds)")
    p.add_argument(
        "--multi-objective",
        action="store_true",
        help="optimize (metric, stability) with NSGA-II, no pruning",
    )
    p.add_argument("--no-plots", action="store_true", help="skip OUT/plots/study_*.png")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, or a [sweep] key as sweep.<key> (repeatable)",
    )
    p.set_defaults(func=run)
    return p


def _objectives(sweep: SweepConfig, multi: bool) -> tuple[list[str], list[str]]:
    names = [sweep.metric.removeprefix("eval/")]
    directions = [sweep.direction]
    if multi:
        names.append("stability")
        directions.append("maximize")
    return names, directions


def _prepare_study(args, flat, sweep, storage_url: str):
    """Create or load the study and check that an existing one is compatible; the study."""
    import optuna

    storage = open_storage(storage_url, sweep)
    names, directions = _objectives(sweep, args.multi_objective)
    space = {
        "space": {k: list(v) for k, v in sweep.space().items()},
        "fixed": sweep.fixed(),
        "metric": sweep.metric,
    }
    study = optuna.create_study(
        study_name=args.study, storage=storage, directions=directions, load_if_exists=True
    )
    have = [d.name.lower() for d in study.directions]
    old = study.user_attrs.get("sweep")
    problems = []
    if have != directions:
        problems.append(
            f"study {args.study!r} exists with directions {have}; this sweep needs {directions} "
            f"({'with' if args.multi_objective else 'without'} --multi-objective)"
        )
    if old is not None and old != json.loads(json.dumps(space)):
        problems.append(
            f"study {args.study!r} exists with the search space {old}; this config gives {space}; "
            "use another --study"
        )
    if problems:
        raise ConfigError(problems)
    if old is None:
        study.set_user_attr("sweep", space)
        study.set_user_attr("objectives", names)
        study.set_user_attr("base_config", {k: v for k, v in flat.items()})
    return study


def run(args: argparse.Namespace) -> int:
    """``mgrpo sweep``: exit 0 done, 1 failed, 2 bad input, 130 interrupted."""
    if args.config:
        from experiments.cli import _config_path

        config_path: Path | None = _config_path(args.config)
    else:
        config_path = None
    problems = []
    if args.trials < 1:
        problems.append(f"--trials {args.trials}: the study's total must be >= 1")
    if args.workers < 1:
        problems.append(f"--workers {args.workers}: must be >= 1")
    if problems:
        raise ConfigError(problems)
    flat, base, sweep = load_sweep(config_path, args.set, args.seeds)
    from experiments.cli import _check_env

    _check_env(base)
    out = Path(args.out) if args.out else Path("sweeps") / args.study
    out.mkdir(parents=True, exist_ok=True)
    storage_url = args.storage or default_storage(out)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = _prepare_study(args, flat, sweep, storage_url)
    except StorageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_space = ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in sweep.space().items())
    print(
        f"sweep {args.study}: {args.trials} trials in total, {n_space}, {sweep.seeds} seed(s), "
        f"{base.steps} steps; {args.workers} worker(s); runs in {out}/trials"
    )
    wargs = (storage_url, args.study, flat, sweep, str(out), args.trials, args.multi_objective)
    code = 0
    try:
        if args.workers == 1:
            code = run_worker(0, *wargs)
        else:
            ctx = mp.get_context("spawn")
            procs = [
                ctx.Process(target=_worker_main, args=(w, *wargs), name=f"sweep-worker-{w}")
                for w in range(args.workers)
            ]
            for proc in procs:
                proc.start()
            try:
                for proc in procs:
                    proc.join()
            except KeyboardInterrupt:
                for proc in procs:
                    proc.terminate()
                raise
            for w, proc in enumerate(procs):
                if proc.exitcode != 0:
                    print(
                        f"error: worker {w} exited with code {proc.exitcode}; its running trial "
                        "is failed and retried by the next worker (rerun the same command)",
                        file=sys.stderr,
                    )
                    code = 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted; completed trials are in the storage. Continue with the same command.",
            file=sys.stderr,
        )
        return 130
    summary = summarize(study, args.trials, storage_url)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary)
    if summary["best"]:
        if not args.no_plots:
            _plot(study, out)
    elif code == 0:
        print("error: no trial completed (see the failed trials' user attributes)", file=sys.stderr)
        code = 1
    return code
