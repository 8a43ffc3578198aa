"""Shared helpers of the env tests (plain functions; pytest loads this file for tests/envs)."""

from __future__ import annotations

import itertools

import numpy as np

from envs.core.spaces import sample_masked


def all_actions(nvec):
    """Every action of ``MultiDiscrete(nvec)`` (small spaces only)."""
    return [np.array(a) for a in itertools.product(*(range(int(k)) for k in nvec))]


def kinds(face, nvec):
    """One canonical action per (kind, argument value) of a text face."""
    for tool in face.tools:
        for values in itertools.product(
            *[(*a.value_list(), *([a.absent] if a.optional else [])) for a in tool.args]
        ):
            a = np.zeros(len(nvec), np.int64)
            a[face.type_component] = tool.type_value
            for c, v in tool.extra:
                a[c] = v
            for arg, v in zip(tool.args, values, strict=True):
                a[arg.component] = v
            yield a


def masked_random(mask, nvec, rng):
    """Uniform actions among the allowed values of a batched ``mask`` ``(n, sum(nvec))``."""
    mask = np.asarray(mask)
    batched = mask.ndim == 2
    m = mask if batched else mask[None]
    a = sample_masked(m, np.asarray(nvec), rng.random((len(m), len(nvec))))[0]
    return a if batched else a[0]
