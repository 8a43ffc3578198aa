"""The one config layer of every command (``train``, ``ablate``, ``sweep``): read a preset or a TOML
file, apply ``--set key=value`` overrides and the variant, validate, check the env, write.

Tables and commands
    The file's tables are the sections of :class:`sim.config.TrainConfig` (``[algo]``,
    ``[loss]``, ``[roles.sub]``, ...); keys under ``[env]`` other than ``id`` and ``preset`` are
    env keyword arguments. ``[ablate]`` and ``[sweep]`` belong to the command of that name: each
    command reads its own table and ignores the other's (``train`` ignores both), so one preset
    serves every command. ``--set <command>.<key>=v`` overrides a key of the command's own table;
    giving another command's key on the command line is an error.

Precedence and variants
    Sources, lowest first: the file, then (``ablate``) the file's per-env overrides, then the
    command line (``--set``; an ablation grid's variant and seed count as command line). A higher
    source's key replaces a lower one's. A variant (:data:`sim.config.VARIANTS`) owns some keys
    (``async_queue`` owns ``algo.sub_grouping`` and ``algo.queue_lag``, ...). A key that
    contradicts the chosen variant is replaced by the variant's value when it comes from a source
    below the variant's (``mgrpo train paper --set variant=async_queue``: the file's
    ``sub_grouping = "per_query"`` becomes ``"queue_window"``), and is an error when the variant's
    own source or a higher one states it: the user stated both (a file with
    ``variant = "no_alignment"`` and ``align_mode = "mask"``; ``--set variant=no_alignment --set
    algo.align_mode=mask``; ``--set algo.align_mode=mask`` on a file whose variant is
    ``no_alignment``).

Every problem is reported at once, one line each, before any work starts (:class:`ConfigError`,
exit code 2). :mod:`experiments.env_check` builds a one-episode env to check ``env.*`` (the env's
own messages, rewritten to name ``env.<key>``), the role names of ``roles.<name>``, that
something is trained, ``roles.<name>.init_from`` directories, and estimates the memory of one step
against the machine's, and probes output directories before any work. Keys that the
run would ignore are errors when stated with the variant (:func:`unused_keys`: the ``lr`` of a
frozen role, per-role ``lr`` with ``policy.shared``); a key of a lower source (a preset file
under ``--set variant=...``) that the variant ignores is accepted.

This module and :mod:`sim.config` import no torch (``mgrpo --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.config import SECTIONS, VARIANTS, RoleConfig, TrainConfig, apply_variant
from sim.config_policy import NESTED as POLICY_NESTED

__all__ = [
    "COMMAND_TABLES",
    "CONFIG_DIR",
    "ConfigError",
    "ConfigSources",
    "config_table",
    "dump_toml",
    "find_config",
    "flatten",
    "load_config",
    "parse_overrides",
    "read_config",
    "resolve",
    "resolve_layers",
    "unused_keys",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
"""the presets: ``mgrpo train quick`` reads ``CONFIG_DIR / "quick.toml"``"""
COMMAND_TABLES = ("ablate", "sweep")
"""top-level tables that belong to one command each (the others ignore them)"""
TOP_KEYS = ("variant", "seed", "steps", "threads", "checkpoint_every")
ENV_INT_MAX = 1000
"""the largest integer ``env.<kwarg>`` (turn, call and step caps past it cannot finish)"""


class ConfigError(ValueError):
    """One or more config problems (``problems`` lists them, one message each)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid config:\n  " + "\n  ".join(problems))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: ``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= flatten(v, key + ".")
        else:
            out[key] = v
    return out


