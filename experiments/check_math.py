"""``mgrpo check-math MODULE:FUNCTION --kind advantages|alignment|loss``: a user's GRPO math
against ours (the shell face of :mod:`sim.testing`).

Prints the table of cases (and, for advantages, which known convention the function matches);
exit code 0 when every case passes, 1 when any fails, 2 on bad usage (a target that cannot be
imported or called, an unknown convention, options that do not fit the kind).

``MODULE`` is a dotted module name importable from the current directory (which is put on the
path) or a path to a ``.py`` file; ``FUNCTION`` may be dotted (``Class.method``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "load_target", "run"]

KINDS = ("advantages", "alignment", "loss")
_ADV_OPTS = ("convention", "ddof", "eps", "scale", "std_floor")
_LOSS_OPTS = ("eps_low", "eps_high", "agg", "ratio_level")


def load_target(spec: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:FUNCTION`` (``ValueError`` saying what is wrong)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ValueError(f"target must be MODULE:FUNCTION, got {spec!r}")
    try:
        if mod_name.endswith(".py"):
            path = Path(mod_name)
            if not path.is_file():
                raise ValueError(f"no such file: {mod_name}")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            assert loader_spec is not None and loader_spec.loader is not None
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            cwd = str(Path.cwd())
            added = "" not in sys.path and cwd not in sys.path
            if added:
                sys.path.insert(0, cwd)
            try:
                module = importlib.import_module(mod_name)
            finally:
                if added:
                    sys.path.remove(cwd)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - any import failure is bad usage
        raise ValueError(f"cannot import {mod_name!r}: {type(e).__name__}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec} is a {type(obj).__name__}, not a function")
    return obj


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo check-math`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "check-math",
        help="check a user's GRPO advantage, alignment or loss function against ours",
        description="Run the sim.testing checker on MODULE:FUNCTION and print a table of cases. "
        "Exit 0 when all pass, 1 when any fails, 2 on bad usage.",
    )
    p.add_argument("target", metavar="MODULE:FUNCTION", help="e.g. mytrainer.grpo:advantages")
    p.add_argument("--kind", required=True, choices=KINDS, help="what the function computes")
    p.add_argument("--numpy", action="store_true", help="pass numpy arrays instead of tensors")
    p.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    a = p.add_argument_group("advantages")
    a.add_argument(
        "--convention",
        help="declared convention: paper (default), trl, trl_batch, verl, verl_no_std, mean_only",
    )
    a.add_argument("--ddof", type=int, choices=(0, 1), help="override: 0 population, 1 sample")
    a.add_argument("--eps", type=float, help="override: eps added to the std")
    a.add_argument("--scale", choices=("group", "batch", "none"), help="override: scale mode")
    a.add_argument("--std-floor", type=float, help="override: std floor")
    a.add_argument("--no-detect", action="store_true", help="skip convention detection")
    g = p.add_argument_group("alignment")
    g.add_argument("--examples", type=int, default=50, help="call patterns drawn (default 50)")
    lo = p.add_argument_group("loss")
    lo.add_argument("--eps-low", type=float, help="lower clip range (default 0.2)")
    lo.add_argument("--eps-high", type=float, help="upper clip range (default 0.28)")
    lo.add_argument("--agg", help="aggregation mode (default seq-mean-token-mean)")
    lo.add_argument("--ratio-level", help="token (default), sequence or sequence_mean")
    p.set_defaults(func=run)
    return p


def _check_options(args: argparse.Namespace) -> None:
    given = {k for k in _ADV_OPTS + _LOSS_OPTS if getattr(args, k, None) is not None}
    allowed = {"advantages": set(_ADV_OPTS), "loss": set(_LOSS_OPTS), "alignment": set()}
    extra = sorted(given - allowed[args.kind])
    if extra:
        names = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise ValueError(f"{names} do(es) not apply to --kind {args.kind}")


def run(args: argparse.Namespace) -> int:
    """``mgrpo check-math``: 0 all cases pass, 1 any fails, 2 bad usage (one line on stderr)."""
    try:
        _check_options(args)
        fn = load_target(args.target)
        from sim import testing

        inputs = "numpy" if args.numpy else "torch"
        if args.kind == "advantages":
            report = testing.check_group_advantages(
                fn,
                convention=args.convention or "paper",
                ddof=args.ddof,
                eps=args.eps,
                scale=args.scale,
                std_floor=args.std_floor,
                inputs=inputs,
                seed=args.seed,
            )
        elif args.kind == "alignment":
            if args.examples < 1:
                raise ValueError(f"--examples must be >= 1, got {args.examples}")
            report = testing.check_alignment(
                fn, inputs=inputs, max_examples=args.examples, seed=args.seed
            )
        else:
            if args.numpy:
                raise ValueError("--numpy does not apply to --kind loss (losses need tensors)")
            opts = {k: getattr(args, k) for k in _LOSS_OPTS if getattr(args, k) is not None}
            report = testing.check_policy_loss(fn, seed=args.seed, **opts)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    if args.kind == "advantages" and not args.no_detect:
        print(f"convention: {testing.detect_convention(fn, inputs=inputs)}")
    if not report.passed:
        print()
        print(report.diff())
    return 0 if report.passed else 1
