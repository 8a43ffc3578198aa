"""Language-model policies: any Hugging Face causal LM acting through an env's text face.

**Token in, token out** (DESIGN §5). :meth:`LMPolicy.act` builds each row's prompt with the
tokenizer's own chat template from ``face.messages(obs)`` and samples the response token by token
in its own loop over the KV cache with the policy's :attr:`~LMPolicy.generator`, up to and
including ``<|im_end|>`` or ``max_new_tokens``. It keeps the exact prompt ids, the sampled ids and
their log-probs as records; the trainer gets them through :meth:`~LMPolicy.export_records` and
never re-tokenizes. :meth:`~LMPolicy.pack` and :meth:`~LMPolicy.token_logprobs` (in
:mod:`policies.lm_pack`) recompute the same log-probs under the current parameters. With
``policy.engine = "vllm"`` a vLLM server samples the responses instead (generate mode, LoRA;
:mod:`policies.lm_engine`).

Modes: ``generate`` (free sampling; the env gets ``face.parse(decode(response))``, or
``face.malformed()`` for bad text) and ``choice`` (decoding constrained to the texts of the
actions the row's ``action_mask`` allows, :mod:`policies.trie`; the log-prob of a token is
renormalised over the allowed next tokens, which the records keep for the update).

Logits are computed only where needed: the base model gives hidden states and the output
embedding is applied to the last position only (choice mode: to the allowed ids only). The prompt
prefix that all rows of a batch share (the system message and the tools) runs once.
Log-probs are at temperature ``T``: ``log_softmax(logits / T)``.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policies.base import TokenBatch
from policies.lm_engine import engine_sample, rescore
from policies.lm_heads import (
    MASKED,
    base_and_head,
    cache_kwarg,
    head_logits,
    sample_categorical,
    scale,
)
from policies.lm_pack import export, inline_prefix, merge_exports, pack, token_logprobs
from policies.trie import TokenTrie, build_trie

__all__ = ["LMPolicy", "MODES"]

MODES = ("generate", "choice")


@dataclass
class _Record:
    prompt: np.ndarray  # (P,) int32
    response: np.ndarray  # (R,) int32
    logp: np.ndarray  # (R,) float32
    allowed: list[np.ndarray] | None  # per response token, the allowed ids (choice mode)


class LMPolicy(nn.Module):
    """One role's policy around a causal LM (the model may be shared by several roles).

    Args:
        model: a Hugging Face causal LM (``AutoModelForCausalLM``-like).
        tokenizer: its tokenizer, with a chat template and ``<|im_end|>``.
        face: the role's :class:`envs.core.text.TextFace`.
        observation_space, action_space: the role's spaces (``MultiDiscrete`` actions).
        mode: ``"generate"`` or ``"choice"``.
        max_new_tokens: response tokens per turn at most (choice: >= the longest action text).
        max_seq_len: prompt + response tokens at most.
        temperature: sampling temperature (> 0); log-probs are those of the tempered softmax.
        enable_thinking: passed to the chat template (Qwen3: False adds an empty think block).
        seed: seeds :attr:`generator`.
        max_records: records kept (oldest dropped first; evaluation never exports its own).
        peft, adapter: with LoRA (:mod:`policies.lm_lora`), the ``PeftModel`` around ``model``
            (its inner model) and this role's adapter name: it is activated before every
            forward; :meth:`parameters`, :meth:`state_dict` and :meth:`load_state_dict` cover
            the adapter only, and :meth:`reference` is the model with adapters disabled.
        engine: a rollout engine (:class:`policies.engine.VLLMEngine`, ``policy.engine =
            "vllm"``) that samples the responses instead of the in-process loop, with this
            role's adapter (:mod:`policies.lm_engine`); generate mode only.
    """

    entropy_grad = True
    """entropies with gradient (the trainer turns it off when ``loss.entropy_coef`` is 0)"""
    active_rows_only = True
    """the rollout passes only the rows of running episodes to :meth:`act` (no decoding of
    finished ones)"""
    sharded = False
    """the model is sharded across processes (FSDP2, :mod:`policies.lm_fsdp`): every scoring
    call runs the forward (a collective), even for a batch with no token to score"""
    prefix_cache = True
    """the update runs the prompt prefix that all rows share once and reuses its KV cache;
    off for a sharded or gradient-checkpointed model (each segment then carries the prefix)"""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        face: Any,
        observation_space: gym.spaces.Dict,
        action_space: gym.spaces.MultiDiscrete,
        *,
        mode: str = "generate",
        max_new_tokens: int = 32,
        max_seq_len: int = 2048,
        temperature: float = 1.0,
        enable_thinking: bool = False,
        seed: int = 0,
        max_records: int = 50_000,
        peft: Any = None,
        adapter: str | None = None,
        engine: Any = None,
    ) -> None:
        super().__init__()
        self.__dict__["peft"] = peft  # not a submodule: ``model`` is its inner model
        self.adapter = adapter
        self.engine = engine
        if mode not in MODES:
            raise ValueError(f"policy.mode = {mode!r}; allowed: {MODES}")
        if engine is not None and mode != "generate":
            raise ValueError(
                f"policy.mode = {mode!r} cannot run on a rollout engine (policy.engine = "
                "'vllm'): choice mode constrains every token to the allowed actions' texts, "
                "which only the in-process sampler does; use policy.mode = 'generate' or "
                "policy.engine = 'hf'"
            )
        if not isinstance(action_space, gym.spaces.MultiDiscrete):
            raise ValueError(f"action space must be MultiDiscrete, got {action_space}")
        if int(max_new_tokens) < 1 or int(max_new_tokens) >= int(max_seq_len):
            raise ValueError(
                f"policy.max_new_tokens = {max_new_tokens} must be in [1, policy.max_seq_len = "
                f"{max_seq_len})"
            )
        if not float(temperature) > 0:
            raise ValueError(f"policy.temperature = {temperature} must be > 0")
        if face is None:
            raise ValueError("a language-model policy needs the role's text face (RoleSpec.text)")
        self.model = model
        base, head = base_and_head(model)  # not registered again: one copy in state_dict
        self._cache_kw = cache_kwarg(base)
        self.tokenizer = tokenizer
        self.face = face
        self.role = str(getattr(face, "role", "?"))
        self.observation_space = observation_space
        self.nvec = np.asarray(action_space.nvec, dtype=np.int64)
        self.mode = mode
        self.max_new_tokens = int(max_new_tokens)
        self.max_seq_len = int(max_seq_len)
        self.temperature = float(temperature)
        self.enable_thinking = bool(enable_thinking)
        self.stop_id = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
        pad = tokenizer.pad_token_id
        self.pad_id = int(self.stop_id if pad is None else pad)
        self.device = head.weight.device
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed) + 1)
        self.max_records = int(max_records)
        self._records: OrderedDict[int, _Record] = OrderedDict()
        self._next_handle = 0
        self._tries: OrderedDict[bytes, TokenTrie] = OrderedDict()

    @property
    def base(self) -> nn.Module:
        """The base model (hidden states ``(n, L, H)``)."""
        return base_and_head(self.model)[0]

    @property
    def head(self) -> nn.Module:
        """The output embedding (``weight (V, H)``)."""
        return base_and_head(self.model)[1]

    def __deepcopy__(self, memo: dict) -> LMPolicy:
        """A copy with its own model and generator (a frozen reference policy); the tokenizer
        and the text face are shared, the records are not copied."""
        new = copy.copy(self)
        new.__dict__ = dict(self.__dict__)
        new._modules = {k: copy.deepcopy(v, memo) for k, v in self._modules.items()}
        new._parameters, new._buffers = dict(self._parameters), dict(self._buffers)
        new.generator = torch.Generator(device=self.device)
        new.generator.set_state(self.generator.get_state())
        new._records, new._tries = OrderedDict(), OrderedDict(self._tries)
        return new

    # ------------------------------------------------------------------ prompts
    def prompt_ids(self, obs: dict[str, np.ndarray]) -> list[list[int]]:
        """The chat-template prompt ids of each row of a batched observation."""
        n = len(obs["action_mask"])
        texts = []
        for i in range(n):
            msgs, tools = self.face.messages({k: np.asarray(v)[i] for k, v in obs.items()})
            texts.append(
                self.tokenizer.apply_chat_template(
                    msgs,
                    tools=tools or None,
                    add_generation_prompt=True,
                    enable_thinking=self.enable_thinking,
                    tokenize=False,
                )
            )
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"] if n else []
        longest = max((len(p) for p in ids), default=0)
        if longest + self.max_new_tokens > self.max_seq_len:
            raise ValueError(
                f"role {self.role!r}: a prompt of {longest} tokens plus policy.max_new_tokens = "
                f"{self.max_new_tokens} exceeds policy.max_seq_len = {self.max_seq_len}"
            )
        return ids

    def trie(self, mask: np.ndarray) -> TokenTrie:
        """The (cached) :class:`TokenTrie` of the actions ``mask`` allows."""
        key = np.asarray(mask, dtype=np.int8).tobytes()
        t = self._tries.get(key)
        if t is None:
            t = build_trie(self.face, mask, self.tokenizer, self.stop_id)
            if t.depth > self.max_new_tokens:
                raise ValueError(
                    f"role {self.role!r}: an allowed action text takes {t.depth} tokens, more "
                    f"than policy.max_new_tokens = {self.max_new_tokens} (choice mode)"
                )
            self._tries[key] = t
            if len(self._tries) > 4096:
                self._tries.popitem(last=False)
        return t

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def act(
        self, obs: dict[str, np.ndarray], greedy: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample (``greedy``: the most likely token each time) a response per row.

        Returns actions ``(n, n_comp)`` int64, log-probs ``(n,)`` float64 (sum over the
        response tokens) and handles ``(n,)`` int64 of the records.
        """
        n = len(obs["action_mask"])
        self._activate()
        prompts = self.prompt_ids(obs)
        tries = [self.trie(m) for m in np.asarray(obs["action_mask"])] if self.choice else None
        live = [i for i in range(n) if tries is None or len(tries[i]) > 0]
        if self.engine is not None:  # generate mode: no tries
            resp, lps = engine_sample(self, prompts, greedy)
            allowed, leaf = [[] for _ in range(n)], [-1] * n
        else:
            resp, lps, allowed, leaf = self._sample(
                [prompts[i] for i in live],
                None if tries is None else [tries[i] for i in live],
                greedy,
            )
        actions = np.tile(self.face.malformed(), (n, 1)).astype(np.int64)
        logp = np.zeros(n, dtype=np.float64)
        handles = np.zeros(n, dtype=np.int64)
        done = dict(zip(live, range(len(live)), strict=True))
        for i in range(n):
            j = done.get(i)
            r = np.asarray(resp[j] if j is not None else [], dtype=np.int32)
            lp = np.asarray(lps[j] if j is not None else [], dtype=np.float32)
            al = None if tries is None else (allowed[j] if j is not None else [])
            if tries is not None:
                if j is not None and leaf[j] >= 0:
                    actions[i] = tries[i].actions[leaf[j]]
            elif len(r):
                a, ok, _ = self.face.parse(self.tokenizer.decode(r, skip_special_tokens=False))
                if ok:
                    actions[i] = a
            logp[i] = float(lp.astype(np.float64).sum())
            handles[i] = self._store(_Record(np.asarray(prompts[i], np.int32), r, lp, al))
        return actions, logp, handles

    def __call__(self, obs: dict[str, np.ndarray]) -> Any:  # type: ignore[override]
        return self.act(obs)

    @property
    def choice(self) -> bool:
        return self.mode == "choice"

    def _store(self, rec: _Record) -> int:
        h = self._next_handle
        self._next_handle += 1
        self._records[h] = rec
        while len(self._records) > self.max_records:
            self._records.popitem(last=False)
        return h

    def response_text(self, handle: int) -> str:
        """The decoded response of record ``handle`` (special tokens kept): what the agent
        produced that turn (``mgrpo show``)."""
        rec = self._records.get(int(handle))
        if rec is None:
            raise KeyError(f"no record {handle} (kept: the last {self.max_records})")
        return self.tokenizer.decode(rec.response.tolist(), skip_special_tokens=False)

    def clear_records(self) -> None:
        """Forget every record (their handles become unknown to :meth:`export_records`)."""
        self._records.clear()

    def _forward(self, ids, attn, pos, cache) -> torch.Tensor:
        kw = {self._cache_kw: cache}
        out = self.base(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **kw)
        return out.last_hidden_state[:, -1]

    def _prefill(self, prompts: list[list[int]]) -> tuple[torch.Tensor, Any, torch.Tensor, Any]:
        """Run the prompts: the prefix all rows share once, the rest left-padded after it.
        Returns the last hidden states ``(B, H)``, the attention mask ``(B, len)``, the next
        positions ``(B,)`` and the KV cache."""
        from transformers import DynamicCache

        b, dev = len(prompts), self.device
        shortest = min(len(p) for p in prompts)
        first = np.asarray(prompts[0][: shortest - 1], dtype=np.int64)
        c = 0
        if b > 1 and shortest > 1:
            same = np.ones(len(first), dtype=bool)
            for p in prompts[1:]:
                same &= np.asarray(p[: len(first)], dtype=np.int64) == first
            c = int(np.argmin(same)) if not same.all() else len(first)
        cache = DynamicCache(config=self.model.config)
        if c > 0:
            pre = torch.as_tensor(first[None, :c], device=dev)
            self._forward(pre, torch.ones_like(pre), torch.arange(c, device=dev)[None], cache)
            cache.batch_repeat_interleave(b)
        width = max(len(p) for p in prompts) - c
        ids = torch.full((b, width), self.pad_id, dtype=torch.long)
        attn = torch.zeros((b, c + width), dtype=torch.long)
        attn[:, :c] = 1
        for i, p in enumerate(prompts):
            k = len(p) - c
            ids[i, width - k :] = torch.as_tensor(p[c:])
            attn[i, c + width - k :] = 1
        pos = (c + attn[:, c:].cumsum(1) - 1).clamp(min=0)
        ids, attn, pos = ids.to(dev), attn.to(dev), pos.to(dev)
        h = self._forward(ids, attn, pos, cache)
        return h, attn, pos[:, -1] + 1, cache

    @torch.no_grad()
    def _sample(self, prompts: list[list[int]], tries: list[TokenTrie] | None, greedy: bool):
        """The decoding loop. Returns, per row, the response ids, their log-probs, the allowed
        id sets (choice mode) and the completed action's index in its trie (-1: none)."""
        b = len(prompts)
        resp: list[list[int]] = [[] for _ in range(b)]
        lps: list[list[float]] = [[] for _ in range(b)]
        allowed: list[list[np.ndarray]] = [[] for _ in range(b)]
        leaf = [-1] * b
        if b == 0:
            return resp, lps, allowed, leaf
        h, attn, nxt, cache = self._prefill(prompts)
        rows = np.arange(b)  # batch slot -> row
        node = np.zeros(b, dtype=np.int64)
        for _ in range(self.max_new_tokens):
            if tries is not None:
                sets = [tries[r].tokens[node[k]] for k, r in enumerate(rows)]
                width = max(len(s) for s in sets)
                ids = np.zeros((len(rows), width), dtype=np.int64)
                valid = np.zeros((len(rows), width), dtype=bool)
                for k, s in enumerate(sets):
                    ids[k, : len(s)], valid[k, : len(s)] = s, True
                cand = torch.as_tensor(ids, device=self.device)
                logits = scale(head_logits(self.head, h, cand), self.temperature)
                logits = logits.masked_fill(~torch.as_tensor(valid, device=self.device), MASKED)
            else:
                logits = scale(head_logits(self.head, h), self.temperature)
            lp = torch.log_softmax(logits, dim=-1)
            pick = lp.argmax(-1) if greedy else sample_categorical(lp.exp(), self.generator)
            tok_lp = lp.gather(1, pick[:, None]).squeeze(1).cpu().numpy()
            pick_np = pick.cpu().numpy()
            toks = ids[np.arange(len(rows)), pick_np] if tries is not None else pick_np
            keep = np.ones(len(rows), dtype=bool)
            for k, r in enumerate(rows):
                resp[r].append(int(toks[k]))
                lps[r].append(float(tok_lp[k]))
                if tries is not None:
                    allowed[r].append(sets[k])
                    node[k] = tries[r].children[node[k]][pick_np[k]]
                    leaf[r] = int(tries[r].leaf[node[k]])
                keep[k] = toks[k] != self.stop_id
            if not keep.any():
                break
            if not keep.all():  # drop finished rows from the batch and the cache
                sel = torch.as_tensor(np.flatnonzero(keep), device=self.device)
                cache.batch_select_indices(sel)
                attn, nxt = attn[sel], nxt[sel]
                rows, node, toks = rows[keep], node[keep], toks[keep]
            inp = torch.as_tensor(toks, dtype=torch.long, device=self.device)[:, None]
            attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=1)
            h = self._forward(inp, attn, nxt[:, None], cache)
            nxt = nxt + 1
        return resp, lps, allowed, leaf

    # ------------------------------------------------------------------ records and update
    def export_records(self, handles: np.ndarray) -> dict[str, np.ndarray]:
        """The records of ``handles`` as flat ``lm.*`` arrays (see :mod:`policies.lm_pack`)."""

        h = np.unique(np.asarray(handles, dtype=np.int64))
        h = h[h >= 0]
        missing = [int(x) for x in h if int(x) not in self._records]
        if missing:
            raise ValueError(
                f"role {self.role!r}: no records for handles {missing[:5]} (dropped after "
                f"max_records = {self.max_records}, cleared, or from another policy)"
            )
        recs = [self._records[int(x)] for x in h]
        return export(h, recs)

    def merge_records(self, parts: list[dict], shifts: list[int]) -> dict[str, np.ndarray]:
        """One export of several processes' records, ids of part ``i`` shifted by
        ``shifts[i]`` (:func:`policies.lm_pack.merge_exports`)."""
        return merge_exports(parts, shifts)

    def pack(self, traj: Any) -> TokenBatch:
        """Training tensors of a role's trajectories (:func:`policies.lm_pack.pack`)."""

        return pack(traj, self.pad_id)

    def token_logprobs(
        self, batch: TokenBatch, activate: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies ``(num_rows, seq_len)`` with gradient
        (:func:`policies.lm_pack.token_logprobs`); ``activate``: switch to this role's adapter
        first (LoRA)."""
        if activate:
            self._activate()
        if not self.prefix_cache:
            batch = inline_prefix(batch)
        return token_logprobs(
            self.base, self.head, batch, self.temperature, self.entropy_grad, self.sharded
        )

    def rescore(self, batch: TokenBatch, cap: float) -> tuple[TokenBatch, float]:
        """Engine rollouts: the trainer's own old log-probs, the truncated importance
        weights (``data["is_weight"]``) and the largest log-prob gap
        (:func:`policies.lm_engine.rescore`)."""
        return rescore(self, batch, cap)

    # ------------------------------------------------------------------ LoRA adapters
    def _activate(self) -> None:
        if self.peft is not None and self.adapter is not None:
            self.peft.set_adapter(self.adapter)

    def reference(self) -> Any:
        """The KL reference: with LoRA the same model with adapters disabled (no copy); without
        it, None (the trainer copies the policy)."""
        if self.peft is None:
            return None
        from policies.lm_lora import AdapterRef

        return AdapterRef(self)

    def parameters(self, recurse: bool = True):  # type: ignore[override]
        """The trainable parameters: this role's adapter with LoRA, else the whole model."""
        if self.adapter is None:
            yield from super().parameters(recurse)
            return
        tag = f".{self.adapter}."
        for name, p in self.model.named_parameters():
            if "lora_" in name and tag in name:
                yield p

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        """The model's state, or with LoRA this role's adapter tensors only."""
        if self.adapter is None:
            return super().state_dict(*args, **kwargs)
        from policies.lm_lora import adapter_state

        return {k: v.detach() for k, v in adapter_state(self.peft, self.adapter).items()}

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Load :meth:`state_dict`; with LoRA a ``RuntimeError`` names missing or unexpected
        adapter keys (an adapter of another base model or rank)."""
        if self.adapter is None:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        from policies.lm_lora import adapter_state

        own = adapter_state(self.peft, self.adapter)
        missing = sorted(set(own) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise RuntimeError(
                f"adapter {self.adapter!r} does not match this base model: missing "
                f"{missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected "
                f"{unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
            )
        with torch.no_grad():
            for k, v in state_dict.items():
                if own[k].shape != v.shape:
                    raise RuntimeError(
                        f"adapter {self.adapter!r}: {k} has shape {tuple(v.shape)}, the base "
                        f"model needs {tuple(own[k].shape)} (another rank or model)"
                    )
                own[k].copy_(v)
        return None
