"""The ``mgrpo`` command line (DESIGN §6). Exit codes: 0 success, 2 bad usage or config, 1 failed
run, 130 interrupted (a checkpoint is written first).

    mgrpo train CONFIG [--set key=value ...] [--out DIR] [--resume] [--tensorboard]
                [--role NAME ... --storage URL [--run-id ID] [--wait-timeout S]]
    mgrpo ablate CONFIG --variants a,b --seeds N --workers W --out DIR
                 [--storage URL [--grid NAME] [--no-work]]
    mgrpo ablate --storage URL --join [--grid NAME] [--workers W] [--out DIR]
    mgrpo sweep CONFIG --trials N --study NAME [--storage URL] --workers W
    mgrpo plot RUN_DIR... [--out DIR]        mgrpo plot --storage URL [--grid NAME]
    mgrpo report DIR [--out FILE]            mgrpo report --storage URL [--grid NAME]
    mgrpo check-math MODULE:FUNCTION --kind advantages|alignment|loss [--convention NAME]
    mgrpo eval RUN [--episodes N] [--seed S] [--sampled]
    mgrpo show RUN [--episode N] [--role NAME] [--untrained]
    mgrpo plan CONFIG [--gpus N] [--gpu-mem GB] [--set key=value ...] [--require-fit]
    mgrpo envs
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from experiments import ablate_remote, check_math, evaluate_cmd, grid_report, plan, show
from experiments.config import ConfigError
from experiments.sweep import cli as sweep_cli

# The modules above define their parsers only: each command imports what it needs (torch, optuna,
# matplotlib) when it runs, so `mgrpo --help` and `mgrpo envs` stay fast (tests/experiments/
# test_fast_start.py checks it).

RESUME_SAFE = ("steps", "checkpoint_every", "eval.every", "eval.final_episodes", "threads")
"""keys that ``train --resume --set`` may change (the training trajectory does not depend on
them up to the old ``steps``; ``threads`` may change float rounding)"""


def _say(args: argparse.Namespace, msg: str) -> None:
    """A progress line on stderr (not with ``--quiet``)."""
    if not args.quiet:
        print(msg, file=sys.stderr, flush=True)


def _resume_config(args: argparse.Namespace):
    """The config of ``train --resume``: the run's config.toml with the safe ``--set`` keys."""
    from experiments.config import flatten, load_config
    from experiments.env_check import check_output_dir

    where = args.out or args.config
    if where is None:
        raise ConfigError(
            ["train --resume needs the run directory: --out DIR (or DIR in place of CONFIG)"]
        )
    run_dir = Path(where)
    check_output_dir(run_dir, "--out" if args.out else "run dir")
    if not (run_dir / "config.toml").is_file():
        what = "does not exist" if not run_dir.exists() else "has no config.toml to resume from"
        raise ConfigError([f"--resume: {run_dir} {what}"])
    old = load_config(run_dir / "config.toml", check_unused=False)
    cfg = load_config(run_dir / "config.toml", args.set, check_unused=False)
    before, after = flatten(_as_dict(old)), flatten(_as_dict(cfg))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    unsafe = [k for k in changed if k not in RESUME_SAFE]
    if unsafe:
        raise ConfigError(
            [
                f"--resume --set {k}: {before.get(k)!r} -> {after.get(k)!r} would change the run "
                f"mid-way; resume may change only {', '.join(RESUME_SAFE)} (start a new run "
                "with another --out instead)"
                for k in unsafe
            ]
        )
    for k in changed:
        print(
            f"note: resuming with {k} = {after[k]!r} (was {before[k]!r}; safe to change)",
            file=sys.stderr,
        )
    return run_dir, cfg


def _as_dict(cfg) -> dict:
    import tomllib

    from experiments.config import dump_toml

    return tomllib.loads(dump_toml(cfg))


