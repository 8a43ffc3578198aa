"""The I/O shell around the training step: one run directory, trained by :class:`Trainer`.

:class:`sim.trainer.Learner` holds the policies and optimizers and takes steps; this shell owns
everything around it: the run directory (one writer at a time: ``experiments.lock``), atomic
checkpoints, ``metrics.jsonl``, TensorBoard, the progress bar (with the phase of a slow step),
Ctrl-C (finish the step, write a checkpoint, raise ``KeyboardInterrupt``), a stop on bad numbers
(``TrainingError`` saying which checkpoint is left), the larger final evaluation
(``eval.final_episodes``: :func:`final_evaluation`), ``roles.<name>.init_from`` (read from another
run's checkpoint) and resume.

From a notebook::

    from experiments.config import resolve
    from experiments.run import Trainer
    cfg = resolve({"env.id": "mgrpo/InvasiveSpecies-v0", "steps": 20, "eval.oracle_episodes": 0})
    tr = Trainer(cfg, "runs/nb", progress=False)
    tr.train()                      # metrics in runs/nb/metrics.jsonl
    tr.learner.policies["main"]     # the trained policies
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from experiments.checkpoint import (
    CHECKPOINT,
    append_metrics,
    load_checkpoint,
    save_checkpoint,
    truncate_metrics,
)
from experiments.lock import RunDirError, RunDirLock, acquire_run_dir
from experiments.split import SplitOptions
from sim.config import TrainConfig
from sim.distributed import init_ranks
from sim.trainer import HELDOUT, Learner, TrainingError, make_env

__all__ = ["FINAL_QUERIES", "RunDirError", "Trainer", "TrainingError", "final_evaluation"]

FINAL_QUERIES = HELDOUT + 2**40
"""the first query id of the final evaluations (held out, apart from the periodic ones)"""


def final_evaluation(learner: Learner, episodes: int) -> dict[str, Any]:
    """The larger evaluation after the last step (``eval.final_episodes``, issue 16): the keys
    of :meth:`~sim.trainer.Learner.evaluate` (sampled and greedy success, category errors, d_k,
    completion time, oracle fraction) as ``eval/final_<name>``, plus ``eval/final_episodes``.

    The queries ``FINAL_QUERIES + seed * episodes + i`` are the same for every variant of a seed
    (paired comparisons); the policies sample from their own streams (``own_streams``), so the
    training trajectory is unchanged. Every rank calls it (each plays its share)."""
    from policies.lm_fsdp import full_params
    from sim.rollout import own_streams

    cfg = learner.cfg
    n = max(episodes, learner.ranks.world)
    queries = FINAL_QUERIES + cfg.seed * n + np.arange(n, dtype=np.int64)
    seeds = [HELDOUT // 2 + i for i in range(n)]
    periodic, learner.eval_env = learner.eval_env, make_env(cfg, learner.ranks.count(n))
    try:  # the periodic evaluation's code on the final queries
        base = cfg.seed * 1_000_003 + 999_331 + 7_919 * learner.ranks.rank  # as evaluate()
        with own_streams(learner.policies, base):
            with full_params(learner.policies.values()):
                out = learner._evaluate(queries, seeds)
    finally:
        learner.eval_env.close()
        learner.eval_env = periodic
    res: dict[str, Any] = {
        f"eval/final_{k.removeprefix('eval/')}": v
        for k, v in out.items()
        if k != "eval/oracle_success"
    }
    res["eval/final_episodes"] = n
    return res


def _role_params(cfg: TrainConfig, roles: list[str]) -> dict[str, tuple[dict, str]]:
    """``roles.<name>.init_from``: each named run's checkpointed policy of that role."""
    out = {}
    for role in roles:
        src = cfg.role(role).init_from
        if not src:
            continue
        try:
            st = load_checkpoint(Path(src))
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"roles.{role}.init_from: {e}") from e
        pols = st.get("policies", {}) if isinstance(st, dict) else {}
        if role not in pols:
            raise ValueError(
                f"roles.{role}.init_from: {src} has no policy for role {role!r} "
                f"(it has {sorted(pols)})"
            )
        out[role] = (pols[role], str(src))
    return out


def _summary_writer(run_dir: Path, step: int) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise RuntimeError(
            "tensorboard output needs the tensorboard package: pip install 'mgrpo-sim[tensorboard]'"
        ) from e
    return SummaryWriter(str(run_dir / "tb"), purge_step=step + 1)


