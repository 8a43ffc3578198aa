"""Constants and record types of the Rubik's logic task (shapes in comments)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.rubiks.cube import B, G, O, R, W, Y

# ---------------------------------------------------------------- clues
ALL, BORDER, CORNERS, RIGHT_OF, BELOW, OPPOSITE = range(6)
CLUE_TYPES = ("all", "border", "corners", "right_of", "below", "opposite")
N_CLUE_TYPES = len(CLUE_TYPES)
MAX_CLUES = 10
"""clue slots in an observation (unused slots have type -1)"""
CLUE_WIDTH = N_CLUE_TYPES + 6 + 6
"""one-hot width of a clue slot in an observation: type, colour c, colour d"""

# ---------------------------------------------------------------- cube facts (search topics)
TOPICS = ("opposite of white", "opposite of green", "opposite of red", "orientation")
N_TOPICS = len(TOPICS)
SOLVE = N_TOPICS
"""intent value "solve the puzzle" (a category error when sent to the search sub-agent)"""
INTENTS = (*TOPICS, "solve the puzzle")
N_INTENTS = len(INTENTS)
STATEMENTS = (
    ("white is opposite yellow", "white is opposite blue"),
    ("green is opposite blue", "green is opposite yellow"),
    ("red is opposite orange", "red is opposite yellow"),
    (
        "with white on top and green in front, red is on the right",
        "with white on top and green in front, orange is on the right",
    ),
)
"""per topic: (standard statement, decoy statement of a non-standard colour scheme)"""
STATEMENT_COLOURS = ((W, Y, B), (G, B, Y), (R, O, Y), (G, R, O))
"""per topic: (anchor, standard value, decoy value); orientation: (front, right std, decoy)"""
HAS_DECOY = np.array([True, True, False, True])
"""topics for which non-standard-scheme pages exist (Japanese scheme: white/blue, green/yellow)"""
N_KNOWLEDGE = 3**N_TOPICS
"""knowledge states: per topic 0 unknown, 1 standard statement held, 2 decoy statement held"""


def knowledge_index(state: np.ndarray) -> np.ndarray:
    """``(..., N_TOPICS)`` int states in {0, 1, 2} -> ``(...)`` int64 index in [0, 81)."""
    return (np.asarray(state, dtype=np.int64) * 3 ** np.arange(N_TOPICS)).sum(axis=-1)


@dataclass(frozen=True)
class Puzzle:
    """One generated puzzle (a pure function of the query id and the config)."""

    clues: np.ndarray
    """``(MAX_CLUES, 3)`` int64 rows (type, colour c, colour d); padding rows have type -1"""
    answer: int
    """pair index (``cube.PAIRS``) of the missing two-coloured piece"""
    cand: np.ndarray
    """``(N_KNOWLEDGE, 15)`` bool: the solver's candidates for each knowledge state"""
    needs: np.ndarray
    """``(N_KNOWLEDGE, N_TOPICS)`` bool: unknown topics whose value would narrow the candidates"""
    needed: np.ndarray
    """``(N_TOPICS,)`` bool: the smallest topic set whose standard statements pin the answer"""

    @property
    def n_needed(self) -> int:
        return int(self.needed.sum())
