"""Configuration of the Rubik's logic env: knobs, presets and their validation."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from envs.rubiks.generator import MAX_FACTS

GENERATOR_BACKENDS = ("numba", "python")
"""puzzle generator implementations (``RubiksConfig.generator_backend``)"""


@dataclass(frozen=True)
class RubiksConfig:
    """Knobs of ``mgrpo/RubiksLogic-v0`` (every field is an env keyword argument)."""

    preset: str = "default"
    """"low" | "default" | "heavy": the base values of the knobs below"""
    facts_needed: tuple[float, ...] = (0.1, 0.4, 0.5)
    """probabilities that a puzzle needs 0, 1, 2 cube facts (the main driver of d_k)"""
    search_noise: float = 0.5
    """probability that a search result slot is an irrelevant page, in [0, 1)"""
    fail_prob: float = 0.15
    """sub-agent failure probability: a search call errors and returns nothing, in [0, 1)"""
    decoy_rate: float = 0.5
    """without the "this cube's colour scheme" constraint, probability that a relevant page is
    a generic one about another scheme (its statement may be wrong for this cube), in [0, 1]"""
    max_calls: int = 8
    """most search sub-agent calls per episode (>= 0)"""
    max_turns: int = 8
    """main-agent turn cap (>= 2); flat mode: max_turns x (1 + sub_max_steps) (the engine's
    single-agent rule)"""
    max_parallel: int = 2
    """most delegations in one main action (1 or 2)"""
    reasoner: str = "main"
    """"main": the reasoner is the main agent's own tool (the paper); "subagent": a trainable
    math specialist role "math" """
    flat: bool = False
    """single-agent mode: the main agent uses the search tools itself (no sub-agent roles)"""
    sub_max_steps: int = 4
    """step cap of a search sub-episode (>= 3: search, visit, report)"""
    generator_backend: str = "numba"
    """"numba" | "python": how puzzles are drawn: compiled (``generator_jit``, 15-40x faster,
    ``benchmarks/bench_generator.py``; numba is imported when the env is made) or the numpy
    reference (``generator``); both give the same puzzles bit for bit"""

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> ValueError:
            return ValueError(f"{key}={getattr(self, key)!r} is invalid; allowed: {allowed}")

        if self.preset not in PRESETS:
            raise bad("preset", f"one of {sorted(PRESETS)}")
        p = self.facts_needed
        if (
            not isinstance(p, tuple | list)
            or len(p) != MAX_FACTS + 1
            or any((not isinstance(x, int | float)) or x < 0 for x in p)
            or abs(sum(p) - 1.0) > 1e-6
        ):
            raise bad(
                "facts_needed",
                f"{MAX_FACTS + 1} non-negative probabilities (0..{MAX_FACTS} facts) summing to 1",
            )
        for key in ("search_noise", "fail_prob"):
            v = getattr(self, key)
            if not isinstance(v, int | float) or not 0.0 <= v < 1.0:
                raise bad(key, "a probability in [0, 1)")
        if not isinstance(self.decoy_rate, int | float) or not 0.0 <= self.decoy_rate <= 1.0:
            raise bad("decoy_rate", "a probability in [0, 1]")
        if not isinstance(self.max_calls, int) or self.max_calls < 0:
            raise bad("max_calls", "an int >= 0")
        if not isinstance(self.max_turns, int) or self.max_turns < 2:
            raise bad("max_turns", "an int >= 2")
        if self.max_parallel not in (1, 2):
            raise bad("max_parallel", "1 or 2")
        if self.reasoner not in ("main", "subagent"):
            raise bad("reasoner", '"main" or "subagent"')
        if not isinstance(self.flat, bool):
            raise bad("flat", "True or False")
        if not isinstance(self.sub_max_steps, int) or not 3 <= self.sub_max_steps <= 8:
            raise bad("sub_max_steps", "an int in [3, 8]")
        if self.generator_backend not in GENERATOR_BACKENDS:
            raise bad("generator_backend", f"one of {list(GENERATOR_BACKENDS)}")


PRESETS: dict[str, dict[str, Any]] = {
    "low": dict(
        facts_needed=(0.0, 1.0, 0.0),
        search_noise=0.3,
        fail_prob=0.05,
        max_calls=4,
        max_turns=6,
    ),
    "default": dict(
        facts_needed=(0.1, 0.4, 0.5),
        search_noise=0.5,
        fail_prob=0.15,
        max_calls=8,
        max_turns=8,
    ),
    "heavy": dict(
        facts_needed=(0.0, 0.3, 0.7),
        search_noise=0.8,
        fail_prob=0.5,
        max_calls=20,
        max_turns=14,
    ),
}
"""preset -> knob values (explicit keyword arguments override them)"""


def make_config(**kwargs: Any) -> RubiksConfig:
    """Resolve a preset plus overrides; unknown keys raise ``ValueError`` naming them."""
    names = {f.name for f in fields(RubiksConfig)}
    unknown = sorted(set(kwargs) - names)
    if unknown:
        raise ValueError(f"unknown RubiksLogic-v0 argument(s) {unknown}; allowed: {sorted(names)}")
    preset = kwargs.get("preset", "default")
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is invalid; allowed: one of {sorted(PRESETS)}")
    base = dict(PRESETS[preset])
    if kwargs.get("max_turns") is None:  # flat mode: the engine's turn rule (PROTOCOL.md)
        kwargs.pop("max_turns", None)
    if "facts_needed" in kwargs and isinstance(kwargs["facts_needed"], list):
        kwargs["facts_needed"] = tuple(kwargs["facts_needed"])
    return replace(RubiksConfig(), **{**base, **kwargs})
