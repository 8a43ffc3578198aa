"""The paper's two-stage protocol in an ablation grid (issue 10, item 3): ``[ablate.stage1]``.

In the paper every baseline starts from one stage-1 checkpoint (format learning on simple data);
stage 2 trains each variant from it. In a grid whose ``[ablate]`` table has a ``stage1`` table::

    [ablate.stage1]            # keys of the stage-1 runs (beat the file and --set)
    steps = 20
    env.preset = "low"

each env and seed gets one stage-1 run, ``OUT/<env>/stage1/seed<k>`` (variant ``mgrpo``: every
role trained), and, when the grid has ``single_agent``, one flat stage-1 run
``OUT/<env>/stage1_flat/seed<k>`` (variant ``single_agent``: the paper warms its single agent up
on its own). Every stage-2 cell ``OUT/<env>/<name>/seed<k>`` sets ``roles.<r>.init_from`` to the
stage-1 run of its own seed for every role it has (``main_only`` thus freezes the stage-1
sub-agent), and waits for that run (:attr:`experiments.ablate.AblationRun.needs`). Grid names
beyond the variants (:data:`CELLS`): ``main_only_random_init`` is ``main_only`` from random
initial policies (the ablation the paper does not run; its runs' ``config.toml`` say
``variant = "main_only"`` without ``init_from``); ``single_agent_shaped`` is ``single_agent``
(from the flat stage-1 run) with ``reward.flat_shaping = true``, the dense expert term the
co-trained sub-agent gets, so a grid separates "hierarchy" from "denser reward".

Precedence of a stage-1 run's keys, lowest first: the file, the env's ``env_overrides``,
``--set``, ``[ablate.stage1]`` (``--set ablate.stage1.steps=2`` changes the table), then the
grid's variant and seed. ``--set ablate.stage1=false`` turns the protocol off (one grid of
variants from random initial policies). ``stage1 = true`` turns it on with no overrides.

Bad input, before any work (exit 2): ``variant``, ``seed`` or ``roles.<r>.init_from`` in the
table or (``init_from``) in the file or ``--set`` of a stage-1 grid; a stage-2 role that the
stage-1 env lacks, or whose observation or action space or policy settings differ (the message
names ``roles.<r>.init_from``, what differs and the keys that make it differ). A stage-1 run dir
that holds a run of another config (the table changed since) fails its cell and every cell that
needs it.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

from experiments.config import flatten

__all__ = [
    "CELLS",
    "STAGE1",
    "STAGE1_DIRS",
    "STAGE1_FLAT",
    "check_compatible",
    "config_diff",
    "env_roles",
    "is_stage1_dir",
    "stale_stage1",
    "dotted_env_overrides",
    "subtable",
]

STAGE1 = "stage1"
"""the dir name of the hierarchical stage-1 runs"""
STAGE1_FLAT = "stage1_flat"
"""the dir name of the flat stage-1 runs (``single_agent``'s warm-up)"""
STAGE1_DIRS = (STAGE1, STAGE1_FLAT)
CELLS: dict[str, tuple[str, bool, dict[str, Any]]] = {
    "main_only_random_init": ("main_only", False, {}),
    "single_agent_shaped": ("single_agent", True, {"reward.flat_shaping": True}),
}
"""grid names beyond the variants: name -> (variant, starts from stage 1, keys it sets)"""
FORBIDDEN = ("variant", "seed")
"""keys the grid sets in a stage-1 run"""


def is_stage1_dir(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a stage-1 run of a grid (``<env>/stage1[_flat]/seed<k>``)."""
    return Path(run_dir).parent.name in STAGE1_DIRS


def subtable(table: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, list[str]]:
    """``[ablate.<name>]`` as flat keys (with ``--set ablate.<name>.k=v`` merged): ``None`` when
    absent or ``false``; ``({}, [])`` for ``true``. Returns ``(keys, problems)``."""
    value = table.get(name)
    dotted = {k[len(name) + 1 :]: v for k, v in table.items() if k.startswith(name + ".")}
    if value is False:
        return None, []
    if value is None and not dotted:
        return None, []
    if value is None or value is True:
        return dotted, []
    if not isinstance(value, dict):
        return None, [
            f"[ablate] {name} = {value!r} is invalid; allowed: a table [ablate.{name}], "
            "true or false"
        ]
    return flatten(value) | dotted, []


def stage1_problems(keys: dict[str, Any], sources: dict[str, Any]) -> list[str]:
    """Keys the grid owns in a stage-1 grid: in ``[ablate.stage1]`` (``keys``) or, for
    ``roles.<r>.init_from``, in the file or ``--set`` (``sources``)."""
    out = [
        f"[ablate.stage1] {k}: the grid sets it (stage 1 is variant 'mgrpo', or 'single_agent' "
        "for the flat warm-up, with the seed of its stage-2 runs)"
        for k in keys
        if k in FORBIDDEN
    ]
    for k in [*keys, *sources]:
        if k.startswith("roles.") and k.endswith(".init_from"):
            where = "[ablate.stage1]" if k in keys else "the config"
            out.append(
                f"{where} {k}: a stage-1 grid sets init_from itself (every stage-2 role starts "
                "from the stage-1 run of its seed); give --set ablate.stage1=false to set it"
            )
    return out


@functools.cache
def _env(env_id: str, preset: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    import gymnasium as gym

    import envs  # noqa: F401

    vec = gym.make_vec(
        env_id,
        num_envs=1,
        vectorization_mode="vector_entry_point",
        preset=preset,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs},
    )
    return getattr(vec, "unwrapped", vec)


def _env_of(cfg: Any) -> Any | None:
    """A one-episode env of ``cfg`` (None when it cannot be built: ``check_env`` says why)."""
    kw = tuple(
        sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in cfg.env.kwargs.items())
    )
    try:
        return _env(cfg.env.id, cfg.env.preset, kw)
    except Exception:  # noqa: BLE001 - reported by experiments.env_check.check_env
        return None


def env_roles(cfg: Any) -> tuple[str, ...]:
    """``("main", *specialists)`` of ``cfg``'s env (ConfigError when it cannot be built)."""
    from experiments.config import ConfigError
    from experiments.env_check import check_env

    env = _env_of(cfg)
    if env is None:
        check_env(cfg)  # raises, naming the env key
        raise ConfigError([f"env ({cfg.env.id}): cannot be built with these settings"])
    return ("main", *env.subagent_roles)


def _spaces(env: Any) -> dict[str, tuple[Any, Any]]:
    out = {"main": (env.single_observation_space, env.single_action_space)}
    for r in env.subagent_roles:
        out[r] = tuple(env.subagent_spaces[r])
    return out


def _space_text(space: Any) -> str:
    import gymnasium as gym

    if hasattr(space, "nvec"):
        return f"MultiDiscrete{list(map(int, space.nvec))}"
    try:
        return f"{type(space).__name__} of flat size {gym.spaces.flatdim(space)}"
    except Exception:  # noqa: BLE001 - a space without a flat size
        return repr(space)[:80]


def config_diff(a: dict[str, Any], b: dict[str, Any], prefixes: tuple[str, ...] = ()) -> str:
    """``"env.max_turns (6 vs 8), ..."``: keys of two flat configs that differ (only keys
    under ``prefixes`` when given)."""
    keys = sorted(set(a) | set(b))
    parts = [
        f"{k} ({a.get(k, '(unset)')!r} vs {b.get(k, '(unset)')!r})"
        for k in keys
        if a.get(k) != b.get(k) and (not prefixes or k.startswith(prefixes))
    ]
    return ", ".join(parts)


def check_compatible(cfg1: Any, cfg2: Any, stage1_dir: Path, roles: tuple[str, ...]) -> list[str]:
    """Whether the stage-1 run of ``cfg1`` can supply ``roles`` of the stage-2 run ``cfg2``:
    the same roles, spaces and policy settings. One problem per role, naming
    ``roles.<r>.init_from``, what differs and the config keys that differ between the stages."""
    from experiments.config import dump_toml

    e1, e2 = _env_of(cfg1), _env_of(cfg2)
    if e1 is None or e2 is None:
        return []  # check_env reports the env's own problem
    f1, f2 = flatten(tomllib.loads(dump_toml(cfg1))), flatten(tomllib.loads(dump_toml(cfg2)))
    keys = config_diff(f1, f2, ("env.",)) or "none of the env.* keys"
    s1, s2 = _spaces(e1), _spaces(e2)
    out = []
    where = f"the stage-1 run {stage1_dir}"
    for r in roles:
        key = f"roles.{r}.init_from"
        if r not in s1:
            out.append(
                f"{key}: {where} has no role {r!r} (its roles: {', '.join(s1)}); env keys that "
                f"differ between stage 1 and stage 2: {keys}"
            )
            continue
        for i, what in enumerate(("observation", "action")):
            if s1[r][i] != s2[r][i]:
                out.append(
                    f"{key}: {r}'s {what} space differs between {where} "
                    f"({_space_text(s1[r][i])}) and stage 2 ({_space_text(s2[r][i])}); env keys "
                    f"that differ: {keys}"
                )
                break
        else:
            pol = config_diff(f1, f2, ("policy.",))
            if pol:
                out.append(f"{key}: policy settings differ from {where}: {pol}")
    return out


def stale_stage1(run_dir: Path, text: str) -> str | None:
    """Why a stage-1 run dir holds a run of another config than ``text`` (the table changed
    since), or None when it holds none or this one."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file() or path.read_text() == text:
        return None
    try:
        old = flatten(tomllib.loads(path.read_text()))
    except (OSError, ValueError):
        old = {}
    diff = config_diff(old, flatten(tomllib.loads(text))) or "its layout"
    return (
        f"{run_dir} holds a stage-1 run of another config (differs in {diff}); every stage-2 "
        "run would start from it: delete it or give another --out"
    )


def dotted_env_overrides(table: dict[str, Any], env_id: str) -> dict[str, Any]:
    """``--set ablate.env_overrides."<env id>".<key>=v`` keys of one env (quotes optional: an
    env id has no dots), as flat keys."""
    out = {}
    prefix = "env_overrides."
    for k, v in table.items():
        if not k.startswith(prefix):
            continue
        rest = k[len(prefix) :]
        if rest.startswith('"'):
            env, _, key = rest[1:].partition('"')
            key = key.removeprefix(".")
        else:
            env, _, key = rest.partition(".")
        if env == env_id and key:
            out[key] = v
    return out
