"""Record types returned in ``info`` at the end of an episode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SubTrajectory:
    """One sub-agent episode (one delegation) of a main episode.

    ``T`` is the number of sub-agent steps taken (>= 1).
    """

    role: str
    """the specialist role that ran it (e.g. "sub", "math")"""
    invocation: int
    """0-based index of this call among the episode's calls to the same role, in issue order"""
    observations: dict[str, np.ndarray]
    """each key ``(T, ...)``: what the sub-agent saw before each of its actions"""
    actions: np.ndarray
    """``(T, n_comp)`` int64 actions taken"""
    logp: np.ndarray
    """``(T,)`` float behaviour log-probs as returned by the policy"""
    format_ok: int
    """f_S in {0, 1}: 0 if any action was masked (malformed) or no report was produced"""
    expert: float
    """e_S in [0, 1]: the expert score of the sub-agent's own subtask"""
    finish_order: int = 0
    """order in which the episode's sub-episodes finished (simulated time), 0-based"""
    instruction: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """the structured instruction the main agent sent, ``(n_fields,)`` int64"""
    duration: float = 0.0
    """simulated seconds the sub-episode took"""
    turn: int = 0
    """main-agent turn (0-based) that issued it"""
    handle: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """``(T,)`` int64 the policy's own record id per step, when it returned one (else -1)"""
