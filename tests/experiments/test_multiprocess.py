"""``mgrpo train`` runs unchanged in two processes, started as ``torchrun`` or ``accelerate
launch`` start them (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``): rank 0 alone writes the run directory, every metrics row covers the whole
step (both ranks' rollouts), and the checkpoint holds each rank's sampling streams. MLP policies
(replicated, gradients all-reduced) keep it fast; the sharded language-model update is
tests/policies/test_fsdp.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.checkpoint import load_checkpoint, read_metrics
from tests.policies.test_fsdp import ROOT, _free_port

B, K = 3, 2  # 3 queries on 2 ranks: 2 + 1


@pytest.mark.slow
def test_mgrpo_train_runs_in_two_processes_and_rank_0_writes_the_run(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    sets = {
        "steps": 2,
        "algo.queries_per_step": B,
        "algo.group_size": K,
        "eval.episodes": 3,
        "eval.oracle_episodes": 0,
        "checkpoint_every": 1,
        "threads": 1,
    }
    cmd = [sys.executable, "-m", "experiments.cli", "train", "quick", "--out", str(out), "--quiet"]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    try:
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]  # one writer: no row twice
    for r in rows:
        assert r["main/rows"] == B * K and r["samples"] == r["step"] * B * K  # the whole step
        assert "eval/success_greedy" in r and r["main/grad_norm"] >= 0.0
    state = load_checkpoint(out)
    assert state["step"] == 2 and len(state["rank_states"]) == 2
    gens = [s["generators"]["main"] for s in state["rank_states"]]
    assert not gens[0].equal(gens[1])  # each rank samples from its own stream
    assert sorted(p.name for p in Path(out).iterdir()) == [
        ".lock",
        "checkpoint.pt",
        "config.toml",
        "metrics.jsonl",
    ]
