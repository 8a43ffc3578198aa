"""Low-level pieces shared by the language-model rollout (:mod:`policies.lm`) and its update
(:mod:`policies.lm_pack`): the base model and output embedding of a causal LM, logits on chosen
ids only, temperature, and an inverse-CDF sampler."""

from __future__ import annotations

import inspect

import torch
from torch import nn

MASKED = -1e9
"""logit of a padding slot among the allowed ids: probability exactly 0, gradients finite"""


def base_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The base model (hidden states) and the output embedding of a causal LM."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    if base is None and hasattr(model, "get_decoder"):
        base = model.get_decoder()
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or head is None:
        raise ValueError(f"{type(model).__name__} is not a causal LM with an output embedding")
    return base, head


def cache_kwarg(base: nn.Module) -> str:
    """The name of the KV-cache argument of ``base.forward`` (``cache`` in recent transformers,
    ``past_key_values`` before)."""
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def head_logits(head: nn.Module, h: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Float32 logits of hidden states ``h (n, H)``: over the vocabulary ``(n, V)``, or over
    ``ids (n, A)`` only, ``(n, A)``. The same code scores the rollout and the update."""
    if ids is None:
        return nn.functional.linear(h, head.weight, head.bias).float()
    w = head.weight[ids]  # (n, A, H)
    out = torch.matmul(w, h.unsqueeze(-1)).squeeze(-1)
    if head.bias is not None:
        out = out + head.bias[ids]
    return out.float()


def scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (no pass over the logits at temperature 1: same values)."""
    return logits if temperature == 1.0 else logits / temperature


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs (n, V)`` (non-negative, rows summing to ~1), by inverse CDF
    with one uniform per row from ``generator``; an index of probability 0 is never returned.
    (``torch.multinomial`` costs several times more over a 151,669-token vocabulary.)"""
    cdf = probs.cumsum(-1)
    u = torch.rand((len(probs), 1), generator=generator, device=probs.device, dtype=cdf.dtype)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(1)
    idx = idx.clamp(max=probs.shape[1] - 1)
    bad = probs.gather(1, idx[:, None]).squeeze(1) <= 0  # rounding past the last token
    if bad.any():
        last = (probs[bad] > 0).cumsum(-1).argmax(-1)  # the last index of positive probability
        idx[bad] = last
    return idx