def _parse_value(text: str) -> Any:
    """A ``--set`` value as TOML (numbers, booleans, lists, quoted strings), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["algo.group_size=4", ...]`` -> ``{"algo.group_size": 4}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError([f"--set {item!r}: expected key=value, e.g. algo.group_size=4"])
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v.strip())
    return out


def _section_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def resolve(
    flat: Mapping[str, Any],
    *,
    below_variant: frozenset[str] = frozenset(),
    check_unused: bool = False,
) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from flat dotted keys; all problems at once.

    ``below_variant``: keys that came from a lower-precedence source than ``variant``; where they
    contradict the variant, its values replace them (see the module docstring). Without it every
    key counts as stated with the variant, and a contradiction is an error.
    ``check_unused``: also refuse keys stated with the variant that the run would ignore
    (:func:`unused_keys`; keys in ``below_variant`` are exempt).
    """
    problems: list[str] = []
    variant = flat.get("variant", "mgrpo")
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ConfigError([f"variant = {variant!r} is invalid; allowed: {', '.join(VARIANTS)}"])
    try:
        flat = apply_variant(variant, dict(flat), overridable=below_variant)
    except ValueError as e:
        problems.append(str(e))
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    roles: dict[str, dict[str, Any]] = {}
    role_fields = _section_fields(RoleConfig)
    for key, value in flat.items():
        parts = key.split(".")
        if len(parts) == 1 and key in TOP_KEYS:
            top[key] = value
        elif parts[0] == "env" and len(parts) == 2:
            if parts[1] in ("id", "preset"):
                sections["env"][parts[1]] = value
            else:
                problems += _env_value_problems(key, value)
                sections["env"].setdefault("kwargs", {})[parts[1]] = value
        elif parts[0] == "policy" and len(parts) == 3 and parts[1] in POLICY_NESTED:
            if parts[2] not in POLICY_NESTED[parts[1]]:
                allowed = ", ".join(f"policy.{parts[1]}.{f}" for f in POLICY_NESTED[parts[1]])
                problems.append(f"unknown key {key!r}; allowed: {allowed}")
            else:
                sections["policy"][f"{parts[1]}_{parts[2]}"] = value
        elif parts[0] in SECTIONS and len(parts) == 2:
            cls = SECTIONS[parts[0]]
            if parts[1] not in _section_fields(cls):
                allowed = ", ".join(f"{parts[0]}.{f}" for f in _section_fields(cls))
                problems.append(f"unknown key {key!r}; allowed: {allowed}")
            else:
                sections[parts[0]][parts[1]] = value
        elif parts[0] == "roles" and len(parts) == 3:
            if parts[2] not in role_fields:
                allowed = ", ".join(f"roles.<name>.{f}" for f in role_fields)
                problems.append(f"unknown key {key!r}; allowed: {allowed}")
            else:
                roles.setdefault(parts[1], {})[parts[2]] = value
        else:
            problems.append(
                f"unknown key {key!r}; allowed: {', '.join(TOP_KEYS)}, "
                f"{', '.join(s + '.<key>' for s in SECTIONS)}, roles.<name>.<key>"
            )
    # one message per problem: check every key on its own against the defaults
    built: dict[str, Any] = {}
    for name, vals in sections.items():
        cls = SECTIONS[name]
        for k, v in vals.items():
            try:
                cls(**{k: v})
            except (ValueError, TypeError) as e:
                problems.append(str(e))
        try:
            built[name] = cls(**vals)
        except (ValueError, TypeError) as e:
            if not any(str(e) in p for p in problems):
                problems.append(str(e))
    role_cfgs = {}
    for role, vals in roles.items():
        try:
            role_cfgs[role] = RoleConfig(**vals)
        except ValueError as e:
            problems.append(str(e).replace("roles.<name>.", f"roles.{role}."))
    for k, v in top.items():
        try:
            TrainConfig(**{k: v})
        except (ValueError, TypeError) as e:
            problems.append(str(e))
    if problems:
        raise ConfigError(problems)
    cfg = TrainConfig(**top, **built, roles=role_cfgs)
    problems += _trains_nothing(cfg)
    if check_unused:
        stated = {k for k in flat if k not in below_variant}
        problems += [msg for key, msg in unused_keys(cfg).items() if key in stated]
    if problems:
        raise ConfigError(problems)
    return cfg


