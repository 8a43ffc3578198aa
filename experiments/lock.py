"""One writer per run directory (DESIGN §6): an OS file lock on ``RUN_DIR/.lock``.

:func:`acquire_run_dir` takes an exclusive, non-blocking ``flock`` on ``RUN_DIR/.lock`` and
writes the holder's pid and command line into it. The lock lives as long as the returned
:class:`RunDirLock` is open: :meth:`RunDirLock.release` (or leaving its ``with`` block, or the
process ending in any way, ``kill -9`` included: the OS drops it) frees the directory. A second
writer, in this process or another, gets :class:`RunDirError` naming the holder's pid at once.

While it holds the lock it also makes the directory safe to write:

* stale ``.checkpoint-*.tmp`` files (a kill during a checkpoint write) are deleted;
* a new run (``resume=False``) refuses a directory that holds another run's files
  (``metrics.jsonl``, ``checkpoint.pt``, or a ``config.toml`` that differs from this run's):
  resume it or pick another directory. An empty directory, or one that holds only this run's
  ``config.toml``, is fine;
* ``config_text`` (the resolved config) is written to ``config.toml`` under the lock.

The lock is advisory: it keeps our own writers (``mgrpo train``, ``ablate``, ``sweep``) apart.
Where ``fcntl`` is missing (Windows), no lock is taken and the other checks still run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from experiments.config import ConfigError

__all__ = ["LOCK", "RunDirError", "RunDirLock", "acquire_run_dir"]

LOCK = ".lock"
"""the lock file of a run directory"""

_OTHER_RUN_FILES = ("metrics.jsonl", "checkpoint.pt")


class RunDirError(ConfigError):
    """A run directory is in use by another writer, or holds another run's files (the CLI exits
    2, as for a bad config)."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])

    def __str__(self) -> str:
        return self.problems[0]


class RunDirLock:
    """An open, locked ``RUN_DIR/.lock``; a context manager that releases it on exit."""

    def __init__(self, run_dir: Path, file) -> None:
        self.run_dir = run_dir
        self._file = file

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Free the directory (idempotent)."""
        f, self._file = self._file, None
        if f is None:
            return
        try:
            f.seek(0)
            f.truncate()  # no stale holder information
            f.flush()
        except (OSError, ValueError):  # a full disk; a file already closed at shutdown
            pass
        f.close()  # closing the descriptor drops the flock

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    if not text:
        return "another process"
    pid, _, cmd = text.partition(" ")
    who = f"pid {pid}"
    if pid == str(os.getpid()):
        who += " (this process: another Trainer on the same directory is still open)"
    return f"{who}: {cmd}" if cmd else who


def _lock(run_dir: Path):
    """The open lock file, locked; RunDirError naming the holder when another one holds it."""
    path = run_dir / LOCK
    f = open(path, "a+")  # noqa: SIM115 - held for the life of the run
    try:
        import fcntl
    except ImportError:  # no flock on this platform: no lock
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise RunDirError(
            f"{run_dir} is in use by another run ({_holder(path)}); wait for it to finish or "
            "stop it, or pick another --out"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()} {' '.join(sys.argv) or sys.executable}\n")
    f.flush()
    return f


def _check_new_run(run_dir: Path, config_text: str | None) -> None:
    """A new run refuses a directory that holds another run's files."""
    found = [n for n in _OTHER_RUN_FILES if (run_dir / n).exists()]
    cfg_path = run_dir / "config.toml"
    if config_text is not None and cfg_path.is_file() and cfg_path.read_text() != config_text:
        found.append("config.toml (a different config)")
    if found:
        raise RunDirError(
            f"{run_dir} already holds another run's files ({', '.join(found)}); resume it with "
            f"`mgrpo train --resume --out {run_dir}` or pick another --out"
        )


def clean_stale_tmp(run_dir: Path) -> list[Path]:
    """Delete ``.checkpoint-*.tmp`` files left by a kill during a checkpoint write (call only
    while holding the lock); the paths removed."""
    removed = []
    for p in run_dir.glob(".checkpoint-*.tmp"):
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    return removed


def acquire_run_dir(
    run_dir: str | Path, *, resume: bool, config_text: str | None = None
) -> RunDirLock:
    """Lock ``run_dir`` (created) for one writer and make it ready for a run.

    Args:
        run_dir: the run directory.
        resume: the run continues what the directory holds; when False, a directory with
            another run's files (``metrics.jsonl``, ``checkpoint.pt``, a different
            ``config.toml``) is refused.
        config_text: the resolved config (``experiments.config.dump_toml``); when given it is
            compared with an existing ``config.toml`` (new runs) and then written to it.

    Returns:
        the held lock; release it with ``release()`` or a ``with`` block.

    Raises:
        RunDirError: another writer holds the directory (its pid is named), or a new run was
            pointed at a directory of another run.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunDirLock(run_dir, _lock(run_dir))
    try:
        clean_stale_tmp(run_dir)
        if not resume:
            _check_new_run(run_dir, config_text)
        if config_text is not None:
            (run_dir / "config.toml").write_text(config_text)
    except BaseException:
        lock.release()
        raise
    return lock
