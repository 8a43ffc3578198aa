"""The M-GRPO core: rewards, trajectory alignment, group-relative advantages and the policy loss.

The names below are imported on first use (PEP 562), so ``import sim.config`` (and the ``mgrpo``
command line's help) does not load torch or numba.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ADV_SCALES": "sim.advantages",
    "SUB_GROUPINGS": "sim.advantages",
    "GroupAdvantages": "sim.advantages",
    "GroupStats": "sim.advantages",
    "aligned_group_advantages": "sim.advantages",
    "group_advantages": "sim.advantages",
    "main_group_ids": "sim.advantages",
    "sub_group_ids": "sim.advantages",
    "ALIGN_MODES": "sim.alignment",
    "Alignment": "sim.alignment",
    "align": "sim.alignment",
    "target_from_counts": "sim.alignment",
    "LOSS_AGG_MODES": "sim.loss",
    "RATIO_LEVELS": "sim.loss",
    "aggregate": "sim.loss",
    "policy_loss": "sim.loss",
    "JUDGES": "sim.rewards",
    "SUB_REWARD_FORMS": "sim.rewards",
    "betas_from_local_share": "sim.rewards",
    "judge_expert": "sim.rewards",
    "main_reward": "sim.rewards",
    "sub_reward": "sim.rewards",
}

__all__ = sorted(_EXPORTS, key=lambda n: (not n.isupper(), n[0].islower(), n))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
