"""The ``mgrpo`` command line (DESIGN §6). Exit codes: 0 success, 2 bad usage or config, 1 failed
run, 130 interrupted (a checkpoint is written first).

    mgrpo train CONFIG [--set key=value ...] [--out DIR] [--resume] [--tensorboard]
    mgrpo ablate CONFIG --variants a,b --seeds N --workers W --out DIR
    mgrpo sweep CONFIG --trials N --study NAME [--storage URL] --workers W
    mgrpo plot RUN_DIR... [--out DIR]
    mgrpo report DIR [--out FILE]
    mgrpo check-math MODULE:FUNCTION --kind advantages|alignment|loss [--convention NAME]
    mgrpo envs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments import ablate, check_math, plots, report, sweep
from experiments.config import ConfigError, check_env, config_table, dump_toml, load_config


def cmd_train(args: argparse.Namespace) -> int:
    from experiments.run import Trainer, TrainingError

    if args.resume:
        run_dir = Path(args.out or args.config)
        if not (run_dir / "config.toml").is_file():
            print(f"error: {run_dir} has no config.toml to resume from", file=sys.stderr)
            return 2
        cfg = load_config(run_dir / "config.toml", args.set)
    else:
        cfg = load_config(args.config, args.set)  # a preset name or a path; None: the defaults
        stem = Path(args.config).stem if args.config else "default"
        run_dir = Path(args.out) if args.out else Path("runs") / f"{stem}-{cfg.variant}-s{cfg.seed}"
        if (run_dir / "checkpoint.pt").exists():
            print(
                f"error: {run_dir} already holds a run; resume it with "
                f"`mgrpo train --resume --out {run_dir}` or pick another --out",
                file=sys.stderr,
            )
            return 2
    check_env(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dump_toml(cfg))
    if not args.quiet:
        print(config_table(cfg))
        print(f"run dir: {run_dir}")
    trainer = Trainer(
        cfg, run_dir, resume=args.resume, progress=not args.quiet, tensorboard=args.tensorboard
    )
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
    print(f"done: {run_dir}/metrics.jsonl")
    return 0


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
    t.set_defaults(func=cmd_train)
    ablate.add_parser(sub)
    sweep.add_parser(sub)
    plots.add_parser(sub)
    report.add_parser(sub)
    check_math.add_parser(sub)
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
