"""The math specialist (role "math", with ``reasoner="subagent"``): deduces from what it is given.

Instruction ``(N_TOPICS,)``: the facts the main agent passes (per topic 0 none, else 1 + the
fact's value, ``cube.TOPIC_VALUES`` coding); it also reads the puzzle's clues the main agent
forwards.
Action ``MultiDiscrete([4])``: 0 apply the clues (candidates from the clues alone), 1 apply the
facts (candidates from clues + given facts; only after the clues), 2 report, 3 malformed.
Expert score e_S: 1 if the reported candidates are exactly what the clues and the given facts
imply (a correct deduction from what it was given), else 0.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.core.spaces import instruction_space
from envs.core.subagent import MainEnv, SubAgentTask, SubState
from envs.core.text import TextFace, Tool
from envs.rubiks import solver
from envs.rubiks.cube import N_PAIRS, N_VALUES
from envs.rubiks.prompt import SYSTEM_MATH, describe_math
from envs.rubiks.types import FACT_WIDTH, MAX_CLUES, N_TOPICS, fact_onehot

APPLY_CLUES, APPLY_FACTS, REPORT, INVALID = range(4)


class MathTask(SubAgentTask):
    """Batched rules of the math specialist (see module docstring)."""

    role = "math"
    instruction_size = N_TOPICS
    max_steps = 4
    n_uniforms = 0
    tools = ("apply_clues", "apply_facts", "report_math")

    def __init__(self, clue_width: int) -> None:
        self.nvec = np.array([4], dtype=np.int64)
        self.clue_width = clue_width
        self.text = TextFace(
            TOOLS, self.nvec, describe_math, SYSTEM, role=self.role, space=self.observation_space
        )

    def instruction_space(self) -> gym.spaces.Box:
        """Per topic 0 (none) or 1 + the fact's value."""
        return instruction_space(0, N_VALUES, self.instruction_size)

    def obs_spaces(self) -> dict[str, gym.Space]:
        return {
            "clues": gym.spaces.MultiBinary(MAX_CLUES * self.clue_width),
            "facts": gym.spaces.MultiBinary(N_TOPICS * FACT_WIDTH),
            "work": gym.spaces.MultiBinary(N_PAIRS),
            "applied": gym.spaces.MultiBinary(2),
            "step": gym.spaces.MultiBinary(self.max_steps),
        }

    def _alloc(self, st: SubState) -> None:
        st.clues = np.zeros((st.n, MAX_CLUES * self.clue_width), np.int8)
        st.cand = np.zeros((st.n, 2, N_PAIRS), bool)  # clues only, clues + facts
        st.needs = np.zeros((st.n, N_TOPICS), bool)
        st.work = np.ones((st.n, N_PAIRS), bool)
        st.applied = np.zeros((st.n, 2), bool)

    def _begin(self, st: SubState, idx: np.ndarray, main: MainEnv) -> None:
        from envs.rubiks.solver_jit import reason  # numba: imported on first use

        owners = st.owner[idx]
        facts = st.instr[idx] - 1
        possible, missing = main.possible[owners], main.missing[owners]
        st.clues[idx] = main.clue_onehot[owners]
        st.cand[idx, 0] = solver.candidates(possible, missing, np.full_like(facts, -1))
        st.cand[idx, 1], st.needs[idx] = reason(possible, missing, facts)
        st.work[idx] = True
        st.applied[idx] = False

    def _observe(self, st: SubState, idx: np.ndarray) -> dict[str, np.ndarray]:
        n = len(idx)
        step = np.zeros((n, self.max_steps), np.int8)
        step[np.arange(n), np.minimum(st.t[idx], self.max_steps - 1)] = 1
        return {
            "clues": st.clues[idx],
            "facts": fact_onehot(st.instr[idx] - 1),
            "work": st.work[idx].astype(np.int8),
            "applied": st.applied[idx].astype(np.int8),
            "step": step,
        }

    def mask(self, st: SubState, idx: np.ndarray) -> np.ndarray:
        m = np.ones((len(idx), 4), np.int8)
        m[:, APPLY_FACTS] = st.applied[idx, 0]
        m[:, INVALID] = 0
        return m

    def apply(self, st, idx, actions, ok):
        typ = np.where(ok, actions[:, 0], INVALID)
        for a in (APPLY_CLUES, APPLY_FACTS):
            rows = idx[typ == a]
            st.work[rows] = st.cand[rows, a]
            st.applied[rows, a] = True
        tool = np.where(typ == INVALID, -1, typ)
        r = typ == REPORT
        return r, r, tool

    def result(self, st, idx):
        rep = st.reported[idx]
        work = np.where(rep[:, None], st.work[idx], True)
        exact = (work == st.cand[idx, 1]).all(axis=1) & rep
        needs = np.where(exact[:, None], st.needs[idx], False)
        return {"cand": work, "needs": needs}, exact.astype(np.float64)


def oracle_math_actions(obs: dict[str, np.ndarray]) -> np.ndarray:
    """Apply the clues, then the facts (if any were given), then report."""
    applied = obs["applied"].astype(bool)
    n = len(applied)
    facts = obs["facts"].reshape(n, N_TOPICS, FACT_WIDTH)[:, :, 1:].any(axis=(1, 2))
    a = np.full((len(applied), 1), REPORT, dtype=np.int64)
    a[~applied[:, 0], 0] = APPLY_CLUES
    a[applied[:, 0] & ~applied[:, 1] & facts, 0] = APPLY_FACTS
    return a


SYSTEM = SYSTEM_MATH
TOOLS = (
    Tool("apply_clues", APPLY_CLUES, "Work out the candidates from the clues alone."),
    Tool("apply_facts", APPLY_FACTS, "Narrow the candidates with the facts you were given."),
    Tool("report", REPORT, "Report the current candidates."),
)
