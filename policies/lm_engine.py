"""A language-model policy on a rollout engine (``policy.engine = "vllm"``, :mod:`policies.engine`).

Three pieces, used by :class:`policies.lm.LMPolicy` and :class:`sim.trainer.Learner`:

* :func:`engine_sample`: a turn's responses sampled on the server (generate mode only), seeded
  from the policy's own generator so that rollouts stay reproducible and checkpointed (the
  server draws row ``i`` with ``seed + i``); greedy is temperature 0; the role's LoRA adapter
  is the served model. The records keep the engine's token ids and log-probs.
* :func:`rescore`: before any update, the trainer recomputes the old log-probs of the sampled
  tokens itself (no gradient, in row chunks). They become ``logp_old`` (the clipped ratio is
  taken against the trainer's own ``pi_old``), and each token's advantage is weighted by the
  truncated importance weight ``min(pi_old / pi_engine, policy.is_cap)``
  (:func:`policies.engine.truncated_is_weight`), stored as ``data["is_weight"]``. The largest
  gap ``|log pi_old - log pi_engine|`` is the role's ``rollout_logp_diff``.
* :func:`push_adapter`: the role's LoRA adapter saved as a PEFT folder
  (``save_pretrained(selected_adapters=[role])``) and (re)loaded on the server under the role's
  name; the trainer calls it at start, after a resume or ``init_from``, and after every update
  of the role. The folder must be readable by the server (same machine or a shared file
  system).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from policies.base import TokenBatch
from policies.engine import truncated_is_weight

__all__ = ["RESCORE_ROWS", "adapter_folder", "engine_sample", "push_adapter", "rescore"]

RESCORE_ROWS = 16
"""rows scored per forward by :func:`rescore` (bounds its activation memory)"""


def engine_sample(
    policy: Any, prompts: list[list[int]], greedy: bool
) -> tuple[list[list[int]], list[list[float]]]:
    """The response ids and their engine log-probs of each prompt, sampled on
    ``policy.engine`` with a seed drawn from ``policy.generator``."""
    if not prompts:
        return [], []
    gen = policy.generator
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
    out = policy.engine.sample(
        prompts,
        max_new_tokens=policy.max_new_tokens,
        temperature=0.0 if greedy else policy.temperature,
        stop_ids=[policy.stop_id],
        seed=seed,
        adapter=policy.adapter,
    )
    return [ids for ids, _ in out], [lps for _, lps in out]


@torch.no_grad()
def rescore(policy: Any, batch: TokenBatch, cap: float) -> tuple[TokenBatch, float]:
    """``(batch with the trainer's old log-probs and data["is_weight"], gap)``.

    ``batch.logp_old`` holds the engine's log-probs (the records'); the result's ``logp_old``
    is ``policy.token_logprobs`` under the current parameters, ``data["is_weight"]`` is
    ``truncated_is_weight(old, engine, cap) * mask`` and ``gap`` is ``max |old - engine|`` over
    the sampled tokens (0.0 when there are none).
    """
    n = len(batch)
    parts = []
    for start in range(0, n, RESCORE_ROWS):
        rows = torch.arange(start, min(start + RESCORE_ROWS, n))
        parts.append(policy.token_logprobs(batch.select(rows))[0].detach().float().cpu())
    engine = batch.logp_old
    old = torch.cat(parts) if parts else torch.zeros_like(engine)
    mask = batch.mask
    on = mask > 0
    gap = float((old - engine).abs()[on].max()) if bool(on.any()) else 0.0
    weight = truncated_is_weight(old, engine, cap) * mask
    return TokenBatch(old, mask, dict(batch.data) | {"is_weight": weight}), gap


def adapter_folder(folder: Path, adapter: str) -> Path:
    """The folder that holds ``adapter_config.json`` of ``adapter`` after
    ``save_pretrained(folder, selected_adapters=[adapter])`` (peft puts an adapter not named
    ``"default"`` in a subfolder of that name)."""
    for cand in (folder / adapter, folder):
        if (cand / "adapter_config.json").is_file():
            return cand
    found = sorted(p.parent for p in folder.rglob("adapter_config.json"))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(
        f"peft saved adapter {adapter!r} without an adapter_config.json under {folder} "
        f"(found {[str(p) for p in found]})"
    )


def push_adapter(policy: Any, folder: str | Path) -> Path:
    """Save ``policy``'s LoRA adapter under ``folder`` and (re)load it on ``policy.engine``
    under the adapter's name; returns the adapter folder the server read."""
    if policy.peft is None or policy.adapter is None:
        raise ValueError(
            f"role {policy.role!r}: a rollout engine needs the role's weights as a LoRA adapter "
            "(policy.lora.rank > 0)"
        )
    folder = Path(folder)
    policy.peft.save_pretrained(
        str(folder), selected_adapters=[policy.adapter], save_embedding_layers=False
    )
    path = adapter_folder(folder, policy.adapter)
    policy.engine.load_adapter(policy.adapter, str(path))
    return path
