"""Input validation shared by the math modules: every error names the argument, the bad value or
the first offending row, and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch


def as_float_tensor(name: str, x: Any, device: torch.device | None = None) -> torch.Tensor:
    """Return ``x`` as a floating tensor (float32 unless it already is floating)."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    if device is not None:
        t = t.to(device)
    return t


def as_index_tensor(name: str, x: Any, device: torch.device | None = None) -> torch.Tensor:
    """Return ``x`` as a 1-D int64 tensor of non-negative integers, or raise ``ValueError``."""
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one id per row), got shape {tuple(t.shape)}")
    if torch.is_floating_point(t):
        if t.numel() and not bool(torch.all(t == torch.round(t))):
            bad = int(torch.nonzero(t != torch.round(t))[0])
            raise ValueError(
                f"{name} must hold integers; row {bad} is {t[bad].item()!r} "
                "(allowed: non-negative integers)"
            )
        t = t.to(torch.int64)
    elif t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got a bool tensor")
    elif t.dtype != torch.int64:
        t = t.to(torch.int64)
    if t.numel() and bool(torch.any(t < 0)):
        bad = int(torch.nonzero(t < 0)[0])
        raise ValueError(
            f"{name} must be non-negative; row {bad} is {int(t[bad])} (allowed: integers >= 0)"
        )
    if device is not None:
        t = t.to(device)
    return t


def check_finite(name: str, t: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the first rows of ``t`` that are NaN or infinite."""
    ok = torch.isfinite(t)
    if not bool(ok.all()):
        bad = torch.nonzero(~ok.reshape(t.shape[0], -1).all(dim=1)).flatten()
        rows = ", ".join(str(int(i)) for i in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise ValueError(f"{name} must be finite; NaN/inf at rows {rows}{more}")


def check_same_length(**tensors: torch.Tensor) -> int:
    """Raise ``ValueError`` unless every tensor has the same leading length; return it."""
    lengths = {k: int(v.shape[0]) for k, v in tensors.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"mismatched lengths: {desc} (all must have one entry per row)")
    return next(iter(lengths.values()))


def check_in_range(name: str, t: torch.Tensor, low: float, high: float) -> None:
    """Raise ``ValueError`` naming the first row of ``t`` outside ``[low, high]``."""
    bad = (t < low) | (t > high)
    if t.numel() and bool(bad.any()):
        i = int(torch.nonzero(bad.reshape(-1))[0])
        value = t.reshape(-1)[i].item()
        raise ValueError(f"{name} must lie in [{low}, {high}]; row {i} is {value}")


def check_choice(name: str, value: str, allowed: Iterable[str] | Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``allowed`` (listed in the message)."""
    names = list(allowed)
    if value not in names:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, names))}")
