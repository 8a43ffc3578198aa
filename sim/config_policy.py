"""The ``[policy]`` section of the training configuration (:mod:`sim.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.config_checks import _choice, _fail, _int, _names, _num

TINY_MODELS = ("tiny-qwen3", "tiny-qwen3-moe")
"""built-in random-init models (:func:`policies.qwen.tiny_qwen3`) for ``policy.model``"""
LM_MODES = ("generate", "choice")
LM_DTYPES = ("float32", "bfloat16", "float16")


@dataclass
class PolicyConfig:
    kind: str = "mlp"
    """policy kind, from the registry ``policies.registry``: ``mlp`` (small torch policies) or
    ``lm`` (a causal language model acting through the env's text face, ``policies.lm``)"""
    hidden: int = 64
    """hidden width of the MLP policies (<= 4096; ``mlp`` only)"""
    shared: bool = False
    """one module for all roles: ``mlp``: per-role encoders and heads around a shared trunk;
    ``lm``: one base model for every role (else one model per role)"""
    model: str = "tiny-qwen3"
    """``lm`` only: ``"tiny-qwen3"`` / ``"tiny-qwen3-moe"`` (random-init Qwen3 / Qwen3-MoE built
    from a config, small enough for a CPU; the real Qwen3 tokenizer) or a local folder written by
    ``save_pretrained`` (model and tokenizer). Nothing is ever downloaded."""
    mode: str = "generate"
    """``lm`` only: ``"generate"`` (free sampling of the tool call; text that does not parse is
    a malformed action, f = 0) or ``"choice"`` (sampling constrained to the texts of the actions
    the mask allows; lets a random-init model learn)"""
    max_new_tokens: int = 32
    """``lm`` only: most sampled tokens per turn (<= 4096; below ``max_seq_len``)"""
    max_seq_len: int = 2048
    """``lm`` only: most tokens of a prompt plus its response (<= 131072; within the model's
    context)"""
    temperature: float = 1.0
    """``lm`` only: sampling temperature (> 0, <= 10); log-probs are taken at it"""
    dtype: str = "float32"
    """``lm`` only: parameter dtype (``"float32"``, ``"bfloat16"``, ``"float16"``); the
    rollout/update log-prob match (``<role>/rollout_logp_diff`` ~ 0) holds in float32"""
    enable_thinking: bool = False
    """``lm`` only: Qwen3's thinking mode in the chat template (off: the paper's tool calls)"""

    def __post_init__(self) -> None:
        _choice("policy.kind", self.kind, _names("policies.registry", "policy_kinds"))
        _int("policy.hidden", self.hidden, 1, 4096)
        _choice("policy.shared", self.shared, (True, False))
        if not isinstance(self.model, str) or not self.model:
            _fail("policy.model", self.model, f"one of {TINY_MODELS} or a model folder")
        _choice("policy.mode", self.mode, LM_MODES)
        _int("policy.max_new_tokens", self.max_new_tokens, 1, 4096)
        _int("policy.max_seq_len", self.max_seq_len, 2, 131_072)
        if self.max_new_tokens >= self.max_seq_len:
            _fail(
                "policy.max_new_tokens",
                self.max_new_tokens,
                f"fewer than policy.max_seq_len = {self.max_seq_len} (the prompt needs room)",
            )
        _num("policy.temperature", self.temperature, 0.0, 10.0, low_open=True)
        _choice("policy.dtype", self.dtype, LM_DTYPES)
        _choice("policy.enable_thinking", self.enable_thinking, (True, False))
