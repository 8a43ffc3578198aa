"""``mgrpo sweep``: an Optuna study over the alignment target D and the sub-agent reward mixing.

    mgrpo sweep CONFIG --trials N --study NAME [--storage URL] [--workers W] [--out DIR]
                [--seeds S] [--multi-objective] [--no-plots] [--set key=value ...]

Each trial trains ``S`` seeds of the config with ``algo.align_target`` = D,
``reward.local_share`` = w (``w = b3 / (b2 + b3)``, see :func:`sim.rewards.betas_from_local_share`)
and optionally ``reward.beta[0]`` = b1, and scores them by the greedy held-out success at the
budget (``eval/success_greedy`` at the last step), averaged over the seeds.

The ``[sweep]`` table
---------------------
The config is a training config (see ``mgrpo train``) with an optional ``[sweep]`` table, read by
the one config layer (:func:`experiments.config.read_config`; ``[ablate]`` is ignored, so presets
like ``quick`` work as they are). ``--set sweep.<key>=value`` and the flags override it::

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

Modules: ``config`` (the table, trial configs), ``storage``, ``objective`` (one trial),
``workers``, ``summary`` (what is printed and written at the end), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "add_parser": "experiments.sweep.cli",
    "run": "experiments.sweep.cli",
    "DEFAULT_METRIC": "experiments.sweep.config",
    "SweepConfig": "experiments.sweep.config",
    "load_sweep": "experiments.sweep.config",
    "trial_config": "experiments.sweep.config",
    "stability": "experiments.sweep.objective",
    "StorageError": "experiments.sweep.storage",
    "default_storage": "experiments.sweep.storage",
    "open_storage": "experiments.sweep.storage",
    "redact": "experiments.sweep.storage",
    "summarize": "experiments.sweep.summary",
    "run_worker": "experiments.sweep.workers",
}
"""names imported on first use (PEP 562): ``mgrpo --help`` loads no optuna"""

__all__ = sorted(_EXPORTS, key=lambda n: (not n[0].isupper(), n))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'experiments.sweep' has no attribute {name!r}")
