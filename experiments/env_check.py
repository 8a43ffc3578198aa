"""Checks of a resolved config against the machine, before any work: the env it names
(built with one episode: ``env.*`` keys, role names, types), the memory a run needs, and
output directories that must be writable. Every problem is a :class:`ConfigError` line."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, frozen_role
from sim.config import TrainConfig

__all__ = ["check_env", "check_output_dir", "estimate_memory"]


def check_env(cfg: TrainConfig) -> None:
    """Check what needs the env of ``cfg``; raises :class:`ConfigError`, one problem a line.

    Builds a one-episode env to check ``env.*`` (an id that is not an ``mgrpo/`` env, the env's
    own messages rewritten to name ``env.<key>``, a value whose type differs from the env's
    default), then: role names (``main`` or one of the env's sub-agent roles with these env
    settings: Rubik's ``sub``, plus ``math`` with ``env.reasoner = "subagent"``; a flat env, the
    ``single_agent`` variant, has ``main`` only), that some role is trained,
    ``roles.<name>.init_from`` directories holding a checkpoint, and the memory of one step
    (:func:`estimate_memory`) against the machine's.
    """
    import gymnasium as gym

    import envs  # noqa: F401

    ids = sorted(k for k in gym.envs.registry if k.startswith("mgrpo/"))
    if cfg.env.id not in ids:
        what = "is not an mgrpo env" if cfg.env.id in gym.envs.registry else "is not registered"
        raise ConfigError([f"env.id = {cfg.env.id!r} {what}; allowed: {', '.join(ids)}"])
    try:
        vec = gym.make_vec(
            cfg.env.id,
            num_envs=1,
            vectorization_mode="vector_entry_point",
            preset=cfg.env.preset,
            **cfg.env.kwargs,
        )
        env = getattr(vec, "unwrapped", vec)
    except Exception as e:  # noqa: BLE001 - any env construction error is a config error
        raise ConfigError([_env_message(cfg, e)]) from e
    problems = _env_types(cfg, env)
    roles = ("main", *env.subagent_roles)
    problems += [
        f"roles.{name}: unknown role {name!r}; roles of {cfg.env.id} with these env "
        f"settings: {', '.join(roles)}"
        for name in cfg.roles
        if name not in roles
    ]
    if not problems and all(frozen_role(cfg, r) for r in roles):
        problems.append(
            f"every role is frozen ({', '.join(f'roles.{r}.frozen' for r in roles)}): the run "
            "would train nothing"
        )
    for role, rc in cfg.roles.items():
        if rc.init_from is not None and not (Path(rc.init_from) / "checkpoint.pt").is_file():
            problems.append(
                f"roles.{role}.init_from = {rc.init_from!r}: no checkpoint.pt in that directory "
                "(give a run directory of a finished or checkpointed run)"
            )
    if problems:
        raise ConfigError(problems)
    need = estimate_memory(cfg, env)
    have = _machine_memory()
    if have is not None and need > 0.8 * have:
        B, K = cfg.algo.queries_per_step, cfg.algo.group_size
        raise ConfigError(
            [
                f"one step needs about {need / 2**30:.1f} GiB, more than this machine's "
                f"{have / 2**30:.1f} GiB allows (algo.queries_per_step x algo.group_size = "
                f"{B} x {K} episodes of up to env.max_turns = {_max_turns(env)} turns, "
                f"eval.episodes = {cfg.eval.episodes}, policy.hidden = {cfg.policy.hidden}); "
                "lower these keys"
            ]
        )


def _env_message(cfg: TrainConfig, e: Exception) -> str:
    """An env constructor's error as one line naming ``env.<key>``."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    m = re.match(r"^(\w+)=(.*)$", msg)
    if m and (m.group(1) in cfg.env.kwargs or m.group(1) == "preset"):
        return f"env.{m.group(1)} = {m.group(2)}"
    named = [k for k in cfg.env.kwargs if repr(k) in msg or f"'{k}'" in msg]
    if named:
        return "; ".join(f"env.{k}" for k in named) + f": {msg} (env {cfg.env.id})"
    return f"env ({cfg.env.id}): {msg}"


