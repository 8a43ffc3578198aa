"""The search sub-agent's episode (role ``"sub"``): search, visit, report.

One sub-episode serves one instruction ``[type, value_0..2, include_0..2]`` (the index to search
and the fields M stated). The sub-agent's numeric fields are its instruction's shape (intent,
which fields are stated) and its own tool results; the field values travel inside its search tool
calls. The id fields ``query_id`` and ``instruction`` let its text face state the instruction in
words (the stated fields' phrases).

| step | action ``[kind, use_0, use_1, use_2, rank]`` | effect |
|---|---|---|
| search | kind 0, ``use_j`` (0/1) | BM25 over the intent's index with the stated fields it |
|  |  | uses; shows which of the ``top_k`` result slots are filled (a failed call: error) |
| visit | kind 1, ``rank`` | reads the page at that rank: sees which stated fields it matches |
| report | kind 2 | reports the last visited page (or nothing) and ends the episode |

Kind 3 is reserved for malformed output (always masked). e_S = share of the stated fields the
reported page matches (:func:`envs.species.scoring.expert_score`).
"""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from envs.core.spaces import instruction_space
from envs.core.subagent import SubAgentTask, SubState
from envs.core.text import Arg, TextFace, Tool
from envs.species import task as T
from envs.species.prompt import describe_sub
from envs.species.types import NUM_SLOTS, NUM_TYPES, KnowledgeBase

INSTRUCTION_SIZE = 1 + 2 * NUM_SLOTS
"""[type, value_0, value_1, value_2, include_0, include_1, include_2]"""


