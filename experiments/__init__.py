"""experiments: everything around a run (run directories, checkpoints, the CLI, ablations,
sweeps, plots, reports) and the Python API.

The Python API (:mod:`experiments.api`) is importable from here::

    from experiments import Trainer, evaluate, from_config, load_run

Its names are loaded on first use (PEP 562), so ``import experiments`` (and ``mgrpo --help``)
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from experiments.api import EvalResult, Run, Trainer, evaluate, from_config, load_run

__all__ = ["EvalResult", "Run", "Trainer", "evaluate", "from_config", "load_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from experiments import api

        return getattr(api, name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
