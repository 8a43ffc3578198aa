"""Records, training tensors and log-prob recomputation of language-model policies.

**Records** (:func:`export`, stored in ``Trajectories.extras``), ``m`` records, ragged values cut
by offsets:

* ``lm.handle`` ``(m,)`` int64, sorted: the record ids that the steps' ``handle`` point at;
* ``lm.prompt_offsets`` ``(m+1,)`` / ``lm.prompt_ids`` int32: the exact prompt ids;
* ``lm.response_offsets`` ``(m+1,)`` / ``lm.response_ids`` int32 / ``lm.response_logp``
  float32: the sampled ids and their behaviour log-probs;
* ``lm.allowed_offsets`` ``(num_response_tokens+1,)`` / ``lm.allowed_ids`` int32: per response
  token, the ids it was sampled among (choice mode); none (0 ids) = the whole vocabulary, one id
  = a forced token.

**Packing** (:func:`pack`): a row is one trajectory of a role; its tokens are the response
tokens of all its steps in order. ``mask`` is 1 only on sampled tokens (not prompt, padding or
forced tokens). ``data`` (leading axis ``num_rows``, so ``TokenBatch.select`` works):

* ``prefix`` ``(R, C)`` int32: the prompt prefix that every segment shares (the same in each
  row, so any selection of rows keeps it; it runs once per forward);
* ``seg_ids`` ``(R, S, L)`` int32: step ``s`` of row ``r`` as prompt + response ids after the
  prefix, right-padded; ``seg_len`` ``(R, S)`` int64 (0: no such step);
* ``tok_step``, ``tok_pos`` ``(R, T)`` int64: the step of each token and the position in its
  segment whose hidden state predicts it (-1 on padding);
* ``tok_ids`` ``(R, T)`` int64; ``allowed`` ``(R, T, A)`` int32 with ``allowed_n`` ``(R, T)``
  int64 (0 = whole vocabulary) and ``tok_choice`` ``(R, T)`` int64 (the token's slot in it).

**Recomputation** (:func:`token_logprobs`): the shared prefix once, then one forward of the
base model over every step's segment on its keys and values (right-padded, ``attention_mask`` and
positions; gradients flow into the prefix too), logits only at response positions
(choice tokens: only over their allowed ids, renormalised), scattered back to rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from policies.base import TokenBatch
from policies.lm_heads import MASKED, cache_kwarg, head_logits, scale

__all__ = ["EXTRAS", "export", "inline_prefix", "merge_exports", "pack", "token_logprobs"]

EXTRAS = (
    "lm.handle",
    "lm.prompt_offsets",
    "lm.prompt_ids",
    "lm.response_offsets",
    "lm.response_ids",
    "lm.response_logp",
    "lm.allowed_offsets",
    "lm.allowed_ids",
)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def export(handles: np.ndarray, recs: list[Any]) -> dict[str, np.ndarray]:
    """Flat ``lm.*`` arrays of records ``recs`` (objects with ``prompt``, ``response``, ``logp``,
    ``allowed``) whose ids are ``handles`` (sorted, unique)."""
    allowed = [a for r in recs for a in (r.allowed or [np.zeros(0)] * len(r.response))]
    return {
        "lm.handle": np.asarray(handles, dtype=np.int64),
        "lm.prompt_offsets": _offsets(np.array([len(r.prompt) for r in recs], np.int64)),
        "lm.prompt_ids": _cat([r.prompt for r in recs], np.int32),
        "lm.response_offsets": _offsets(np.array([len(r.response) for r in recs], np.int64)),
        "lm.response_ids": _cat([r.response for r in recs], np.int32),
        "lm.response_logp": _cat([r.logp for r in recs], np.float32),
        "lm.allowed_offsets": _offsets(np.array([len(a) for a in allowed], np.int64)),
        "lm.allowed_ids": _cat(allowed, np.int32),
    }


def merge_exports(parts: list[dict[str, np.ndarray]], shifts: list[int]) -> dict[str, np.ndarray]:
    """One export of the records of several (e.g. one per process), record ids of part ``i``
    shifted by ``shifts[i]`` (non-decreasing parts after shifting keep ``lm.handle`` sorted)."""
    none = export(np.zeros(0, np.int64), [])
    parts = [p if p else none for p in parts]  # a role not called in a process: no records
    if not parts:
        return none
    out: dict[str, np.ndarray] = {}
    for key in EXTRAS:
        arrays = [np.asarray(p[key]) for p in parts]
        if key == "lm.handle":
            out[key] = np.concatenate([a + s for a, s in zip(arrays, shifts, strict=True)])
        elif key.endswith("_offsets"):  # ragged offsets: each part continues the last
            ends = np.cumsum([0] + [int(a[-1]) for a in arrays[:-1]])
            tails = [a[1:] + e for a, e in zip(arrays, ends, strict=True)]
            out[key] = np.concatenate([arrays[0][:1], *tails])
        else:
            out[key] = np.concatenate(arrays)
    return out


def _ragged(values: np.ndarray, offsets: np.ndarray, idx: np.ndarray):
    """Items ``idx`` of a ragged array: ``(flat index into values, lengths)``."""
    lengths = offsets[idx + 1] - offsets[idx]
    start = np.repeat(offsets[idx] - _offsets(lengths)[:-1], lengths)
    return start + np.arange(int(lengths.sum())), lengths


def _common_prefix(segs: np.ndarray, limit: int) -> int:
    """Length of the prefix all rows of ``segs (m, L)`` share, at most ``limit``."""
    if limit <= 0 or len(segs) < 2:
        return max(limit, 0) if len(segs) == 1 else 0
    same = (segs[:, :limit] == segs[:1, :limit]).all(0)
    return int(limit if same.all() else np.argmin(same))


def pack(traj: Any, pad_id: int) -> TokenBatch:
    """The :class:`TokenBatch` of a role's ``sim.records.Trajectories`` whose ``extras`` hold
    the ``lm.*`` records; ``ValueError`` naming the role when they do not."""
    ex = traj.extras
    missing = [k for k in EXTRAS if k not in ex]
    if missing and traj.num_steps == 0:  # a role nobody called: an empty batch
        ex, missing = export(np.zeros(0, np.int64), []), []
    if missing:
        raise ValueError(
            f"role {traj.role!r}: the records lack the language-model extras {missing}; they "
            "come from LMPolicy.export_records of the policy that acted"
        )
    known = np.asarray(ex["lm.handle"], dtype=np.int64)
    rec = np.searchsorted(known, traj.handle)
    rec = np.minimum(rec, max(len(known) - 1, 0))
    if traj.num_steps and (len(known) == 0 or (known[rec] != traj.handle).any()):
        bad = traj.handle if len(known) == 0 else traj.handle[known[rec] != traj.handle]
        raise ValueError(f"role {traj.role!r}: step handles {bad[:5].tolist()} have no lm.* record")
    po, ro = ex["lm.prompt_offsets"], ex["lm.response_offsets"]
    p_idx, plen = _ragged(po, po, rec)
    r_idx, rlen = _ragged(ro, ro, rec)
    n, s_steps = traj.num_rows, traj.num_steps
    row, step_pos = traj.step_rows()
    n_seg = max(int(traj.lengths.max()) if n else 1, 1)
    seg_len = plen + rlen
    width = max(int(seg_len.max()) if s_steps else 1, 1)
    # segments: prompt then response, right-padded
    seg_ids = np.full((n, n_seg, width), pad_id, dtype=np.int32)
    seg_of = np.repeat(np.arange(s_steps), plen)
    p_col = np.arange(int(plen.sum())) - np.repeat(_offsets(plen)[:-1], plen)
    seg_ids[row[seg_of], step_pos[seg_of], p_col] = ex["lm.prompt_ids"][p_idx]
    tok_seg = np.repeat(np.arange(s_steps), rlen)  # step of every token
    j = np.arange(int(rlen.sum())) - np.repeat(_offsets(rlen)[:-1], rlen)  # index in response
    r_col = plen[tok_seg] + j
    tok_ids = ex["lm.response_ids"][r_idx].astype(np.int64)
    seg_ids[row[tok_seg], step_pos[tok_seg], r_col] = tok_ids
    # the prompt prefix every segment shares runs once (at most the shortest prompt - 1)
    c = _common_prefix(seg_ids[row, step_pos], int(plen.min()) - 1 if s_steps else 0)
    prefix = seg_ids[row[0], step_pos[0], :c].copy() if c else np.zeros(0, np.int32)
    seg_ids = np.ascontiguousarray(seg_ids[:, :, c:])
    seg_lens = np.zeros((n, n_seg), dtype=np.int64)
    seg_lens[row, step_pos] = seg_len - c
    # tokens in row layout
    tok_row = row[tok_seg]
    row_tokens = np.bincount(tok_row, minlength=n) if n else np.zeros(0, np.int64)
    t_max = max(int(row_tokens.max()) if n else 1, 1)
    t_col = np.arange(len(tok_row)) - np.repeat(_offsets(row_tokens)[:-1], row_tokens)
    ao = ex["lm.allowed_offsets"]
    a_idx, alen = _ragged(ao, ao, r_idx)
    a_max = max(int(alen.max()) if len(alen) else 1, 1)
    allowed = np.zeros((len(r_idx), a_max), dtype=np.int32)
    a_col = np.arange(len(a_idx)) - np.repeat(_offsets(alen)[:-1], alen)
    allowed[np.repeat(np.arange(len(r_idx)), alen), a_col] = ex["lm.allowed_ids"][a_idx]
    hit = (allowed == tok_ids[:, None]) & (np.arange(a_max)[None, :] < alen[:, None])
    if ((alen > 0) & ~hit.any(1)).any():
        raise ValueError(f"role {traj.role!r}: a sampled token is not among its allowed ids")

    def grid(vals: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        out = np.full((n, t_max, *vals.shape[1:]), fill, dtype=dtype)
        out[tok_row, t_col] = vals
        return out

    t = torch.from_numpy
    data = {
        "prefix": t(np.tile(prefix, (n, 1))),
        "seg_ids": t(seg_ids),
        "seg_len": t(seg_lens),
        "tok_step": t(grid(step_pos[tok_seg], -1, np.int64)),
        "tok_pos": t(grid(r_col - 1 - c, -1, np.int64)),
        "tok_ids": t(grid(tok_ids, 0, np.int64)),
        "allowed": t(grid(allowed, 0, np.int32)),
        "allowed_n": t(grid(alen, 0, np.int64)),
        "tok_choice": t(grid(hit.argmax(1), 0, np.int64)),
    }
    logp_old = t(grid(ex["lm.response_logp"][r_idx], 0.0, np.float32))
    mask = t(grid((alen != 1).astype(np.float32), 0.0, np.float32))
    return TokenBatch(logp_old, mask, data)


def inline_prefix(batch: TokenBatch) -> TokenBatch:
    """``batch`` with its shared prompt prefix written into every segment (``prefix`` empty):
    the same tokens at the same positions, scored by one forward without a KV cache. A model
    sharded across processes (FSDP2) needs it: its layers free their gathered weights after
    their backward, before the backward through a cached prefix would reach them."""
    d = batch.data
    n, c = d["prefix"].shape
    if c == 0:
        return batch
    n_seg = d["seg_ids"].shape[1]
    prefix = d["prefix"][:, None, :].expand(n, n_seg, c).to(d["seg_ids"].dtype)
    out = dict(d)
    out["prefix"] = d["prefix"][:, :0]
    out["seg_ids"] = torch.cat([prefix, d["seg_ids"]], dim=2)
    out["seg_len"] = torch.where(d["seg_len"] > 0, d["seg_len"] + c, d["seg_len"])
    out["tok_pos"] = torch.where(d["tok_pos"] >= 0, d["tok_pos"] + c, d["tok_pos"])
    return TokenBatch(batch.logp_old, batch.mask, out)


def token_logprobs(
    base: nn.Module,
    head: nn.Module,
    batch: TokenBatch,
    temperature: float,
    entropy_grad: bool = True,
    always_forward: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies ``(num_rows, seq_len)`` float32 of a packed batch under the
    current parameters (with gradient; the entropies only with ``entropy_grad``: without an
    entropy bonus they are a logged metric, and their backward over the vocabulary is about 40%
    of the head's cost). Forced and padding tokens get 0.

    ``always_forward``: run the model (and connect its output to the log-probs' graph with
    weight 0) even when the batch has no token to score, as every process of a sharded model
    must: its forward and backward are collectives."""
    d = batch.data
    dev = head.weight.device
    n, t_max = batch.logp_old.shape
    n_seg = d["seg_ids"].shape[1]
    flat_len = d["seg_len"].reshape(-1)
    segs = torch.nonzero(flat_len > 0).squeeze(1)
    logp = torch.zeros((n, t_max), device=dev)
    ent = torch.zeros((n, t_max), device=dev)
    real = d["tok_step"] >= 0
    free = real & (d["allowed_n"] == 0)
    pick = real & (d["allowed_n"] >= 2)
    if len(segs) == 0 and always_forward:  # no segment at all: one padding token
        hidden = base(input_ids=torch.zeros((1, 1), dtype=torch.long, device=dev))
        return logp + 0.0 * hidden.last_hidden_state.sum(), ent
    if len(segs) == 0 or not (free.any() or pick.any() or always_forward):
        return logp, ent
    width = int(flat_len.max())
    ids = d["seg_ids"].reshape(n * n_seg, -1)[segs, :width].long().to(dev)
    lens = flat_len[segs].to(dev)
    attn = (torch.arange(width, device=dev)[None, :] < lens[:, None]).long()
    prefix = d["prefix"][0].long().to(dev)
    c = len(prefix)
    pos = (c + torch.arange(width, device=dev))[None, :].expand(len(segs), -1)
    kw: dict[str, Any] = {"use_cache": False}
    if c:  # the shared prefix once, its keys and values repeated for every segment
        from transformers import DynamicCache

        cache = DynamicCache(config=base.config)
        kw = {cache_kwarg(base): cache, "use_cache": True}
        pre, at = prefix[None], torch.arange(c, device=dev)[None]
        base(input_ids=pre, attention_mask=torch.ones_like(pre), position_ids=at, **kw)
        cache.batch_repeat_interleave(len(segs))
        attn = torch.cat([torch.ones_like(attn[:, :1]).expand(-1, c), attn], dim=1)
    hidden = base(input_ids=ids, attention_mask=attn, position_ids=pos, **kw).last_hidden_state
    compact = torch.zeros(n * n_seg, dtype=torch.long)
    compact[segs] = torch.arange(len(segs))
    seg_of = compact[torch.arange(n)[:, None] * n_seg + d["tok_step"].clamp(min=0)]
    temp = float(temperature)
    for sel, choice in ((free, False), (pick, True)):
        if not sel.any():
            continue
        h = hidden[seg_of[sel].to(dev), d["tok_pos"][sel].to(dev)]
        where = torch.nonzero(sel.to(dev), as_tuple=True)
        if choice:
            cand = d["allowed"][sel].long().to(dev)
            valid = (torch.arange(cand.shape[1])[None] < d["allowed_n"][sel, None]).to(dev)
            lp_t, ent_t = _scores(
                head, h, d["tok_choice"][sel].to(dev), temp, cand, valid, entropy_grad
            )
        else:  # full-vocabulary rows in chunks, recomputed in backward: (chunk, V) at a time
            target = d["tok_ids"][sel].to(dev)
            step = max(1, VOCAB_CHUNK // int(head.weight.shape[0]))
            parts = [
                checkpoint(_scores, head, h[i : i + step], target[i : i + step], temp,
                           None, None, entropy_grad, use_reentrant=False)
                if torch.is_grad_enabled()
                else _scores(head, h[i : i + step], target[i : i + step], temp)
                for i in range(0, len(h), step)
            ]  # fmt: skip
            lp_t, ent_t = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        logp = logp.index_put(where, lp_t)
        ent = ent.index_put(where, ent_t)
    if always_forward and not logp.requires_grad and torch.is_grad_enabled():
        logp = logp + 0.0 * hidden.sum()  # the backward must reach every layer
    return logp, ent


VOCAB_CHUNK = 1 << 25
"""full-vocabulary logits scored at once in the update (tokens x vocabulary), ~128 MiB float32"""


def _scores(
    head: nn.Module,
    h: torch.Tensor,
    target: torch.Tensor,
    temp: float,
    cand: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
    entropy_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of ``target (n,)`` and entropies, ``(n,)`` each, of hidden states ``h (n, H)``
    at temperature ``temp``: over the vocabulary, or over ``cand (n, A)`` where ``valid``."""

    logits = scale(head_logits(head, h, cand), temp)
    if valid is not None:
        logits = logits.masked_fill(~valid, MASKED)
    lp = torch.log_softmax(logits, dim=-1)
    if entropy_grad:
        return lp.gather(1, target[:, None]).squeeze(1), -(lp.exp() * lp).sum(-1)
    with torch.no_grad():
        d = lp.detach()
        ent = -(d.exp() * d).sum(-1)
    return lp.gather(1, target[:, None]).squeeze(1), ent
