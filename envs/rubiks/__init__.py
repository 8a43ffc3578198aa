"""``mgrpo/RubiksLogic-v0``: Rubik's cube logic puzzles for a main agent with tools."""

from envs.rubiks.config import PRESETS, RubiksConfig
from envs.rubiks.env import RubiksLogicEnv, RubiksLogicVectorEnv
from envs.rubiks.generator import PuzzleGenerator

__all__ = [
    "PRESETS",
    "CompiledPuzzleGenerator",
    "PuzzleGenerator",
    "RubiksConfig",
    "RubiksLogicEnv",
    "RubiksLogicVectorEnv",
]


def __getattr__(name: str):
    # lazy: the compiled generator imports numba
    if name == "CompiledPuzzleGenerator":
        from envs.rubiks.generator_jit import CompiledPuzzleGenerator

        return CompiledPuzzleGenerator
    raise AttributeError(f"module 'envs.rubiks' has no attribute {name!r}")
