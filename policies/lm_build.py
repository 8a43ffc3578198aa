"""Building language-model policies from the ``[policy]`` config (``policy.kind = "lm"``).

Keys (read by attribute, with these defaults): ``model`` (``"tiny-qwen3"``,
``"tiny-qwen3-moe"`` or a local folder written by ``save_pretrained`` holding a config and a
tokenizer), ``mode`` (``"generate"`` | ``"choice"``), ``max_new_tokens`` (32), ``max_seq_len``
(2048), ``temperature`` (1.0), ``dtype`` (``"float32"`` | ``"bfloat16"`` | ``"float16"``),
``enable_thinking`` (False), ``shared`` (False: one model per role, tiny models seeded per role;
True: one model for every role, returned as the shared module), ``lora_rank`` / ``lora_alpha`` /
``lora_targets`` / ``share_base`` (LoRA, :mod:`policies.lm_lora`), ``engine`` (``"hf"`` |
``"vllm"``), ``engine_url``, ``is_cap`` and ``gradient_checkpointing`` (``"auto"``: on for a
model folder, off for the tiny models; ``True`` | ``False``). Every key is checked before any
model is built; nothing is downloaded.

**Gradient checkpointing** (:func:`enable_checkpointing`): each decoder layer keeps only its
input for the backward and recomputes the rest (``use_reentrant=False``: it composes with frozen
bases and LoRA, no ``enable_input_require_grads`` needed). The layers are put in training mode
(what transformers checks) but nothing under them (no dropout). A checkpointed layer cannot
use a KV cache while it records gradients, so the update scores every segment with its prompt
prefix inline (``LMPolicy.prefix_cache = False``); rollouts keep the cache.

**Several processes** (:func:`policies.lm_fsdp.active`): every model built is sharded with
FSDP2 (:func:`policies.lm_fsdp.shard_model`) before its policies are made
(``LMPolicy.sharded``).

``engine = "vllm"``: one :class:`policies.engine.VLLMEngine` at ``engine_url`` serving the base
model under the name ``policy.model`` (``vllm serve PATH`` serves it as ``PATH``; otherwise
``--served-model-name``), shared by every role's policy; it needs generate mode and LoRA
(``lora_rank > 0``: the server gets the updated weights as one adapter per role).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from policies.base import Built
from policies.lm import MODES, LMPolicy
from policies.qwen import TINY_CONTEXT, load_tokenizer, tiny_qwen3

__all__ = [
    "DEFAULTS",
    "TINY_MODELS",
    "build_lm",
    "check_lm_config",
    "enable_checkpointing",
    "load_model",
]

TINY_MODELS = ("tiny-qwen3", "tiny-qwen3-moe")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULTS: dict[str, Any] = {
    "model": "tiny-qwen3",
    "mode": "generate",
    "max_new_tokens": 32,
    "max_seq_len": 2048,
    "temperature": 1.0,
    "dtype": "float32",
    "enable_thinking": False,
    "shared": False,
    "lora_rank": 0,
    "lora_alpha": 32.0,
    "lora_targets": ("q_proj", "k_proj", "v_proj", "o_proj", "experts"),
    "share_base": True,
    "engine": "hf",
    "engine_url": "http://127.0.0.1:8000",
    "is_cap": 2.0,
    "gradient_checkpointing": "auto",
}
ENGINES = ("hf", "vllm")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def _get(config: Any, key: str) -> Any:
    return getattr(config, key, DEFAULTS[key])


def _int(key: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"policy.{key} = {v!r} must be an integer >= {low}")
    return v


def check_lm_config(config: Any) -> dict[str, Any]:
    """The validated keys (see module docstring); ``ValueError`` naming the key otherwise.
    A model folder must exist, hold ``config.json`` of a causal LM and a tokenizer, and allow
    ``max_seq_len`` positions."""
    out = {k: _get(config, k) for k in DEFAULTS}
    if out["mode"] not in MODES:
        raise ValueError(f"policy.mode = {out['mode']!r}; allowed: {MODES}")
    _int("max_new_tokens", out["max_new_tokens"], 1)
    _int("max_seq_len", out["max_seq_len"], 2)
    if out["max_new_tokens"] >= out["max_seq_len"]:
        raise ValueError(
            f"policy.max_new_tokens = {out['max_new_tokens']} must be below policy.max_seq_len = "
            f"{out['max_seq_len']} (the prompt needs room)"
        )
    t = out["temperature"]
    if isinstance(t, bool) or not isinstance(t, int | float) or not (math.isfinite(t) and t > 0):
        raise ValueError(f"policy.temperature = {t!r} must be a finite number > 0")
    if out["dtype"] not in DTYPES:
        raise ValueError(f"policy.dtype = {out['dtype']!r}; allowed: {tuple(DTYPES)}")
    for k in ("enable_thinking", "shared"):
        if out[k] not in (True, False):
            raise ValueError(f"policy.{k} = {out[k]!r} must be true or false")
    ckpt = out["gradient_checkpointing"]
    if not isinstance(ckpt, bool) and ckpt != "auto":
        raise ValueError(f"policy.gradient_checkpointing = {ckpt!r}; allowed: 'auto', true, false")
    if out["engine"] not in ENGINES:
        raise ValueError(f"policy.engine = {out['engine']!r}; allowed: {ENGINES}")
    if out["engine"] == "vllm":
        if out["lora_rank"] < 1:
            raise ValueError(
                "policy.engine = 'vllm' needs policy.lora.rank > 0: the server must get the "
                "updated weights as an adapter"
            )
        if out["mode"] != "generate":
            raise ValueError(
                f"policy.engine = 'vllm' needs policy.mode = 'generate' (got {out['mode']!r}: "
                "choice mode's constrained decoding runs only in the in-process sampler)"
            )
    model = out["model"]
    if not isinstance(model, str) or not model:
        raise ValueError(f"policy.model = {model!r} must be {TINY_MODELS} or a model folder")
    if model not in TINY_MODELS:
        _check_folder(model, out["max_seq_len"])
    elif out["max_seq_len"] > TINY_CONTEXT:
        raise ValueError(
            f"policy.max_seq_len = {out['max_seq_len']} exceeds the model's context "
            f"({TINY_CONTEXT} positions, {model!r})"
        )
    return out


def _check_folder(model: str, max_seq_len: int) -> None:
    folder = Path(model)
    if not folder.is_dir():
        raise ValueError(
            f"policy.model = {model!r} is neither {TINY_MODELS} nor an existing folder "
            "(a folder written by save_pretrained; nothing is downloaded)"
        )
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"policy.model = {model!r}: the folder has no config.json")
    if not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        raise ValueError(
            f"policy.model = {model!r}: the folder has no tokenizer "
            f"({' or '.join(_TOKENIZER_FILES)}; save it with tokenizer.save_pretrained)"
        )
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"policy.model = {model!r}: config.json is unreadable ({e})") from e
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    kind = cfg.get("model_type")
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(
            f"policy.model = {model!r}: model_type {kind!r} is not a causal language model"
        )
    ctx = cfg.get("max_position_embeddings")
    if isinstance(ctx, int) and max_seq_len > ctx:
        raise ValueError(
            f"policy.max_seq_len = {max_seq_len} exceeds the model's context ({ctx} positions, "
            f"{model!r})"
        )


def load_model(
    model: str, dtype: str = "float32", seed: int = 0, checkpointing: bool | str = "auto"
) -> tuple[Any, Any]:
    """``(causal LM, tokenizer)`` for a checked ``policy.model`` value; tiny models use the real
    Qwen3 tokenizer and are random-init from ``seed``. ``checkpointing``: gradient checkpointing
    (:func:`enable_checkpointing`); ``"auto"``: on for a model folder, off for a tiny model."""
    if model in TINY_MODELS:
        lm, tok = tiny_qwen3(moe=model.endswith("moe"), seed=seed).to(DTYPES[dtype]), None
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model, local_files_only=True)
        lm = AutoModelForCausalLM.from_pretrained(
            model, local_files_only=True, dtype=DTYPES[dtype]
        ).eval()
    if checkpointing is True or (checkpointing == "auto" and model not in TINY_MODELS):
        enable_checkpointing(lm)
    return lm, tok if tok is not None else load_tokenizer()


def enable_checkpointing(model: Any) -> None:
    """Gradient checkpointing of every decoder layer of a transformers causal LM, non-reentrant;
    the layers' own ``training`` flag (what transformers checks) is set, their submodules stay
    in eval mode. ``ValueError`` for a model without checkpointable layers."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x's name
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no checkpointable layers")
    model.eval()  # gradient_checkpointing_enable may switch to training mode: no dropout
    for m in layers:
        m.training = True  # not .train(): only the flag transformers reads, not recursively


