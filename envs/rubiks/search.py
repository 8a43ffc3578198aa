"""The search sub-agent (role "sub"): looks up one cube fact with ``search`` and ``visit``.

Instruction ``(2,)``: (intent in ``INTENTS``, constraint 1 = "this cube's colour scheme" given).
Action ``MultiDiscrete([4, 5, 2, 3])``:

| component | values | used by |
|---|---|---|
| 0 type | 0 search, 1 visit, 2 report, 3 malformed (always masked) | all |
| 1 query | the 5 intents' phrases (4 fact topics + "solve the puzzle") | search |
| 2 keyword | 0 none, 1 "this cube's colour scheme" (only if the instruction gave it) | search |
| 3 result | result slot 0..2 (only non-empty slots) | visit |

Search (one uniform for failure, per slot one for relevance and one for the scheme): with
probability ``fail_prob`` the tool errors (no results); otherwise each of the 3 slots is a page
about the query's topic with probability ``1 - search_noise`` (never for "solve the puzzle":
search cannot solve logic), else an irrelevant page. With the keyword a relevant page is about
this cube; without it, with probability ``decoy_rate`` it is a generic page about another scheme
(``cube.DECOY_WORLD``: the standard one, or the Japanese one for a standard cube), whose
statement may be wrong for this cube. Nothing marks a page as generic: the agents see only the
topic and the statement. Visiting shows the page's statement; ``report`` ends the episode and
hands the statement read (if any) to the main agent. Expert score e_S: 1 if the reported
statement is about the instructed topic and true for this cube (for "solve the puzzle": 1 if it
reports nothing), else 0. In flat mode (one agent, no instruction) the keyword is always
available and e_S is 1 for any true statement reported.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.core.spaces import instruction_space
from envs.core.subagent import MainEnv, SubAgentTask, SubState
from envs.core.text import Arg, TextFace, Tool
from envs.rubiks.cube import DECOY_WORLD, N_VALUES, TOPIC_VALUES
from envs.rubiks.prompt import KEYWORD, SYSTEM_SEARCH, describe_search
from envs.rubiks.types import INTENTS, N_INTENTS, N_TOPICS, SOLVE

SEARCH, VISIT, REPORT, INVALID = range(4)
N_SLOTS = 3
_EMPTY, _IRRELEVANT = -2, -1


class SearchTask(SubAgentTask):
    """Batched rules of the search sub-agent (see module docstring)."""

    role = "sub"
    instruction_size = 2
    n_uniforms = 1 + 2 * N_SLOTS
    tools = ("search", "visit", "report")

    def __init__(
        self,
        search_noise: float,
        fail_prob: float,
        decoy_rate: float,
        max_steps: int,
        flat: bool = False,
    ):
        self.flat = bool(flat)
        self.search_noise = float(search_noise)
        self.fail_prob = float(fail_prob)
        self.decoy_rate = float(decoy_rate)
        self.max_steps = int(max_steps)
        self.nvec = np.array([4, N_INTENTS, 2, N_SLOTS], dtype=np.int64)
        self.text = TextFace(
            TOOLS, self.nvec, describe_search, SYSTEM, role=self.role, space=self.observation_space
        )

    def instruction_space(self) -> gym.spaces.Box:
        """``[intent in 0..4, constraint in 0..1]``."""
        return instruction_space(0, [N_INTENTS - 1, 1], self.instruction_size)

    def obs_spaces(self) -> dict[str, gym.Space]:
        return {
            "intent": gym.spaces.MultiBinary(N_INTENTS),
            "constraint": gym.spaces.MultiBinary(1),
            "step": gym.spaces.MultiBinary(self.max_steps),
            "results": gym.spaces.MultiBinary(N_SLOTS * (N_TOPICS + 2)),
            "page": gym.spaces.MultiBinary(1 + N_TOPICS),
            "statement": gym.spaces.MultiBinary(N_VALUES),
            "failed": gym.spaces.MultiBinary(1),
        }

    def _alloc(self, st: SubState) -> None:
        st.results = np.full((st.n, N_SLOTS), _EMPTY, dtype=np.int64)  # topic, -1 irrelevant
        st.value = np.zeros((st.n, N_SLOTS), dtype=np.int64)  # the statement on each page
        st.page = np.full(st.n, -1, dtype=np.int64)  # topic read, -1 none
        st.page_value = np.zeros(st.n, dtype=np.int64)
        st.true = np.zeros((st.n, N_TOPICS), dtype=np.int64)  # this cube's facts
        st.generic = np.zeros((st.n, N_TOPICS), dtype=np.int64)  # a generic page's facts
        st.failed = np.zeros(st.n, dtype=bool)
        st.misuse = np.zeros(st.n, dtype=bool)  # searched for "solve the puzzle"

    def _begin(self, st: SubState, idx: np.ndarray, main: MainEnv) -> None:
        st.results[idx] = _EMPTY
        st.value[idx] = 0
        st.page[idx] = -1
        st.page_value[idx] = 0
        world = main.world[st.owner[idx]]
        st.true[idx] = TOPIC_VALUES[world]
        st.generic[idx] = TOPIC_VALUES[DECOY_WORLD[world]]
        st.failed[idx] = False
        st.misuse[idx] = False

    def _observe(self, st: SubState, idx: np.ndarray) -> dict[str, np.ndarray]:
        n = len(idx)
        intent = np.zeros((n, N_INTENTS), np.int8)
        if not self.flat:  # flat mode: no instruction (the agent is its own instructor)
            intent[np.arange(n), st.instr[idx, 0]] = 1
        step = np.zeros((n, self.max_steps), np.int8)
        step[np.arange(n), np.minimum(st.t[idx], self.max_steps - 1)] = 1
        res = np.zeros((n, N_SLOTS, N_TOPICS + 2), np.int8)
        code = st.results[idx] + 2  # 0 empty, 1 irrelevant, 2.. topics
        np.put_along_axis(res, code[:, :, None], 1, axis=2)
        page = np.zeros((n, 1 + N_TOPICS), np.int8)
        page[np.arange(n), st.page[idx] + 1] = 1
        statement = np.zeros((n, N_VALUES), np.int8)
        read = st.page[idx] >= 0
        statement[np.flatnonzero(read), st.page_value[idx][read]] = 1
        constraint = st.instr[idx, 1:2].astype(np.int8) * (not self.flat)
        return {
            "intent": intent,
            "constraint": constraint,
            "step": step,
            "results": res.reshape(n, -1),
            "page": page,
            "statement": statement,
            "failed": st.failed[idx, None].astype(np.int8),
        }

    def mask(self, st: SubState, idx: np.ndarray) -> np.ndarray:
        n = len(idx)
        nonempty = st.results[idx] != _EMPTY
        typ = np.ones((n, 4), np.int8)
        typ[:, VISIT] = nonempty.any(axis=1)
        typ[:, INVALID] = 0
        query = np.ones((n, N_INTENTS), np.int8)
        kw = np.ones((n, 2), np.int8)
        kw[:, 1] = True if self.flat else st.instr[idx, 1] > 0
        slot = nonempty.astype(np.int8)
        slot[~nonempty.any(axis=1), 0] = 1
        return np.concatenate([typ, query, kw, slot], axis=1)

    def apply(self, st, idx, actions, ok):
        n = len(idx)
        typ = np.where(ok, actions[:, 0], INVALID)
        u = st.u[idx, np.minimum(st.t[idx], self.max_steps - 1)]  # (n, n_uniforms)
        tool = np.full(n, -1, dtype=np.int64)
        # search
        s = typ == SEARCH
        if s.any():
            rows = idx[s]
            term, kw, us = actions[s, 1], actions[s, 2], u[s]
            fail = us[:, 0] < self.fail_prob
            relevant = (us[:, 1 : 1 + N_SLOTS] >= self.search_noise) & (term[:, None] != SOLVE)
            relevant &= ~fail[:, None]
            topic = np.minimum(term, N_TOPICS - 1)[:, None]
            generic = (kw[:, None] == 0) & (us[:, 1 + N_SLOTS :] < self.decoy_rate)
            true = np.take_along_axis(st.true[rows], topic, axis=1)
            other = np.take_along_axis(st.generic[rows], topic, axis=1)
            st.value[rows] = np.where(generic, other, true)
            st.results[rows] = np.where(relevant, term[:, None], _IRRELEVANT)
            st.results[rows[fail]] = _EMPTY
            st.failed[rows] = fail
            st.misuse[rows] |= term == SOLVE
            tool[s] = 0
        v = typ == VISIT
        if v.any():
            rows = idx[v]
            slot = actions[v, 3]
            topic = st.results[rows, slot]
            st.page[rows] = np.where(topic >= 0, topic, -1)
            st.page_value[rows] = st.value[rows, slot]
            tool[v] = 1
        r = typ == REPORT
        tool[r] = 2
        return r, r, tool

    def result(self, st, idx):
        intent = st.instr[idx, 0]
        page, value = st.page[idx], st.page_value[idx]
        reported = st.reported[idx]
        topic = np.where(reported, page, -1)
        has = topic >= 0
        true = has & (st.true[idx, np.maximum(topic, 0)] == value)
        if self.flat:
            good = true & ~st.misuse[idx]
        else:
            good = np.where(intent == SOLVE, ~has, (topic == intent) & true)
        report = {"topic": topic, "value": np.where(has, value, -1), "misuse": st.misuse[idx]}
        return report, (good & reported).astype(np.float64)


def oracle_search_actions(obs: dict[str, np.ndarray], max_steps: int, vague: bool = False):
    """The best search policy from its observation: search the instructed topic (with the
    keyword when given), visit the first relevant result, report; search again on a miss while
    a visit and a report still fit; decline "solve the puzzle" at once."""
    n = obs["intent"].shape[0]
    intent = obs["intent"].argmax(axis=1)
    t = obs["step"].argmax(axis=1)
    res = obs["results"].reshape(n, N_SLOTS, N_TOPICS + 2).argmax(axis=2) - 2
    has_page = obs["page"][:, 0] == 0
    rel = res == intent[:, None]
    a = np.zeros((n, 4), dtype=np.int64)
    a[:, 1] = np.minimum(intent, N_INTENTS - 1)
    a[:, 2] = 0 if vague else obs["constraint"][:, 0]
    visit = ~has_page & rel.any(axis=1) & (t <= max_steps - 2)
    a[:, 0] = np.where(has_page | (intent == SOLVE) | (t >= max_steps - 2), REPORT, SEARCH)
    a[visit, 0] = VISIT
    a[visit, 3] = rel[visit].argmax(axis=1)
    return a


SYSTEM = SYSTEM_SEARCH
TOOLS = (
    Tool(
        "search",
        SEARCH,
        "Search the web.",
        (
            Arg("query", 1, INTENTS, description="what to search for"),
            Arg("keyword", 2, (KEYWORD,), values=(1,), optional=True, absent=0),
        ),
    ),
    Tool("visit", VISIT, "Open a search result.", (Arg("result", 3, ("1", "2", "3")),)),
    Tool("report", REPORT, "Report the statement you read (or that you found nothing)."),
)
