"""TOML configs for training runs: load, override with ``--set key=value``, validate, write.

The file's tables are the sections of :class:`sim.config.TrainConfig` (``[algo]``, ``[loss]``,
``[roles.sub]``, ...); keys under ``[env]`` other than ``id`` and ``preset`` are env keyword
arguments. Every problem is reported at once, one line each, before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

from sim.config import SECTIONS, VARIANTS, RoleConfig, TrainConfig, apply_variant

__all__ = ["ConfigError", "config_table", "dump_toml", "load_config", "parse_overrides", "resolve"]

TOP_KEYS = ("variant", "seed", "steps", "threads", "checkpoint_every")


class ConfigError(ValueError):
    """One or more config problems (``problems`` lists them, one message each)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid config:\n  " + "\n  ".join(problems))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + ".")
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


def resolve(flat: dict[str, Any]) -> TrainConfig:
    """Build a validated :class:`TrainConfig` from flat dotted keys; all problems at once."""
    problems: list[str] = []
    variant = flat.get("variant", "mgrpo")
    if variant not in VARIANTS:
        raise ConfigError([f"variant = {variant!r} is invalid; allowed: {', '.join(VARIANTS)}"])
    try:
        flat = apply_variant(variant, flat)
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
                sections["env"].setdefault("kwargs", {})[parts[1]] = value
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
    return TrainConfig(**top, **built, roles=role_cfgs)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a TOML config (or defaults when ``path`` is None), apply ``--set`` overrides."""
    flat: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r} does not exist"])
        try:
            flat = _flatten(tomllib.loads(p.read_text()))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{p}: not valid TOML ({e})"]) from e
    flat |= parse_overrides(overrides or [])
    return resolve(flat)


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
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in sec.items() if v is not None]
    for role, vals in d["roles"].items():
        lines.append(f"\n[roles.{role}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in vals.items() if v is not None]
    return "\n".join(lines) + "\n"


def config_table(cfg: TrainConfig) -> str:
    """The resolved config as a two-column table (printed at the start of a run)."""
    flat = _flatten(tomllib.loads(dump_toml(cfg)))
    width = max(len(k) for k in flat)
    return "\n".join(f"{k:<{width}}  {v!r}" for k, v in flat.items())