class SpeciesSearchTask(SubAgentTask):
    """Batched rules of the search sub-agent (see the module docstring).

    Args:
        fail_prob: probability that a call's search tool errors.
        top_k: results per search.
        max_steps: step cap (then truncated: nothing reported, f_S = 0).
        instance: ``instance(query_id) -> KnowledgeBase`` of one query (the text face rebuilds
            the instruction's words from it); ``value_high``: ``(3,)`` largest value id per
            field (the ``instruction`` space).
        flat: single-agent mode: the agent states its own instructions, so e_S (the dense
            ``flat_expert`` term) judges a report against every field of the hop the agent
            could state (value known), not only the ones it stated (else stating fewer
            conditions would raise it).
    """

    role = "sub"
    instruction_size = INSTRUCTION_SIZE
    n_uniforms = 1
    tools = ("search", "visit", "report")

    def __init__(
        self,
        fail_prob: float = 0.2,
        top_k: int = 3,
        max_steps: int = 4,
        *,
        instance: Callable[[int], KnowledgeBase] | None = None,
        value_high: tuple[int, ...] = (23, 5, 5),
        flat: bool = False,
    ) -> None:
        self.flat = bool(flat)
        self.fail_prob = float(fail_prob)
        self.top_k = int(top_k)
        self.max_steps = int(max_steps)
        self.value_high = tuple(int(v) for v in value_high)
        self.nvec = np.array([4, 2, 2, 2, self.top_k], dtype=np.int64)
        self.text = TextFace(
            _tools(self.top_k),
            self.nvec,
            self.describe,
            _SYSTEM,
            role=self.role,
            space=self.observation_space,
            instance=instance,
        )

    def instruction_space(self) -> gym.spaces.Box:
        """``[type 0..3, value_0..2 (-1 = unknown), include_0..2 in {0, 1}]``."""
        low = [0, -1, -1, -1, 0, 0, 0]
        high = [NUM_TYPES - 1, *self.value_high, 1, 1, 1]
        return instruction_space(low, high, self.instruction_size)

    # ---------------------------------------------------------------- spaces and state
    def obs_spaces(self) -> dict[str, gym.Space]:
        def box(*shape: int) -> gym.spaces.Box:
            return gym.spaces.Box(0.0, 1.0, shape, dtype=np.float32)

        return {
            "intent": box(NUM_TYPES),
            "instructed": box(NUM_SLOTS),
            "searched": box(1),
            "error": box(1),
            "results": box(self.top_k),
            "visited": box(1),
            "visited_match": box(NUM_SLOTS),
            "progress": box(1),
        }

    def _alloc(self, st: SubState) -> None:
        n = st.n
        st.type = np.zeros(n, dtype=np.int64)
        st.value = np.zeros((n, NUM_SLOTS), dtype=np.int64)
        st.include = np.zeros((n, NUM_SLOTS), dtype=bool)
        st.fail = np.zeros(n, dtype=bool)
        st.searched = np.zeros(n, dtype=bool)
        st.error = np.zeros(n, dtype=bool)
        st.results = np.full((n, self.top_k), -1, dtype=np.int64)
        st.visited = np.full(n, -1, dtype=np.int64)
        st.kb = None

    def _begin(self, st: SubState, idx: np.ndarray, main) -> None:
        st.kb = main.state.kb  # the search tool's corpus: the owner episode's documents
        ins = st.instr[idx]
        st.type[idx] = ins[:, 0]
        st.value[idx] = ins[:, 1 : 1 + NUM_SLOTS]
        st.include[idx] = ins[:, 1 + NUM_SLOTS :] > 0
        st.fail[idx] = st.u[idx, 0, 0] < self.fail_prob
        st.searched[idx] = False
        st.error[idx] = False
        st.results[idx] = -1
        st.visited[idx] = -1

    # ---------------------------------------------------------------- observation and mask
    def _observe(self, st: SubState, idx: np.ndarray) -> dict[str, np.ndarray]:
        f32 = np.float32
        vis = st.visited[idx]
        terms = st.kb.terms[st.owner[idx], st.type[idx], np.maximum(vis, 0)]
        match = (terms == st.value[idx]) & st.include[idx] & (vis >= 0)[:, None]
        return {
            "intent": np.eye(NUM_TYPES, dtype=f32)[st.type[idx]],
            "instructed": st.include[idx].astype(f32),
            "searched": st.searched[idx, None].astype(f32),
            "error": st.error[idx, None].astype(f32),
            "results": (st.results[idx] >= 0).astype(f32),
            "visited": (vis >= 0)[:, None].astype(f32),
            "visited_match": match.astype(f32),
            "progress": (st.t[idx, None] / self.max_steps).astype(f32),
        }

    def mask(self, st: SubState, idx: np.ndarray) -> np.ndarray:
        has = st.results[idx] >= 0
        any_res = has.any(axis=1)
        m = len(idx)
        kind = np.stack([~st.error[idx], any_res, np.ones(m, bool), np.zeros(m, bool)], axis=1)
        rank = has.copy()
        rank[:, 0] |= ~any_res
        bits = np.ones((m, 2 * NUM_SLOTS), dtype=bool)
        return np.concatenate([kind, bits, rank], axis=1).astype(np.int8)

    # ---------------------------------------------------------------- dynamics
    def apply(
        self, st: SubState, idx: np.ndarray, actions: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kind = actions[:, 0]
        srch = ok & (kind == T.S_SEARCH)
        if srch.any():
            rows = idx[srch]
            st.searched[rows] = True
            err = st.fail[rows]
            st.error[rows[err]] = True
            st.results[rows[err]] = -1
            go = rows[~err]
            if go.size:
                use = (actions[srch][~err, 1 : 1 + NUM_SLOTS] > 0) & st.include[go]
                st.results[go] = T.search(
                    st.kb, st.owner[go], st.type[go], st.value[go], use, self.top_k
                )
        vis = ok & (kind == T.S_VISIT)
        if vis.any():
            rows = idx[vis]
            st.visited[rows] = st.results[rows, actions[vis, 4]]
        ends = ok & (kind == T.S_REPORT)
        tool = np.where(ok, kind, -1)
        return ends, ends.copy(), tool

    def result(self, st: SubState, idx: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        doc = np.where(st.reported[idx], st.visited[idx], -1)
        include = st.value[idx] >= 0 if self.flat else st.include[idx]
        expert = T.report_expert(st.kb, st.owner[idx], st.type[idx], st.value[idx], include, doc)
        return {"doc": doc}, expert

    # ---------------------------------------------------------------- text face
    def describe(self, obs, kb: KnowledgeBase) -> str:
        """The sub-agent's user message: a pure function of the observation and the knowledge
        base of its ``query_id`` (the instruction in words, then its tool results)."""
        return describe_sub(obs, kb)


_SYSTEM = (
    "You are a search sub-agent. Search the index named in your instruction using the "
    "conditions it states, visit a result, and report the page that satisfies them."
)


def _tools(k: int) -> tuple[Tool, ...]:
    use = tuple(
        Arg(f"condition_{j + 1}", 1 + j, ("skip", "use"), description="use it in the query")
        for j in range(NUM_SLOTS)
    )
    ranks = tuple(str(r + 1) for r in range(k))
    return (
        Tool("search", T.S_SEARCH, "Search the index with the chosen conditions.", use),
        Tool("visit", T.S_VISIT, "Read the result at a rank.", (Arg("rank", 4, ranks),)),
        Tool("report", T.S_REPORT, "Report the last visited page and stop."),
    )
