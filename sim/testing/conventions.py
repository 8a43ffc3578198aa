"""The GRPO advantage conventions that :func:`~sim.testing.detect_convention` knows.

Peer libraries compute ``A_i = (R_i - mean_g) / (std_g + eps)`` with silently different choices.
Each :class:`Convention` names them all; :func:`reference_advantages` computes a convention's
advantages with our verified core (:func:`sim.advantages.group_advantages`), plus verl's
handling of a group of one, which our options do not express.

=============== ==== ==== ===== ========= ============ =========================================
name            ddof eps  scale std_floor group of one source
=============== ==== ==== ===== ========= ============ =========================================
``paper``       0    1e-6 group 1e-6      0            M-GRPO (Hong et al. 2025), our default
``trl``         1    1e-4 group none      0            TRL v1.9.0, ``scale_rewards="group"``
``trl_batch``   1    1e-4 batch none      0            TRL v1.9.0, ``scale_rewards="batch"``
``verl``        1    1e-6 group none      R / (1+eps)  verl v0.7.0, ``norm_adv_by_std_in_grpo``
``verl_no_std`` -    -    none  none      R            verl v0.7.0, the same ``=False``
``mean_only``   -    -    none  none      0            Dr. GRPO; TRL ``scale_rewards="none"``
=============== ==== ==== ===== ========= ============ =========================================

What the sources do (read at the versions named; summarised here in our words):

- **TRL v1.9.0** (``huggingface/trl`` tag v1.9.0, commit 35def3e, 2026-07-21),
  ``GRPOTrainer._generate_and_score_completions``: rewards are viewed as
  ``(num_prompts, num_generations)``; the baseline is the NaN-ignoring group mean; the scale is
  ``trl.trainer.utils.nanstd``, a *sample* std (Bessel-corrected; NaN when fewer than two
  values), added to a fixed ``1e-4`` outside the root. ``scale_rewards`` is ``"group"``
  (default, also ``True``), ``"batch"`` (std over the whole batch, group mean kept) or
  ``"none"`` (also ``False``: mean only). Finally ``nan_to_num(advantages, nan=0.0)``: rows whose
  reward is NaN (unscorable) and groups of one get advantage 0. No std floor.
- **verl v0.7.0** (``volcengine/verl`` tag v0.7.0, commit f9c855f, 2026-01-05; unchanged at
  b178a3c, 2026-01-29), ``verl/trainer/ppo/core_algos.py::compute_grpo_outcome_advantage``: the
  score of a response is its token rewards summed; groups come from an ``index`` array; a group
  of *one* gets mean 0 and std 1 (so its advantage is the raw score / (1 + eps), not 0); larger
  groups use ``torch.std`` (sample std); ``epsilon=1e-6`` outside the root; with
  ``norm_adv_by_std_in_grpo=False`` (Dr. GRPO) only the mean is subtracted. No std floor and
  no NaN handling (NaN propagates to its group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["CONVENTIONS", "Convention", "get_convention", "reference_advantages"]


@dataclass(frozen=True)
class Convention:
    """One way of computing group-relative advantages.

    Attributes:
        name: short name (a key of :data:`CONVENTIONS` for the known ones).
        ddof: 0 (population std) or 1 (sample std).
        eps: added to the std, outside the square root.
        scale: ``group`` | ``batch`` | ``none`` (mean only).
        std_floor: groups whose own std <= this get advantage 0; 0.0 means no floor (only
            exactly constant groups, whose deviations are 0 anyway).
        singleton: what a group of one row gets: ``zero``, or ``unscaled`` (verl: mean 0 and
            std 1, so ``R / (1 + eps)``, or ``R`` when ``scale == "none"``).
        source: where the convention comes from (library, version, option).
    """

    name: str
    ddof: int = 0
    eps: float = 1e-6
    scale: str = "group"
    std_floor: float = 1e-6
    singleton: str = "zero"
    source: str = ""

    def describe(self) -> str:
        """One line: the options and the source."""
        if self.scale == "none":
            opts = "mean only"
        else:
            std = "population" if self.ddof == 0 else "sample"
            opts = f"{std} std, eps {self.eps:g}, scale {self.scale}"
        floor = f"std floor {self.std_floor:g}" if self.std_floor > 0 else "no std floor"
        one = "group of one -> 0" if self.singleton == "zero" else "group of one -> raw reward"
        return f"{self.name}: {opts}, {floor}, {one} [{self.source}]"


_TRL = "TRL v1.9.0 (commit 35def3e), GRPOTrainer"
_VERL = "verl v0.7.0 (commit f9c855f), compute_grpo_outcome_advantage"

CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in (
        Convention("paper", 0, 1e-6, "group", 1e-6, "zero", "M-GRPO paper; mgrpo-sim default"),
        Convention("trl", 1, 1e-4, "group", 0.0, "zero", f"{_TRL}, scale_rewards='group'"),
        Convention("trl_batch", 1, 1e-4, "batch", 0.0, "zero", f"{_TRL}, scale_rewards='batch'"),
        Convention("verl", 1, 1e-6, "group", 0.0, "unscaled", f"{_VERL}, norm_adv_by_std=True"),
        Convention(
            "verl_no_std", 1, 1e-6, "none", 0.0, "unscaled", f"{_VERL}, norm_adv_by_std=False"
        ),
        Convention("mean_only", 0, 0.0, "none", 0.0, "zero", "Dr. GRPO; TRL scale_rewards='none'"),
    )
}
"""The known conventions by name, in the order :func:`detect_convention` reports them."""


def get_convention(name: str | Convention) -> Convention:
    """A :class:`Convention` by name (``ValueError`` listing the known names if unknown)."""
    if isinstance(name, Convention):
        return name
    if name not in CONVENTIONS:
        valid = ", ".join(repr(k) for k in CONVENTIONS)
        raise ValueError(f"unknown convention {name!r}; valid: {valid}")
    return CONVENTIONS[name]


def reference_advantages(
    rewards: Any, group_ids: Any, convention: str | Convention = "paper", weights: Any = None
) -> np.ndarray:
    """Advantages ``(num_rows,)`` float64 of ``rewards`` under ``convention``.

    Args:
        rewards: ``(num_rows,)`` finite floats.
        group_ids: ``(num_rows,)`` non-negative integer group ids (ragged, any order).
        convention: a name of :data:`CONVENTIONS` or a :class:`Convention`.
        weights: optional ``(num_rows,)`` >= 0; rows of weight 0 are left out and get 0.

    Example:
        >>> reference_advantages([0.0, 1.0, 0.7], [0, 0, 1], "verl").round(4).tolist()
        [-0.7071, 0.7071, 0.7]
    """
    from sim.advantages import group_advantages

    c = get_convention(convention)
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float64))
    g = torch.as_tensor(np.asarray(group_ids, dtype=np.int64))
    w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
    adv = group_advantages(
        r, g, weights=w, ddof=c.ddof, eps=c.eps, scale=c.scale, std_floor=c.std_floor
    ).advantages.numpy()
    if c.singleton == "unscaled" and len(adv):
        keep = np.ones(len(adv), bool) if w is None else w.numpy() > 0
        _, inverse = np.unique(g.numpy(), return_inverse=True)
        counted = np.bincount(inverse, weights=keep.astype(np.float64))
        single = keep & (counted[inverse] == 1)
        raw = r.numpy() if c.scale == "none" else r.numpy() / (1.0 + c.eps)
        adv = np.where(single, raw, adv)
    return adv
