"""Atomic file writes: a temporary file in the destination's folder, flushed and fsynced, then
renamed over the destination (readers see the old file or the new one, never a part), and the
temporary file removed when the write fails."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["atomic_write"]


def atomic_write(
    path: str | Path,
    data: bytes | str | Callable[[IO], None],
    *,
    prefix: str | None = None,
    suffix: str = ".tmp",
    sync_dir: bool = False,
) -> Path:
    """Write ``data`` (bytes, text, or ``fn(file)`` writing to a binary file) to ``path``
    atomically, creating its folder. ``prefix``: the temporary file's name prefix (default
    ``.<stem>-``; cleaners of stale temporaries match it); ``sync_dir``: also fsync the folder,
    so the rename itself survives a power loss. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pre = f".{path.stem}-" if prefix is None else prefix
    fd, tmp = tempfile.mkstemp(prefix=pre, suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if sync_dir:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return path