def _env_value_problems(key: str, value: Any) -> list[str]:
    """Config-layer limits on an ``env.<kwarg>`` value (the env checks the rest)."""
    vals = value if isinstance(value, list) else [value]
    for v in vals:
        if isinstance(v, float) and not math.isfinite(v):
            return [f"{key} = {value!r} is invalid; allowed: finite numbers"]
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > ENV_INT_MAX:
            return [
                f"{key} = {value!r} is invalid; allowed: numbers of magnitude <= {ENV_INT_MAX} "
                "(env turn, call and step limits past it cannot finish)"
            ]
    return []


def frozen_role(cfg: TrainConfig, role: str) -> bool:
    """Whether the run trains ``role`` (what :class:`sim.trainer.Learner` freezes)."""
    return cfg.role(role).frozen or (cfg.variant == "main_only" and role != "main")


def _trains_nothing(cfg: TrainConfig) -> list[str]:
    """A frozen main agent with no specialist to train (the env's other roles: check_env)."""
    if cfg.role("main").frozen and (cfg.variant == "main_only" or cfg.flat):
        why = (
            "variant 'main_only' freezes every specialist"
            if cfg.variant == "main_only"
            else "a flat env (variant 'single_agent' or env.flat) has no specialist"
        )
        return [f"roles.main.frozen = true: the run would train nothing ({why})"]
    return []


def unused_keys(cfg: TrainConfig) -> dict[str, str]:
    """Keys of ``cfg`` that the run ignores: ``{key: message}``.

    The ``lr`` (and ``align_target`` of nothing else) of a frozen role, and any per-role ``lr``
    when ``policy.shared`` (one optimizer, ``optim.lr``). :func:`resolve` refuses them when stated
    with the variant (``check_unused``); a preset file's keys under ``--set variant=...`` and an
    ablation grid's cells (where a ``--set`` may concern only some variants) are exempt.
    """
    out: dict[str, str] = {}
    for role, rc in cfg.roles.items():
        if rc.lr is None:
            continue
        key = f"roles.{role}.lr"
        if frozen_role(cfg, role):
            why = (
                f"roles.{role}.frozen = true"
                if rc.frozen
                else f"variant {cfg.variant!r} freezes every specialist"
            )
            out[key] = f"{key} = {rc.lr!r} is not used: role {role!r} is frozen ({why})"
        elif cfg.policy.shared:
            out[key] = (
                f"{key} = {rc.lr!r} is not used: policy.shared = true trains every role with one "
                "optimizer (optim.lr)"
            )
    return out


def resolve_layers(
    *layers: Mapping[str, Any], check_unused: bool = True
) -> tuple[dict[str, Any], TrainConfig]:
    """Merge flat key layers (lowest precedence first) and resolve them.

    The variant is the highest layer's that states one; keys of lower layers that contradict it
    are replaced by its values, contradictions within or above its layer are errors, and so are
    keys within or above its layer that the run ignores (``check_unused``, :func:`unused_keys`).

    Returns:
        ``(flat, cfg)``: the merged keys with the variant applied (``resolve(flat) == cfg``: what
        a worker process or a stored study needs) and the validated config.
    """
    merged: dict[str, Any] = {}
    origin: dict[str, int] = {}
    for i, layer in enumerate(layers):
        for k, v in layer.items():
            merged[k], origin[k] = v, i
    top = origin.get("variant", -1)
    below = frozenset(k for k, i in origin.items() if i < top)
    cfg = resolve(merged, below_variant=below, check_unused=check_unused)
    return apply_variant(cfg.variant, merged, overridable=below), cfg


