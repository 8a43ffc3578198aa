"""Golden metrics: fixed tiny configs whose ``metrics.jsonl`` must stay bit for bit the same.

A restructuring changes no numbers (DEVELOPERS.md). A recording is a file ``metrics*.json`` in
this folder holding the machine's fingerprint and every config's rows; ``test_golden.py`` reruns
every config and compares exactly with the recording whose fingerprint matches this
machine, and skips with what differs when none does (float rounding on another CPU or library
version can change sampled actions, so a tolerance would fail at random).

``python -m tests.golden.golden`` records this machine (into the file of its fingerprint, or a new
``metrics-<cpu>.json``) and removes the recordings of other machines, which it cannot re-record:
what a change that alters numbers on purpose does, in the same commit, saying why.
``python -m tests.golden.golden --add`` keeps them: it adds this machine's recording of numbers
that must equal theirs (run it only where every other recording's machine passes).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "metrics.json"
"""the first machine's recording (other machines: ``metrics-<cpu>.json``)"""
RUBIKS, SPECIES = "mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"
VARIANTS = (
    "mgrpo",
    "main_only",
    "single_agent",
    "no_alignment",
    "async_queue",
    "gated_reward",
    "shared_policy",
)
BASE = {
    "steps": 3,
    "algo.queries_per_step": 8,
    "algo.group_size": 4,
    "algo.align_target": 3,
    "eval.every": 2,
    "eval.episodes": 32,
    "eval.oracle_episodes": 0,
    "eval.final_episodes": 0,  # no final evaluation: the goldens predate it (issue 16)
    "checkpoint_every": 10,
}


def configs() -> dict[str, dict]:
    """name -> flat config keys (each variant on both envs, plus option mixes)."""
    out = {}
    for env_id, short in ((RUBIKS, "rubiks"), (SPECIES, "species")):
        for v in VARIANTS:
            out[f"{short}-{v}"] = BASE | {"env.id": env_id, "variant": v}
    out["rubiks-math-role"] = BASE | {"env.id": RUBIKS, "env.reasoner": "subagent"}
    out["species-mask-seq-kl"] = BASE | {
        "env.id": SPECIES,
        "algo.align_mode": "mask",
        "loss.ratio_level": "sequence",
        "loss.agg": "token-mean",
        "loss.kl_coef": 0.05,
        "seed": 3,
    }
    out["rubiks-invocation-batch-ent"] = BASE | {
        "env.id": RUBIKS,
        "algo.sub_grouping": "per_invocation",
        "algo.align_mode": "balanced",
        "adv.scale": "batch",
        "adv.ddof": 1,
        "loss.entropy_coef": 0.01,
        "loss.agg": "seq-mean-token-sum-norm",
        "seed": 5,
    }
    return out


def fingerprint() -> dict[str, str]:
    """What must match for bit-for-bit equality: CPU model and numeric library versions."""
    import numba
    import numpy
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "isa": _isa(),
        "machine": platform.machine(),
        "python": ".".join(map(str, sys.version_info[:2])),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
    }


_ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
)


def _isa() -> str:
    """The vector instruction sets that pick numpy's and torch's kernels (a virtual machine's
    CPU name, e.g. "Intel(R) Xeon(R) Processor", can hide different generations)."""
    import torch

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    line = next((x for x in text.splitlines() if x.startswith("flags")), "")
    have = set(line.split(":", 1)[-1].split())
    flags = [f for f in _ISA_FLAGS if f in have]
    return f"torch {torch.backends.cpu.get_cpu_capability()}; " + " ".join(flags)


def strip_time(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def run_config(flat: dict, out: Path) -> list[dict]:
    """Train ``flat`` through the CLI into ``out``; the metrics rows without time keys."""
    from experiments.cli import main

    argv = ["train", "--quiet", "--out", str(out)]
    for k, v in flat.items():
        argv += ["--set", f"{k}={json.dumps(v)}"]
    rc = main(argv)
    if rc != 0:
        raise RuntimeError(f"golden config failed with exit code {rc}: {flat}")
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [strip_time(json.loads(line)) for line in lines if line.strip()]


def recordings() -> dict[Path, dict]:
    """Every recording in this folder: path -> ``{"fingerprint": ..., "runs": ...}``."""
    return {p: json.loads(p.read_text()) for p in sorted(HERE.glob("metrics*.json"))}


def matching(recs: dict[Path, dict], here: dict[str, str]) -> Path | None:
    """The recording whose fingerprint agrees with ``here`` on every key it recorded (a
    recording older than a key does not check it); None if no recording does."""
    return next(
        (p for p, r in recs.items() if all(here.get(k) == v for k, v in r["fingerprint"].items())),
        None,
    )


def _slug(cpu: str) -> str:
    """``"Intel(R) Xeon(R) Processor"`` -> ``"intel-xeon-processor"``."""
    words = "".join(c if c.isalnum() else " " for c in cpu.lower().replace("(r)", "")).split()
    return "-".join(words)[:40] or "cpu"


def record(keep_others: bool = False) -> None:
    here = fingerprint()
    recs = recordings()
    path = matching(recs, here)
    if path is None:  # a new machine: a file of its own (never another machine's)
        path, i = (GOLDEN if not recs else HERE / f"metrics-{_slug(here['cpu'])}.json"), 1
        while path.exists():
            i += 1
            path = HERE / f"metrics-{_slug(here['cpu'])}-{i}.json"
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, flat in configs().items():
            res[name] = run_config(flat, Path(tmp) / name)
            print(f"{name}: {len(res[name])} rows", flush=True)
    path.write_text(json.dumps({"fingerprint": here, "runs": res}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}")
    if not keep_others:
        for other in recs:
            if other != path:
                other.unlink()
                print(f"removed {other.name}: recorded on {recs[other]['fingerprint']['cpu']!r}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m tests.golden.golden",
        description="Record this machine's golden metrics (and remove other machines' files).",
    )
    ap.add_argument(
        "--add", action="store_true", help="keep the other machines' recordings (no number changed)"
    )
    record(keep_others=ap.parse_args().add)
