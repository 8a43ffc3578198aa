"""LoRA adapters for language-model policies (``policy.lora.rank > 0``), through peft.

One adapter per role on a base model (``policy.share_base = true``: one base for every role;
false: one base per role, each with its role's adapter). Targets (``policy.lora.targets``) name
modules (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, a dense MLP's ``gate_proj`` ...) or, for
``"experts"``, the fused 3-D expert parameters of a transformers-5 MoE (``experts.gate_up_proj``,
``experts.down_proj``), wrapped with peft's ``target_parameters``. A target that matches nothing
is an error naming it. The base weights are frozen; the KL reference is the same model with its
adapters disabled (:class:`AdapterRef`), not a copy.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["AdapterRef", "EXPERT_PARAMS", "add_adapters", "split_targets"]

EXPERT_PARAMS = ("experts.gate_up_proj", "experts.down_proj")
"""the fused expert parameters ``"experts"`` stands for"""


def split_targets(model: nn.Module, targets: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(target_modules, target_parameters)`` for peft; ``ValueError`` naming a target that
    matches no module (or, for ``"experts"``, no fused expert parameter) of ``model``."""
    names = [n for n, _ in model.named_modules()]
    params = [n for n, _ in model.named_parameters()]
    modules, parameters, missing = [], [], []
    for t in targets:
        if t == "experts":
            found = [p for p in EXPERT_PARAMS if any(n.endswith(p) for n in params)]
            parameters += found
            if not found:
                missing.append(t)
        elif any(n == t or n.endswith("." + t) for n in names):
            modules.append(t)
        else:
            missing.append(t)
    if missing:
        kind = type(model).__name__
        linear = sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
        )
        fused = "; fused experts: experts" if any("experts." in p for p in params) else ""
        raise ValueError(
            f"policy.lora.targets: {missing} match no module of {kind} (its linear layers: "
            f"{linear}{fused})"
        )
    return modules, parameters


def add_adapters(
    model: nn.Module, roles: list[str], rank: int, alpha: float, targets: tuple[str, ...]
) -> Any:
    """Wrap ``model`` (frozen) with one LoRA adapter per role; returns the ``PeftModel``."""
    from peft import LoraConfig, get_peft_model

    modules, parameters = split_targets(model, targets)
    cfg = LoraConfig(
        r=int(rank),
        lora_alpha=float(alpha),
        target_modules=modules or None,
        target_parameters=parameters or None,
        lora_dropout=0.0,
        bias="none",
    )
    peft_model = get_peft_model(model, cfg, adapter_name=roles[0])
    for role in roles[1:]:
        peft_model.add_adapter(role, cfg)
    return peft_model


def adapter_state(peft_model: Any, adapter: str) -> dict[str, torch.Tensor]:
    """The LoRA tensors of one adapter, keyed by their name in the inner model."""
    inner = peft_model.base_model.model
    tag = f".{adapter}."
    return {k: v for k, v in inner.state_dict().items() if "lora_" in k and tag in k}


class AdapterRef:
    """The KL reference of a LoRA policy: the same model with its adapters disabled."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy

    def token_logprobs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), self.policy.peft.disable_adapter():
            return self.policy.token_logprobs(batch, activate=False)
