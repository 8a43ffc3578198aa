"""Gymnasium environments for hierarchical tool tasks (main agent + specialist sub-agents).

Registered ids: ``mgrpo/RubiksLogic-v0`` and ``mgrpo/InvasiveSpecies-v0`` (each with a
``vector_entry_point``). See ``envs/PROTOCOL.md`` for the protocol and how to add an env.
"""

import gymnasium

from envs.baselines import BASELINES, BaselineResult, evaluate_baseline
from envs.core import (
    Arg,
    HierarchicalEnv,
    HierarchicalVectorEnv,
    LatencyModel,
    StepResult,
    SubAgentEnv,
    SubAgentTask,
    SubState,
    SubTrajectory,
    TextFace,
    Tool,
)

ENV_IDS = ("mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0")

if "mgrpo/RubiksLogic-v0" not in gymnasium.registry:
    gymnasium.register(
        "mgrpo/RubiksLogic-v0",
        entry_point="envs.rubiks.env:RubiksLogicEnv",
        vector_entry_point="envs.rubiks.env:RubiksLogicVectorEnv",
    )
if "mgrpo/InvasiveSpecies-v0" not in gymnasium.registry:
    gymnasium.register(
        "mgrpo/InvasiveSpecies-v0",
        entry_point="envs.species.env:InvasiveSpeciesEnv",
        vector_entry_point="envs.species.env:InvasiveSpeciesVectorEnv",
    )


def __getattr__(name: str):
    # lazy re-exports of the env classes (the modules import this package)
    if name in ("RubiksLogicEnv", "RubiksLogicVectorEnv"):
        from envs.rubiks import env as _rubiks

        return getattr(_rubiks, name)
    if name in ("InvasiveSpeciesEnv", "InvasiveSpeciesVectorEnv"):
        from envs.species import env as _species

        return getattr(_species, name)
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = [
    "BASELINES",
    "ENV_IDS",
    "Arg",
    "BaselineResult",
    "HierarchicalEnv",
    "HierarchicalVectorEnv",
    "InvasiveSpeciesEnv",
    "InvasiveSpeciesVectorEnv",
    "LatencyModel",
    "RubiksLogicEnv",
    "RubiksLogicVectorEnv",
    "StepResult",
    "SubAgentEnv",
    "SubAgentTask",
    "SubState",
    "SubTrajectory",
    "TextFace",
    "Tool",
    "evaluate_baseline",
]
