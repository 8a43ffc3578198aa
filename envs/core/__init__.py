"""The hierarchical tool-task protocol shared by every env (see ``envs/PROTOCOL.md``)."""

from envs.core.latency import LatencyModel
from envs.core.records import SubColumns, SubRecords, SubTrajectory
from envs.core.single import HierarchicalEnv
from envs.core.spaces import actions_allowed, block_offsets, sample_masked, validate_actions
from envs.core.subagent import SubAgentEnv, SubAgentTask, SubState
from envs.core.text import Arg, TextFace, Tool
from envs.core.vector import HierarchicalVectorEnv, StepResult, SubPolicy, flat_max_turns

__all__ = [
    "Arg",
    "HierarchicalEnv",
    "HierarchicalVectorEnv",
    "LatencyModel",
    "StepResult",
    "SubAgentEnv",
    "SubAgentTask",
    "SubColumns",
    "SubPolicy",
    "SubRecords",
    "SubState",
    "SubTrajectory",
    "TextFace",
    "Tool",
    "actions_allowed",
    "block_offsets",
    "flat_max_turns",
    "sample_masked",
    "validate_actions",
]
