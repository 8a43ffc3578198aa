"""``mgrpo/RubiksLogic-v0``: a main agent solves a Rubik's cube logic puzzle with tools."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.core.latency import LatencyModel
from envs.core.single import HierarchicalEnv
from envs.core.text import Arg, TextFace, Tool, flat_reserved, flat_tools
from envs.core.vector import HierarchicalVectorEnv, StepResult
from envs.rubiks import baselines, search, solver
from envs.rubiks.config import RubiksConfig, make_config
from envs.rubiks.cube import N_PAIRS, N_WORLDS, PAIRS, pair_name
from envs.rubiks.generator import PuzzleGenerator, puzzle_query
from envs.rubiks.math import MathTask
from envs.rubiks.prompt import SYSTEM, SYSTEM_FLAT, clue_onehot, describe_clues, describe_main
from envs.rubiks.search import KEYWORD, SearchTask
from envs.rubiks.types import (
    ANSWER,
    CLUE_WIDTH,
    DELEGATE,
    FACT_WIDTH,
    INTENTS,
    INVALID,
    MAIN_NVEC,
    MAX_CLUES,
    N_INTENTS,
    N_TOPICS,
    REASON,
    SOLVE,
    fact_onehot,
)

LATENCY = LatencyModel(
    tools={
        "reasoner": (4.0, 0.3),
        "search": (1.5, 0.4),
        "visit": (2.0, 0.5),
        "report": (0.3, 0.2),
        "apply_clues": (2.0, 0.3),
        "apply_facts": (2.0, 0.3),
        "report_math": (0.3, 0.2),
    },
    think=1.0,
)


def _puzzle_generator(cfg: RubiksConfig) -> PuzzleGenerator:
    """The puzzle generator of ``cfg.generator_backend`` (numba is imported only for "numba")."""
    if cfg.generator_backend == "numba":
        from envs.rubiks.generator_jit import CompiledPuzzleGenerator

        return CompiledPuzzleGenerator(cfg.facts_needed)
    return PuzzleGenerator(cfg.facts_needed)


class RubiksLogicVectorEnv(HierarchicalVectorEnv):
    """Batched ``mgrpo/RubiksLogic-v0`` (N episodes in numpy); see :class:`RubiksLogicEnv`.

    Vector ``info`` at a step where episodes end: arrays ``correct``, ``format_ok``,
    ``category_errors``, ``sim_time``, ``turns``, ``query``, ``calls`` (dict role -> array),
    ``sub_trajectories`` (object array of lists), each with its ``_key`` mask (True for the
    episodes that ended at this step); ``final_infos[i]`` holds episode i's final info dict.
    """

    def __init__(self, num_envs: int = 1, *, render_mode: str | None = None, **kwargs: Any) -> None:
        cfg = make_config(**kwargs)
        self.cfg: RubiksConfig = cfg
        self.env_kwargs = dict(kwargs)
        self.generator = _puzzle_generator(cfg)
        tasks: dict[str, Any] = {
            "sub": SearchTask(
                cfg.search_noise, cfg.fail_prob, cfg.decoy_rate, cfg.sub_max_steps, flat=cfg.flat
            )
        }
        if cfg.reasoner == "subagent" and not cfg.flat:
            tasks["math"] = MathTask(CLUE_WIDTH)
        obs_spaces = {
            "clues": gym.spaces.MultiBinary(MAX_CLUES * CLUE_WIDTH),
            "facts": gym.spaces.MultiBinary(N_TOPICS * FACT_WIDTH),
            "failed": gym.spaces.MultiBinary(N_TOPICS),
            "candidates": gym.spaces.MultiBinary(N_PAIRS),
            "reasoned": gym.spaces.MultiBinary(1),
            "needs": gym.spaces.MultiBinary(N_TOPICS),
            "budget": gym.spaces.Box(0.0, 1.0, (2,), np.float32),
        }
        super().__init__(
            num_envs,
            sub_tasks=tasks,
            main_nvec=MAIN_NVEC,
            main_obs_spaces=obs_spaces,
            main_tools=("reasoner",),
            max_turns=cfg.max_turns,
            max_parallel=cfg.max_parallel,
            flat=cfg.flat,
            latency=LATENCY,
            n_main_uniforms=0,
            delegate_type=DELEGATE,
            render_mode=render_mode,
        )
        n = self.num_envs
        self.clues = np.zeros((n, MAX_CLUES, 3), np.int64)
        self.clue_onehot = np.zeros((n, MAX_CLUES * CLUE_WIDTH), np.int8)
        self.answer = np.zeros(n, np.int64)
        self.world = np.zeros(n, np.int64)  # the cube's colour scheme (hidden)
        self.possible = np.zeros((n, N_WORLDS), bool)
        self.missing = np.zeros((n, N_WORLDS, N_PAIRS), bool)
        self.needed = np.zeros((n, N_TOPICS), bool)
        self.n_needed = np.zeros(n, np.int64)
        self.facts = np.full((n, N_TOPICS), -1, np.int64)  # value held per topic, -1 unknown
        self.failed = np.zeros((n, N_TOPICS), bool)
        self.candidates = np.zeros((n, N_PAIRS), bool)
        self.needs_obs = np.zeros((n, N_TOPICS), bool)
        self.reason_facts = np.full((n, N_TOPICS), -2, np.int64)  # facts at the last reasoning
        self.search_calls = np.zeros(n, np.int64)
        self.text = self._make_text()

    # ------------------------------------------------------------------ hooks
    def _new_episodes(self, idx: np.ndarray) -> None:
        # each query's puzzle once (a group's K rollouts share it), written with one copy per field
        uq, inv = np.unique(self.queries[idx], return_inverse=True)
        puzzles = [self.generator(int(q)) for q in uq.tolist()]
        for name in ("clues", "answer", "world", "possible", "missing", "needed"):
            getattr(self, name)[idx] = np.stack([getattr(p, name) for p in puzzles])[inv]
        self.clue_onehot[idx] = clue_onehot(self.clues[idx])
        self.n_needed[idx] = self.needed[idx].sum(axis=1)
        self.facts[idx] = -1
        self.failed[idx] = False
        self.candidates[idx] = False
        self.needs_obs[idx] = False
        self.reason_facts[idx] = -2
        self.search_calls[idx] = 0

    def _observe(self) -> dict[str, np.ndarray]:
        turns_left = (self.max_turns - self.turn) / self.max_turns
        calls_left = (self.cfg.max_calls - self.search_calls) / max(self.cfg.max_calls, 1)
        return {
            "clues": self.clue_onehot.copy(),
            "facts": fact_onehot(self.facts),
            "failed": self.failed.astype(np.int8),
            "candidates": self.candidates.astype(np.int8),
            "reasoned": (self.reason_facts == self.facts).all(axis=1)[:, None].astype(np.int8),
            "needs": self.needs_obs.astype(np.int8),
            "budget": np.stack([turns_left, calls_left], axis=1).clip(0, 1).astype(np.float32),
        }

    def _calls_left(self) -> np.ndarray:
        return self.cfg.max_calls - self.search_calls

    def _mask(self) -> np.ndarray:
        n = self.num_envs
        left = self._calls_left()
        typ = np.ones((n, 4), np.int8)
        typ[:, INVALID] = 0
        intent = np.ones((n, N_INTENTS), np.int8)
        cons = np.ones((n, 2), np.int8)
        intent2 = np.zeros((n, N_INTENTS + 1), np.int8)
        intent2[:, 0] = 1
        cons2 = np.ones((n, 2), np.int8)
        if self.flat:  # "delegate" = use a search tool; the instruction fields are unused
            intent[:, 1:] = 0
            cons[:, 1] = 0
            cons2[:, 1] = 0
        else:
            typ[:, DELEGATE] = left >= 1
            intent2[:, 1:] = ((left >= 2) & (self.max_parallel >= 2))[:, None]
        answer = np.ones((n, N_PAIRS), np.int8)
        return np.concatenate([typ, intent, cons, intent2, cons2, answer], axis=1)

    def _act(self, actions: np.ndarray, ok: np.ndarray) -> StepResult:
        n = self.num_envs
        typ = np.where(ok, actions[:, 0], INVALID)
        tool = np.full(n, -1, np.int64)
        res = StepResult(tool=tool, answered=typ == ANSWER)
        # delegate: one or two search instructions (A then B), run in parallel
        d = typ == DELEGATE
        if d.any() and not self.flat:
            rows_a = np.flatnonzero(d)
            rows_b = rows_a[actions[rows_a, 3] > 0]
            owners = np.concatenate([rows_a, rows_b])
            intents = np.concatenate([actions[rows_a, 1], actions[rows_b, 3] - 1])
            cons = np.concatenate([actions[rows_a, 2], actions[rows_b, 4]])
            order = np.argsort(owners, kind="stable")
            owners, intents, cons = owners[order], intents[order], cons[order]
            np.add.at(self.search_calls, owners, 1)
            np.add.at(self.category_errors, owners, (intents == SOLVE).astype(np.int64))
            res.delegations["sub"] = (owners, np.stack([intents, cons], axis=1))
        # reasoner: the main agent's own tool, or a delegation to the math specialist
        r = np.flatnonzero(typ == REASON)
        if len(r):
            if "math" in self.sub_tasks:
                res.delegations["math"] = (r, self.facts[r] + 1)
            else:
                from envs.rubiks.solver_jit import reason  # numba: imported on first use

                facts = self.facts[r]
                self.candidates[r], self.needs_obs[r] = reason(
                    self.possible[r], self.missing[r], facts
                )
                self.reason_facts[r] = facts
                tool[r] = 0
        a = np.flatnonzero(typ == ANSWER)
        self.correct[a] = (actions[a, 5] == self.answer[a]).astype(np.float64)
        return res

    def _deliver(self, role, owners, instr, report) -> None:
        if role == "math":
            self.candidates[owners] = report["cand"]
            self.needs_obs[owners] = report["needs"]
            self.reason_facts[owners] = instr - 1
            return
        topic = report["topic"]
        got = topic >= 0
        o, t = owners[got], topic[got]
        self.facts[o, t] = report["value"][got]
        self.failed[o, t] = False
        asked = instr[:, 0]
        miss = ~got & (asked < N_TOPICS) & (not self.flat)  # flat sessions ask for no topic
        self.failed[owners[miss], asked[miss]] = True
        if self.flat:  # searching the web for the logic itself is the category error
            np.add.at(self.category_errors, owners, report["misuse"].astype(np.int64))

    def _flat_instruction(self, idx: np.ndarray) -> np.ndarray:
        # no instruction: the single agent picks its topic and keyword itself (the flat search
        # session shows no intent or constraint and always allows the keyword)
        return np.zeros((len(idx), 2), np.int64)

    def puzzle_query(self, name: str) -> int:
        """The reserved query id of a named puzzle (``reset(options={"puzzle": "gaia"})``)."""
        return puzzle_query(name)

    def reset(self, *, seed=None, options: dict[str, Any] | None = None):
        """As :meth:`HierarchicalVectorEnv.reset`; ``options["puzzle"]``: a named puzzle
        (``"gaia"``, the paper's example) for every episode instead of ``options["query"]``."""
        if options is not None and options.get("puzzle") is not None:
            if options.get("query") is not None:
                raise ValueError('give options["puzzle"] or options["query"], not both')
            q = self.puzzle_query(options["puzzle"])
            options = {**options, "puzzle": None, "query": np.full(self.num_envs, q)}
        return super().reset(seed=seed, options=options)

    def sample_instruction(self, role: str, rng: np.random.Generator) -> np.ndarray:
        if role == "math":  # random facts of a random world, some topics left out
            values = solver.TOPIC_VALUES[rng.integers(N_WORLDS)]
            return np.where(rng.integers(0, 2, N_TOPICS) > 0, values + 1, 0)
        return np.array([rng.integers(N_INTENTS), rng.integers(2)], dtype=np.int64)

    # ------------------------------------------------------------------ baselines
    def baseline_policies(self, baseline: str, rng: np.random.Generator):
        """Hook for :func:`envs.evaluate_baseline` (see
        :func:`envs.rubiks.baselines.baseline_policies`)."""
        return baselines.baseline_policies(self, baseline, rng)

    def oracle_main(self, vague: bool = False):
        """The oracle main agent (:func:`envs.rubiks.baselines.oracle_main`)."""
        return baselines.oracle_main(self, vague)

    # ------------------------------------------------------------------ text face
    def _make_text(self) -> TextFace:
        reasoner_name = "math_agent" if "math" in self.sub_tasks else "reasoner"
        main_tools = (
            Tool(
                "search_agent",
                DELEGATE,
                "Ask the search agent to look up a cube fact (up to two at once, in parallel).",
                (
                    Arg("fact", 1, INTENTS, description="what to look up"),
                    Arg("constraint", 2, (KEYWORD,), values=(1,), optional=True),
                    Arg("fact_2", 3, INTENTS, values=tuple(range(1, N_INTENTS + 1)), optional=True),
                    Arg("constraint_2", 4, (KEYWORD,), values=(1,), optional=True),
                ),
            ),
            Tool(reasoner_name, REASON, "Deduce the candidates from the clues and your facts."),
            Tool(
                "answer",
                ANSWER,
                "The two colours of the missing piece.",
                (Arg("answer", 5, tuple(pair_name(k) for k in range(N_PAIRS))),),
                answer=True,
            ),
        )
        describe = _MainDescribe(self.max_turns, self.cfg.max_calls, self.flat)
        kw = dict(role="main", space=self.single_observation_space)
        if self.flat:
            offset = len(MAIN_NVEC)
            tools = flat_tools(main_tools, search.TOOLS, delegate_type=DELEGATE, offset=offset)
            reserved = flat_reserved(
                delegate_type=DELEGATE, offset=offset, sub_invalid=search.INVALID
            )
            return TextFace(tools, self.nvec, describe, SYSTEM_FLAT, reserved=reserved, **kw)
        return TextFace(main_tools, self.nvec, describe, SYSTEM, **kw)

    def _extra_final_arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {"facts_needed": self.n_needed[rows].copy()}


class _MainDescribe:
    """The main agent's ``describe(obs, instance)``: pure, reads the config numbers only."""

    def __init__(self, max_turns: int, max_calls: int, flat: bool) -> None:
        self.max_turns, self.max_calls, self.flat = max_turns, max_calls, flat

    def __call__(self, obs: dict[str, np.ndarray], instance: object = None) -> str:
        return describe_main(
            obs, max_turns=self.max_turns, max_calls=self.max_calls, flat=self.flat
        )


class RubiksLogicEnv(HierarchicalEnv):
    """A main agent solves a Rubik's cube logic puzzle with a reasoner and a search sub-agent.

    ## Description
    The paper's Rubik's case (M-GRPO, Hong et al. 2025): a cube (6 centres, 12 edges, 8
    corners) is broken up, one two-coloured piece is missing, and clues account for every
    other two-coloured piece ("all blue pieces", "the edge right of the red centre with white
    on top", "for every orange piece found, the piece opposite"). Each query's cube has its
    owner's own stickers: its colour scheme is one of the 30 colourings up to rotation
    (``cube.WORLDS``, uniform; the standard white/yellow, blue/green, red/orange one is one of
    them), hidden from the agents; only search can tell its facts (opposite of white, of
    green, of red; orientation). The exact solver (``envs/rubiks/solver.py``) reads every clue
    strictly in every world: a clue that presupposes two colours are adjacent rules out the
    worlds where they are not; OPPOSITE clues apply to every piece found, to a fixpoint; a
    world must leave exactly one edge unaccounted for. The ``reasoner`` (the main agent's own
    tool) returns the candidates consistent with the clues and the facts in the main agent's
    notes (none when the facts clash), and which unknown facts would narrow them. Facts come
    only from the search sub-agent (role ``"sub"``), whose own episode (search, visit, report;
    see ``envs/rubiks/search.py``) can fail, hit irrelevant pages, or read a generic page about
    another scheme unless the instruction carries the "this cube's colour scheme" constraint;
    nothing marks a generic page, so an agent can only notice that facts clash. Asking the
    search agent to "solve the puzzle" is a category error
    (counted; search cannot do logic). ``reasoner="subagent"`` turns the reasoner into a
    trainable math specialist role ``"math"`` (``envs/rubiks/math.py``). ``flat=True`` gives
    one agent the search tools directly (no sub-agent roles).

    ## Action Space
    ``MultiDiscrete([4, 5, 2, 6, 2, 15])`` (flat mode appends the search agent's
    ``[4, 5, 2, 3]``; type 0 then means "use a search tool" with those components):

    | component | values | used by |
    |---|---|---|
    | 0 type | 0 ``search_agent`` (delegate), 1 ``reasoner``, 2 answer, 3 malformed (masked) | all |
    | 1 fact | intent: opposite of white / green / red, orientation, solve the puzzle | 0 |
    | 2 constraint | 0 none, 1 "this cube's colour scheme" | 0 |
    | 3 fact_2 | 0 none, 1..5 a second intent run in parallel (needs 2 calls left) | 0 |
    | 4 constraint_2 | as component 2, for the second instruction | 0 |
    | 5 answer | the 15 colour pairs (``cube.PAIRS``) | 2 |

    Masked (in-space, not allowed) actions set f_M = 0 and use the turn; out-of-space actions
    raise ``ValueError``. ``search_agent`` is masked when no calls are left.

    ## Observation Space
    ``Dict`` (all ``int8`` MultiBinary except ``budget``):

    | key | shape | meaning |
    |---|---|---|
    | clues | (10 * 18,) | per clue slot one-hots: type (6), colour c (6), colour d (6) |
    | facts | (4 * 13,) | per topic: unknown, or the value of the statement in the notes |
    | failed | (4,) | the last look-up of a topic came back empty |
    | candidates | (15,) | the reasoner's latest candidates |
    | reasoned | (1,) | the candidates are up to date with the notes |
    | needs | (4,) | topics the reasoner said would narrow the candidates |
    | budget | (2,) float32 in [0, 1] | turns left / max_turns, search calls left / max_calls |
    | query_id | () int64 | the episode's query id (an id field: the MLP encoder ignores it) |
    | action_mask | (34,) | factorized mask, one block per action component |

    Flat mode adds the search session's fields as ``tool_<key>`` (with ``tool_query_id`` and
    ``tool_instruction``). Sub-agent observations carry ``query_id`` and ``instruction`` (the
    instruction's value ids). The text face (``env.unwrapped.text``) renders the clues, facts,
    reasoner output and budget from the observation alone (``envs/rubiks/prompt.py``).

    ## Rewards
    | event | value |
    |---|---|
    | final step, f_M = 1 and the answer is the missing piece | 1 |
    | any other step | 0 |

    The trainer computes R_M and R_S from ``info`` (``correct``, ``format_ok``, sub records).

    ## Starting State
    The puzzle (clues, the cube's world, the missing piece) is a pure function of the query id
    (``options["query"]``; ids >= 2**31 are the held-out split); without one it is drawn from
    ``np_random``. ``options={"puzzle": "gaia"}`` loads the paper's GAIA puzzle (Appendix A.1,
    on the standard cube; answer: green, white). Notes are empty, nothing is
    reasoned. Search noise, failures, decoys and latencies come from ``np_random`` (seed).

    ## Episode End
    - Termination: the agent answers.
    - Truncation: ``max_turns`` turns used without an answer.

    The final ``info``: ``correct`` (c_M), ``format_ok`` (f_M), ``calls`` (role -> d_k),
    ``category_errors``, ``sim_time`` (latency model; parallel look-ups take the max),
    ``turns``, ``query``, ``facts_needed`` and ``sub_trajectories`` (``SubTrajectory`` list).

    ## Arguments
    ``gymnasium.make("mgrpo/RubiksLogic-v0", preset="default", **knobs)``; knobs (see
    ``RubiksConfig``): ``facts_needed`` (P of 0..2 needed facts), ``search_noise``,
    ``fail_prob``, ``decoy_rate``, ``max_calls``, ``max_turns``, ``max_parallel`` (1 | 2),
    ``reasoner`` ("main" | "subagent"), ``flat``, ``sub_max_steps``, ``generator_backend``
    ("numba", the default: compiled puzzle generation | "python": the reference; same puzzles).
    Unknown keys or bad values raise ``ValueError`` naming the key.
    ``render_mode``: ``"ansi"`` (``render()`` returns the text face's prompt); see
    :mod:`envs.core.rendering`.

    | preset | facts_needed | search_noise | fail_prob | max_calls | max_turns |
    |---|---|---|---|---|---|
    | low | (0, 1, 0) | 0.3 | 0.05 | 4 | 6 |
    | default | (.1, .4, .5) | 0.5 | 0.15 | 8 | 8 |
    | heavy | (0, .3, .7) | 0.8 | 0.5 | 20 | 14 |

    Baselines (``envs.evaluate_baseline``, 2,000 held-out queries, seed 0; success, mean
    simulated seconds, "c." = search calls; see ``envs/PROTOCOL.md`` for their meanings):

    | preset | oracle | +random_sub | +vague | random | memorizer | oracle_flat |
    |---|---|---|---|---|---|---|
    | low | 1.000 (11.5 s, 1.00 c.) | 0.373 | 0.725 (12.9 s) | 0.060 | 0.442 | 1.000 (13.6 s) |
    | default | 1.000 (11.9 s, 1.48 c.) | 0.409 | 0.703 (16.3 s) | 0.064 | 0.390 | 1.000 (17.4 s) |
    | heavy | 0.999 (21.8 s, 3.92 c.) | 0.301 | 0.652 (30.7 s) | 0.068 | 0.380 | 1.000 (34.8 s) |

    ## Example
    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import envs
    >>> env = gym.make("mgrpo/RubiksLogic-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs["action_mask"].shape, env.unwrapped.subagent_roles
    ((34,), ('sub',))
    >>> obs, reward, terminated, truncated, info = env.step(np.array([1, 0, 0, 0, 0, 0]))
    >>> int(obs["candidates"].sum()), obs["needs"].tolist()  # no facts yet: 4 candidates
    (4, [1, 1, 1, 1])
    >>> print(env.unwrapped.text.to_text(np.array([2, 0, 0, 0, 0, 7])))
    <answer>yellow, red</answer>

    ## Version History
    - v0: initial version.
    """

    vector_class = RubiksLogicVectorEnv


_ = PAIRS, describe_clues  # re-exported names