def _check_checkpoint(run_dir: Path, cfg) -> None:
    """A resume's checkpoint must be ours and fit the config (else ConfigError naming it)."""
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return
    from experiments.checkpoint import load_checkpoint

    if path.stat().st_size == 0:
        raise ConfigError(
            [f"{path} is empty (a run killed while writing it?); remove it to restart"]
        )
    try:
        st = load_checkpoint(run_dir)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError([f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})"]) from e
    need = ("step", "policies", "optims", "generators", "config_variant", "policy_kind")
    if not isinstance(st, dict) or any(k not in st for k in need):
        raise ConfigError([f"{path} is not an mgrpo checkpoint (it lacks step, policies, ...)"])
    problems = []
    if st["config_variant"] != cfg.variant:
        problems.append(
            f"{path} was written with variant = {st['config_variant']!r}; config.toml says "
            f"variant = {cfg.variant!r}"
        )
    if st["policy_kind"] != cfg.policy.kind:
        problems.append(
            f"{path} was written with policy.kind = {st['policy_kind']!r}; config.toml says "
            f"{cfg.policy.kind!r}"
        )
    if problems:
        raise ConfigError(problems)


def _shape_mismatch(run_dir: Path, e: Exception) -> str:
    """A resume's load error as one line naming the checkpoint and the key that likely differs."""
    msg = str(e)
    path = run_dir / "checkpoint.pt"
    if "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg:
        line = next((x.strip() for x in msg.splitlines() if "size mismatch" in x), "")
        return (
            f"{path} does not match config.toml: its policies have other shapes "
            f"(policy.hidden, policy.shared or env.* differ){': ' + line if line else ''}"
        )
    if isinstance(e, KeyError):
        return f"{path} does not match config.toml: no {e} in it (roles or env.* differ)"
    return f"{path}: cannot resume from it: {msg.splitlines()[0] if msg else type(e).__name__}"


def cmd_train(args: argparse.Namespace) -> int:
    from experiments.config import config_table, dump_toml, load_config
    from experiments.env_check import check_env, check_output_dir

    if not args.resume:
        cfg = load_config(args.config, args.set)  # a preset name or a path; None: the defaults
        stem = Path(args.config).stem if args.config else "default"
        run_dir = Path(args.out) if args.out else Path("runs") / f"{stem}-{cfg.variant}-s{cfg.seed}"
        check_output_dir(run_dir)
    else:
        run_dir, cfg = _resume_config(args)
    check_env(cfg)
    if args.resume:
        _check_checkpoint(run_dir, cfg)
    if not args.quiet:
        print(config_table(cfg))
        print(f"run dir: {run_dir}")
    if cfg.policy.kind == "lm" and not args.quiet:  # the memory plan, before any weights load
        from experiments.plan import memory_plan

        try:
            print(memory_plan(cfg, gpus=int(os.environ.get("WORLD_SIZE", "1"))).table())
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    split = _split_options(args, run_dir)
    _say(args, "loading torch and building envs and policies ...")
    from experiments.run import Trainer, TrainingError

    try:  # takes the run directory's lock, then writes config.toml
        trainer = Trainer(
            cfg,
            run_dir,
            resume=args.resume,
            progress=not args.quiet,
            tensorboard=args.tensorboard,
            config_text=dump_toml(cfg),
            split=split,
        )
    except ConfigError:  # RunDirError: the directory is in use or holds another run's files
        raise
    except ValueError as e:  # roles.<name>.init_from, a checkpoint that does not fit, --role
        raise ConfigError([str(e).splitlines()[0]]) from e
    except Exception as e:  # the store: unreachable, another schema or config, a held role
        from experiments.store import StoreError

        if isinstance(e, StoreError):
            raise ConfigError([str(e).splitlines()[0]]) from e
        raise
    except (KeyError, RuntimeError, TypeError) as e:
        if not args.resume:
            raise
        raise ConfigError([_shape_mismatch(run_dir, e)]) from e
    try:
        trainer.train()
    except KeyboardInterrupt:
        print(
            f"\ninterrupted after step {trainer.step}; checkpoint written. Resume with:\n"
            f"  mgrpo train --resume --out {run_dir}",
            file=sys.stderr,
        )
        return 130
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a split run: the other side never came, or the store failed
        from experiments.store import StoreError

        if not isinstance(e, StoreError):
            raise
        print(
            f"error: {e}\nthe last checkpoint of {run_dir} is kept; continue with: "
            f"mgrpo train --resume --out {run_dir}",
            file=sys.stderr,
        )
        return 1
    finally:
        trainer.close()
    print(f"done: {run_dir}/metrics.jsonl")
    return 0