def find_config(name: str | Path) -> Path:
    """A file path, or the name of a preset in ``experiments/configs`` (with or without .toml)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.toml"):
        if cand.is_file():
            return cand
    return p


def _read_toml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        hint = (
            f"; to continue that run: mgrpo train --resume --out {path}"
            if (path / "config.toml").is_file()
            else ""
        )
        raise ConfigError([f"config {str(path)!r} is a directory, not a TOML file{hint}"])
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise ConfigError([f"config file {str(path)!r} does not exist; presets: {presets}"])
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(
            [f"{path}: not UTF-8 text (byte {e.start}); TOML files must be UTF-8"]
        ) from e
    except OSError as e:
        raise ConfigError([f"{path}: cannot read ({e.strerror or e})"]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML ({e})"]) from e


@dataclass(frozen=True)
class ConfigSources:
    """What one command reads from a config file and its ``--set`` overrides, before resolving."""

    path: Path | None
    """the file read (None: the built-in defaults)"""
    file: dict[str, Any]
    """the file's training keys, flat (``algo.group_size``); the command tables left out"""
    sets: dict[str, Any]
    """the ``--set`` training keys, flat"""
    table: dict[str, Any]
    """the command's own table (``[ablate]``, ``[sweep]``) with its ``--set <command>.*`` keys;
    empty for ``train``"""

    def resolve(self, *, check_unused: bool = True) -> tuple[dict[str, Any], TrainConfig]:
        """The file overridden by ``--set``: ``(flat, cfg)`` as :func:`resolve_layers` gives."""
        return resolve_layers(self.file, self.sets, check_unused=check_unused)


def read_config(
    config: str | Path | None, overrides: Sequence[str] | None = None, *, command: str = "train"
) -> ConfigSources:
    """Read a preset name or TOML path (None: the defaults) and ``--set`` overrides for ``command``.

    The tables of the other commands (:data:`COMMAND_TABLES`) are ignored; ``--set`` keys of
    another command's table are errors. Raises :class:`ConfigError`.
    """
    path = find_config(config) if config is not None else None
    raw = _read_toml(path) if path is not None else {}
    tables = {name: raw.pop(name, {}) for name in COMMAND_TABLES}
    problems = [
        f"{name} must be a table: [{name}]"
        for name, t in tables.items()
        if name == command and not isinstance(t, dict)
    ]
    sets: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in parse_overrides(list(overrides or [])).items():
        head, _, rest = key.partition(".")
        if head not in COMMAND_TABLES:
            sets[key] = value
        elif head != command:
            problems.append(
                f"--set {key}: [{head}] is read by `mgrpo {head}`, not by `mgrpo {command}`"
            )
        elif not rest:
            problems.append(f"--set {key}: give a key of [{head}], e.g. {head}.seeds=2")
        else:
            own[rest] = value
    if problems:
        raise ConfigError(problems)
    table = dict(tables.get(command, {})) | own
    return ConfigSources(path, flatten(raw), sets, table)


def load_config(
    config: str | Path | None, overrides: Sequence[str] | None = None, *, check_unused: bool = True
) -> TrainConfig:
    """The training config of ``mgrpo train CONFIG --set ...`` (other commands' tables ignored).

    ``check_unused=False`` accepts keys the run ignores (:func:`unused_keys`): a run directory's
    ``config.toml``, which may come from an ablation grid's cell.
    """
    return read_config(config, overrides).resolve(check_unused=check_unused)[1]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"cannot write non-finite {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} to TOML")


def dump_toml(cfg: TrainConfig) -> str:
    """The fully resolved config as TOML (None values are left out)."""
    d = dataclasses.asdict(cfg)
    lines = [f"{k} = {_toml_value(d[k])}" for k in TOP_KEYS]
    for name in SECTIONS:
        sec = dict(d[name])
        if name == "env":
            sec |= sec.pop("kwargs")
        nested = {}
        if name == "policy":
            for table, keys in POLICY_NESTED.items():
                nested[table] = {k: sec.pop(f"{table}_{k}") for k in keys}
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in sec.items() if v is not None]
        for table, vals in nested.items():
            lines.append(f"\n[{name}.{table}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in vals.items() if v is not None]
    for role, vals in d["roles"].items():
        lines.append(f"\n[roles.{role}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in vals.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_table(cfg: TrainConfig) -> str:
    """The resolved config as a two-column table (printed at the start of a run)."""
    flat = flatten(tomllib.loads(dump_toml(cfg)))
    width = max(len(k) for k in flat)
    return "\n".join(f"{k:<{width}}  {v!r}" for k, v in flat.items())
