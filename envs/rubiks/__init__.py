"""``mgrpo/RubiksLogic-v0``: Rubik's cube logic puzzles for a main agent with tools."""

from envs.rubiks.config import PRESETS, RubiksConfig
from envs.rubiks.env import RubiksLogicEnv, RubiksLogicVectorEnv
from envs.rubiks.generator import PuzzleGenerator

__all__ = ["PRESETS", "PuzzleGenerator", "RubiksConfig", "RubiksLogicEnv", "RubiksLogicVectorEnv"]
