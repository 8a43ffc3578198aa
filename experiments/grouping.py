"""Which runs are seeds of one experiment (issue 15, item 4): the lines of plots and the rows of
tables.

Runs are *seeds of one line* when they share the env id and the variant and their resolved
``config.toml`` is the same once these keys are set aside:

- ``seed`` itself;
- run mechanics that do not change what is trained: ``threads`` (torch threads),
  ``checkpoint_every`` and ``eval.final_episodes`` (see :data:`MECHANICS`);
- seed-derived ``roles.<role>.init_from`` paths: a stage-2 run that starts from the stage-1 run
  *of its own seed*. A path is seed-derived when its run dir (the path, or its parent when it
  names a ``.pt`` file) is called ``s<seed>`` with the run's own seed, or holds a
  ``config.toml`` whose ``seed`` is the run's own. Such a path compares as
  ``<its parent dir>/<seed>``, so ``stage1/s0`` (for seed 0) and ``stage1/s1`` (for seed 1) are
  the same key, while paths into two different stage-1 directories are not.

Everything else counts, ``steps`` included (``config.toml`` holds the planned steps, so a run
still in progress stays a seed of its finished siblings). Runs of one env and variant with
different configs become separate lines, labelled by the variant and the keys that differ among
that variant's configs (short names for the common ones: ``D`` = ``algo.align_target``, ``w`` =
``reward.local_share``, ``B`` = ``algo.queries_per_step``, ``K`` = ``algo.group_size``,
``D_<role>`` = ``roles.<role>.align_target``), e.g. ``mgrpo (D=4, w=0.3)``.
:func:`notices` says which keys differ and which runs went into each line; :class:`MixedConfigs`
is the ``--strict`` refusal.

Example:
    >>> short_key("algo.align_target"), short_key("optim.lr")
    ('D', 'optim.lr')
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Run(Protocol):
    """What grouping reads of a run (``experiments.stats.Run`` has it)."""

    path: Path
    config: dict[str, Any]
    seed: int
    env_id: str
    variant: str


__all__ = [
    "MECHANICS",
    "Line",
    "MixedConfigs",
    "check_strict",
    "config_key",
    "group_runs",
    "matches",
    "mixed",
    "notices",
    "short_key",
]

MECHANICS = ("threads", "checkpoint_every", "eval.final_episodes")
"""keys that do not change what is trained: never split a line"""
SEED_DERIVED = "<seed>"
"""what the last component of a seed-derived ``init_from`` path compares as"""
_SHORT = {
    "algo.align_target": "D",
    "reward.local_share": "w",
    "algo.queries_per_step": "B",
    "algo.group_size": "K",
}
_UNSET = "(unset)"


@dataclass(frozen=True)
class Line:
    """One line of a figure, one row of a table: the runs of one configuration, over seeds."""

    env: str
    """env id"""
    variant: str
    """the variant"""
    label: str
    """the variant, plus ``(key=value, ...)`` when the variant has several configurations"""
    differs: tuple[tuple[str, Any], ...] = ()
    """``(dotted key, value)`` of the keys that differ among the variant's configurations
    (empty when it has one)"""

    @property
    def config(self) -> str:
        """The differing part of the label (``"D=4, w=0.3"``, ``"init=stage1"``; empty when
        none). ``roles.<r>.init_from`` reads ``init=`` the directory the runs start from
        (``random`` when unset), once when every role starts from the same place."""
        parts = []
        inits = {v for k, v in self.differs if k.startswith("roles.") and k.endswith(".init_from")}
        if len(inits) == 1:
            parts.append(f"init={_init_label(next(iter(inits)))}")
        for k, v in self.differs:
            if len(inits) == 1 and k.startswith("roles.") and k.endswith(".init_from"):
                continue
            value = _init_label(v) if k.endswith(".init_from") else _fmt(v)
            parts.append(f"{short_key(k)}={value}")
        return ", ".join(parts)


class MixedConfigs(ValueError):
    """``--strict``: runs of one env and variant with different configs. ``lines`` holds one
    line per conflict; ``str()`` joins them with ``"\\nerror: "`` so that a command printing
    ``f"error: {e}"`` prints one ``error:`` line per conflict."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\nerror: ".join(lines))


