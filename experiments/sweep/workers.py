"""Sweep workers: start trials until the study's total is reached, fail and retry the
trials of dead workers."""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, resolve
from experiments.sweep.config import SweepConfig
from experiments.sweep.objective import Objective, Surplus, TrainingFailed, counts_towards_total
from experiments.sweep.storage import StorageError, open_storage, retry_callback
from experiments.sweep.summary import describe

__all__ = ["run_worker", "worker_main"]


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
            retry_callback()[0](max_retry=sweep.max_retry)(study, t)
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
    objective = Objective(flat, sweep, Path(out), n_total, multi, worker, on_start=lock.release)
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
            done = sum(map(counts_towards_total, trials))
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
                catch=(TrainingFailed, Surplus),
                callbacks=[_Collect(ended)],
                gc_after_trial=False,
            )
        finally:
            lock.release()
        if ended and not ended[-1].user_attrs.get("surplus"):
            _log(worker, f"{describe(ended[-1])} ({time.perf_counter() - t0:.1f} s)")


class _Collect:
    """Study callback that appends each finished trial to a list."""

    def __init__(self, into: list) -> None:
        self.into = into

    def __call__(self, study, trial) -> None:
        self.into.append(trial)


def worker_main(*args) -> None:
    """Process entry point (spawned): exit code of :func:`run_worker`."""
    from experiments.procs import die_with_parent

    die_with_parent()  # a worker never outlives the `mgrpo sweep` that spawned it
    try:
        code = run_worker(*args)
    except KeyboardInterrupt:
        code = 130
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)
