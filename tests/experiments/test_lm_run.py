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
def _restore_threads():
    """The trainer sets torch's threads from the config (``threads = 1``); put them back."""
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


def test_a_saved_moe_folder_trains_with_lora_on_attention_and_experts_and_resumes(tmp_path):
    """The 30B preset's code path on a tiny Qwen3-MoE written by save_pretrained: one step,
    a checkpoint of the adapters, a resume that restores them and their optimizer exactly."""
    from policies.qwen import load_tokenizer, tiny_qwen3

    folder = tmp_path / "moe"
    tiny_qwen3(moe=True, seed=3).save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    over = {**LM, "policy.model": str(folder), "policy.lora.rank": 4, "loss.kl_coef": 0.01}
    cfg = tiny_config("mgrpo/RubiksLogic-v0", steps=2, checkpoint_every=1, **over)
    run = Trainer(cfg, tmp_path / "run", progress=False)
    from policies.lm_build import checkpointed

    main = run.learner.policies["main"]  # a folder of real weights: gradient checkpointing on
    assert checkpointed(main.model) and not main.prefix_cache
    base = run.learner.policies["main"].model.model.layers[0].self_attn.q_proj.base_layer.weight
    base0 = base.detach().clone()
    append_metrics(tmp_path / "run", run.train_step())
    run.save()
    state = load_checkpoint(tmp_path / "run")
    keys = list(state["policies"]["main"])
    assert keys and all("lora_" in k for k in keys)  # adapters only, not the base
    assert any("experts" in k for k in keys) and any("q_proj" in k for k in keys)
    assert torch.equal(base, base0)  # the base stays frozen
    live = {r: p.state_dict() for r, p in run.learner.policies.items()}
    opt = run.learner.optims["main"].state_dict()["state"]
    run.close()
    resumed = Trainer(cfg, tmp_path / "run", resume=True, progress=False)
    assert resumed.step == 1
    for r, sd in live.items():
        got = resumed.learner.policies[r].state_dict()
        assert all(torch.equal(got[k], v) for k, v in sd.items()), r
    got_opt = resumed.learner.optims["main"].state_dict()["state"]
    assert all(torch.equal(got_opt[i]["exp_avg"], opt[i]["exp_avg"]) for i in opt)
    resumed.train()  # step 2 runs from the restored adapters
    assert [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2]


def test_lora_targets_that_match_nothing_are_a_clear_error(tmp_path):
    over = {**LM, "policy.lora.rank": 4}  # the default targets include the MoE experts
    cfg = tiny_config("mgrpo/RubiksLogic-v0", steps=1, **over)
    with pytest.raises(ValueError, match=r"policy.lora.targets: \['experts'\] match no module"):
        Trainer(cfg, tmp_path / "r", progress=False)