class _PhaseTicker:
    """Shows the phase of a slow step on the progress bar: a daemon thread that looks every
    ``every`` seconds and, once the step has run ``delay`` seconds, writes its phase (set by the
    learner's ``on_progress`` callback, a plain attribute store) into the bar's postfix."""

    def __init__(self, bar: Any, delay: float = 2.0, every: float = 0.5) -> None:
        self.bar, self.delay, self.every = bar, delay, every
        self.label, self.phase, self.t0 = "", "", time.monotonic()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mgrpo-progress", daemon=True)

    def __call__(self, phase: str) -> None:
        self.phase = phase

    def begin(self, label: str, phase: str = "") -> None:
        """A new slow-able piece of work (``"step 3"``) starts now."""
        self.label, self.phase, self.t0 = label, phase, time.monotonic()

    def end(self) -> None:
        self.phase = ""

    def tick(self, now: float | None = None) -> None:
        elapsed = (time.monotonic() if now is None else now) - self.t0
        phase = self.phase
        if phase and elapsed >= self.delay:
            self.bar.set_postfix_str(f"{self.label}: {phase} ({elapsed:.0f} s)", refresh=True)

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.tick()

    def __enter__(self) -> _PhaseTicker:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


class _Follower:
    """The run-directory lock of a rank other than 0 under a launcher: rank 0 holds the real
    one (and alone writes config.toml, metrics and checkpoints)."""

    held = True

    def release(self) -> None:
        pass

    def __enter__(self) -> _Follower:
        return self

    def __exit__(self, *exc) -> None:
        pass


