"""Choice mode of language-model policies: the texts an action mask allows, as a token trie.

:func:`allowed_actions` enumerates the actions a factorized ``action_mask`` allows from an env's
text face (one per tool whose type value and ``extra`` values are allowed, times the allowed
values of its arguments; an optional argument may also be absent). :class:`TokenTrie` holds the
token ids of their texts (each followed by ``<|im_end|>``): at a node, the allowed next tokens are
its children, and a node reached by ``<|im_end|>`` names the completed action. Constrained
decoding samples among the children with probabilities renormalised over them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TokenTrie", "allowed_actions"]


def allowed_actions(face: Any, mask: np.ndarray) -> np.ndarray:
    """The actions ``(m, n_comp)`` int64 whose text the factorized ``mask`` (``(sum(nvec),)``)
    allows, in tool order then argument values; ``m`` may be 0.

    Components the chosen tool ignores take their lowest allowed value (0, the canonical value,
    whenever the mask allows it), so every returned action passes the env's mask check while its
    text is that of its canonical form (``face.to_text`` ignores those components).
    """
    nvec = np.asarray(face.nvec, dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(nvec)])
    mask = np.asarray(mask).reshape(-1)
    if mask.shape != (int(offs[-1]),):
        raise ValueError(
            f"role {face.role!r}: action_mask of shape {mask.shape}, want ({int(offs[-1])},) for "
            f"nvec {nvec.tolist()}"
        )
    ok = [mask[offs[c] : offs[c + 1]] > 0 for c in range(len(nvec))]
    lowest = np.array([int(np.argmax(o)) if o.any() else -1 for o in ok], dtype=np.int64)
    tc = int(face.type_component)
    out: list[np.ndarray] = []
    for tool in face.tools:
        fixed = [(tc, int(tool.type_value)), *((int(c), int(v)) for c, v in tool.extra)]
        if not all(0 <= v < nvec[c] and ok[c][v] for c, v in fixed):
            continue
        choices = []
        for arg in tool.args:
            vals = [v for v in arg.value_list() if 0 <= v < nvec[arg.component]]
            if arg.optional:
                vals = [*vals, int(arg.absent)]
            choices.append([v for v in dict.fromkeys(vals) if ok[arg.component][v]])
        used = {c for c, _ in fixed} | {a.component for a in tool.args}
        free = [c for c in range(len(nvec)) if c not in used]
        if any(lowest[c] < 0 for c in free) or any(not ch for ch in choices):
            continue
        base = np.zeros(len(nvec), dtype=np.int64)
        base[free] = lowest[free]
        for c, v in fixed:
            base[c] = v
        for combo in itertools.product(*choices):
            a = base.copy()
            for arg, v in zip(tool.args, combo, strict=True):
                a[arg.component] = v
            if face.kind(a) is not tool:  # a free value matched a more specific tool: use 0
                a[free] = 0
            fits = all(ok[c][a[c]] for c in free)
            if fits and face.kind(a) is tool and not face.is_reserved(a):
                out.append(a)
    if not out:
        return np.zeros((0, len(nvec)), dtype=np.int64)
    return np.stack(out)


@dataclass
class TokenTrie:
    """Token sequences (one per action) as a trie; node 0 is the root.

    Attributes:
        actions: ``(m, n_comp)`` int64, the actions the sequences stand for.
        tokens: per node, ``(k,)`` int64 sorted ids of the allowed next tokens (empty at leaves).
        children: per node, ``(k,)`` int64 child node of each allowed token.
        leaf: per node, the index into ``actions`` it completes (-1: none).
        depth: the longest sequence's length.
    """

    actions: np.ndarray
    tokens: list[np.ndarray]
    children: list[np.ndarray]
    leaf: np.ndarray
    depth: int

    @classmethod
    def build(cls, actions: np.ndarray, sequences: list[list[int]]) -> TokenTrie:
        """A trie of ``sequences`` (token ids of each action's text, ending with the stop id).
        No sequence may be a prefix of another (the stop token ends every one)."""
        kids: list[dict[int, int]] = [{}]
        leaf = [-1]
        for i, seq in enumerate(sequences):
            node = 0
            for tok in seq:
                nxt = kids[node].get(int(tok))
                if nxt is None:
                    nxt = len(kids)
                    kids[node][int(tok)] = nxt
                    kids.append({})
                    leaf.append(-1)
                node = nxt
            if kids[node] or leaf[node] >= 0:
                raise ValueError(f"action text {i} is a prefix of another (or a duplicate)")
            leaf[node] = i
        tokens, children = [], []
        for k in kids:
            order = sorted(k)
            tokens.append(np.array(order, dtype=np.int64))
            children.append(np.array([k[t] for t in order], dtype=np.int64))
        depth = max((len(s) for s in sequences), default=0)
        return cls(np.asarray(actions, np.int64), tokens, children, np.array(leaf), depth)

    def __len__(self) -> int:
        return len(self.actions)


def build_trie(face: Any, mask: np.ndarray, tokenizer: Any, stop_id: int) -> TokenTrie:
    """The :class:`TokenTrie` of the actions ``mask`` allows: ``face.to_text`` of each,
    tokenized without special tokens, then ``stop_id``."""
    acts = allowed_actions(face, mask)
    texts = [face.to_text(a) for a in acts]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return TokenTrie.build(acts, [[*s, int(stop_id)] for s in ids])
