"""Text of the Rubik's logic task: the clues, the agents' user messages and system prompts.

Every ``describe_*`` function is pure: it reads one unbatched observation (and the env's config
numbers it is given), never the env's state. The puzzle's clues travel in the observation, so
the Rubik's faces need no instance rebuilt from the query id.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from envs.rubiks.cube import COLOURS, pair_name
from envs.rubiks.types import (
    ALL,
    BELOW,
    BORDER,
    CLUE_WIDTH,
    CORNERS,
    INTENTS,
    MAX_CLUES,
    N_CLUE_TYPES,
    N_TOPICS,
    OPPOSITE,
    RIGHT_OF,
    SOLVE,
    fact_values,
    statement,
)

KEYWORD = "this cube's colour scheme"
"""the search constraint's phrase"""
TOPICS_TEXT = INTENTS[:N_TOPICS]
PREAMBLE = (
    "A Rubik's cube with its owner's own stickers has been broken into its 26 pieces: 6 centres "
    "with one coloured face, 12 edges with two and 8 corners with three. Its six colours are "
    "the usual ones, but which colours face each other and how they are arranged need not be "
    "the standard scheme. The pieces are jumbled and one was removed; it has two colours. The "
    "clues account for every other two-coloured piece. Clues:"
)
SYSTEM = (
    "You are the main agent. Plan, use the reasoner for logic and the search agent for cube "
    "facts; answer with the two colours of the missing piece."
)
SYSTEM_FLAT = "You are an agent with search, visit and reasoner tools. Solve the cube puzzle."
SYSTEM_SEARCH = (
    "You are a web-search agent. Look up the cube fact you were asked for with the search and "
    "visit tools, then call report. You cannot solve logic puzzles."
)
SYSTEM_MATH = (
    "You are a math agent. Deduce which pieces can be missing from the clues and facts given."
)

Obs = Mapping[str, np.ndarray]


def clue_onehot(clues: np.ndarray) -> np.ndarray:
    """``(n, MAX_CLUES, 3)`` clue rows -> ``(n, MAX_CLUES * CLUE_WIDTH)`` int8 one-hots."""
    n = clues.shape[0]
    out = np.zeros((n, MAX_CLUES, CLUE_WIDTH), np.int8)
    present = clues[:, :, 0] >= 0
    ii, jj = np.nonzero(present)
    out[ii, jj, clues[ii, jj, 0]] = 1
    out[ii, jj, N_CLUE_TYPES + clues[ii, jj, 1]] = 1
    out[ii, jj, N_CLUE_TYPES + 6 + clues[ii, jj, 2]] = 1
    return out.reshape(n, -1)


def describe_clues(onehot: np.ndarray) -> str:
    """Text of the clues in one observation's ``clues`` field."""
    rows = np.asarray(onehot).reshape(MAX_CLUES, CLUE_WIDTH)
    lines = []
    for row in rows:
        if not row[:N_CLUE_TYPES].any():
            continue
        typ = int(row[:N_CLUE_TYPES].argmax())
        c = COLOURS[int(row[N_CLUE_TYPES : N_CLUE_TYPES + 6].argmax())]
        d = COLOURS[int(row[N_CLUE_TYPES + 6 :].argmax())]
        text = {
            ALL: f"All {c} pieces have been found.",
            BORDER: f"Every {c} piece that borders {d} has been found.",
            CORNERS: f"All {c} corners have been found.",
            RIGHT_OF: f"With {d} on top and the {c} centre facing you, the edge to the right of "
            f"the {c} centre has been found.",
            BELOW: f"With {d} on top and the {c} centre facing you, the edge directly below the "
            f"{c} centre has been found.",
            OPPOSITE: f"For every {c} piece found, the piece in the same place on the face "
            f"opposite {c} has been found.",
        }[typ]
        lines.append(f"{len(lines) + 1}. {text}")
    return "\n".join(lines)


