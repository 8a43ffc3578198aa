"""Factorized action masks over ``MultiDiscrete`` actions, and masked uniform sampling.

A mask is an int8 vector of length ``sum(nvec)``: one block per action component, 1 = allowed.
Batched masks have a leading batch axis ``(n, sum(nvec))``.

Also the id fields every observation carries (:data:`ID_FIELDS`).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ID_FIELDS: tuple[str, ...] = ("query_id", "instruction")
"""Observation fields that identify the task instance rather than describe the state: the main
observation's and every sub-agent observation's ``query_id`` (the episode's query), a sub-agent
observation's ``instruction`` (the value ids of the instruction it was given). The text face
reads them to rebuild the instance; numeric policies (the MLP encoder) ignore every key in
``ID_FIELDS`` and every ``"tool_" + key`` (flat mode)."""

QUERY_ID_MAX = int(np.iinfo(np.int64).max)


def query_id_space() -> gym.spaces.Box:
    """The space of a ``query_id`` field: an int64 scalar in ``[0, 2**63 - 1]``."""
    return gym.spaces.Box(low=0, high=QUERY_ID_MAX, shape=(), dtype=np.int64)


def instruction_space(low: object, high: object, size: int) -> gym.spaces.Box:
    """The space of an ``instruction`` field: ``(size,)`` int64 value ids in ``[low, high]``."""
    lo = np.broadcast_to(np.asarray(low, dtype=np.int64), (size,)).copy()
    hi = np.broadcast_to(np.asarray(high, dtype=np.int64), (size,)).copy()
    return gym.spaces.Box(low=lo, high=hi, shape=(size,), dtype=np.int64)


def block_offsets(nvec: np.ndarray) -> np.ndarray:
    """Start index of each component's block in the flat mask; shape ``(n_comp + 1,)``."""
    return np.concatenate([[0], np.cumsum(nvec)]).astype(np.int64)


def validate_actions(actions: object, nvec: np.ndarray, n: int, who: str = "action") -> np.ndarray:
    """``actions`` as int64 ``(n, n_comp)``, or ``ValueError`` saying what was expected."""
    a = np.asarray(actions)
    if a.shape == (len(nvec),) and n == 1:
        a = a[None]
    if a.shape != (n, len(nvec)):
        raise ValueError(
            f"{who} must have shape ({n}, {len(nvec)}) (MultiDiscrete nvec={nvec.tolist()}), "
            f"got shape {a.shape}"
        )
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{who} must hold integers, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    bad = (a < 0) | (a >= nvec[None, :])
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"{who} component {col} = {a[row, col]} is outside [0, {nvec[col] - 1}] "
            f"(MultiDiscrete nvec={nvec.tolist()})"
        )
    return a


def actions_allowed(actions: np.ndarray, mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Whether every component of each action is allowed by its mask; ``(n,)`` bool."""
    idx = actions + offsets[None, :-1]
    return np.take_along_axis(mask, idx, axis=1).all(axis=1).astype(bool)


def sample_masked(
    mask: np.ndarray, nvec: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform choice among the allowed values of each component, driven by uniforms (a few
    passes over the whole mask, no loop over components).

    Args:
        mask: ``(n, sum(nvec))`` int8 factorized mask.
        nvec: ``(n_comp,)`` component sizes.
        u: ``(n, n_comp)`` uniforms in [0, 1) (pre-drawn, so the result is reproducible).

    Returns:
        actions ``(n, n_comp)`` int64 and their log-probabilities ``(n,)`` float64.
    """
    nvec = np.asarray(nvec, dtype=np.int64)
    offsets = block_offsets(nvec)
    n, width = mask.shape
    dt = np.int16 if width < 2**15 else np.int64  # small temporaries stay in cache
    m = mask.astype(bool)
    cs = np.cumsum(m, axis=1, dtype=dt)  # allowed values so far in the row
    ends = cs[:, offsets[1:] - 1]  # (n, n_comp) through each block's end
    before = np.zeros_like(ends)
    before[:, 1:] = ends[:, :-1]
    count = ends - before
    safe = np.maximum(count, 1)
    k = np.minimum((u * safe).astype(dt), safe - 1)
    # the (k + 1)-th allowed value of each block: the one allowed position whose running count
    # is before + k + 1 (an empty block: its first value); one hit per block, in row order
    hit = cs == (before + k + 1)[:, np.repeat(np.arange(len(nvec)), nvec)]
    hit &= m
    empty = count == 0
    if empty.any():
        hit[:, offsets[:-1]] |= empty
    actions = np.flatnonzero(hit).reshape(n, len(nvec)) % width - offsets[:-1]
    return actions, -np.log(safe.astype(np.float64)).sum(axis=1)
