"""The M-GRPO core: rewards, trajectory alignment, group-relative advantages and the policy loss."""

from sim.advantages import (
    ADV_SCALES,
    SUB_GROUPINGS,
    GroupAdvantages,
    GroupStats,
    aligned_group_advantages,
    group_advantages,
    main_group_ids,
    sub_group_ids,
)
from sim.alignment import ALIGN_MODES, Alignment, align, target_from_counts
from sim.loss import LOSS_AGG_MODES, RATIO_LEVELS, aggregate, policy_loss
from sim.rewards import SUB_REWARD_FORMS, betas_from_local_share, main_reward, sub_reward

__all__ = [
    "ADV_SCALES",
    "ALIGN_MODES",
    "LOSS_AGG_MODES",
    "RATIO_LEVELS",
    "SUB_GROUPINGS",
    "SUB_REWARD_FORMS",
    "Alignment",
    "GroupAdvantages",
    "GroupStats",
    "aggregate",
    "align",
    "aligned_group_advantages",
    "betas_from_local_share",
    "group_advantages",
    "main_group_ids",
    "main_reward",
    "policy_loss",
    "sub_group_ids",
    "sub_reward",
    "target_from_counts",
]
