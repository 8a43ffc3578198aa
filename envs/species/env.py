"""``mgrpo/InvasiveSpecies-v0``: multi-hop search where instruction precision decides success.

:class:`InvasiveSpeciesEnv` (single) and :class:`InvasiveSpeciesVectorEnv` (N episodes in numpy)
on the hierarchical protocol of :mod:`envs.core`; the config is :class:`SpeciesConfig`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np

from envs.core import HierarchicalEnv, HierarchicalVectorEnv, StepResult
from envs.core.text import Arg, TextFace, Tool, flat_reserved, flat_tools
from envs.species import baselines, prompt
from envs.species import task as T
from envs.species.baselines import oracle_sub as oracle_sub  # re-export (tests, docs)
from envs.species.config import LATENCY, SpeciesConfig
from envs.species.generator import KnowledgeGenerator
from envs.species.search import SpeciesSearchTask
from envs.species.types import INDEX_NAMES, NUM_SLOTS, NUM_TYPES


class InvasiveSpeciesVectorEnv(HierarchicalVectorEnv):
    """N invasive-species episodes stepped together in numpy (see :class:`InvasiveSpeciesEnv`).

    Final info: the protocol's arrays with ``_key`` masks plus ``constraints_kept``,
    ``distractor_hit`` and ``hops`` (flat mode: ``flat_expert``, ``flat_sessions``);
    per-episode dicts in ``final_infos[i]``.
    """

    flat_states_sessions = True  # flat mode: the agent states each search session itself

    def __init__(self, num_envs: int = 1, *, render_mode: str | None = None, **kwargs: Any) -> None:
        cfg = SpeciesConfig.from_kwargs(**kwargs)
        self.cfg = cfg
        self.env_kwargs = dict(kwargs)
        self.generator = KnowledgeGenerator(
            n_species=cfg.n_species, n_agencies=cfg.n_agencies, hops=cfg.hops
        )
        sub = SpeciesSearchTask(
            cfg.fail_prob,
            cfg.top_k,
            cfg.max_sub_steps,
            instance=self.instance,
            value_high=tuple(int(v) for v in self.generator.domains().max(axis=0) - 1),
            flat=bool(cfg.flat),
        )
        self.max_calls = int(cfg.max_calls)
        p = int(cfg.max_parallel)
        flat = bool(cfg.flat)
        # kinds: answer, one per hop, (flat: use a tool,) malformed
        main_nvec = np.array([NUM_TYPES + 2 + flat, 2, 2, 2, p], dtype=np.int64)

        def box(*shape: int) -> gym.spaces.Box:
            return gym.spaces.Box(0.0, 1.0, shape, dtype=np.float32)

        spaces = {
            "hops": box(NUM_TYPES),
            "reported": box(NUM_TYPES),
            "status": box(NUM_TYPES, 3),
            "match": box(NUM_TYPES, NUM_SLOTS),
            "attempts": box(NUM_TYPES),
            "budget": box(2),
        }
        super().__init__(
            num_envs,
            sub_tasks={"sub": sub},
            main_nvec=main_nvec,
            main_obs_spaces=spaces,
            main_tools=(),
            max_turns=int(cfg.max_turns),
            max_parallel=p,
            flat=flat,
            latency=LATENCY,
            n_main_uniforms=1,
            delegate_type=T.M_TOOL if flat else T.M_DELEGATE,
            render_mode=render_mode,
        )
        # the state buffer: an uncached (writable) batch
        self.state = T.MainState.empty(self.generator.generate(np.zeros(self.num_envs, np.int64)))
        tools, reserved = _main_tools(p), ()
        if self.flat:
            # kind 1 + t opens a search session for hop t stating the kept conditions (as a
            # delegation does, without copies); kind M_TOOL runs one of its tools
            off = len(main_nvec)
            opens = tuple(_flat_open(t) for t in tools[1:])
            tools = flat_tools(
                (tools[0], *opens), sub.text.tools, delegate_type=T.M_TOOL, offset=off
            )
            reserved = flat_reserved(
                delegate_type=T.M_TOOL, offset=off, sub_invalid=sub.text.invalid_type
            )
        self.text = TextFace(
            tools,
            self.nvec,
            _MainDescribe(self.max_calls, self.flat),
            _SYSTEM_FLAT if self.flat else _SYSTEM,
            role="main",
            space=self.single_observation_space,
            instance=self.instance,
            reserved=reserved,
        )

    def instance(self, query: int) -> Any:
        """The knowledge base of one query id (``n = 1``): a pure function of the id."""
        return self.generator(np.array([int(query)], dtype=np.int64))

    # ---------------------------------------------------------------- hooks
    def _new_episodes(self, idx: np.ndarray) -> None:
        # each query's base once (a group's K rollouts share it): rows depend only on the id
        uq, inv = np.unique(self.queries[idx], return_inverse=True)
        kb = self.generator(uq)
        self.state.reset_rows(idx, kb, inv if len(uq) < len(idx) else None)

    def _observe(self) -> dict[str, np.ndarray]:
        st, f32 = self.state, np.float32
        calls = self.calls[:, 0] if self.calls.shape[1] else np.zeros(self.num_envs, np.int64)
        budget = np.stack(
            [
                np.clip(1.0 - calls / self.max_calls, 0.0, 1.0),
                np.clip(1.0 - self.turn / self.max_turns, 0.0, 1.0),
            ],
            axis=1,
        )
        return {
            "hops": T.hop_exists(st).astype(f32),
            "reported": (st.report >= 0).astype(f32),
            "status": np.eye(3, dtype=f32)[st.status],
            "match": T.report_match(st).astype(f32),
            "attempts": np.clip(st.attempts / self.max_calls, 0.0, 1.0).astype(f32),
            "budget": budget.astype(f32),
        }

    def _mask(self) -> np.ndarray:
        n, p = self.num_envs, int(self._main_nvec[-1])
        if self.flat:  # answer, open a session (a hop whose link is known), use a tool
            ones = np.ones((n, 1), bool)
            dele = T.delegable(self.state)
            kind = np.concatenate([ones, dele, ones, ~ones], axis=1)  # engine: tool iff open
            keep = np.ones((n, 2 * NUM_SLOTS), dtype=bool)
            copies = np.zeros((n, p), bool)
            copies[:, 0] = True
            return np.concatenate([kind, keep, copies], axis=1).astype(np.int8)
        calls = self.calls[:, 0]
        dele = T.delegable(self.state) & (calls < self.max_calls)[:, None]
        kind = np.concatenate([np.ones((n, 1), bool), dele, np.zeros((n, 1), bool)], axis=1)
        keep = np.ones((n, 2 * NUM_SLOTS), dtype=bool)
        copies = calls[:, None] + np.arange(1, p + 1)[None, :] <= self.max_calls
        copies[:, 0] = True
        return np.concatenate([kind, keep, copies], axis=1).astype(np.int8)

    def _act(self, actions: np.ndarray, ok: np.ndarray) -> StepResult:
        n = self.num_envs
        rows = np.flatnonzero(ok)
        kind = actions[rows, 0]
        ans = rows[kind == T.M_ANSWER]
        answered = np.zeros(n, dtype=bool)
        answered[ans] = True
        self.correct[ans] = T.correctness(self.state, ans, self.cfg.answer_scoring)
        delegations = {}
        dl = rows[(kind >= T.M_DELEGATE) & (kind < T.M_DELEGATE + NUM_TYPES)]
        if self.flat:  # open a search session with the agent's own instruction
            t = actions[dl, 0] - T.M_DELEGATE
            value, include = T.make_instructions(self.state, dl, t, actions[dl, 1 : 1 + NUM_SLOTS])
            instr = np.concatenate([t[:, None], value, include.astype(np.int64)], axis=1)
            delegations["sub"] = (dl, instr)
        else:
            copies = actions[dl, -1] + 1
            owners = np.repeat(dl, copies)
            t = np.repeat(actions[dl, 0] - T.M_DELEGATE, copies)
            keep = np.repeat(actions[dl, 1 : 1 + NUM_SLOTS], copies, axis=0)
            value, include = T.make_instructions(self.state, owners, t, keep)
            instr = np.concatenate([t[:, None], value, include.astype(np.int64)], axis=1)
            delegations["sub"] = (owners, instr)
        return StepResult(delegations=delegations, answered=answered)

    def _deliver(self, role, owners, instr, report) -> None:
        T.apply_reports(self.state, np.asarray(owners), instr[:, 0], report["doc"])

    def _flat_instruction(self, idx: np.ndarray) -> np.ndarray:
        """Flat mode: the placeholder session shown before the agent opens one (closed: tool
        calls are masked): the question's first hop, nothing stated."""
        t = T.first_type(self.state, idx)
        none = np.full((len(idx), NUM_SLOTS), -1, dtype=np.int64)
        return np.concatenate([t[:, None], none, np.zeros_like(none)], axis=1)

    def sample_instruction(self, role: str, rng: np.random.Generator) -> np.ndarray:
        """A random instruction for episode 0: a random hop of its question with its true link
        and a random subset of fields."""
        st = self.state
        first = int(T.first_type(st)[0])
        t = int(rng.integers(first, NUM_TYPES))
        value = st.kb.values[0, t]
        include = rng.integers(0, 2, NUM_SLOTS)
        return np.concatenate([[t], value, include]).astype(np.int64)

    def _extra_final_arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        count = self.state.kept_count[rows]
        return {
            "constraints_kept": np.where(
                count > 0, self.state.kept_sum[rows] / np.maximum(count, 1), 0.0
            ),
            "instructions": count.copy(),
            "distractor_hit": T.distractor_hit(self.state, rows),
            "hops": self.state.kb.n_hops[rows].astype(np.int64),
        }

    # ---------------------------------------------------------------- baselines
    def baseline_policies(self, baseline: str, rng: np.random.Generator):
        """``(main_policy, {"sub": policy or None})`` of a baseline (see
        :func:`envs.species.baselines.baseline_policies`)."""
        return baselines.baseline_policies(self, baseline, rng)


