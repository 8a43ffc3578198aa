"""Which action components matter for an action, read off an env's text face.

A MultiDiscrete action has one component per tool argument of every tool; only the action type
and the arguments of the chosen tool take effect. Counting the log-probs of the other components
would add pure noise to the policy gradient, so policies can be given a *relevance function*
``fn(actions (n, n_comp)) -> (n, n_comp) float`` (1 = the component takes effect), built here
from the declarative :class:`envs.core.text.TextFace` description (duck-typed: ``tools``,
``type_component``, ``nvec``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["relevance_from_text"]


def relevance_from_text(text: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A vectorized relevance function for the actions of ``text`` (a TextFace).

    For each action the most specific matching tool (type value plus its ``extra`` component
    values) decides: the type component, the ``extra`` components and the tool's argument
    components are relevant. Actions of no tool (the reserved malformed type) count every
    component.
    """
    nvec = np.asarray(text.nvec)
    n_comp = len(nvec)
    tc = int(text.type_component)
    patterns = []
    for tool in text.tools:
        rel = np.zeros(n_comp, dtype=np.float32)
        rel[tc] = 1.0
        for c, _ in tool.extra:
            rel[c] = 1.0
        for arg in tool.args:
            rel[arg.component] = 1.0
        patterns.append((int(tool.type_value), tuple(tool.extra), rel))
    patterns.sort(key=lambda p: len(p[1]))  # most specific last, so it wins

    def relevance(actions: np.ndarray) -> np.ndarray:
        a = np.asarray(actions)
        out = np.ones((len(a), n_comp), dtype=np.float32)
        for tv, extra, rel in patterns:
            hit = a[:, tc] == tv
            for c, v in extra:
                hit &= a[:, c] == v
            out[hit] = rel
        return out

    return relevance
