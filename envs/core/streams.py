"""Counter-based episode random streams: every draw is a pure function of (key, stream, index).

An episode's randomness is a 64-bit key (:func:`seed_keys` of its seed). A draw is SplitMix64's
output function (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA
2014) at the counter ``index + 1`` of the stream's own key ``mix64(key + stream * GAMMA2)``, so
draws for N episodes are one vectorised pass (no Generator object per episode), any draw can be
made lazily when it is needed, and one episode's draws never depend on the batch it runs in:
a single env reproduces a vector env's episode exactly.

Streams of the engine (:class:`envs.core.vector.HierarchicalVectorEnv`): :data:`QUERY` (the
query id when none is given), :data:`MAIN_U` / :data:`MAIN_Z` (per main turn), :data:`SUB_U` /
:data:`SUB_Z` / :data:`POLICY_U` (per sub-episode step, by the episode's invocation index) and
:data:`NEXT` (the key of the slot's next episode after an unseeded reset).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QUERY, MAIN_U, MAIN_Z, SUB_U, SUB_Z, POLICY_U, NEXT = range(7)
"""stream ids"""

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_GAMMA2 = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_SEED_SALT = np.uint64(0x5851F42D4C957F2D)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, elementwise on uint64 (a new array; wraps mod 2**64)."""
    z = np.array(x, dtype=np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= _M1
        z ^= z >> np.uint64(27)
        z *= _M2
        z ^= z >> np.uint64(31)
    return z


def seed_keys(seeds: Sequence[int] | np.ndarray) -> np.ndarray:
    """``(n,)`` uint64 episode keys of non-negative int seeds below ``2**64``."""
    try:
        s = np.asarray(seeds).reshape(-1)
    except (OverflowError, ValueError):
        s = np.asarray([-1])
    if s.dtype.kind not in "iu" or (s.dtype.kind == "i" and (s < 0).any()):
        bad = [
            v
            for v in np.asarray(seeds, dtype=object).reshape(-1).tolist()
            if not isinstance(v, int | np.integer) or not 0 <= int(v) < 2**64
        ]
        raise ValueError(f"seeds must be ints in [0, 2**64), got {bad[:1] or seeds!r}")
    return mix64(s.astype(np.uint64) ^ _SEED_SALT)


def entropy_keys(n: int) -> np.ndarray:
    """``(n,)`` uint64 keys from fresh OS entropy (unseeded episodes)."""
    return np.random.SeedSequence().generate_state(n, np.uint64)


def bits(keys: np.ndarray, stream: int, index: np.ndarray) -> np.ndarray:
    """uint64 draws at counters ``index`` of ``stream``: ``keys`` broadcast against ``index``."""
    with np.errstate(over="ignore"):
        sk = mix64(np.asarray(keys, dtype=np.uint64) + np.uint64(stream) * _GAMMA2)
        c = np.asarray(index, dtype=np.uint64) + np.uint64(1)
        return mix64(sk + c * _GAMMA)


def uniforms(keys: np.ndarray, stream: int, index: np.ndarray) -> np.ndarray:
    """float64 uniforms in [0, 1) (53 bits), shapes as :func:`bits`."""
    return (bits(keys, stream, index) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def normals(keys: np.ndarray, stream: int, index: np.ndarray) -> np.ndarray:
    """float64 standard normals (inverse CDF of a uniform in (0, 1)), shapes as :func:`bits`."""
    u = ((bits(keys, stream, index) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    from scipy.special import ndtri  # here: `mgrpo envs` and --help stay scipy-free

    return ndtri(u)


def next_keys(keys: np.ndarray) -> np.ndarray:
    """The keys of the slots' next episodes (an unseeded reset continues the slot)."""
    return bits(keys, NEXT, np.zeros(np.shape(keys), dtype=np.uint64))


def query_ids(keys: np.ndarray) -> np.ndarray:
    """``(n,)`` int64 training query ids in ``[0, 2**31)`` drawn from the episodes' keys."""
    return (bits(keys, QUERY, np.zeros(np.shape(keys), dtype=np.uint64)) >> np.uint64(33)).astype(
        np.int64
    )


def grid(base: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Counters of a C-order block ``shape`` starting at ``base`` ``(n,)`` per row:
    ``(n, *shape)`` uint64, for :func:`uniforms` / :func:`normals` with keys ``(n, 1, ...)``."""
    size = int(np.prod(shape))
    off = np.arange(size, dtype=np.uint64).reshape(shape)
    b = np.asarray(base, dtype=np.uint64).reshape((-1,) + (1,) * len(shape))
    return b + off[None]