def checkpointed(model: Any) -> bool:
    """Whether gradient checkpointing is on in ``model``'s decoder layers."""
    return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def build_lm(specs: dict[str, Any], config: Any, seed: int) -> Any:
    """The ``lm`` policy kind's builder: ``(specs, config, seed) -> Built`` (see module)."""
    c = check_lm_config(config)
    faceless = [r for r, s in specs.items() if s.text is None]
    if faceless:
        raise ValueError(f"policy.kind = 'lm': role(s) {faceless} have no text face")
    kw = {k: c[k] for k in ("mode", "max_new_tokens", "max_seq_len", "temperature")}
    kw["enable_thinking"] = c["enable_thinking"]
    if c["lora_rank"] > 0:
        if c["engine"] == "vllm":
            from policies.engine import VLLMEngine

            kw["engine"] = VLLMEngine(c["engine_url"], model=c["model"])
        return _build_lora(specs, c, seed, kw)
    ckpt = c["gradient_checkpointing"]
    shared = _placed(load_model(c["model"], c["dtype"], seed, ckpt)) if c["shared"] else None
    pols = {}
    for i, (role, s) in enumerate(specs.items()):
        model, tok = shared or _placed(
            load_model(c["model"], c["dtype"], seed * 1000 + 17 * i, ckpt)
        )
        pols[role] = _marked(
            LMPolicy(
                model, tok, s.text, s.observation_space, s.action_space, seed=seed + 101 * i, **kw
            )
        )
    return Built(pols, shared[0] if shared else None)


