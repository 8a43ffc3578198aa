"""The I/O shell around the training step: one run directory, trained by :class:`Trainer`.

:class:`sim.trainer.Learner` holds the policies and optimizers and takes steps; this shell owns
everything around it: the run directory (``config.toml`` is written by the CLI), atomic
checkpoints, ``metrics.jsonl``, TensorBoard, the progress bar, Ctrl-C (finish the step, write a
checkpoint, raise ``KeyboardInterrupt``), ``roles.<name>.init_from`` (read from another run's
checkpoint) and resume.

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
from pathlib import Path
from typing import Any

from experiments.checkpoint import (
    CHECKPOINT,
    append_metrics,
    load_checkpoint,
    save_checkpoint,
    truncate_metrics,
)
from sim.config import TrainConfig
from sim.trainer import Learner, TrainingError

__all__ = ["Trainer", "TrainingError"]


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


class Trainer:
    """Trains ``cfg`` into ``run_dir`` (the file-aware shell around :class:`Learner`).

    Args:
        cfg: the resolved config.
        run_dir: output directory (created); holds metrics.jsonl, checkpoint.pt, config.toml.
        resume: continue from ``run_dir/checkpoint.pt`` (from step 0 when there is none yet).
        progress: show a tqdm progress bar.
        tensorboard: also write every metric as TensorBoard scalars to ``run_dir/tb`` (needs the
            ``tensorboard`` package: ``pip install mgrpo-sim[tensorboard]``).

    The learner's attributes (``policies``, ``roles``, ``step``, ``evaluate()``, ...) are
    reachable on the trainer too.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        tensorboard: bool = False,
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.tensorboard = tensorboard
        roles = list(dict.fromkeys(["main", *cfg.roles]))
        self.learner = Learner(cfg, role_params=_role_params(cfg, roles))
        self._stop = False
        if resume:
            if (self.run_dir / CHECKPOINT).exists():
                self.learner.load_state_dict(load_checkpoint(self.run_dir))
            truncate_metrics(self.run_dir, self.learner.step)  # rows of completed updates

    def __getattr__(self, name: str) -> Any:
        if name == "learner":  # not yet built
            raise AttributeError(name)
        return getattr(self.learner, name)

    # ------------------------------------------------------------------ public
    def train(self) -> Path:
        """Run until ``cfg.steps`` steps; returns the run directory."""
        cfg, lr = self.cfg, self.learner
        if lr.oracle_success is None and cfg.eval.oracle_episodes > 0:
            lr.oracle_success = lr.oracle()
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
            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=lr.step + 1)
        try:
            if self.progress:
                from tqdm import tqdm

                bar = tqdm(total=cfg.steps, initial=lr.step, desc="train", unit="step")
            while lr.step < cfg.steps:
                row = lr.train_step()
                append_metrics(self.run_dir, row)
                if writer is not None:
                    for k, v in row.items():
                        if k != "step" and isinstance(v, int | float):
                            writer.add_scalar(k, v, row["step"])
                last = lr.step == cfg.steps
                if lr.step % cfg.checkpoint_every == 0 or last or self._stop:
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

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """Everything a resume needs (the learner's state dict)."""
        return self.learner.state_dict()

    def save(self) -> Path:
        """Write the checkpoint atomically; returns its path."""
        return save_checkpoint(self.run_dir, self.state())
