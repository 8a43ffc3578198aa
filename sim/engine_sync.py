"""The rollout engine side of the learner (``policy.engine = "vllm"``, :mod:`policies.lm_engine`).

The policies sample on a vLLM server with each role's LoRA adapter. The learner checks the server
at construction and pushes every role's adapter to it (saved as a PEFT folder under
:attr:`Learner.adapter_dir`, a fresh ``mgrpo-adapters-*`` directory in the system temp dir,
``$TMPDIR``, which the server must be able to read; removed with the learner), again after
``init_from``/a resume and after each update of a role. Each step, right after a role's rows are
prepared (before the async queue and any update), the trainer recomputes their old log-probs
(``LMPolicy.rescore``): the update's ratio is taken against them and each token's advantage is
weighted by the truncated importance weight ``min(pi_old / pi_engine, policy.is_cap)``;
``<role>/rollout_logp_diff`` is then the largest engine/trainer log-prob gap, with
``<role>/is_weight_mean`` and ``<role>/is_clip_frac`` (share of tokens at the cap).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from typing import Any

from sim.update import Prepared, engine_correction

__all__ = ["EngineSync"]


class EngineSync:
    """Mixin of :class:`sim.trainer.Learner`: the engine check, adapter pushes and rescoring
    (needs ``self.policies`` and ``self.cfg``)."""

    policies: dict[str, Any]
    cfg: Any

    def _init_engine(self) -> None:
        """Check the server and push every role's adapter (no engine: nothing)."""
        self.engine = next(
            (e for p in self.policies.values() if (e := getattr(p, "engine", None)) is not None),
            None,
        )
        self.adapter_dir: str | None = None
        self._adapter_pushes = 0
        self._adapter_folders: dict[str, str] = {}
        if self.engine is not None:
            self.engine.check()
            self.adapter_dir = tempfile.mkdtemp(prefix="mgrpo-adapters-")
            weakref.finalize(self, shutil.rmtree, self.adapter_dir, True)
            self.sync_engine()

    def _rescored(
        self, role: str, prep: Prepared | None, metrics: dict[str, Any], gaps: dict[str, float]
    ) -> Prepared | None:
        """``prep`` with the trainer's old log-probs and importance weights when ``role``
        samples on an engine (logs ``is_weight_mean``, ``is_clip_frac``), else ``prep``."""
        policy = self.policies[role]
        if prep is None or len(prep) == 0 or getattr(policy, "engine", None) is None:
            return prep
        prep, em = engine_correction(prep, policy, self.cfg.policy.is_cap)
        gaps[role] = em.pop("rollout_logp_diff")
        for k, v in em.items():
            metrics[f"{role}/{k}"] = v
        return prep

    def sync_engine(self) -> None:
        """Push every engine role's adapter to the server (at start, after ``init_from`` or
        a resume changed the parameters)."""
        if self.engine is None:
            return
        for role, p in self.policies.items():
            if getattr(p, "engine", None) is not None:
                self._push(role)

    def _push(self, role: str) -> None:
        """Save ``role``'s adapter to a new folder under :attr:`adapter_dir`, load it on the
        server, and remove the role's previous folder."""
        from policies.lm_engine import push_adapter

        assert self.adapter_dir is not None
        self._adapter_pushes += 1
        folder = f"{self.adapter_dir}/{role}-{self._adapter_pushes:06d}"
        push_adapter(self.policies[role], folder)
        old = self._adapter_folders.get(role)
        self._adapter_folders[role] = folder
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
