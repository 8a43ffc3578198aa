"""Published weights: a role's parameters (a state dict or a LoRA adapter) per step, as
safetensors bytes, inline in the database or, above a size threshold, in a blob directory.

A blob file is written to a temporary name in its final folder and renamed into place (a kill
never leaves a half-written file under a final name); its name carries the first 16 hex digits
of its sha256, so a retried write of the same bytes writes the same file. The row stores the
path relative to the blob directory (machines may mount it at different places), the size in
bytes and the sha256, which a read checks.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, select

from experiments.atomic import atomic_write
from experiments.store.errors import ChecksumError, ConflictError, MissingError, StoreError
from experiments.store.schema import insert_ignore, weights

__all__ = [
    "BlobDir",
    "read_weights",
    "state_dict_from_bytes",
    "state_dict_to_bytes",
    "write_weights",
]


def state_dict_to_bytes(state: Mapping[str, Any]) -> bytes:
    """A torch state dict (name -> tensor) as safetensors bytes (tensors made contiguous). A
    tensor that is another entry's view of the same memory (tied embeddings) is stored once:
    the ``aliases`` metadata maps its name to the stored one."""
    import json

    from safetensors.torch import save

    seen: dict[tuple, str] = {}
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for k, v in state.items():
        key = (v.device, v.data_ptr(), tuple(v.shape), tuple(v.stride()), v.dtype)
        if v.numel() and key in seen:
            aliases[k] = seen[key]
            continue
        seen[key] = k
        tensors[k] = v.detach().contiguous()
    return save(tensors, metadata={"aliases": json.dumps(aliases)} if aliases else None)


def state_dict_from_bytes(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`state_dict_to_bytes`: name -> CPU tensor (aliases restored, in the
    stored order of names)."""
    import json
    import struct

    from safetensors.torch import load

    out = load(data)
    (n,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8 : 8 + n]).get("__metadata__") or {}
    for alias, name in json.loads(meta.get("aliases", "{}")).items():
        out[alias] = out[name]
    return out


class BlobDir:
    """A folder of large blobs, addressed by paths relative to it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, run_id: str, step: int, role: str, sha256: str) -> str:
        """The relative path of a weights blob (names percent-encoded: no ``/`` or ``..``)."""
        return f"run-{quote(run_id, safe='')}/{quote(role, safe='')}/{step:08d}-{sha256[:16]}.st"

    def write(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically (temporary file in the same folder, fsync,
        rename, fsync of the folder)."""
        atomic_write(self.root / rel, data, prefix=".tmp-", suffix="", sync_dir=True)

    def read(self, rel: str, sha256: str, size: int) -> bytes:
        """The bytes of ``rel``; :class:`ChecksumError` when their size or sha256 differ from
        what the store recorded, :class:`MissingError` when the file is gone."""
        path = self.root / rel
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise MissingError(f"blob file {str(path)!r} is missing") from e
        _check(data, sha256, size, f"blob file {str(path)!r}")
        return data

    def remove(self, rel: str) -> None:
        (self.root / rel).unlink(missing_ok=True)


def _check(data: bytes, sha256: str, size: int, what: str) -> None:
    if len(data) != size:
        raise ChecksumError(f"{what} has {len(data)} bytes; the store recorded {size}")
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ChecksumError(f"{what} has sha256 {got}; the store recorded {sha256}")


def write_weights(
    conn: Connection,
    run_id: str,
    step: int,
    role: str,
    data: bytes,
    blob_dir: BlobDir | None,
    threshold: int,
) -> bool:
    """Store ``data`` as ``role``'s weights of ``step`` in the caller's write transaction
    (a file in ``blob_dir`` when ``len(data) > threshold``). True: written; False: the same
    bytes were there; :class:`ConflictError`: other bytes were."""
    data = bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    rel = None
    if blob_dir is not None and len(data) > threshold:
        rel = blob_dir.path_for(run_id, step, role, sha)
        blob_dir.write(rel, data)
    key = {"run_id": run_id, "step": int(step), "role": role}
    row = key | {"size": len(data), "sha256": sha, "path": rel, "created": time.time()}
    row["data"] = None if rel else data
    if insert_ignore(conn, weights, row):
        return True
    c = weights.c
    old = conn.execute(
        select(c.sha256, c.size, c.path).where(
            c.run_id == run_id, c.step == int(step), c.role == role
        )
    ).one()
    if rel is not None and rel != old.path:
        blob_dir.remove(rel)  # ours is not referenced
    if old.sha256 != sha:
        raise ConflictError(
            f"run {run_id!r} step {step} role {role!r}: the store holds other weights "
            f"({old.size} bytes, sha256 {old.sha256[:16]}...) than this write ({len(data)} "
            f"bytes, sha256 {sha[:16]}...); a step's weights are published once"
        )
    return False


def read_weights(
    conn: Connection, run_id: str, step: int, role: str, blob_dir: BlobDir | None
) -> bytes:
    """The weights bytes of ``role`` at ``step``, checksum verified."""
    c = weights.c
    row = conn.execute(
        select(c.sha256, c.size, c.data, c.path).where(
            c.run_id == run_id, c.step == int(step), c.role == role
        )
    ).one_or_none()
    if row is None:
        raise MissingError(f"run {run_id!r} has no weights of role {role!r} at step {step}")
    what = f"weights of run {run_id!r} step {step} role {role!r}"
    if row.path is None:
        data = bytes(row.data)
        _check(data, row.sha256, row.size, what)
        return data
    if blob_dir is None:
        raise StoreError(
            f"{what} live in the blob directory (file {row.path!r}); open the store with "
            "blob_dir= the folder it was written to"
        )
    return blob_dir.read(row.path, row.sha256, row.size)