def _env_types(cfg: TrainConfig, env: Any) -> list[str]:
    """``env.<kwarg>`` values whose type differs from the env's default for that argument."""
    conf = getattr(env, "cfg", None)
    if conf is None or not dataclasses.is_dataclass(conf):
        return []
    try:
        default = type(conf)()
    except Exception:  # noqa: BLE001 - an env config without defaults: nothing to compare
        return []
    out = []
    for k, v in cfg.env.kwargs.items():
        if not hasattr(default, k):
            continue
        d = getattr(default, k)
        if isinstance(d, bool):
            ok, what = isinstance(v, bool), "true or false"
        elif isinstance(d, int):
            ok, what = isinstance(v, int) and not isinstance(v, bool), "an integer"
        elif isinstance(d, float):
            ok, what = isinstance(v, int | float) and not isinstance(v, bool), "a number"
        elif isinstance(d, str):
            ok, what = isinstance(v, str), "a string"
        elif isinstance(d, tuple):
            ok, what = isinstance(v, list | tuple | int), "a list"
        else:
            continue
        if not ok:
            out.append(f"env.{k} = {v!r} is invalid; allowed: {what} (default {d!r})")
    return out


def _max_turns(env: Any) -> int:
    return int(getattr(env, "max_turns", None) or getattr(env.cfg, "max_turns", 1))


def estimate_memory(cfg: TrainConfig, env: Any) -> int:
    """A rough upper estimate (bytes) of the memory of one training step with evaluation.

    Observations of every turn of the B x K training episodes (and their sub-agent episodes: up to
    ``max_calls`` calls of ``sub_max_steps`` steps) and of the evaluation episodes, kept as float32
    about four times over (raw, encoded, padded training tensors, their gradients), plus the
    policies' parameters with Adam states and activations.
    """
    import gymnasium as gym

    conf = getattr(env, "cfg", None)
    T = _max_turns(env)
    calls = int(getattr(conf, "max_calls", 8) or 0)
    sub_steps = int(getattr(conf, "sub_max_steps", getattr(conf, "max_sub_steps", 4)) or 0)
    d_main = gym.spaces.flatdim(env.single_observation_space)
    d_sub = max((gym.spaces.flatdim(s[0]) for s in env.subagent_spaces.values()), default=0)
    per_episode = T * d_main + (calls * sub_steps * d_sub if env.subagent_roles else 0)
    n_train = cfg.algo.queries_per_step * cfg.algo.group_size
    floats = n_train * per_episode + cfg.eval.episodes * T * d_main
    obs_bytes = 16 * floats
    h, n_roles = cfg.policy.hidden, 1 + len(env.subagent_roles)
    params = n_roles * h * (max(d_main, d_sub) + 2 * h + 64)
    rows = n_train * (T + calls * sub_steps) + cfg.eval.episodes * T
    return int(obs_bytes + 16 * params + 8 * 4 * rows * h)


def _machine_memory() -> int | None:
    """Physical memory in bytes (``os.sysconf``), or None where it is unknown."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Refuse an output directory that cannot be written, before any work; returns the path.

    Refused: the filesystem root, an existing file, a name or path too long for the filesystem,
    a directory (or its nearest existing parent) that this process cannot write. No directory
    is created: a probe file is made and removed in the nearest existing one.
    """
    p = Path(path)
    full = Path(os.path.abspath(p))
    try:
        name_max = os.pathconf(full.anchor, "PC_NAME_MAX")
        path_max = os.pathconf(full.anchor, "PC_PATH_MAX")
    except (ValueError, OSError, AttributeError):
        name_max, path_max = 255, 4096
    long = [part for part in full.parts if len(os.fsencode(part)) > name_max]
    if long or len(os.fsencode(str(full))) + 64 > path_max:
        what = f"a name longer than {name_max} bytes" if long else f"over {path_max - 64} bytes"
        raise ConfigError([f"{flag} {str(path)[:60]!r}...: the path is too long ({what})"])
    full = full.resolve()
    if full == Path(full.anchor):
        raise ConfigError([f"{flag} {str(path)!r} is the filesystem root; give a directory"])
    if p.exists() and not p.is_dir():
        raise ConfigError([f"{flag} {str(path)!r} is a file, not a directory"])
    probe = full
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError([f"{flag} {str(path)!r}: {probe} is a file, not a directory"])
    ok = os.access(probe, os.W_OK | os.X_OK)
    if ok:  # root passes os.access everywhere: really create (and remove) a file
        try:
            fd, tmp = tempfile.mkstemp(prefix=".mgrpo-probe-", dir=probe)
            os.close(fd)
            os.unlink(tmp)
        except OSError:
            ok = False
    if not ok:
        where = "" if probe == full else f" (its parent {probe} is not writable)"
        raise ConfigError([f"{flag} {str(path)!r} cannot be written{where}"])
    return p