def _facts(values: np.ndarray) -> list[str]:
    """Statements of the known facts, ``values`` ``(N_TOPICS,)`` (-1 unknown)."""
    return [statement(t, int(v)) for t, v in enumerate(np.asarray(values).tolist()) if v >= 0]


def describe_main(obs: Obs, *, max_turns: int, max_calls: int, flat: bool) -> str:
    """The main agent's user message (flat mode: plus its search session, ``tool_*`` keys)."""
    lines = [PREAMBLE, describe_clues(obs["clues"])]
    facts = _facts(fact_values(obs["facts"]))
    lines.append("Facts found so far: " + ("; ".join(facts) if facts else "none") + ".")
    failed = [TOPICS_TEXT[t] for t in range(N_TOPICS) if obs["failed"][t]]
    if failed:
        lines.append("Look-ups that came back empty: " + ", ".join(failed) + ".")
    if obs["reasoned"][0]:
        cands = [pair_name(k) for k in np.flatnonzero(obs["candidates"])]
        lines.append("Reasoner: candidates " + (" | ".join(cands) or "none (facts clash)"))
        needs = [TOPICS_TEXT[t] for t in range(N_TOPICS) if obs["needs"][t]]
        if needs:
            lines.append("Reasoner: it would help to know " + ", ".join(needs) + ".")
    turns = round(float(obs["budget"][0]) * max_turns)
    calls = round(float(obs["budget"][1]) * max_calls)
    lines.append(f"Turns left: {turns}. Search calls left: {calls}.")
    if flat:
        session = {k[5:]: v for k, v in obs.items() if k.startswith("tool_")}
        lines.append("Your search session:")
        lines.append(describe_search(session, None, instructed=False))
    return "\n".join(lines)


def describe_search(obs: Obs, instance: object = None, *, instructed: bool = True) -> str:
    """The search sub-agent's user message: what it was asked (its ``instruction``: intent,
    constraint), its step, its results and the page it read."""
    lines = []
    if instructed:
        intent, constraint = (int(x) for x in np.asarray(obs["instruction"])[:2])
        if intent == SOLVE:
            lines.append(f'The main agent asked you to "{INTENTS[intent]}".')
        else:
            lines.append(f'The main agent asked you to look up the cube fact "{INTENTS[intent]}".')
        if constraint:
            lines.append(f'Constraint it gave: "{KEYWORD}" (you may add it to your search).')
        else:
            lines.append("It gave no constraint.")
    lines.append(f"Step {int(np.argmax(obs['step'])) + 1} of {len(obs['step'])}.")
    res = np.asarray(obs["results"]).reshape(-1, N_TOPICS + 2).argmax(axis=1) - 2
    if obs["failed"][0]:
        lines.append("The last search failed (tool error).")
    if (res != -2).any():
        lines.append("Search results:")
        for i, r in enumerate(res):
            what = "an unrelated page" if r < 0 else f"a page about {INTENTS[r]}"
            lines.append(f"{i + 1}. {what}")
    topic = int(np.argmax(obs["page"])) - 1
    if topic >= 0:
        value = int(np.argmax(obs["statement"]))
        lines.append(f'Page read ({INTENTS[topic]}): "{statement(topic, value)}."')
    return "\n".join(lines)


def describe_math(obs: Obs, instance: object = None) -> str:
    """The math specialist's user message: the clues, the facts it was given (its
    ``instruction``: per topic 0 none, else 1 + the fact's value) and its current candidates."""
    facts = _facts(np.asarray(obs["instruction"]) - 1)
    lines = [
        "The main agent asks which pieces can be missing, given these clues and facts.",
        "Puzzle clues:",
        describe_clues(obs["clues"]),
        "Facts given: " + ("; ".join(facts) if facts else "none") + ".",
    ]
    if np.asarray(obs["applied"]).any():
        work = [pair_name(k) for k in np.flatnonzero(obs["work"])]
        lines.append("Current candidates: " + " | ".join(work) + ".")
    return "\n".join(lines)
