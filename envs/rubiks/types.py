"""Constants and record types of the Rubik's logic task (shapes in comments)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.rubiks.cube import COLOURS, N_VALUES, G, R, W

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
DELEGATE, REASON, ANSWER, INVALID = range(4)
"""main action types: search_agent (delegate), reasoner, answer, malformed"""
MAIN_NVEC = (4, N_INTENTS, 2, N_INTENTS + 1, 2, 15)
"""the main agent's MultiDiscrete sizes (type, fact, constraint, fact_2, constraint_2, answer)"""
UNKNOWN = -1
"""fact value of a topic not looked up yet"""
FACT_WIDTH = 1 + N_VALUES
"""one-hot width of one topic's fact in an observation: unknown, then the 12 values"""
ANCHORS = (W, G, R)
"""the colour each "opposite of" topic asks about"""


def statement(topic: int, value: int) -> str:
    """Text of the cube fact ``value`` (``cube.TOPIC_VALUES`` coding) of ``topic``."""
    if topic < 3:
        return f"{COLOURS[ANCHORS[topic]]} is opposite {COLOURS[value]}"
    front = "blue" if value >= 6 else "green"
    return f"with white on top and {front} in front, {COLOURS[value % 6]} is on the right"


def fact_onehot(facts: np.ndarray) -> np.ndarray:
    """``(n, N_TOPICS)`` values (-1 unknown) -> ``(n, N_TOPICS * FACT_WIDTH)`` int8 one-hots."""
    facts = np.asarray(facts, dtype=np.int64)
    n = facts.shape[0]
    out = np.zeros((n, N_TOPICS, FACT_WIDTH), np.int8)
    np.put_along_axis(out, (facts + 1)[:, :, None], 1, axis=2)
    return out.reshape(n, -1)


def fact_values(onehot: np.ndarray) -> np.ndarray:
    """Inverse of :func:`fact_onehot` on the last axis: ``(..., N_TOPICS * FACT_WIDTH)`` ->
    ``(..., N_TOPICS)`` values (-1 unknown)."""
    a = np.asarray(onehot)
    return a.reshape(*a.shape[:-1], N_TOPICS, FACT_WIDTH).argmax(axis=-1) - 1


@dataclass(frozen=True)
class Puzzle:
    """One generated puzzle (a pure function of the query id and the config).

    The cube's world (its colour scheme) is hidden from the agents; ``possible`` and ``missing``
    are what the clues alone imply in each of the 30 worlds (the solver's tables)."""

    clues: np.ndarray
    """``(MAX_CLUES, 3)`` int64 rows (type, colour c, colour d); padding rows have type -1"""
    answer: int
    """pair index (``cube.PAIRS``) of the missing two-coloured piece"""
    world: int
    """the cube's colour scheme (index into ``cube.WORLDS``; 0 = standard)"""
    possible: np.ndarray
    """``(30,)`` bool: worlds in which every clue can hold and some edge stays unaccounted for"""
    missing: np.ndarray
    """``(30, 15)`` bool: per world, the edge pieces the clues leave unaccounted for"""
    needed: np.ndarray
    """``(N_TOPICS,)`` bool: a smallest topic set whose true facts pin the answer"""

    @property
    def n_needed(self) -> int:
        return int(self.needed.sum())
