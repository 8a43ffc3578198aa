"""Latency model: per-tool log-normal latencies; parallel delegations take the max."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class LatencyModel:
    """Simulated seconds per tool call: ``median * exp(sigma * z)`` with ``z ~ N(0, 1)``.

    The normals ``z`` come from the episode's counter-based stream, so latencies are
    reproducible and do not depend on batching. Within one main step, the delegations issued
    together run in parallel: the step lasts ``think + own tool time + max(sub-episode durations)``.
    """

    tools: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """tool name -> (median seconds > 0, log-normal sigma >= 0)"""
    think: float = 1.0
    """seconds the main agent spends per turn (writing its call)"""

    def __post_init__(self) -> None:
        for name, (median, sigma) in self.tools.items():
            if not (median > 0 and sigma >= 0 and np.isfinite(median) and np.isfinite(sigma)):
                raise ValueError(
                    f"latency[{name!r}] = ({median}, {sigma}): need median > 0 and sigma >= 0"
                )

    def table(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Medians and sigmas for tools ``names`` (in that order); unknown tools take 0 s."""
        med = np.array([self.tools.get(n, (0.0, 0.0))[0] for n in names], dtype=np.float64)
        sig = np.array([self.tools.get(n, (0.0, 0.0))[1] for n in names], dtype=np.float64)
        return med, sig

    @staticmethod
    def sample(tool: np.ndarray, z: np.ndarray, med: np.ndarray, sig: np.ndarray) -> np.ndarray:
        """Latency of calls to tools ``tool`` (int ids, -1 = no tool -> 0 s) given normals ``z``."""
        t = np.maximum(tool, 0)
        out = med[t] * np.exp(sig[t] * z)
        return np.where(tool >= 0, out, 0.0)
