"""GPU smoke test of the Qwen3-30B-A3B path's pieces on a tiny Qwen3-MoE (issue 12, item 5).

On a CUDA machine, in under a minute (plus a vLLM engine start, about 1-3 minutes, when vllm is
installed):

1. a random-init Qwen3-MoE (2 layers, hidden 256, 8 experts of width 128, top-2, vocabulary
   2048) in bfloat16, with peft LoRA (rank 8) on the attention projections (``target_modules``)
   and the fused 3-D expert parameters (``target_parameters``): one base model, one adapter per
   role (``main``, ``sub``); gradient checkpointing; accelerate's ``Accelerator`` for the
   device, ``prepare`` and ``backward``;
2. rollouts with the ``hf`` sampler (``model.generate``, full-vocabulary sampling at
   temperature 1): B = 2 queries x K = 4 main rollouts, and D = 2 sub-agent calls per rollout
   whose prompts carry the main rollout's first tokens; the sampler's log-probs are recorded;
3. one M-GRPO update per role on those recorded rollouts: old log-probs recomputed by the
   trainer's forward (their gap to the sampler's is ``rollout_logp_diff``), a synthetic reward
   (main: ``R_M = 0.1 + 0.9 c`` with ``c`` the share of even token ids in the response; sub:
   ``R_S = 0.1 + 0.4 c_M + 0.5 e`` with ``e`` the share of ids below vocab/2), group-relative
   advantages (main: per query over K; sub: per query over K x D; population std), the clipped
   loss (0.2, 0.28; token mean per row, mean over rows), AdamW on the role's adapter;
4. when ``vllm`` is importable: the base saved with ``save_pretrained`` and the main adapter with
   peft, one ``vllm.LLM(model=folder, enable_lora=True)`` generate of the same prompts as token
   ids with log-probs, timed (and once without the adapter if vLLM refuses LoRA on the
   experts).

Prints time, tokens/s and peak memory (``torch.cuda.max_memory_allocated``) of each part, and a
JSON line. Where no CUDA device is present it prints why and exits 0 (``--device cpu`` runs
parts 1-3 on the CPU instead, to check the script). Imports only torch, transformers, peft,
accelerate and the standard library (vllm when present): it runs on a GPU box without the rest
of this repository's dependencies.

    python benchmarks/gpu_smoke.py [--device cpu] [--no-vllm]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

B, K, D = 2, 4, 2
"""queries, main rollouts per query, sub-agent calls per rollout"""
PROMPT, NEW, HANDOFF = 16, 32, 8
"""prompt tokens, sampled tokens per row, main-response tokens carried into a sub prompt"""
VOCAB, EOS, PAD = 2048, 2, 0
EPS_LOW, EPS_HIGH, LR, RANK = 0.2, 0.28, 1e-3, 8
ROLES = ("main", "sub")


def _model(device: str) -> Any:
    import torch
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        vocab_size=VOCAB,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        moe_intermediate_size=128,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    torch.manual_seed(0)
    return Qwen3MoeForCausalLM(config).to(device=device, dtype=torch.bfloat16)


def _sample(model: Any, prompts: Any) -> tuple[Any, Any, Any]:
    """``(sequences, response mask, sampler log-probs)`` of one ``generate`` call (float32)."""
    import torch

    out = model.generate(
        input_ids=prompts,
        attention_mask=torch.ones_like(prompts),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=NEW,
        min_new_tokens=NEW // 4,
        eos_token_id=EOS,
        pad_token_id=PAD,
        use_cache=True,
        output_logits=True,
        return_dict_in_generate=True,
    )
    seqs = out.sequences
    resp = seqs[:, prompts.shape[1] :]
    logits = torch.stack(out.logits, dim=1).float()
    lp = torch.log_softmax(logits, -1).gather(-1, resp[..., None]).squeeze(-1)
    ended = torch.cumsum((resp == EOS).long(), 1) - (resp == EOS).long() > 0  # after the EOS
    mask = (~ended).float()
    return seqs, mask, lp * mask


def _logprobs(model: Any, seqs: Any, mask: Any, n_prompt: int) -> Any:
    """Recomputed log-probs of the response tokens ``(rows, NEW)`` float32 (with gradient)."""
    import torch

    attn = torch.cat([torch.ones_like(seqs[:, :n_prompt]), mask.long()], 1)
    logits = model(input_ids=seqs, attention_mask=attn, use_cache=False).logits
    logits = logits[:, n_prompt - 1 : -1].float()
    tgt = seqs[:, n_prompt:]
    return torch.log_softmax(logits, -1).gather(-1, tgt[..., None]).squeeze(-1) * mask


def _advantages(r: Any, groups: int) -> Any:
    """Group-relative advantages of rewards ``r`` in ``groups`` equal consecutive groups."""
    g = r.view(groups, -1)
    return ((g - g.mean(1, keepdim=True)) / (g.std(1, unbiased=False, keepdim=True) + 1e-6)).view(
        -1
    )


def _update(acc: Any, model: Any, opt: Any, role: str, roll: dict[str, Any]) -> dict[str, float]:
    """One clipped policy-gradient step of ``role`` on its recorded rollouts."""
    import torch

    model.set_adapter(role)
    seqs, mask, adv, n_prompt = roll["seqs"], roll["mask"], roll["adv"], roll["n_prompt"]
    model.train()
    with torch.no_grad():
        old = _logprobs(model, seqs, mask, n_prompt)
    diff = float(((old - roll["lp_sampler"]).abs() * mask).max())
    for p in roll["params"]:
        p.requires_grad_(True)
    new = _logprobs(model, seqs, mask, n_prompt)
    ratio = torch.exp(new - old)
    a = adv[:, None]
    per_tok = -torch.minimum(ratio * a, ratio.clamp(1 - EPS_LOW, 1 + EPS_HIGH) * a)
    loss = ((per_tok * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    acc.backward(loss)
    norm = float(torch.nn.utils.clip_grad_norm_(roll["params"], 1.0))
    opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = _logprobs(model, seqs, mask, n_prompt)
    gain = float(((after - old) * mask).sum(1).mul(adv).mean())
    if not (bool(torch.isfinite(loss.detach())) and norm == norm):
        raise RuntimeError(f"{role}: non-finite loss {float(loss.detach())} or grad norm {norm}")
    return {
        "loss": float(loss.detach()),
        "grad_norm": norm,
        "rollout_logp_diff": diff,
        "gain": gain,
    }


def hf_part(device: str) -> tuple[dict[str, Any], Any, Any]:
    """Parts 1-3; returns the report, the peft model and the prompts (token ids)."""
    import torch
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    acc = Accelerator(cpu=device == "cpu")
    base = _model(str(acc.device))
    ckpt = getattr(base, "activation_checkpointing_enable", None)  # transformers >= 5.x
    if ckpt is not None:
        ckpt(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = LoraConfig(
        r=RANK,
        lora_alpha=2 * RANK,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        target_parameters=["experts.gate_up_proj", "experts.down_proj"],
    )
    model = get_peft_model(base, lora, adapter_name="main")
    model.add_adapter("sub", lora)
    params = {
        r: [p for n, p in model.named_parameters() if "lora_" in n and f".{r}." in n] for r in ROLES
    }
    opts = {r: torch.optim.AdamW(params[r], lr=LR) for r in ROLES}
    model, opts["main"], opts["sub"] = acc.prepare(model, opts["main"], opts["sub"])
    dev = acc.device
    rep: dict[str, Any] = {"lora_params_per_adapter": sum(p.numel() for p in params["main"])}
    rep["params"] = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, VOCAB, (B, PROMPT), generator=g).to(dev)

    t0 = time.perf_counter()
    model.eval()
    model.set_adapter("main")
    with torch.no_grad():
        m_seqs, m_mask, m_lp = _sample(model, prompts.repeat_interleave(K, 0))
    m_resp = m_seqs[:, PROMPT:]
    c = ((m_resp % 2 == 0).float() * m_mask).sum(1) / m_mask.sum(1).clamp(min=1)
    sub_prompts = m_seqs[:, : PROMPT + HANDOFF].repeat_interleave(D, 0)
    model.set_adapter("sub")
    with torch.no_grad():
        s_seqs, s_mask, s_lp = _sample(model, sub_prompts)
    if acc.device.type == "cuda":
        torch.cuda.synchronize()
    t_roll = time.perf_counter() - t0
    e = ((s_seqs[:, -NEW:] < VOCAB // 2).float() * s_mask).sum(1) / s_mask.sum(1).clamp(min=1)
    r_main = 0.1 + 0.9 * c
    r_sub = 0.1 + 0.4 * c.repeat_interleave(D) + 0.5 * e
    rolls = {
        "main": dict(seqs=m_seqs, mask=m_mask, lp_sampler=m_lp, n_prompt=PROMPT,
                     adv=_advantages(r_main, B)),
        "sub": dict(seqs=s_seqs, mask=s_mask, lp_sampler=s_lp, n_prompt=PROMPT + HANDOFF,
                    adv=_advantages(r_sub, B)),
    }  # fmt: skip
    sampled = int(m_mask.sum() + s_mask.sum())
    rep["rollout"] = {"rows": B * K + B * K * D, "tokens": sampled, "s": t_roll}
    rep["rollout"]["tokens_per_s"] = sampled / t_roll

    t0 = time.perf_counter()
    for r in ROLES:
        rolls[r]["params"] = params[r]
        rep[r] = _update(acc, model, opts[r], r, rolls[r])
        rep[r]["reward_mean"] = float((r_main if r == "main" else r_sub).mean())
    if acc.device.type == "cuda":
        torch.cuda.synchronize()
    t_upd = time.perf_counter() - t0
    seen = int(m_seqs.numel() + s_seqs.numel())  # tokens through forward + backward
    rep["update"] = {"tokens": seen, "s": t_upd, "tokens_per_s": seen / t_upd}
    return rep, model, prompts


def vllm_part(model: Any, prompts: Any) -> dict[str, Any]:
    """Part 4: one vLLM generate of the prompts with the main adapter (then without one)."""
    import torch

    folder = Path(tempfile.mkdtemp(prefix="gpu_smoke_"))
    model.save_pretrained(str(folder / "adapters"), selected_adapters=["main"])
    _model("cpu").save_pretrained(str(folder / "base"))  # the same random base: seed 0
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    ids = [{"prompt_token_ids": row.tolist()} for row in prompts.repeat_interleave(K, 0).cpu()]
    sp = SamplingParams(max_tokens=NEW, temperature=1.0, logprobs=1, detokenize=False, seed=0)
    rep: dict[str, Any] = {}
    t0 = time.perf_counter()
    llm = LLM(
        model=str(folder / "base"),
        skip_tokenizer_init=True,
        enable_lora=True,
        max_lora_rank=RANK,
        dtype="bfloat16",
        max_model_len=256,
        gpu_memory_utilization=0.3,
        enforce_eager=True,
    )
    rep["start_s"] = time.perf_counter() - t0
    adapter = folder / "adapters" / "main"
    if not (adapter / "adapter_config.json").is_file():
        adapter = folder / "adapters"
    for name, req in (("lora", LoRARequest("main", 1, str(adapter))), ("base", None)):
        try:
            t0 = time.perf_counter()
            outs = llm.generate(ids, sp, lora_request=req)
            dt = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - reported, the other variant still runs
            rep[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            continue
        toks = [list(o.outputs[0].token_ids) for o in outs]
        have_lp = all(o.outputs[0].logprobs for o in outs)
        n = sum(len(t) for t in toks)
        rep[name] = {"tokens": n, "s": dt, "tokens_per_s": n / dt, "logprobs": have_lp}
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM engine step")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        why = (
            "this torch is built without CUDA"
            if torch.version.cuda is None
            else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
        )
        print(f"gpu_smoke: skipped: no CUDA device ({why}); nothing was run")
        return 0
    import accelerate
    import peft
    import transformers

    torch.set_num_threads(1 if args.device == "cpu" else min(4, torch.get_num_threads()))
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "CPU"
    print(
        f"gpu_smoke: {name}; torch {torch.__version__} (CUDA {torch.version.cuda}), "
        f"transformers {transformers.__version__}, peft {peft.__version__}, "
        f"accelerate {accelerate.__version__}"
    )
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_all = time.perf_counter()
    rep, model, prompts = hf_part(args.device)
    rep["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    ro, up = rep["rollout"], rep["update"]
    print(
        f"model: Qwen3-MoE 2 layers, 8 experts top-2, {rep['params'] / 1e6:.2f}M parameters, "
        f"bf16; LoRA rank {RANK} on q/k/v/o + experts: {rep['lora_params_per_adapter']:,} "
        "parameters per adapter (main, sub)"
    )
    print(
        f"rollout (hf generate): {ro['rows']} rows, {ro['tokens']} tokens in {ro['s']:.2f} s "
        f"= {ro['tokens_per_s']:.0f} tokens/s"
    )
    for r in ROLES:
        x = rep[r]
        print(
            f"update {r}: reward {x['reward_mean']:.3f}, loss {x['loss']:+.4f}, grad norm "
            f"{x['grad_norm']:.3f}, rollout_logp_diff {x['rollout_logp_diff']:.4f}, "
            f"sum A*dlogp {x['gain']:+.4f} (> 0: moved towards the advantages)"
        )
    print(
        f"update (both roles): {up['tokens']} tokens in {up['s']:.2f} s = "
        f"{up['tokens_per_s']:.0f} tokens/s; peak memory "
        + (f"{rep['peak_gib']:.3f} GiB" if cuda else "n/a (CPU)")
    )
    if args.no_vllm or not cuda:
        rep["vllm"] = "skipped"
        print("vllm: skipped" + ("" if args.no_vllm else " (needs CUDA)"))
    elif importlib.util.find_spec("vllm") is None:
        rep["vllm"] = "absent"
        print("vllm: absent (pip install vllm to time an engine step); the hf path ran")
    else:
        rep["vllm"] = v = vllm_part(model, prompts)
        print(f"vllm: engine start {v['start_s']:.1f} s")
        for k in ("lora", "base"):
            x = v[k]
            print(
                f"vllm generate ({k}): "
                + (
                    x["error"]
                    if "error" in x
                    else f"{x['tokens']} tokens in {x['s']:.2f} s = {x['tokens_per_s']:.0f} "
                    f"tokens/s, logprobs returned: {x['logprobs']}"
                )
            )
    rep["total_s"] = time.perf_counter() - t_all
    print(f"total: {rep['total_s']:.1f} s")
    print(json.dumps(rep, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
