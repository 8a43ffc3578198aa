"""A toy task on the hierarchical engine, small enough to check the engine's rules by hand.

Query q hides the secret ``q % 3``. The main agent delegates a guess (the instruction is the value
to check), answers a value, or waits; the sub-agent ("sub") checks the value: ``check`` reads
whether the instructed value is the secret, ``report`` hands it back (e_S = 1 iff it checked).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.core import HierarchicalEnv, HierarchicalVectorEnv, LatencyModel, StepResult
from envs.core.spaces import instruction_space
from envs.core.subagent import SubAgentTask, SubState
from envs.core.text import Arg, TextFace, Tool, flat_reserved, flat_tools

DELEGATE, ANSWER, WAIT, M_BAD = range(4)
CHECK, REPORT, S_BAD = range(3)
VALUES = ("zero", "one", "two")


def secret(query: int) -> int:
    """The toy instance of a query id."""
    return int(query) % 3


class CheckTask(SubAgentTask):
    role = "sub"
    instruction_size = 1
    max_steps = 3
    n_uniforms = 1
    tools = ("check", "report")

    def __init__(self) -> None:
        self.nvec = np.array([3], dtype=np.int64)
        tools = (Tool("check", CHECK, "check the value"), Tool("report", REPORT, "report"))
        self.text = TextFace(
            tools,
            self.nvec,
            lambda obs, s: f"check {VALUES[int(obs['instruction'][0])]} (secret {s})",
            "You check values.",
            role="sub",
            space=self.observation_space,
            instance=secret,
        )

    def instruction_space(self) -> gym.spaces.Box:
        return instruction_space(0, 2, 1)

    def obs_spaces(self):
        return {"checked": gym.spaces.MultiBinary(1)}

    def _alloc(self, st: SubState) -> None:
        st.checked = np.zeros(st.n, bool)
        st.secret = np.zeros(st.n, np.int64)

    def _begin(self, st, idx, main) -> None:
        st.checked[idx] = False
        st.secret[idx] = st.query[idx] % 3

    def _observe(self, st, idx):
        return {"checked": st.checked[idx, None].astype(np.int8)}

    def mask(self, st, idx):
        return np.tile(np.array([1, 1, 0], np.int8), (len(idx), 1))

    def apply(self, st, idx, actions, ok):
        kind = np.where(ok, actions[:, 0], S_BAD)
        st.checked[idx[kind == CHECK]] = True
        ends = kind == REPORT
        return ends, ends.copy(), np.where(kind == S_BAD, -1, kind)

    def result(self, st, idx):
        hit = st.checked[idx] & (st.instr[idx, 0] == st.secret[idx]) & st.reported[idx]
        return {"hit": hit}, st.checked[idx].astype(np.float64)


class ToyVectorEnv(HierarchicalVectorEnv):
    def __init__(self, num_envs: int = 1, *, flat: bool = False, max_turns: int = 3) -> None:
        self.env_kwargs = {"flat": flat, "max_turns": max_turns}
        sub = CheckTask()
        super().__init__(
            num_envs,
            sub_tasks={"sub": sub},
            main_nvec=[4, 3],
            main_obs_spaces={"known": gym.spaces.MultiBinary(3)},
            main_tools=(),
            max_turns=max_turns,
            max_parallel=1,
            flat=flat,
            latency=LatencyModel({"check": (1.0, 0.5), "report": (0.5, 0.0)}),
            n_main_uniforms=0,
            delegate_type=DELEGATE,
        )
        self.known = np.zeros((self.num_envs, 3), np.int8)
        self.secret = np.zeros(self.num_envs, np.int64)
        main = (
            Tool("ask", DELEGATE, "ask", (Arg("value", 1, VALUES),)),
            Tool("answer", ANSWER, "answer", (Arg("value", 1, VALUES),), answer=True),
            Tool("wait", WAIT, "wait"),
        )
        reserved = ()
        if flat:
            main = flat_tools(main, sub.text.tools, delegate_type=DELEGATE, offset=2)
            reserved = flat_reserved(delegate_type=DELEGATE, offset=2, sub_invalid=S_BAD)
        self.text = TextFace(
            main,
            self.nvec,
            lambda obs, s: f"known {obs['known'].tolist()} (secret {s})",
            "You find the secret.",
            space=self.single_observation_space,
            instance=secret,
            reserved=reserved,
        )

    def _new_episodes(self, idx):
        self.secret[idx] = self.queries[idx] % 3
        self.known[idx] = 0

    def _observe(self):
        return {"known": self.known.copy()}

    def _mask(self):
        m = np.ones((self.num_envs, 7), np.int8)
        m[:, M_BAD] = 0
        return m

    def _act(self, actions, ok):
        kind = np.where(ok, actions[:, 0], M_BAD)
        res = StepResult(answered=kind == ANSWER)
        rows = np.flatnonzero(kind == ANSWER)
        self.correct[rows] = (actions[rows, 1] == self.secret[rows]).astype(float)
        d = np.flatnonzero(kind == DELEGATE)
        if len(d) and not self.flat:
            res.delegations["sub"] = (d, actions[d, 1:2])
        return res

    def _deliver(self, role, owners, instr, report):
        hit = report["hit"]
        self.known[owners[hit], instr[hit, 0]] = 1


class ToyEnv(HierarchicalEnv):
    vector_class = ToyVectorEnv