def _split_options(args: argparse.Namespace, run_dir: Path) -> Any:
    """The ``--role``/``--storage`` options (a resume without them reuses the run dir's
    ``split.json``); None: every role in this process."""
    import json

    saved = run_dir / "split.json"
    if args.resume and not args.storage and saved.is_file():
        d = json.loads(saved.read_text())
        args.storage, args.role = d["storage"], d["roles"]
        args.run_id = args.run_id or d.get("run_id")
        args.blob_dir = args.blob_dir or d.get("blob_dir")
    if not args.role and not args.storage:
        return None
    if not args.storage:
        raise ConfigError(["--role needs --storage URL (the store the roles' processes share)"])
    if not args.role:
        raise ConfigError(["--storage needs --role NAME (the roles this process runs)"])
    if not args.wait_timeout > 0:
        raise ConfigError([f"--wait-timeout {args.wait_timeout}: must be > 0 seconds"])
    from experiments.split import SplitOptions

    opts = SplitOptions(
        storage=args.storage,
        roles=tuple(dict.fromkeys(args.role)),
        run_id=args.run_id,
        wait_timeout=float(args.wait_timeout),
        blob_dir=args.blob_dir,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    d = {"storage": opts.storage, "roles": list(opts.roles), "run_id": opts.run_id}
    saved.write_text(json.dumps(d | {"blob_dir": opts.blob_dir}, indent=1) + "\n")
    return opts


def cmd_envs(args: argparse.Namespace) -> int:
    import gymnasium as gym

    import envs  # noqa: F401

    for k in sorted(gym.envs.registry):
        if k.startswith("mgrpo/"):
            print(k)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mgrpo", description="Simulate, train and ablate M-GRPO.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one run from a TOML config")
    t.add_argument(
        "config", nargs="?", help="TOML config file or preset name (default: built-in defaults)"
    )
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set algo.group_size=4 (repeatable)",
    )
    t.add_argument("--out", help="run directory (default runs/<config>-<variant>-s<seed>)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (or CONFIG as a run dir) from its checkpoint",
    )
    t.add_argument("--quiet", action="store_true", help="no config table or progress bar")
    t.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write TensorBoard event files to RUN_DIR/tb",
    )
    t.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="NAME",
        help="split trainers: run only this role (main or a specialist; repeatable) and "
        "exchange data with the other roles' processes through --storage",
    )
    t.add_argument(
        "--storage",
        metavar="URL",
        help="store of a split run: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
    )
    t.add_argument(
        "--run-id",
        help="the run's name in the store (default: a hash of the resolved config)",
    )
    t.add_argument(
        "--wait-timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds a split side waits for the other roles before it stops (default 600)",
    )
    t.add_argument(
        "--blob-dir",
        metavar="DIR",
        help="directory for large published weights (default: in the database)",
    )
    t.set_defaults(func=cmd_train)
    ablate_remote.add_parser(sub)  # mgrpo ablate, with --storage / --join
    sweep_cli.add_parser(sub)
    grid_report.add_parsers(sub)  # mgrpo plot and mgrpo report, with --storage / --grid
    check_math.add_parser(sub)
    evaluate_cmd.add_parser(sub)
    show.add_parser(sub)
    plan.add_parser(sub)
    e = sub.add_parser("envs", help="list the registered environments")
    e.set_defaults(func=cmd_envs)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