class Trainer:
    """Trains ``cfg`` into ``run_dir`` (the file-aware shell around :class:`Learner`).

    Args:
        cfg: the resolved config.
        run_dir: output directory (created); holds metrics.jsonl, checkpoint.pt, config.toml.
        resume: continue from ``run_dir/checkpoint.pt`` (from step 0 when there is none yet).
        progress: show a tqdm progress bar (with the phase of a step that takes over 2 s).
        tensorboard: also write every metric as TensorBoard scalars to ``run_dir/tb`` (needs the
            ``tensorboard`` package: ``pip install mgrpo-sim[tensorboard]``).
        config_text: the resolved config as TOML (default for a new run:
            ``experiments.config.dump_toml(cfg)``): written to ``run_dir/config.toml`` once the
            directory is locked (and, for a new run, compared with a ``config.toml`` already
            there).
        split: run only some roles of the run, exchanging data with the other roles' processes
            through a store (:mod:`experiments.split`); None: every role in this process.

    One writer per run directory: the trainer locks ``run_dir`` when it is made (before any
    work) and holds the lock until :meth:`train` returns or raises, :meth:`close` is called, or
    the process ends; another writer meanwhile gets :class:`RunDirError` (a ``ConfigError``:
    exit 2 from the CLI) naming the holder's pid. A new run (``resume=False``) refuses a
    directory with another run's files; stale temporary checkpoint files are deleted
    (``experiments.lock.acquire_run_dir``). A step that stops on bad numbers raises
    :class:`TrainingError` naming the step, the role and the quantity, and saying which
    checkpoint it left (the failed step never writes one).

    The learner's attributes (``policies``, ``roles``, ``step``, ``evaluate()``, ...) are
    reachable on the trainer too.
    """

    _lock: RunDirLock | _Follower | None = None
    progress_delay_s: float = 2.0
    """a step running longer than this shows its phase on the progress bar"""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        tensorboard: bool = False,
        config_text: str | None = None,
        split: SplitOptions | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        if config_text is None and not resume:  # from Python: the run dir still gets its config
            from experiments.config import dump_toml

            config_text = dump_toml(cfg)
        self.ranks = init_ranks()  # under a launcher: rank 0 alone writes the run directory
        self._lock = (
            acquire_run_dir(self.run_dir, resume=resume, config_text=config_text)
            if self.ranks.main
            else _Follower()
        )
        self.progress = progress
        self.tensorboard = tensorboard
        self._stop = False
        self._ckpt_step: int | None = None
        """the step of the checkpoint in run_dir written or loaded by this trainer"""
        try:
            roles = list(dict.fromkeys(["main", *cfg.roles]))
            self.learner = Learner(cfg, role_params=_role_params(cfg, roles))
            if resume:
                if (self.run_dir / CHECKPOINT).exists():
                    self.learner.load_state_dict(load_checkpoint(self.run_dir))
                    self._ckpt_step = self.learner.step
                if self.ranks.main:
                    truncate_metrics(self.run_dir, self.learner.step)  # rows of completed updates
            self.side = None
            if split is not None:
                from experiments.config import dump_toml
                from experiments.split import open_side

                text = dump_toml(cfg)
                self.side = open_side(self.learner, split, text, self.run_dir, self._say)
        except BaseException:
            self.close()
            raise

    def __getattr__(self, name: str) -> Any:
        if name == "learner":  # not yet built
            raise AttributeError(name)
        return getattr(self.learner, name)

    # ------------------------------------------------------------------ public
    def close(self) -> None:
        """Release the run directory and, in a split run, the roles' claims (idempotent;
        :meth:`train` releases the directory when it ends)."""
        side = self.__dict__.get("side")
        if side is not None:
            side.close()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def train(self) -> Path:
        """Run until ``cfg.steps`` steps; returns the run directory. The run directory stays
        locked while it runs and is released on any exit."""
        if self._lock is None or not self._lock.held:  # a second train() of this trainer
            self._lock = acquire_run_dir(self.run_dir, resume=True)
        with self._lock:
            return self._train()

    def train_step(self, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """One step of the learner (no files written); its metrics row. A
        :class:`TrainingError` says which checkpoint of ``run_dir`` is left."""
        failed = self.learner.step + 1
        try:
            if self.side is not None:
                return self.side.train_step(on_progress)
            return self.learner.train_step(on_progress)
        except TrainingError as e:
            raise TrainingError(f"{e}; {self._checkpoint_note(failed)}") from e

    def _checkpoint_note(self, failed: int) -> str:
        """What a failed step leaves behind: true about ``run_dir/checkpoint.pt``."""
        d = self.run_dir
        if self._ckpt_step is not None and (d / CHECKPOINT).is_file():
            return (
                f"the last checkpoint (step {self._ckpt_step}) in {d} is intact; resume from it "
                f"with a changed setting: mgrpo train --resume --out {d} --set KEY=VALUE"
            )
        return (
            f"no checkpoint was written in {d} (the run failed at step {failed}, before its "
            "first checkpoint)"
        )

    def _train(self) -> Path:
        cfg, lr = self.cfg, self.learner
        bar = ticker = writer = None
        old_handler, installed = None, False
        try:
            if self.progress and self.ranks.main:
                from tqdm import tqdm

                bar = tqdm(total=cfg.steps, initial=lr.step, desc="train", unit="step")
                ticker = _PhaseTicker(bar, self.progress_delay_s).__enter__()
            needs_oracle = self.side is None or self.side.needs_oracle
            if lr.oracle_success is None and cfg.eval.oracle_episodes > 0 and needs_oracle:
                if ticker is not None:
                    n = cfg.eval.oracle_episodes
                    ticker.begin("oracle reference", f"{n} held-out episodes")
                from experiments.oracle_cache import cached_oracle

                def log(msg: str) -> None:
                    if bar is not None:
                        bar.write(msg)

                main = self.ranks.main  # one computes (and caches) it, every rank gets it
                lr.oracle_success = self.ranks.broadcast(
                    cached_oracle(cfg, lr.oracle, log) if main else None
                )
            if self.tensorboard and self.ranks.main:
                writer = _summary_writer(self.run_dir, lr.step)
            old_handler, installed = signal.getsignal(signal.SIGINT), True
            signal.signal(signal.SIGINT, self._on_sigint)
            while lr.step < cfg.steps:
                if ticker is not None:
                    ticker.begin(f"step {lr.step + 1}")
                row = self.train_step(ticker)
                last = lr.step == cfg.steps
                n_final = cfg.eval.final_episodes
                if last and n_final > 0 and (self.side is None or self.side.needs_oracle):
                    if ticker is not None:
                        ticker.begin(f"step {lr.step}", f"final evaluation ({n_final} episodes)")
                    row |= final_evaluation(lr, n_final)
                if ticker is not None:
                    ticker.end()
                if self.ranks.main:
                    append_metrics(self.run_dir, row)
                if writer is not None:
                    for k, v in row.items():
                        if k != "step" and isinstance(v, int | float):
                            writer.add_scalar(k, v, row["step"])
                self._stop = self.ranks.max(float(self._stop)) > 0  # a Ctrl-C seen by any rank
                if lr.step % cfg.checkpoint_every == 0 or last or self._stop:
                    self.save()
                if bar is not None:
                    bar.update(1)
                    key = next((k for k in row if k.endswith("/reward_mean")), None)
                    post = {key.replace("/reward_mean", ""): f"{row[key]:.3f}"} if key else {}
                    if "main/reward_mean" in row:
                        post = {"R_M": f"{row['main/reward_mean']:.3f}"}
                    if "eval/success_greedy" in row:
                        post["eval"] = f"{row['eval/success_greedy']:.2f}"
                    bar.set_postfix(post)
                if self._stop:
                    raise KeyboardInterrupt
        finally:
            if ticker is not None:
                ticker.__exit__()
            if installed:
                signal.signal(signal.SIGINT, old_handler)
            if writer is not None:
                writer.close()
            if bar is not None:
                bar.close()
        return self.run_dir

    def _say(self, msg: str) -> None:
        """A line for the user (a split side's wait messages), above the progress bar."""
        if self.progress:
            from tqdm import tqdm

            tqdm.write(msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    def _on_sigint(self, signum, frame) -> None:
        if self._stop:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._stop = True

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resume needs (the learner's state dict)."""
        return self.learner.state_dict()

    def save(self) -> Path:
        """Write the checkpoint atomically; returns its path. With several processes every
        rank calls it (the state is gathered from them) and rank 0 writes it."""
        state = self.state()
        path = self.run_dir / CHECKPOINT
        if self.ranks.main:
            path = save_checkpoint(self.run_dir, state)
        self._ckpt_step = self.learner.step
        return path
