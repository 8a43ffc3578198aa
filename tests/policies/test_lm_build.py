"""Gradient checkpointing of model folders (policies/lm_build.py): a tiny Qwen3-MoE written by
``save_pretrained`` loads with it on (``policy.gradient_checkpointing = "auto"``), LoRA on
attention and experts composes with it, and one backward gives the gradients of the same model
without it (the update then scores segments with their prompt prefix inline)."""

from __future__ import annotations

import pytest
import torch

from policies.lm_build import check_lm_config, checkpointed, load_model
from policies.lm_lora import add_adapters
from policies.qwen import load_tokenizer, tiny_qwen3
from tests.policies import fsdp_worker as w


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    f = tmp_path_factory.mktemp("moe")
    tiny_qwen3(moe=True, vocab_size=w.VOCAB, seed=5).save_pretrained(f)
    load_tokenizer().save_pretrained(f)
    return str(f)


def _policy(folder: str, checkpointing: bool | str, dtype: str = "float32"):
    """The folder's model with LoRA (seeded) as a scoring LMPolicy, marked as build_lm marks it."""
    model, _ = load_model(folder, dtype, checkpointing=checkpointing)
    model.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        peft = add_adapters(model, ["main"], 4, 8.0, w.TARGETS)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.02)
    pol = w.scoring_policy(model, peft)
    pol.prefix_cache = not checkpointed(model)
    return pol


def _backward(pol) -> tuple[dict[str, torch.Tensor], int]:
    """LoRA gradients of the summed log-probs of the recorded batch, and how many times the
    first layer's attention ran during the backward (its recomputation under checkpointing)."""
    tokens = w.recorded_batch().tokens
    logp, _ = pol.token_logprobs(tokens)
    calls = []
    attn = pol.model.model.layers[0].self_attn
    handle = attn.register_forward_hook(lambda *a: calls.append(1))
    (logp * tokens.mask).sum().backward()
    handle.remove()
    grads = {n: p.grad.float() for n, p in pol.model.named_parameters() if p.grad is not None}
    return grads, len(calls)


def test_a_saved_moe_folder_loads_checkpointed_and_its_lora_gradients_are_unchanged(folder):
    # "auto": on for a folder (off for the built-in tiny models)
    assert check_lm_config(type("C", (), {"model": folder})())["gradient_checkpointing"] == "auto"
    on, off = _policy(folder, "auto"), _policy(folder, False)
    assert checkpointed(on.model) and not checkpointed(off.model)
    assert not checkpointed(load_model("tiny-qwen3-moe")[0])
    assert not on.prefix_cache and off.prefix_cache
    assert not on.model.model.layers[0].self_attn.training  # no dropout: submodules stay eval
    g_on, calls_on = _backward(on)
    g_off, calls_off = _backward(off)
    assert calls_off == 0 and calls_on == 1  # the backward recomputes the checkpointed layer
    assert g_on.keys() == g_off.keys() and any("experts" in k for k in g_on)
    assert all("lora_" in k for k in g_on)  # the base stays frozen
    for k, g in g_off.items():
        torch.testing.assert_close(g_on[k], g, atol=1e-5, rtol=1e-4, msg=k)
        assert g.abs().max() > 0, k


def test_a_bf16_folder_trains_its_adapters_through_checkpointed_layers(folder):
    pol = _policy(folder, True, "bfloat16")
    assert checkpointed(pol.model)
    assert pol.model.model.layers[0].self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    grads, calls = _backward(pol)
    assert calls == 1 and grads  # recomputed in the backward
    assert all(torch.isfinite(g).all() and g.abs().max() > 0 for g in grads.values())


def test_bad_gradient_checkpointing_values_name_the_key():
    from sim.config_policy import PolicyConfig

    with pytest.raises(ValueError, match="policy.gradient_checkpointing = 'yes'"):
        PolicyConfig(kind="lm", gradient_checkpointing="yes")
    with pytest.raises(ValueError, match="policy.gradient_checkpointing = 1"):
        check_lm_config(type("C", (), {"gradient_checkpointing": 1})())
