"""The ``[policy]`` section of the training configuration (:mod:`sim.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from sim.config_checks import _choice, _fail, _int, _names, _num

TINY_MODELS = ("tiny-qwen3", "tiny-qwen3-moe")
"""built-in random-init models (:func:`policies.qwen.tiny_qwen3`) for ``policy.model``"""
LM_MODES = ("generate", "choice")
LM_DTYPES = ("float32", "bfloat16", "float16")
BIG_MODELS = ("qwen3-30b-a3b",)
"""built-in published architectures (config only, random init: planning and meta-device tests)"""
ENGINES = ("hf", "vllm")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "experts")
"""default ``policy.lora.targets``: the attention projections and the MoE experts (fused 3-D
parameters in transformers 5; a dense model's MLP is ``gate_proj``/``up_proj``/``down_proj``)"""
NESTED = {"lora": ("rank", "alpha", "targets")}
"""``[policy.<table>]`` keys, stored as fields ``<table>_<key>`` (``policy.lora.rank`` ->
``lora_rank``)"""


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
    from a config, small enough for a CPU; the real Qwen3 tokenizer), ``"qwen3-30b-a3b"`` (the
    published architecture, config only: for ``mgrpo plan`` and meta-device tests) or a local
    folder written by ``save_pretrained`` (model and tokenizer). Nothing is ever downloaded."""
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
    lora_rank: int = 0
    """``policy.lora.rank``: LoRA rank of each role's adapter (0: full fine-tuning; <= 1024;
    ``lm`` only)"""
    lora_alpha: float = 32.0
    """``policy.lora.alpha``: LoRA scaling numerator (scale = alpha / rank; > 0, <= 4096)"""
    lora_targets: tuple[str, ...] = LORA_TARGETS
    """``policy.lora.targets``: module (or, for fused experts, parameter) names the adapters
    wrap; each must match something in the model (checked when it is built)"""
    share_base: bool = True
    """``lm`` with LoRA: one base model under one adapter per role (main, each specialist);
    false gives each role its own model"""
    engine: str = "hf"
    """``lm`` rollout engine: ``"hf"`` (the in-process sampler, CPU and GPU) or ``"vllm"`` (a
    vLLM server's OpenAI-compatible API at ``policy.engine_url``: token ids in and out)"""
    engine_url: str = "http://127.0.0.1:8000"
    """base URL of the rollout engine's server (``policy.engine = "vllm"``)"""
    is_cap: float = 2.0
    """truncated importance weight cap for engine log-probs that differ from the trainer's
    (>= 1, <= 100; used with ``policy.engine = "vllm"``)"""
    gradient_checkpointing: bool | str = "auto"
    """``lm`` only: recompute each decoder layer's activations in the backward instead of
    keeping them (non-reentrant; composes with LoRA): ``"auto"`` (on for a model folder, off
    for the tiny models), ``true`` or ``false``. With it, and with several processes (FSDP2),
    the update scores each segment with its prompt prefix instead of a shared KV cache"""

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
        _int("policy.lora.rank", self.lora_rank, 0, 1024)
        _num("policy.lora.alpha", self.lora_alpha, 0.0, 4096.0, low_open=True)
        if isinstance(self.lora_targets, list):
            self.lora_targets = tuple(self.lora_targets)
        if (
            not isinstance(self.lora_targets, tuple)
            or not self.lora_targets
            or not all(isinstance(t, str) and t for t in self.lora_targets)
        ):
            _fail("policy.lora.targets", self.lora_targets, "a non-empty list of names")
        _choice("policy.share_base", self.share_base, (True, False))
        _choice("policy.engine", self.engine, ENGINES)
        if not isinstance(self.engine_url, str) or not self.engine_url.startswith(
            ("http://", "https://")
        ):
            _fail("policy.engine_url", self.engine_url, "an http:// or https:// URL")
        _num("policy.is_cap", self.is_cap, 1.0, 100.0)
        _choice("policy.gradient_checkpointing", self.gradient_checkpointing, ("auto", True, False))
