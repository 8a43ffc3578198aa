"""Baseline policies of ``mgrpo/InvasiveSpecies-v0`` (meanings in ``envs/PROTOCOL.md``).

:func:`baseline_policies` is the env's hook for :func:`envs.evaluate_baseline`; the policies read
only the agents' observations (the main agent reads its reports' ``match``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.species import task as T
from envs.species.types import NUM_SLOTS, NUM_TYPES


def baseline_policies(env: Any, baseline: str, rng: np.random.Generator):
    """``(main_policy, {"sub": policy or None})`` of a baseline on the vector env ``env`` (see
    ``envs.baselines`` and ``envs/PROTOCOL.md`` for their meaning).

    * ``oracle`` M: works through the hops in order, delegating the first one whose report
      is missing or does not match the question on every field (M reads the report), one
      copy, every field kept; answers when all reports match (or no call is left). Oracle S
      (:func:`oracle_sub`): search with every stated field, visit rank 1, report (report at
      once after a tool error).
    * ``oracle_main+random_sub``: the oracle M with the uniform-random S.
    * ``oracle_main+vague``: the oracle M, but each instruction drops one of the hop's three
      essential fields (uniformly); it accepts a report exactly as the oracle does (only a
      report matching the question on every field), so it retries until no call is left.
    * ``memorizer``: answers at once, from the question alone. The answer is the zip codes
      of a records page and each query draws its own (2-4 of 90,000 codes), so knowing the
      distribution of worlds gives no answer better than the empty one: success 0.
    * ``oracle_flat`` (``flat=True``; ``oracle`` in flat mode is the same agent): the
      single agent doing both jobs with the same rules: open a session for the first hop
      without a matching report, every field stated, then search, visit rank 1 and report
      as :func:`oracle_sub`; answer when every hop's report matches.
    """
    valid = ("oracle", "oracle_main+random_sub", "oracle_main+vague", "memorizer")
    if env.flat:
        valid = ("oracle", "oracle_flat", "memorizer")
    if baseline not in valid:
        raise ValueError(
            f"unknown baseline {baseline!r} for {type(env).__name__}"
            f"(flat={env.flat}); valid: {list(valid)}"
            + ("" if env.flat else "; 'oracle_flat' needs flat=True")
        )
    subs = {r: oracle_sub for r in env.subagent_roles}
    if baseline == "memorizer":
        return (lambda obs: np.zeros((len(obs["hops"]), len(env.nvec)), np.int64)), subs
    if env.flat:
        return _oracle_flat(env), {}
    vague = baseline == "oracle_main+vague"

    def main(obs: dict[str, np.ndarray]) -> np.ndarray:
        n = obs["action_mask"].shape[0]
        a = np.zeros((n, len(env.nvec)), dtype=np.int64)
        t, go = _next_hop(obs)
        a[:, 0] = np.where(go, T.M_DELEGATE + t, T.M_ANSWER)
        a[:, 1 : 1 + NUM_SLOTS] = go[:, None]
        if vague:
            drop = rng.integers(0, NUM_SLOTS, n)
            a[np.arange(n), 1 + drop] = 0
        return a

    if baseline == "oracle_main+random_sub":
        subs = {r: None for r in env.subagent_roles}
    return main, subs


def _oracle_flat(env: Any):
    """The flat oracle (see :func:`baseline_policies`): a tool call while a session is open,
    else open one for the next hop with every field, else answer."""
    nvec, cm = env.nvec, len(env._main_nvec)

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        mask = obs["action_mask"]
        n = mask.shape[0]
        a = np.zeros((n, len(nvec)), dtype=np.int64)
        open_ = obs["tool_open"][:, 0] > 0
        t, go = _next_hop(obs)
        a[:, 0] = np.where(open_, T.M_TOOL, np.where(go, T.M_DELEGATE + t, T.M_ANSWER))
        a[:, 1 : 1 + NUM_SLOTS] = (~open_ & go)[:, None]
        session = {k[5:]: v for k, v in obs.items() if k.startswith("tool_")}
        session["action_mask"] = mask
        a[:, cm:] = oracle_sub(session)[0]
        return a

    return policy


def _next_hop(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(t, go)`` ``(n,)``: the first hop of the question whose report is missing or does not
    match the question on every field and that may be delegated now (the mask), and whether
    there is one. Reads only the main observation (M reads the reports)."""
    mask = obs["action_mask"]
    hop_ok = mask[:, T.M_DELEGATE : T.M_DELEGATE + NUM_TYPES] > 0
    need = (obs["hops"] > 0) & ~(obs["match"] > 0).all(axis=2)
    cand = need & hop_ok
    return np.argmax(cand, axis=1), cand.any(axis=1)


def oracle_sub(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The oracle search sub-agent (deterministic: logp 0): search with every stated field,
    visit the top result, report it; after a tool error (or without results) report at once."""
    n = obs["action_mask"].shape[0]
    searched = obs["searched"][:, 0] > 0
    stop = (obs["error"][:, 0] > 0) | (obs["visited"][:, 0] > 0)
    has = obs["results"][:, 0] > 0
    kind = np.where(
        stop, T.S_REPORT, np.where(~searched, T.S_SEARCH, np.where(has, T.S_VISIT, T.S_REPORT))
    )
    a = np.zeros((n, 5), dtype=np.int64)
    a[:, 0] = kind
    a[:, 1 : 1 + NUM_SLOTS] = 1
    return a, np.zeros(n)
