"""Language-model policies in the trainer: token-level metrics, safetensors checkpoints, resume.

A random-init tiny Qwen3 (the real tokenizer) on Rubik's, two queries x two rollouts a step."""

import pytest
import torch

from experiments.checkpoint import append_metrics, load_checkpoint, read_metrics
from experiments.run import Trainer
from tests.sim.conftest import tiny_config

LM = {
    "policy.kind": "lm",
    "policy.mode": "choice",
    "policy.max_new_tokens": 64,
    "env.preset": "low",
    "env.max_turns": 3,
    "algo.queries_per_step": 2,
    "algo.group_size": 2,
    "algo.align_target": 2,
    "eval.episodes": 2,
    "eval.every": 3,
    "optim.minibatches": 1,
    "threads": 1,
}


def _strip_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_lm_run_logs_token_metrics_checkpoints_safetensors_and_resumes_exactly(tmp_path):
    cfg = tiny_config("mgrpo/RubiksLogic-v0", steps=3, checkpoint_every=2, **LM)
    full = Trainer(cfg, tmp_path / "full", progress=False)
    full.train()
    rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    for r in rows:
        for role in ("main", "sub"):
            if r[f"{role}/tokens"] > 0:  # the sampler's log-probs are recomputed exactly
                assert r[f"{role}/rollout_logp_diff"] < 1e-4
            assert 0.0 <= r[f"{role}/format_rate"] <= 1.0
    assert rows[0]["main/tokens"] > 0
    weights = sorted((tmp_path / "full").glob("weights-*.safetensors"))
    assert [w.name for w in weights] == ["weights-00000003.safetensors"]  # old ones removed
    state = load_checkpoint(tmp_path / "full")
    assert set(state["policies"]) == {"main", "sub"}

    part = Trainer(cfg, tmp_path / "part", progress=False)
    for _ in range(3):  # step 3 runs past the checkpoint of step 2, then the run "dies"
        append_metrics(tmp_path / "part", part.train_step())
        if part.step == 2:
            part.save()
    part.close()
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    assert _strip_time(read_metrics(tmp_path / "part" / "metrics.jsonl")) == _strip_time(rows)


def test_generate_mode_on_the_tiny_moe_logs_the_format_term(tmp_path):
    over = {**LM, "policy.mode": "generate", "policy.max_new_tokens": 16}
    over["policy.model"] = "tiny-qwen3-moe"
    cfg = tiny_config("mgrpo/RubiksLogic-v0", steps=1, checkpoint_every=1, **over)
    tr = Trainer(cfg, tmp_path / "gen", progress=False)
    tr.train()
    (row,) = read_metrics(tmp_path / "gen" / "metrics.jsonl")
    # a random-init model rarely writes a valid call: the format term is computed and logged
    assert 0.0 <= row["main/format_rate"] <= 1.0 and "sub/format_rate" in row
    assert row["main/tokens"] > 0 and row["main/rollout_logp_diff"] < 1e-4
