"""Rules of policies/engine.py: the vLLM client against a fake server (tests/policies/fake_vllm.py)
with the same endpoints: token ids in and out, the engine's log-probs, adapter reload after an
update, the errors for a server without token ids or log-probs and for one that is not
reachable, retries, and the truncated importance weight."""

from __future__ import annotations

import socket

import pytest
import torch

from policies.engine import EngineError, EngineUnreachable, VLLMEngine, truncated_is_weight
from policies.qwen import tiny_qwen3
from tests.policies.fake_vllm import FakeVLLM

VOCAB = 48
STOP = 3
PROMPTS = [[5, 9, 11, 20], [7, 7, 30], [5, 9, 11, 20]]


@pytest.fixture(scope="module")
def model():
    return tiny_qwen3(vocab_size=VOCAB, seed=0)


@pytest.fixture
def server(model):
    with FakeVLLM(model=model) as srv:
        yield srv


def recompute(model, prompt, ids, temperature):
    """The model's own log-probs of response ``ids`` after ``prompt`` (one full forward)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[0].float()
    lp = torch.log_softmax(logits[len(prompt) - 1 : -1] / temperature, dim=-1)
    return lp.gather(1, torch.tensor(ids)[:, None]).squeeze(1)


def test_token_ids_in_and_out_with_the_models_own_log_probs(server, model):
    eng = VLLMEngine(server.url, "base", timeout_s=10)
    assert eng.check() == ["base"]
    out = eng.sample(PROMPTS, max_new_tokens=6, temperature=0.7, stop_ids=[STOP], seed=11)
    assert len(out) == len(PROMPTS)
    for p, (ids, lps) in zip(PROMPTS, out, strict=True):
        assert 1 <= len(ids) == len(lps) <= 6
        assert all(isinstance(t, int) and 0 <= t < VOCAB for t in ids)
        assert STOP not in ids[:-1]  # a stop id ends the response and is part of it
        torch.testing.assert_close(
            torch.tensor(lps), recompute(model, p, ids, 0.7), atol=1e-4, rtol=0
        )
    # the prompts went as token ids, one request per row with seeds seed + row
    sent = server.requests("/v1/completions")
    assert sorted(b["seed"] for b in sent) == [11, 12, 13]
    assert sorted(map(tuple, (b["prompt"] for b in sent))) == sorted(map(tuple, PROMPTS))
    b = sent[0]
    assert b["model"] == "base" and b["max_tokens"] == 6 and b["stop_token_ids"] == [STOP]
    assert b["return_token_ids"] and b["return_tokens_as_token_ids"] and b["logprobs"] == 1
    # reproducible with the same seed; identical prompts (a GRPO group) still differ
    again = eng.sample(PROMPTS, max_new_tokens=6, temperature=0.7, stop_ids=[STOP], seed=11)
    assert again == out
    many = eng.sample([PROMPTS[0]] * 4, max_new_tokens=6, temperature=1.0, stop_ids=[], seed=0)
    assert len({tuple(ids) for ids, _ in many}) > 1


def test_unseeded_batch_is_one_request_and_greedy_is_the_argmax(server, model):
    eng = VLLMEngine(server.url + "/v1/", "base", timeout_s=10)  # a trailing /v1 is accepted
    out = eng.sample(PROMPTS, max_new_tokens=4, temperature=0.0, stop_ids=[STOP])
    sent = server.requests("/v1/completions")
    assert len(sent) == 1 and sent[0]["prompt"] == PROMPTS and "seed" not in sent[0]
    for p, (ids, lps) in zip(PROMPTS, out, strict=True):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + ids])).logits[0, len(p) - 1 : -1]
        assert ids == logits.argmax(-1).tolist()
        torch.testing.assert_close(
            torch.tensor(lps), recompute(model, p, ids, 1.0), atol=1e-4, rtol=0
        )
    assert out[0] == out[2]  # identical prompts, greedy


def test_adapter_reload_after_an_update_changes_the_samples(server, model, tmp_path):
    eng = VLLMEngine(server.url, "base", timeout_s=10)
    kw = dict(max_new_tokens=6, temperature=1.0, stop_ids=[STOP], seed=3)
    base = eng.sample(PROMPTS, **kw)
    # "step 0": the adapter holds the base weights -> the same samples as the base model
    path0 = tmp_path / "main-0.pt"
    torch.save(model.state_dict(), path0)
    eng.load_adapter("main", str(path0))
    assert eng.check() == ["base", "main"]
    assert eng.sample(PROMPTS, adapter="main", **kw) == base
    # an update: other weights, reloaded under the same name
    updated = tiny_qwen3(vocab_size=VOCAB, seed=1)
    path1 = tmp_path / "main-1.pt"
    torch.save(updated.state_dict(), path1)
    eng.load_adapter("main", str(path1))
    after = eng.sample(PROMPTS, adapter="main", **kw)
    assert after != base
    assert all(b["model"] == "main" for b in server.requests("/v1/completions")[-3:])
    for p, (ids, lps) in zip(PROMPTS, after, strict=True):
        torch.testing.assert_close(
            torch.tensor(lps), recompute(updated, p, ids, 1.0), atol=1e-4, rtol=0
        )
    # recorded: the first load found nothing to unload; the reload unloaded, then loaded
    paths = [p for _, p, _ in server.calls if "lora" in p]
    assert paths == ["/v1/unload_lora_adapter", "/v1/load_lora_adapter"] * 2
    assert [b["lora_path"] for b in server.requests("/v1/load_lora_adapter")] == [
        str(path0),
        str(path1),
    ]
    assert server.adapters["main"][0] == str(path1)
    assert eng.sample(PROMPTS, **kw) == base  # the base model is untouched


def test_adapter_errors_carry_the_servers_message(server, model, tmp_path):
    eng = VLLMEngine(server.url, "base", timeout_s=10)
    with pytest.raises(EngineError, match="No adapter found for .*missing"):
        eng.load_adapter("main", str(tmp_path / "missing"))
    wrong = tmp_path / "wrong.pt"
    torch.save(tiny_qwen3(vocab_size=VOCAB + 1).state_dict(), wrong)
    with pytest.raises(EngineError, match="(?s)could not load LoRA adapter 'main'.*size mismatch"):
        eng.load_adapter("main", str(wrong))
    with pytest.raises(EngineError, match="HTTP 404: The model `nope` does not exist"):
        eng.sample(PROMPTS, 4, 1.0, [STOP], adapter="nope")
    with FakeVLLM(model=model, runtime_lora=False) as srv:
        with pytest.raises(EngineError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
            VLLMEngine(srv.url, "base", timeout_s=10).load_adapter("main", str(wrong))


def test_a_server_without_token_ids_or_log_probs_is_a_clear_error(model):
    scripted = [([4, 8, STOP], [-1.0, -2.0, -0.5])]
    with FakeVLLM(scripted=scripted, token_ids=False) as srv:  # vLLM < 0.10.2: strings only
        out = VLLMEngine(srv.url, "base", timeout_s=10).sample(PROMPTS[:2], 4, 1.0, [STOP])
        assert out == [([4, 8, STOP], [-1.0, -2.0, -0.5])] * 2
    with FakeVLLM(scripted=scripted, token_ids=False, token_id_strings=False) as srv:
        eng = VLLMEngine(srv.url, "base", timeout_s=10)
        with pytest.raises(ValueError, match="returned no token ids: start vLLM with a version"):
            eng.sample(PROMPTS, 4, 1.0, [STOP])
    with FakeVLLM(scripted=scripted, logprobs=False) as srv:
        with pytest.raises(ValueError, match="returned no log-probs"):
            VLLMEngine(srv.url, "base", timeout_s=10).sample(PROMPTS, 4, 1.0, [STOP])
    with FakeVLLM(scripted=[([4, 8, STOP], [-1.0, -2.0])]) as srv:
        with pytest.raises(ValueError, match="3 token ids but 2 log-probs"):
            VLLMEngine(srv.url, "base", timeout_s=10).sample(PROMPTS, 4, 1.0, [STOP])


def test_an_unreachable_or_wrong_server_names_the_url(server):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(EngineUnreachable, match=f"rollout engine at {url} is not reachable"):
        VLLMEngine(url, "base", timeout_s=5).check()
    with pytest.raises(ConnectionError, match=f"rollout engine at {url} is not reachable"):
        VLLMEngine(url, "base", timeout_s=5).sample(PROMPTS, 4, 1.0, [STOP])
    with pytest.raises(ValueError, match=r"serves models \['base'\], not 'Qwen3-30B'"):
        VLLMEngine(server.url, "Qwen3-30B", timeout_s=10).check()


def test_one_retry_on_a_reset_connection_none_on_4xx(server):
    eng = VLLMEngine(server.url, "base", timeout_s=10)
    server.resets = 1
    assert eng.check() == ["base"]
    assert len(server.requests("/v1/models")) == 2
    server.resets = 2
    with pytest.raises(EngineUnreachable, match="not reachable"):
        eng.check()
    server.calls.clear()
    with pytest.raises(EngineError, match="HTTP 404"):
        eng.sample(PROMPTS[:1], 4, 1.0, [STOP], seed=0, adapter="nope")
    assert len(server.calls) == 1


def test_truncated_is_weight_caps_and_equals_the_ratio_below():
    old = torch.tensor([[-1.0, -2.0, -0.1, 0.0], [-3.0, -0.5, 0.0, 0.0]], requires_grad=True)
    eng = torch.tensor([[-1.2, -1.0, -5.0, 0.0], [-3.0, -0.7, -100.0, 0.0]])
    w = truncated_is_weight(old, eng, cap=2.0)
    assert w.shape == old.shape and not w.requires_grad
    ratio = torch.exp(old.detach() - eng)
    below = ratio < 2.0
    torch.testing.assert_close(w[below], ratio[below])
    assert (w[~below] == 2.0).all() and int((~below).sum()) == 2  # incl. exp overflow -> cap
    assert w[0, 3] == 1.0  # padding (both 0) weighs 1
    with pytest.raises(ValueError, match="differ in shape"):
        truncated_is_weight(old, eng[:, :2], 2.0)
    with pytest.raises(ValueError, match="must be > 0"):
        truncated_is_weight(old, eng, 0.0)
