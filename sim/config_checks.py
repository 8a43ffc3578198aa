"""Validation primitives of the training configuration (:mod:`sim.config`): every error names the
key, the bad value and what is allowed; registries of names are read lazily (no torch import for
built-in names)."""

from __future__ import annotations

import importlib
import math
from typing import Any


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{key} = {value!r} is invalid; allowed: {allowed}")


def _int(key: str, value: Any, low: int, high: int | None = None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        _fail(key, value, f"an integer >= {low}" + (f" and <= {high:_}" if high else ""))


def _num(key: str, value: Any, low: float, high: float = math.inf, low_open=False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        lo = f"> {low}" if low_open else f">= {low}"
        _fail(key, value, f"a finite number {lo}" + (f" and <= {high}" if high < math.inf else ""))


def _choice(key: str, value: Any, allowed) -> None:
    """``value`` must equal one of ``allowed`` and have its type (``True`` is not ``1``)."""
    if any(type(value) is type(a) and value == a for a in allowed):
        return
    if isinstance(allowed, _Registry):  # not a built-in name: ask the registry itself
        allowed = allowed._full()
        if isinstance(value, str) and value in allowed:
            return
    _fail(key, value, ", ".join(repr(a) for a in allowed))


BUILTIN_NAMES: dict[str, tuple[str, ...]] = {
    "sim.alignment.ALIGN_MODES": ("duplicate_drop", "balanced", "mask", "none"),
    "sim.advantages.ADV_SCALES": ("group", "batch", "none"),
    "sim.advantages.SUB_GROUPINGS": ("per_query", "per_invocation", "queue_window"),
    "sim.loss.LOSS_AGG_MODES": (
        "seq-mean-token-mean",
        "token-mean",
        "seq-mean-token-sum",
        "seq-mean-token-sum-norm",
    ),
    "sim.loss.RATIO_LEVELS": ("token", "sequence", "sequence_mean"),
    "sim.rewards.SUB_REWARD_FORMS": ("linear", "gated", "global_only", "local_only"),
    "sim.rewards.JUDGES": ("exact", "flip", "gaussian"),
    "policies.registry.policy_kinds": ("mlp", "lm"),
}
"""the names every registry holds from the start (a test checks them against the registries):
a config using only these validates without importing torch; any other name is looked up in the
registry itself (which may hold names registered by the user)"""


class _Registry(tuple):
    """The names of one registry, read lazily: ``in`` answers built-in names without importing
    the registry's module; iteration (error messages) and other names import it."""

    def __new__(cls, qualname: str) -> _Registry:
        obj = super().__new__(cls, BUILTIN_NAMES[qualname])
        obj.qualname = qualname
        return obj

    def _full(self) -> tuple[str, ...]:
        module, _, name = self.qualname.rpartition(".")
        value = getattr(importlib.import_module(module), name)
        return tuple(value() if callable(value) else value)


def _names(module: str, name: str) -> _Registry:
    """A registry's names (``sim.loss.LOSS_AGG_MODES``), imported only for non-built-in names."""
    return _Registry(f"{module}.{name}")


def policy_kinds() -> tuple[str, ...]:
    """The registered policy kinds (:func:`policies.registry.policy_kinds`)."""
    from policies.registry import policy_kinds as kinds

    return kinds()
