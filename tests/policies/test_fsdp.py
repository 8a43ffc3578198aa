"""Two processes with FSDP2 on CPU (gloo) give the update of one (sim/distributed.py,
policies/lm_fsdp.py).

The tiny Qwen3-MoE with LoRA on attention and experts trains two steps on one fixed recorded
batch (7 rows of varied lengths; the ranks get uneven shares of every minibatch, so the loss
must be normalised by the global row and token counts and the gradients summed, not averaged,
over ranks) in two processes launched as a launcher would (``WORLD_SIZE``, ``RANK``,
``MASTER_ADDR``, ``MASTER_PORT``), and in this process unsharded. The rank-0 checkpoint state
(adapters and Adam moments gathered from the shards) must equal the one-process state.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sim.distributed import SINGLE
from tests.policies import fsdp_worker as w

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, world: int = 2) -> list[subprocess.Popen]:
    env = dict(os.environ, WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    env |= {"MASTER_PORT": str(_free_port()), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "tests.policies.fsdp_worker", str(out)]
    return [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]


@pytest.mark.slow
def test_two_fsdp2_processes_train_lora_on_the_moe_as_one_process_does(tmp_path):
    procs = _launch(tmp_path / "out.pt")  # first: their imports overlap with ours
    try:
        # meanwhile, the same two steps on the same recorded batch in this process, unsharded
        prepared = w.recorded_batch()
        tokens_per_row = prepared.tokens.mask.sum(1)
        assert len(set(tokens_per_row.tolist())) > 3  # varied lengths: uneven token shares
        policy = w.build_policy(sharded=False)
        initial = {k: v.clone() for k, v in policy.state_dict().items()}
        opt, stats = w.train(policy, prepared, SINGLE)
        logs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    got = torch.load(tmp_path / "out.pt", weights_only=False)
    assert got["world"] == 2

    # the adapters (attention and experts) after two steps: the one-process values
    want = policy.state_dict()
    assert got["policy"].keys() == want.keys()
    assert any("experts" in k for k in want) and any("q_proj" in k for k in want)
    for k, v in want.items():
        torch.testing.assert_close(got["policy"][k], v, atol=1e-5, rtol=0, msg=k)
    # and every adapter tensor moved (by lr x ~1 per Adam step): not a trivial equality
    assert all((v - initial[k]).abs().max() > 1e-3 for k, v in want.items())

    # the gathered optimizer state (Adam moments of every adapter tensor) too
    so, go = opt.state_dict(), got["optim"]
    assert so["param_groups"] == go["param_groups"]
    assert so["state"].keys() == go["state"].keys()
    for i, st in so["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(go["state"][i][name], st[name], atol=1e-6, rtol=1e-4)
        assert float(go["state"][i]["step"]) == float(st["step"])

    # the logged stats are the global ones
    for mine, theirs in zip(stats, got["stats"], strict=True):
        for key in ("loss", "grad_norm", "entropy", "approx_kl", "rollout_logp_diff", "tokens"):
            assert theirs[key] == pytest.approx(mine[key], rel=1e-4, abs=1e-6), key


def test_a_prefix_written_into_every_segment_scores_as_the_shared_prefix_cache():
    # what a sharded (or checkpointed) model scores: the same tokens at the same positions
    from policies.lm_pack import inline_prefix

    policy = w.build_policy(sharded=False)
    tokens = w.recorded_batch().tokens
    inline = inline_prefix(tokens)
    assert tokens.data["prefix"].shape[1] > 0 and inline.data["prefix"].shape[1] == 0
    with torch.no_grad():
        cached, ent_c = policy.token_logprobs(tokens)
        policy.prefix_cache = False
        written, ent_w = policy.token_logprobs(tokens)
    torch.testing.assert_close(written, cached, atol=1e-5, rtol=0)
    torch.testing.assert_close(ent_w, ent_c, atol=1e-5, rtol=0)
    assert (cached * tokens.mask).abs().sum() > 0


def test_records_of_several_processes_merge_into_one_export_with_shifted_ids():
    from types import SimpleNamespace

    import numpy as np

    from policies.lm_pack import export, merge_exports

    def rec(p, r):
        ids = {"prompt": np.array(p, np.int32), "response": np.array(r, np.int32)}
        return SimpleNamespace(**ids, logp=np.full(len(r), -1.0, np.float32), allowed=None)

    a = [rec([5, 6], [7]), rec([5], [8, 9])]
    b = [rec([4, 4, 4], [3, 2])]
    merged = merge_exports([export(np.array([0, 3]), a), {}, export(np.array([1]), b)], [0, 4, 4])
    want = export(np.array([0, 3, 5]), a + b)  # rank 2's record 1 is record 5 after the shift
    assert merged.keys() == want.keys()
    for k, v in want.items():
        assert np.array_equal(merged[k], v), k
