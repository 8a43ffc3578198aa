"""Factorized action masks over ``MultiDiscrete`` actions, and masked uniform sampling.

A mask is an int8 vector of length ``sum(nvec)``: one block per action component, 1 = allowed.
Batched masks have a leading batch axis ``(n, sum(nvec))``.
"""

from __future__ import annotations

import numpy as np


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
    """Uniform choice among the allowed values of each component, driven by uniforms.

    Args:
        mask: ``(n, sum(nvec))`` int8 factorized mask.
        nvec: ``(n_comp,)`` component sizes.
        u: ``(n, n_comp)`` uniforms in [0, 1) (pre-drawn, so the result is reproducible).

    Returns:
        actions ``(n, n_comp)`` int64 and their log-probabilities ``(n,)`` float64.
    """
    offsets = block_offsets(nvec)
    n = mask.shape[0]
    actions = np.zeros((n, len(nvec)), dtype=np.int64)
    logp = np.zeros(n, dtype=np.float64)
    for c in range(len(nvec)):
        block = mask[:, offsets[c] : offsets[c + 1]].astype(np.int64)
        count = block.sum(axis=1)
        safe = np.maximum(count, 1)
        k = np.minimum((u[:, c] * safe).astype(np.int64), safe - 1)
        csum = np.cumsum(block, axis=1)
        actions[:, c] = np.argmax(csum > k[:, None], axis=1)
        logp -= np.log(safe)
    return actions, logp