_SYSTEM = (
    "You are the main agent. Answer the question by delegating each hop, in order, to the search "
    "sub-agent, choosing which conditions its instruction keeps; answer when the records hop is "
    "reported: the answer is the zip codes of the latest records report."
)
_SYSTEM_FLAT = (
    "You are a search agent. Answer the question by working through its hops in order: open a "
    "search session for a hop stating the conditions to keep, then search, visit a result and "
    "report the page; answer when the records hop is reported: the answer is the zip codes of "
    "the latest records report."
)


class _MainDescribe:
    """The main agent's ``describe(obs, kb)``: pure, reads the config numbers only."""

    def __init__(self, max_calls: int, flat: bool) -> None:
        self.max_calls, self.flat = max_calls, flat

    def __call__(self, obs: dict[str, np.ndarray], kb: Any) -> str:
        return prompt.describe_main(obs, kb, max_calls=self.max_calls, flat=self.flat)


def _flat_open(tool: Tool) -> Tool:
    """Flat mode's form of a delegation tool: open a search session for the hop, stating the
    kept conditions (no copies: one session at a time)."""
    hop = tool.name.removeprefix("find_")
    return replace(
        tool,
        description=f"Open a search session for the {hop} hop, stating the conditions to keep "
        "(closes the open one); then search, visit and report in it.",
        args=tool.args[:NUM_SLOTS],
    )


