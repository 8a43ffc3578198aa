"""Rules of ``policy.engine = "vllm"`` end to end (policies/lm_engine.py, sim/trainer.py): a
Learner whose LM policies sample on the fake vLLM server (tests/policies/fake_vllm.py) holding
the same tiny Qwen3 weights. Rollouts come from the server as token ids, the trainer recomputes
the old log-probs (gap ~0 for equal weights, importance weights ~1), the truncated importance
weight enters the update, every role's adapter is pushed at start and after its update as a
PEFT folder, and an engine without LoRA or in choice mode is a clear error."""

from __future__ import annotations

import copy
import os

import gymnasium as gym
import pytest
import torch

from policies.lm import LMPolicy
from policies.qwen import load_tokenizer, tiny_qwen3
from sim.trainer import Learner
from sim.update import update_role
from tests.policies.fake_vllm import FakeVLLM
from tests.sim.conftest import tiny_config

LM = {
    "policy.kind": "lm",
    "policy.mode": "generate",
    "policy.max_new_tokens": 12,
    "policy.lora.rank": 4,
    "policy.lora.targets": ["q_proj", "v_proj"],
    "policy.engine": "vllm",
    "env.preset": "low",
    "env.max_turns": 2,
    "algo.queries_per_step": 2,
    "algo.group_size": 2,
    "algo.align_target": 2,
    "eval.episodes": 1,
    "eval.every": 5,
    "optim.minibatches": 1,
    "optim.lr": 1e-2,
    "steps": 1,
    "threads": 1,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny Qwen3 written by save_pretrained with the real tokenizer (policy.model)."""
    f = tmp_path_factory.mktemp("tiny-qwen3")
    tiny_qwen3(seed=3).save_pretrained(f)
    load_tokenizer().save_pretrained(f)
    return f


@pytest.fixture(scope="module")
def server(folder):
    """The fake server with its own copy of the same weights, serving them as ``folder``."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    with FakeVLLM(model=model, name=str(folder)) as srv:
        yield srv


def _config(server, folder, **over):
    return tiny_config(
        "mgrpo/RubiksLogic-v0",
        **(LM | {"policy.engine_url": server.url, "policy.model": str(folder)} | over),
    )


def _loads(calls: list) -> list[tuple[str, str]]:
    """``(lora_name, lora_path)`` of the recorded load_lora_adapter requests."""
    return [(b["lora_name"], b["lora_path"]) for _, q, b in calls if q == "/v1/load_lora_adapter"]


@pytest.fixture(scope="module")
def stepped(server, folder):
    """A learner after one step (a random model's rewards tie: the entropy bonus moves it),
    with the server's calls at start and during the step."""
    server.calls.clear()
    learner = Learner(_config(server, folder, **{"loss.entropy_coef": 0.01}))
    start = list(server.calls)
    server.calls.clear()
    before = {k: v.clone() for k, v in learner.policies["main"].state_dict().items()}
    metrics = learner.train_step()
    return learner, metrics, start, list(server.calls), before


def test_a_training_step_samples_on_the_server_and_pushes_the_updated_adapter(server, stepped):
    learner, m, start_calls, step_calls, before = stepped
    roles = list(learner.policies)
    assert learner.engine is not None
    assert all(p.engine is learner.engine for p in learner.policies.values())
    # at start: the server was checked and every role's adapter loaded from a PEFT folder
    assert any(path == "/v1/models" for _, path, _ in start_calls)
    start = _loads(start_calls)
    assert [name for name, _ in start] == roles
    for name, path in start:  # peft's subfolder named after the adapter
        assert path.startswith(learner.adapter_dir) and os.path.basename(path) == name
    for role in roles:  # the folders the server holds now
        assert os.path.isfile(os.path.join(server.adapters[role][0], "adapter_config.json"))

    main = learner.policies["main"]

    # rollouts came from the server: token-id prompts, the role's adapter, seeded per row
    sent = [b for _, q, b in step_calls if q == "/v1/completions"]
    assert sent and all(isinstance(t, int) for b in sent for t in b["prompt"])
    assert {b["model"] for b in sent} <= set(roles) and "main" in {b["model"] for b in sent}
    assert all("seed" in b and b["stop_token_ids"] == [main.stop_id] for b in sent)
    assert {b["temperature"] for b in sent} == {1.0, 0.0}  # training samples, greedy eval
    # the trainer recomputed the old log-probs: same weights -> no gap, weights ~1
    assert m["main/tokens"] > 0
    assert 0.0 <= m["main/rollout_logp_diff"] < 1e-4
    assert m["main/is_weight_mean"] == pytest.approx(1.0, abs=1e-4)
    assert m["main/is_clip_frac"] == 0.0
    prep = learner.last_prepared["main"]
    assert prep.tokens.data["is_weight"].shape == prep.tokens.mask.shape
    # the update changed the adapter, which was saved and reloaded under the role's name
    assert any(not torch.equal(v, before[k]) for k, v in main.state_dict().items())
    loads = _loads(step_calls)
    assert "main" in [name for name, _ in loads]
    path = dict(loads)["main"]
    assert path != dict(start)["main"] and server.adapters["main"][0] == path
    assert not os.path.exists(dict(start)["main"])  # the previous folder is removed
    # what the server now serves as "main" is the trainer's updated adapter
    ids = torch.tensor([sent[0]["prompt"]])
    with torch.no_grad():
        main._activate()
        ours = main.model(input_ids=ids, logits_to_keep=4).logits
        theirs = server.adapters["main"][1](input_ids=ids, logits_to_keep=4).logits
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


def test_the_importance_weight_caps_the_gap_and_scales_the_update(stepped):
    learner = stepped[0]
    policy = learner.policies["main"]
    prep = learner.last_prepared["main"]
    mask = prep.tokens.mask
    with torch.no_grad():  # the trainer's log-probs under the current (updated) adapter
        old = policy.token_logprobs(prep.tokens)[0] * mask
    # an engine that found the sampled tokens less likely (by 0.1 or 2 nats, alternating)
    shift = torch.where(torch.arange(old.shape[1]) % 2 == 0, 0.1, 2.0).expand_as(old)
    engine = copy.copy(prep.tokens)
    engine.logp_old = (old - shift) * mask
    tokens, gap = policy.rescore(engine, cap=1.5)
    torch.testing.assert_close(tokens.logp_old, old, atol=1e-4, rtol=0)  # the trainer's own
    w = tokens.data["is_weight"]
    on = mask > 0
    expect = torch.where(shift == 0.1, torch.exp(torch.tensor(0.1)), torch.tensor(1.5))
    torch.testing.assert_close(w[on], expect[on], atol=1e-3, rtol=0)
    assert (w[~on] == 0).all()
    assert gap == pytest.approx(2.0, abs=1e-3)

    # zero importance weights: no policy gradient, so Adam leaves the adapter where it is
    zero = copy.copy(prep.tokens)
    zero.data = dict(prep.tokens.data) | {"is_weight": torch.zeros_like(w)}
    p0 = copy.copy(prep)
    p0.tokens = zero
    p0.adv = torch.ones_like(prep.adv)
    params = list(policy.parameters())
    before = [q.detach().clone() for q in params]
    opt = torch.optim.Adam(params, lr=0.1)
    gen = torch.Generator().manual_seed(0)
    cfg = copy.deepcopy(learner.cfg)
    cfg.loss.entropy_coef = 0.0
    update_role(cfg, "main", p0, policy, opt, gen, 0)
    assert all(torch.equal(q, b) for q, b in zip(params, before, strict=True))
    p0.tokens = prep.tokens  # the weights of an equal-weights engine (~1): it moves
    update_role(cfg, "main", p0, policy, opt, gen, 0)
    assert any(not torch.equal(q, b) for q, b in zip(params, before, strict=True))


def test_an_engine_without_lora_or_in_choice_mode_is_a_clear_error(server, folder, stepped):
    with pytest.raises(ValueError, match=r"policy.engine = 'vllm' needs policy.lora.rank > 0"):
        Learner(_config(server, folder, **{"policy.lora.rank": 0}))
    with pytest.raises(ValueError, match=r"policy.engine = 'vllm' needs policy.mode = 'generate'"):
        Learner(_config(server, folder, **{"policy.mode": "choice"}))
    p = stepped[0].policies["main"]
    space = gym.spaces.MultiDiscrete(p.nvec)
    with pytest.raises(ValueError, match="cannot run on a rollout engine"):
        LMPolicy(
            p.model, p.tokenizer, p.face, p.observation_space, space, mode="choice", engine=p.engine
        )