def short_key(key: str) -> str:
    """The label name of a dotted config key (see the module docstring)."""
    if key in _SHORT:
        return _SHORT[key]
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "roles" and parts[2] == "align_target":
        return f"D_{parts[1]}"
    return key


def _init_label(v: Any) -> str:
    """``random`` for no ``init_from``; the directory of the seeds' runs for a seed-derived one
    (``stage1``: each seed starts from its own run there); else ``parent/name`` of the run."""
    if v in (_UNSET, None, ""):
        return "random"
    path = Path(str(v))
    return path.parent.name if path.name == SEED_DERIVED else f"{path.parent.name}/{path.name}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, tuple):
        return "[" + ", ".join(map(_fmt, v)) + "]"
    return str(v)


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a nested config dict, lists as tuples (hashable)."""
    from experiments.config import flatten

    return {k: tuple(v) if isinstance(v, list) else v for k, v in flatten(d).items()}


def _seed_of(run_dir: Path) -> int | None:
    try:
        return int(tomllib.loads((run_dir / "config.toml").read_text()).get("seed"))
    except (OSError, ValueError, TypeError, tomllib.TOMLDecodeError):
        return None


def _init_from(value: Any, seed: int) -> Any:
    """``value`` with a seed-derived last component replaced by :data:`SEED_DERIVED`."""
    if not isinstance(value, str) or not value:
        return value
    path = Path(value)
    run_dir = path.parent if path.suffix == ".pt" else path
    if run_dir.name == f"s{seed}" or _seed_of(run_dir) == seed:
        return (run_dir.parent / SEED_DERIVED).as_posix()
    return value


def config_key(run: Run, *, drop: Sequence[str] = ("seed", *MECHANICS)) -> dict[str, Any]:
    """The run's flat config (dotted keys, lists as tuples) without ``drop`` and with
    seed-derived ``init_from`` paths normalised: equal for seeds of one line."""
    flat = _flat(run.config)
    out = {}
    for k, v in flat.items():
        if k in drop:
            continue
        if k.startswith("roles.") and k.endswith(".init_from"):
            v = _init_from(v, run.seed)
        if k.startswith("roles.") and v in (None, False):  # a role key at its default
            continue
        out[k] = v
    return out


def _variant_order() -> list[str]:
    try:
        from sim.config import VARIANTS

        return list(VARIANTS)
    except ImportError:  # pragma: no cover
        return ["mgrpo"]


def _sortable(v: Any) -> tuple:
    if isinstance(v, bool) or v is None or isinstance(v, str | tuple):
        return (1, str(v))
    if isinstance(v, int | float) and not math.isnan(v):
        return (0, v)
    return (1, str(v))


def group_runs(runs: Iterable[Run]) -> dict[Line, list[Run]]:
    """``Line -> runs`` (sorted by seed); lines sorted by env, variant order, then the values
    of the differing keys. A variant with one configuration gives one line labelled by the
    variant alone (so an ablation of variants x seeds is labelled as before)."""
    by_cfg: dict[tuple[str, str], dict[tuple, list[Run]]] = {}
    cfgs: dict[tuple, dict[str, Any]] = {}
    for r in runs:
        cfg = config_key(r)
        key = tuple(sorted((k, repr(v)) for k, v in cfg.items()))
        cfgs[key] = cfg
        by_cfg.setdefault((r.env_id, r.variant), {}).setdefault(key, []).append(r)
    order = {v: i for i, v in enumerate(_variant_order())}
    out: dict[Line, list[Run]] = {}
    for env, variant in sorted(by_cfg, key=lambda k: (k[0], order.get(k[1], len(order)), k[1])):
        groups = by_cfg[(env, variant)]
        configs = [cfgs[k] for k in groups]
        keys = sorted({k for c in configs for k in c})
        differ = [k for k in keys if len({repr(c.get(k, _UNSET)) for c in configs}) > 1]
        lines = []
        for key, rs in groups.items():
            differs = tuple((k, cfgs[key].get(k, _UNSET)) for k in differ)
            lines.append((differs, sorted(rs, key=lambda r: (r.seed, str(r.path)))))
        lines.sort(key=lambda x: tuple(_sortable(v) for _, v in x[0]))
        for differs, rs in lines:
            line = Line(env, variant, variant, differs)
            if differs:
                line = Line(env, variant, f"{variant} ({line.config})", differs)
            out[line] = rs
    return out


def matches(line: Line, run: Run) -> bool:
    """``run``'s config has ``line``'s values of the keys that set ``line`` apart."""
    cfg = config_key(run)
    return all(repr(cfg.get(k, _UNSET)) == repr(v) for k, v in line.differs)


def mixed(groups: dict[Line, list[Run]]) -> dict[tuple[str, str], list[Line]]:
    """``(env, variant) -> lines`` for the variants drawn as more than one line."""
    by: dict[tuple[str, str], list[Line]] = {}
    for line in groups:
        by.setdefault((line.env, line.variant), []).append(line)
    return {k: v for k, v in by.items() if len(v) > 1}


def _names(runs: Sequence[Run], root: str) -> str:
    return ", ".join(os.path.relpath(r.path, root) for r in runs)


def _root(groups: dict[Line, list[Run]]) -> str:
    parents = [str(r.path.resolve().parent) for rs in groups.values() for r in rs]
    return os.path.commonpath(parents) if parents else "."


def _relroot(groups: dict[Line, list[Run]]) -> str:
    """The runs' common directory: relative to the working directory when below it."""
    root = _root(groups)
    rel = os.path.relpath(root) if os.path.isabs(root) else root
    return root if rel.startswith("..") else rel