def _main_tools(p: int) -> tuple[Tool, ...]:
    keep = tuple(
        Arg(f"condition_{j + 1}", 1 + j, ("omit", "keep"), description="state it or not")
        for j in range(NUM_SLOTS)
    )
    copies = Arg(
        "copies",
        1 + NUM_SLOTS,
        tuple(str(c + 1) for c in range(p)),
        description="parallel copies of the instruction",
    )
    answer = Tool("answer", T.M_ANSWER, "Answer with the latest records report.", answer=True)
    delegate = tuple(
        Tool(
            f"find_{name}",
            T.M_DELEGATE + t,
            f"Ask the search sub-agent to find the {name} hop's page.",
            (*keep, copies),
        )
        for t, name in enumerate(INDEX_NAMES)
    )
    return (answer, *delegate)


class InvasiveSpeciesEnv(HierarchicalEnv):
    """Multi-hop search where the precision of the main agent's instructions decides success.

    ## Description
    The paper's second case study: *which fish appeared in film F and became invasive after pet
    owners released it, and where did agency A record it as nonnative before 2020?* Each query id
    generates a knowledge base (:mod:`envs.species.generator`) of persons, films, species and
    agencies' nonnative-occurrence records (5-digit zip codes, years), with planted distractors
    that share all but one field with each hop's answer (same film but another cause, same cause
    but another film, records after the cut-off year, from another agency, of another species).
    The question has ``n_hops`` hops (person -> film -> species -> records; the last one always
    records), each constrained by three fields (the previous hop's answer and two attributes).
    The main agent M delegates one hop at a time to the search sub-agent S, choosing which fields
    its instruction keeps; S's BM25 search (:mod:`envs.species.ranking`) ranks the pages: with
    every field the answer comes first, without one a distractor (a shorter, focused page that
    matches the rest) does. The answer is the zip codes of the latest records report.

    ## Action Space
    ``MultiDiscrete([6, 2, 2, 2, max_parallel])`` = ``[kind, keep_1, keep_2, keep_3, copies]``:

    | kind | meaning | components used |
    |---|---|---|
    | 0 | answer: the zip codes of the latest records report (``<answer></answer>``) | none |
    | 1..4 | delegate the hop of index type ``kind - 1`` (person, film, species, records) | all |
    | 5 | reserved for malformed text (always masked) | none |

    ``keep_j`` = 1 states field ``j`` in the instruction (field 1 is the link: it is known once
    the previous hop is reported); ``copies + 1`` parallel copies of the instruction are sent
    (they run in parallel in simulated time). A delegation kind is allowed when its hop is in the
    question, its link is known and a call is left; answering is always allowed.

    **Flat mode** (``flat=True``, the single agent, the same rules without delegation):
    ``MultiDiscrete([7, 2, 2, 2, max_parallel, 4, 2, 2, 2, top_k])``: kind 1 + t *opens a
    search session* for hop t stating the kept fields (as a delegation states them; ``copies``
    must be 0; an open session is closed first, unreported), kind 5 uses one of the session's
    tools with the appended sub-agent components ``[kind, use_1..3, rank]``
    (:mod:`envs.species.search`; allowed only while a session is open; they count only in a
    tool call), kind 6 is the malformed one. A session closes when it reports (or runs out of
    ``max_sub_steps``); its report is taken as it is, exactly as a delegated one. The env
    neither picks the hop nor checks the reports: the agent reads ``match`` as M does. Turn
    cap: ``max_turns * (1 + max_sub_steps)`` (the engine's ``flat_max_turns``, 40 by default);
    no call cap.

    ## Observation Space
    ``Dict`` of float32 arrays in [0, 1] (plus ``action_mask``, int8 ``(sum(nvec),)``):

    | key | shape | meaning |
    |---|---|---|
    | hops | (4,) | which index types the question asks for |
    | reported | (4,) | the hop has a report |
    | status | (4, 3) | one-hot: never asked / latest call reported / latest call found nothing |
    | match | (4, 3) | the latest report matches the question on field j (M reads the report) |
    | attempts | (4,) | calls made per hop / ``max_calls`` |
    | budget | (2,) | share of calls left, share of turns left |
    | query_id | () int64 | the episode's query id (an id field: the MLP encoder ignores it) |

    Flat mode adds the session's fields with the ``tool_`` prefix (the sub-agent's below) and
    ``tool_open`` ``(1,)``: whether a session is open.

    The search sub-agent (role ``"sub"``, ``subagent_spaces["sub"]``) sees its intent (one-hot
    index type), which fields are stated, whether it searched, tool error, which result slots are
    filled, whether it visited and which stated fields the visited page matches, and progress;
    its actions are search(use_1..3) / visit(rank) / report (see :mod:`envs.species.search`).
    It also gets the id fields ``query_id`` and ``instruction`` (``[type, value_0..2,
    include_0..2]``), from which its text face states the instruction in words. The text faces
    are pure: ``describe(obs, kb)`` with the knowledge base rebuilt from ``obs["query_id"]``
    (:meth:`InvasiveSpeciesVectorEnv.instance`); a report is told as ``match`` has it (named
    when it and every earlier hop match every field: then it is the hop's answer).

    ## Rewards
    The step reward is 0 except at the end: ``f_M * c_M``. Trainers compute R_M and R_S from the
    final ``info``: ``correct`` (c_M: 1 iff the zip-code set is exact; Jaccard overlap with
    ``answer_scoring="partial"``), ``format_ok`` (f_M: 0 after any masked action), and per
    sub-trajectory ``format_ok`` (f_S: no masked action and a report) and ``expert`` (e_S: share
    of the instruction's stated fields that the reported page matches; 0 if nothing reported).

    ## Starting State
    The knowledge base and question are a pure function of ``options["query"]`` (ids >= 2**31
    are held out); failures, latencies and the default random sub-agent come from the seed.

    ## Episode End
    - Termination: M answers.
    - Truncation: ``max_turns`` main turns (flat: ``max_turns * (1 + max_sub_steps)`` turns)
      without an answer (c_M = 0).

    ## Info (final step)
    ``correct``, ``format_ok``, ``calls`` ({"sub": d_k}), ``category_errors`` (always 0),
    ``sim_time`` (seconds: 1 s per M turn + the longest sub-episode of the turn; tool latencies
    log-normal: search 1 s, visit 2 s, report 0.3 s), ``turns``, ``query``, ``sub_trajectories``,
    ``constraints_kept`` (mean over instructions of the share of the hop's 3 essential fields
    stated; 0 without instructions), ``instructions``, ``distractor_hit`` (1 if any report of
    the episode was a planted distractor), ``hops``. Flat mode: ``calls`` is ``{}``;
    ``flat_sessions`` (finished search sessions) and ``flat_expert`` (their mean e_S, 0.0 if
    none: the dense expert term a trainer may give the single agent).

    ## Arguments
    ``gymnasium.make("mgrpo/InvasiveSpecies-v0", preset="default", **overrides)``; keys and
    checks in :class:`SpeciesConfig`. Presets (d_k under the oracle: low ~1.6, default ~2.5,
    heavy ~6.3, above D = 8 in ~18% of episodes):

    | preset | hops | fail_prob | max_calls | max_turns |
    |---|---|---|---|---|
    | low | 1-2 | 0.05 | 3 | 5 |
    | default | 2 | 0.2 | 6 | 8 |
    | heavy | 3-4 | 0.45 | 16 | 18 |

    Other keys: ``max_parallel`` (2), ``flat`` (False), ``n_species`` (10), ``n_agencies`` (3),
    ``top_k`` (3), ``max_sub_steps`` (4), ``answer_scoring`` ("exact").
    ``render_mode``: ``"ansi"`` (``render()`` returns the text face's prompt); see
    :mod:`envs.core.rendering`.

    ## Baselines
    ``baseline_policies`` (used by :func:`envs.evaluate_baseline`; meanings in
    ``envs/PROTOCOL.md``): ``oracle`` (every field, hops in order, retry a hop whose report is
    missing or mismatched), ``oracle_main+random_sub``, ``oracle_main+vague`` (each instruction
    drops one essential field; M rejects a mismatched report as the oracle does), ``memorizer``
    (answers at once: the zip codes cannot be guessed), ``oracle_flat`` (``flat=True``) and
    ``random``. Success on 2,000 held-out queries (seed 0), mean simulated seconds:

    | preset | oracle | +random_sub | +vague | random | memorizer | oracle_flat |
    |---|---|---|---|---|---|---|
    | low | 0.992 (7.9 s) | 0.029 | 0.000 | 0.007 | 0.000 | 1.000 (12.6 s) |
    | default | 0.998 (11.3 s) | 0.006 | 0.000 | 0.001 | 0.000 | 1.000 (18.2 s) |
    | heavy | 0.996 (23.6 s) | 0.002 | 0.000 | 0.000 | 0.000 | 1.000 (39.7 s) |

    ## Example
    >>> import numpy as np
    >>> from envs.species.env import InvasiveSpeciesEnv, oracle_sub
    >>> env = InvasiveSpeciesEnv()
    >>> obs, info = env.reset(seed=25)
    >>> obs["hops"]  # a two-hop question: species, then records
    array([0., 0., 1., 1.], dtype=float32)
    >>> env.set_subagent("sub", oracle_sub)
    >>> obs, *_ = env.step(np.array([3, 1, 1, 1, 0]))  # find the species, every field kept
    >>> obs["match"][2]
    array([1., 1., 1.], dtype=float32)
    >>> obs, *_ = env.step(np.array([4, 1, 1, 1, 0]))  # the records: this call fails
    >>> obs["status"][3]
    array([0., 0., 1.], dtype=float32)
    >>> obs, *_ = env.step(np.array([4, 1, 1, 1, 0]))  # retry
    >>> obs, reward, terminated, truncated, info = env.step(np.array([0, 0, 0, 0, 0]))
    >>> reward, terminated, info["correct"], info["calls"], info["distractor_hit"]
    (1.0, True, 1.0, {'sub': 3}, 0)

    ## Version History
    - v0: initial version.
    """

    vector_class = InvasiveSpeciesVectorEnv
