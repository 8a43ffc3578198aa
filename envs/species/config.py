"""Configuration of ``mgrpo/InvasiveSpecies-v0``: presets, the latency model and
:class:`SpeciesConfig` (a preset plus keyword overrides, validated)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.core import LatencyModel
from envs.species.scoring import ANSWER_MODES

PRESETS: dict[str, dict[str, Any]] = {
    "low": {"hops": (1, 2), "fail_prob": 0.05, "max_calls": 3, "max_turns": 5},
    "default": {"hops": (2, 2), "fail_prob": 0.2, "max_calls": 6, "max_turns": 8},
    "heavy": {"hops": (3, 4), "fail_prob": 0.45, "max_calls": 16, "max_turns": 18},
}
"""Call-rate presets: hops per question, failure probability, call and turn caps. Under the
oracle (2,000 held-out queries) d_k has mean 1.6 / 2.5 / 6.3; ``heavy`` exceeds the paper's
alignment target D = 8 in about 18% of episodes (every failed call is retried)."""

LATENCY = LatencyModel(
    tools={"search": (1.0, 0.4), "visit": (2.0, 0.4), "report": (0.3, 0.2)}, think=1.0
)
"""Default latency model (seconds): the sub-agent's tools; the main agent thinks 1 s a turn."""


@dataclass(frozen=True)
class SpeciesConfig:
    """Resolved configuration (a preset plus keyword overrides), validated on construction."""

    preset: str = "default"
    """call-rate preset: "low" | "default" | "heavy" (sets the four knobs below)"""
    hops: tuple[int, int] = (2, 2)
    """(min, max) hops per question, 1..4, drawn uniformly per query (an int means (h, h))"""
    fail_prob: float = 0.2
    """probability in [0, 1) that a sub-agent call fails (its search tool errors)"""
    max_calls: int = 6
    """sub-agent calls allowed per episode (>= max hops)"""
    max_turns: int = 8
    """main-agent turns per episode (> max hops: every hop and the answer take a turn); in flat
    mode the single agent gets ``max_turns * (1 + max_sub_steps)`` turns (the engine's
    ``flat_max_turns``)"""
    max_parallel: int = 2
    """copies of one instruction a delegation may send at once (they run in parallel)"""
    flat: bool = False
    """single-agent mode: the main agent opens its own search sessions (a hop and the conditions
    it states) and uses search/visit/report itself, no sub-agent"""
    n_species: int = 10
    """entities per index (species, films, persons), 4..24"""
    n_agencies: int = 3
    """agencies keeping records, 2..5"""
    top_k: int = 3
    """results per search, 1..5"""
    max_sub_steps: int = 4
    """steps per sub-agent episode, >= 3 (search, visit, report)"""
    answer_scoring: str = "exact"
    """"exact" (c_M = 1 iff the zip-code set is right) or "partial" (Jaccard overlap)"""

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> SpeciesConfig:
        known = set(cls.__dataclass_fields__)
        for key in kwargs:
            if key not in known:
                raise ValueError(f"unknown env kwarg {key!r}; allowed: {sorted(known)}")
        preset = kwargs.get("preset", "default")
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r}: allowed {sorted(PRESETS)}")
        merged = {**PRESETS[preset], **{k: v for k, v in kwargs.items() if v is not None}}
        if isinstance(merged["hops"], int | np.integer):
            merged["hops"] = (int(merged["hops"]), int(merged["hops"]))
        merged["hops"] = tuple(int(h) for h in merged["hops"])
        return cls(**merged)

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key)!r}: {rule}")

        need(
            len(self.hops) == 2 and 1 <= self.hops[0] <= self.hops[1] <= 4,
            "hops",
            "need (min, max) with 1 <= min <= max <= 4 (zero hops is no question)",
        )
        need(0.0 <= self.fail_prob < 1.0, "fail_prob", "need 0 <= fail_prob < 1")
        need(int(self.max_calls) >= self.hops[1], "max_calls", f"need >= max hops {self.hops[1]}")
        need(int(self.max_turns) > self.hops[1], "max_turns", f"need > max hops {self.hops[1]}")
        need(1 <= int(self.max_parallel) <= 4, "max_parallel", "need 1..4")
        need(1 <= int(self.top_k) <= 5, "top_k", "need 1..5")
        need(int(self.max_sub_steps) >= 3, "max_sub_steps", "need >= 3 (search, visit, report)")
        need(self.answer_scoring in ANSWER_MODES, "answer_scoring", f"allowed {ANSWER_MODES}")
        need(isinstance(self.flat, bool | np.bool_), "flat", "need a bool")
