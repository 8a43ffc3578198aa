"""Baseline policies of ``mgrpo/RubiksLogic-v0`` (meanings in ``envs/PROTOCOL.md``).

:func:`baseline_policies` is the env's hook for :func:`envs.evaluate_baseline`. The oracle main
agent reads the puzzle's ``needed`` facts (the exact solver's smallest set; an oracle may plan
over the task's known structure); the memorizer reads only what the clues imply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.rubiks import search
from envs.rubiks.math import oracle_math_actions
from envs.rubiks.search import oracle_search_actions
from envs.rubiks.types import ANSWER, DELEGATE, MAIN_NVEC, REASON

MAIN_COMPONENTS = len(MAIN_NVEC)
"""main action components before flat mode's tool components"""


def baseline_policies(env: Any, baseline: str, rng: np.random.Generator):
    """Hook for :func:`envs.evaluate_baseline`: ``(main_policy, {role: policy|None})``.

    ``oracle_flat`` is the oracle on the flat env (``evaluate_baseline`` builds it with
    ``flat=True``). ``memorizer`` answers at once, with no tool and no sub-agent, the piece
    most likely missing given the clues alone for an agent that knows how puzzles are made
    but not this cube's scheme (``PuzzleGenerator.memorizer_guess``)."""
    if baseline == "memorizer":
        return memorizer(env), {r: None for r in env.subagent_roles}
    vague = baseline == "oracle_main+vague"
    main = oracle_main(env, vague=vague)
    if baseline == "oracle_main+random_sub":
        return main, {r: None for r in env.subagent_roles}
    subs: dict[str, Any] = {}
    steps = env.cfg.sub_max_steps
    for r in env.subagent_roles:
        if r == "sub":
            subs[r] = lambda obs: (
                oracle_search_actions(obs, steps),
                np.zeros(len(obs["step"])),
            )
        else:
            subs[r] = lambda obs: (oracle_math_actions(obs), np.zeros(len(obs["step"])))
    return main, subs


def memorizer(env: Any):
    """The memorizer baseline's main policy: answer at turn one from the clues alone."""

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        a = np.zeros((env.num_envs, len(env.nvec)), np.int64)
        a[:, 0] = ANSWER
        a[:, 5] = env.generator.memorizer_guess(env.possible, env.missing)
        if env.flat:
            a[:, MAIN_COMPONENTS] = search.REPORT
        return a

    return policy


def oracle_main(env: Any, vague: bool = False):
    """The oracle main agent: fetch a smallest fact set that pins the answer (the exact
    solver's, ``Puzzle.needed``), looking up again what came back empty; call the reasoner;
    answer its unique candidate. ``vague``: the same agent dropping the essential constraint
    ("this cube's colour scheme") from every instruction; it accepts what comes back and
    can reject only what any agent could check: when the reasoner finds that the facts
    clash (no candidate), it looks every needed fact up again."""
    steps = env.cfg.sub_max_steps

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        n = env.num_envs
        a = np.zeros((n, len(env.nvec)), np.int64)
        reasoned = obs["reasoned"][:, 0] == 1
        cand = obs["candidates"].astype(bool)
        clash = reasoned & ~cand.any(axis=1)
        want = env.needed & ((env.facts < 0) | clash[:, None])
        turns_left = env.max_turns - env.turn
        unique = reasoned & (cand.sum(axis=1) == 1)
        first = want.argmax(axis=1)
        second_mask = want.copy()
        second_mask[np.arange(n), first] = False
        has_second = second_mask.any(axis=1)
        second = second_mask.argmax(axis=1)
        left = env._calls_left()
        can_delegate = want.any(axis=1) & (turns_left > 2) & (left >= 1)
        a[:, 0] = np.where(unique | (turns_left <= 1), ANSWER, REASON)
        a[:, 5] = cand.argmax(axis=1)
        reason = ~unique & ~reasoned & (turns_left >= 2) & ~can_delegate
        a[reason, 0] = REASON
        a[~unique & reasoned & ~can_delegate, 0] = ANSWER
        d = ~unique & can_delegate
        if env.flat:
            a[d, 0] = DELEGATE
            c = MAIN_COMPONENTS
            sub_obs = {k[5:]: v for k, v in obs.items() if k.startswith("tool_")}
            sub_obs["intent"] = np.zeros_like(sub_obs["intent"])
            sub_obs["intent"][np.arange(n), first] = 1
            sub_obs["constraint"] = np.full_like(sub_obs["constraint"], 0 if vague else 1)
            sa = oracle_search_actions(sub_obs, steps, vague=vague)
            a[:, c:] = sa
            # keep the components valid for the current session mask
            a[~d, c:] = 0
            a[~d, c] = search.REPORT
            return a
        a[d, 0] = DELEGATE
        a[d, 1] = first[d]
        a[d, 2] = 0 if vague else 1
        two = d & has_second & (left >= 2) & (env.max_parallel >= 2)
        a[two, 3] = second[two] + 1
        a[two, 4] = 0 if vague else 1
        return a

    return policy
