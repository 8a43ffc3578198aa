"""Worker processes that die with their parent (``mgrpo ablate`` and ``mgrpo sweep`` workers).

Call :func:`die_with_parent` first thing in a worker process: when the parent dies in any way
(``kill -9`` included), the worker is killed too instead of running on as an orphan. On Linux
this is the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere a
daemon thread polls ``os.getppid()`` once a second and kills the process when it changes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def _prctl_pdeathsig() -> bool:
    """Ask the kernel to SIGKILL this process when its parent thread ends; True if it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, every: float) -> None:
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def die_with_parent(every: float = 1.0) -> None:
    """Make this (worker) process die when its parent process does.

    Args:
        every: polling period in seconds of the fallback (platforms without ``prctl``).
    """
    import multiprocessing

    proc = multiprocessing.parent_process()  # the real parent of a multiprocessing child
    parent = proc.pid if proc is not None and proc.pid else os.getppid()
    if _prctl_pdeathsig():
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
        return
    threading.Thread(
        target=_watch_parent, args=(parent, every), name="die-with-parent", daemon=True
    ).start()
