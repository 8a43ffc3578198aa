"""Figures of an Optuna study (:func:`plot_study`: history, Pareto front, importances, D x w
contour), drawn inside ``plt.style.context("default")``, and :func:`load_study` for ``mgrpo
plot --storage``."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from experiments.plots.draw import DPI  # noqa: E402

__all__ = ["load_study", "plot_study"]


def _find_param(names: Iterable[str], suffix: str) -> str | None:
    names = list(names)
    if suffix in names:
        return suffix
    hits = [n for n in names if n.split(".")[-1] == suffix or n.endswith(suffix)]
    return hits[0] if hits else None


def plot_study(study: Any, out_dir: str | Path) -> list[Path]:
    """Optuna figures of ``study`` into ``out_dir``: ``study_history.png`` (optimization history;
    for a multi-objective study the first objective, plus ``study_pareto.png``),
    ``study_importances.png`` (skipped with a note on stderr with < 2 completed trials or when
    the importance evaluator fails) and ``study_contour.png`` (D x w: the params named
    ``align_target`` and ``local_share``, dotted names allowed). Returns the PNG paths."""
    import optuna
    import optuna.visualization.matplotlib as ov

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    multi = len(study.directions) > 1
    kw: dict[str, Any] = {"target": (lambda t: t.values[0]), "target_name": "objective 0"}
    kw = kw if multi else {}
    written: list[Path] = []

    def save(name: str, draw: Any, title: str | None = None, labels: tuple | None = None) -> None:
        with plt.style.context("default"):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # optuna's evaluator notes
                    res = draw()
            except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as e:
                print(f"note: {name} skipped ({e})", file=sys.stderr)
                plt.close("all")
                return
            ax = res.flat[0] if isinstance(res, np.ndarray) else res
            fig = ax.figure
            if title:  # replace Optuna's own (left-aligned) title rather than overlap it
                ax.set_title("", loc="left")
                ax.set_title("", loc="right")
                ax.set_title(f"{title}\n(study {study.study_name})", fontsize=10)
            if labels:
                ax.set_xlabel(labels[0])
                ax.set_ylabel(labels[1])
            wi, hi = fig.get_size_inches()
            fig.set_size_inches(max(wi, 7.0), max(hi, 4.5))
            fig.tight_layout()
            path = out_dir / f"study_{name}.png"
            fig.savefig(path, dpi=DPI)
            plt.close("all")
            written.append(path)

    if not done:
        print("note: the study has no completed trial; nothing to plot", file=sys.stderr)
        return written
    save(
        "history",
        lambda: ov.plot_optimization_history(study, **kw),
        "optimization history",
        ("trial number", "objective (the study's metric at the budget)"),
    )
    if multi:
        save("pareto", lambda: ov.plot_pareto_front(study))
    if len(done) < 2:
        print("note: parameter importances skipped (< 2 completed trials)", file=sys.stderr)
    else:
        save(
            "importances",
            lambda: ov.plot_param_importances(study, **kw),
            "parameter importances (fANOVA)",
        )
    names = {p for t in done for p in t.params}
    d, w = _find_param(names, "align_target"), _find_param(names, "local_share")
    distinct = min(
        (len({t.params.get(p) for t in done if p in t.params}) for p in (d, w) if p), default=0
    )
    if d and w and distinct < 2:  # Optuna draws an empty contour then: say so instead
        print(
            "note: D x w contour skipped (needs completed trials with >= 2 distinct values of "
            "each parameter)",
            file=sys.stderr,
        )
    elif d and w:
        save(
            "contour",
            lambda: ov.plot_contour(study, params=[d, w], **kw),
            "objective over D x w (dots: trials)",
            (f"alignment target D ({d})", f"local reward share w ({w})"),
        )
    else:
        print("note: D x w contour skipped (the study has no align_target/local_share params)",
              file=sys.stderr)  # fmt: skip
    return written


def load_study(storage: str, name: str | None) -> Any:
    import optuna

    if "://" not in storage and not storage.startswith("journal:"):
        p = Path(storage)
        if not p.is_file():
            raise ValueError(f"{storage}: no such study storage file")
        storage = f"sqlite:///{p.resolve()}"
    if storage.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(storage.removeprefix("journal:")))
    if name is None:
        names = optuna.study.get_all_study_names(storage)
        if len(names) != 1:
            raise ValueError(f"the storage holds studies {names}; pick one with --study")
        name = names[0]
    return optuna.load_study(study_name=name, storage=storage)