def notices(groups: dict[Line, list[Run]]) -> list[str]:
    """Lines of text for stderr and the report: for each env and variant drawn as several
    lines, the keys that differ and the runs (relative to their common directory) in each
    line; and any line with two runs of the same seed."""
    if not groups:
        return []
    root = _root(groups)
    out: list[str] = []
    for (env, variant), lines in mixed(groups).items():
        keys = ", ".join(k for k, _ in lines[0].differs)
        out.append(
            f"notice: {env}, variant {variant}: runs differ beyond the seed in {keys}; "
            f"drawn as {len(lines)} separate lines (runs under {_relroot(groups)}):"
        )
        out += [f"  {line.label}: {_names(groups[line], root)}" for line in lines]
    for line, rs in groups.items():
        seeds = [r.seed for r in rs]
        dup = sorted({s for s in seeds if seeds.count(s) > 1})
        if dup:
            same = [r for r in rs if r.seed in dup]
            out.append(
                f"notice: {line.env}, {line.label}: several runs with the same seed "
                f"{', '.join(map(str, dup))} and config, pooled as seeds: {_names(same, root)}"
            )
    return out


def check_strict(groups: dict[Line, list[Run]]) -> None:
    """Raise :class:`MixedConfigs` (one line per env and variant) when a variant's runs have
    more than one configuration."""
    root = _root(groups) if groups else "."
    problems = []
    for (env, variant), lines in mixed(groups).items():
        keys = ", ".join(k for k, _ in lines[0].differs)
        parts = "; ".join(f"{line.config}: {_names(groups[line], root)}" for line in lines)
        problems.append(
            f"{env}, variant {variant}: runs are not seeds of one experiment, they differ in "
            f"{keys} ({parts}); without --strict they are drawn as separate lines"
        )
    if problems:
        raise MixedConfigs(problems)