def _placed(loaded: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(model, tokenizer)`` with the model sharded when several processes train
    (:mod:`policies.lm_fsdp`)."""
    from policies import lm_fsdp

    if lm_fsdp.active():
        lm_fsdp.shard_model(loaded[0])
    return loaded


def _marked(policy: LMPolicy) -> LMPolicy:
    """``policy`` told how its model runs: sharded (FSDP2) and/or checkpointed, either of which
    rules out the shared-prefix KV cache in the update."""
    from policies import lm_fsdp

    policy.sharded = lm_fsdp.active()
    policy.prefix_cache = not (policy.sharded or checkpointed(policy.model))
    return policy


def _build_lora(specs: dict[str, Any], c: dict[str, Any], seed: int, kw: dict) -> Built:
    """LoRA: one adapter per role on one base (``share_base``) or on a base per role; the
    adapters' optimizers are per role (no shared module)."""
    from policies.lm_lora import add_adapters

    roles = list(specs)
    groups = [roles] if c["share_base"] else [[r] for r in roles]
    pols = {}
    for g_i, group in enumerate(groups):
        model, tok = load_model(
            c["model"], c["dtype"], seed * 1000 + 17 * g_i, c["gradient_checkpointing"]
        )
        model.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):  # peft's adapter init draws from torch
            torch.manual_seed(seed * 1000 + 7 * g_i)
            peft_model = add_adapters(
                model, group, c["lora_rank"], c["lora_alpha"], tuple(c["lora_targets"])
            )
        _placed((model, tok))
        for role in group:
            i = roles.index(role)
            s = specs[role]
            pols[role] = LMPolicy(
                model,
                tok,
                s.text,
                s.observation_space,
                s.action_space,
                seed=seed + 101 * i,
                peft=peft_model,
                adapter=role,
                **kw,
            )
            _marked(pols[role])
    return Built(pols, None)
