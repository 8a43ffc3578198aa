"""Atomic checkpoints and the metrics log of a run directory (DESIGN §6).

A run directory holds ``config.toml``, ``metrics.jsonl`` (one JSON object per step),
``checkpoint.pt`` and ``plots/``. Checkpoints are written to a temporary file in the same
directory, flushed, then renamed over the old one, so a run killed at any moment leaves either the
previous or the new checkpoint, never a torn one.

Language-model runs (``policy_kind == "lm"``) keep the policy weights in
``weights-<step>.safetensors`` beside it: written (temp file, fsync, rename) before
``checkpoint.pt``, which names the file and holds the optimizer and RNG states; older weight
files are removed only after the new ``checkpoint.pt`` is in place. Tensors shared between roles
(``policy.shared``) or tied inside a model are stored once.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from experiments.atomic import atomic_write

__all__ = [
    "CHECKPOINT",
    "METRICS",
    "append_metrics",
    "load_checkpoint",
    "read_metrics",
    "save_checkpoint",
    "truncate_metrics",
]

CHECKPOINT = "checkpoint.pt"
WEIGHTS_GLOB = "weights-*.safetensors"
"""a language-model run's weight files (the one ``checkpoint.pt`` names is current)"""
METRICS = "metrics.jsonl"


def _atomic_write(path: Path, write) -> None:
    atomic_write(path, write)  # temporaries ".<stem>-*.tmp": the stale-file cleaner matches them


def _split_weights(policies: dict[str, dict]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Policy state dicts -> unique tensors (``role/key`` names) and, per role, key -> name."""
    tensors: dict[str, torch.Tensor] = {}
    seen: dict[tuple, str] = {}
    index: dict[str, dict[str, str]] = {}
    for role, sd in policies.items():
        index[role] = {}
        for key, t in sd.items():
            t = t.detach()
            ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
            name = seen.get(ident)
            if name is None:
                name = seen[ident] = f"{role}/{key}"
                tensors[name] = t.contiguous()
            index[role][key] = name
    return tensors, index


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``run_dir/checkpoint.pt`` atomically (temp file, fsync, rename); a
    language-model run's policy weights go to a safetensors file first (see module)."""
    run_dir = Path(run_dir)
    old = sorted(run_dir.glob(WEIGHTS_GLOB))
    if state.get("policy_kind") == "lm":
        from safetensors.torch import save

        tensors, index = _split_weights(state["policies"])
        name = f"weights-{int(state['step']):08d}.safetensors"
        blob = save(tensors)
        _atomic_write(run_dir / name, lambda f: f.write(blob))
        state = {**state, "policies": {"safetensors": name, "index": index}}
        old = [p for p in old if p.name != name]
    _atomic_write(run_dir / CHECKPOINT, lambda f: torch.save(state, f))
    for p in old:
        p.unlink(missing_ok=True)
    return run_dir / CHECKPOINT


def load_checkpoint(run_dir: Path) -> dict[str, Any]:
    """The checkpoint of ``run_dir``; ``FileNotFoundError``/``ValueError`` with a clear message."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    pol = state.get("policies") if isinstance(state, dict) else None
    if isinstance(pol, dict) and "safetensors" in pol:
        from safetensors.torch import load_file

        wpath = Path(run_dir) / pol["safetensors"]
        try:
            tensors = load_file(wpath)
        except Exception as e:  # missing or corrupt
            raise ValueError(f"cannot read the weights {wpath} of checkpoint {path}: {e}") from e
        state["policies"] = {
            role: {key: tensors[name] for key, name in keys.items()}
            for role, keys in pol["index"].items()
        }
    return state


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one step's metrics as a JSON line.

    Every value must be finite: a metric undefined at a step is left out of its row, never
    written as NaN or null, so a non-finite value raises ``ValueError`` naming the key (and
    nothing is written).
    """
    bad = {
        k: v
        for k, v in row.items()
        if isinstance(v, float | int) and not isinstance(v, bool) and not math.isfinite(v)
    }
    if bad:
        raise ValueError(
            f"metrics of step {row.get('step')} are not finite: {bad}; a metric undefined at a "
            "step must be left out of the row"
        )
    line = json.dumps(row, allow_nan=False) + "\n"
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(line)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Metrics rows of a ``metrics.jsonl``; a truncated last line (a killed run) is skipped."""
    rows = []
    lines = Path(path).read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # a run killed while writing its last line
            raise ValueError(f"{path}: line {i + 1} is not JSON ({e})") from e
    return rows


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Keep only metrics rows with ``step <= last_step`` (before resuming from a checkpoint)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r.get("step", -1) <= last_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
