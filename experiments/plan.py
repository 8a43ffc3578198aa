"""``mgrpo plan CONFIG [--gpus N] [--gpu-mem GB] [--require-fit]``: the memory plan of a
language-model preset from its model's config on the meta device (no weights); the trainer logs
it at start (:func:`log_plan`). Exit 0 (a plan that does not fit is reported; 1 with
``--require-fit``), 2 on a bad config or model. Sizes in bytes; the table prints GiB (2**30).

* **total parameters**: every parameter once (tied embeddings once). **Active per token**: all
  but the routed experts', plus ``num_experts_per_tok / num_experts`` of theirs (embeddings, LM
  head, attention, norms and router all count).
* **LoRA parameters** of one adapter of rank ``r``: ``r * (in + out)`` on a Linear; on a 3-D
  expert parameter ``(E, a, b)``: ``E * r * (a + b)``, as peft's ``target_parameters`` builds it
  (``peft/tuners/lora/layer.py``, ``ParamWrapper.update_layer``, peft 0.21.2: ``lora_A =
  Linear(in, r * E)``, ``lora_B = Linear(r * E, out)``). A target matches a module or parameter
  named it or ending in ``.<target>``: a Linear/Embedding gets a LoRA layer, another module
  (``experts``) one per 2-D/3-D parameter of its own. Rank 0: full fine-tuning, all trainable.
* **bytes per trainable parameter**: 16 (fp32 gradient, AdamW m and v, fp32 weight): LoRA
  adapters are fp32 (peft's default cast); full fine-tuning in bf16/fp16 keeps an fp32 master
  copy beside the ``policy.dtype`` weight. Frozen weights: ``policy.dtype`` bytes.
* **models held**: LoRA with ``policy.share_base`` (or ``policy.shared``): one base model, one
  adapter per role (one for all with ``policy.shared``); else one model per role. Full
  fine-tuning with ``loss.kl_coef > 0`` adds a frozen reference copy per trained model.
* **activations per token**, gradient checkpointing at every decoder layer, ``policy.dtype``:
  ``layers * hidden`` (checkpointed layer inputs) + one layer's tensors saved for its backward
  (norms, q/k/v, normed and rotated q/k, attention output, fp32 router logits; per routed
  expert its input, gate/up, activation * up, output) + the final hidden state. Attention is
  memory-efficient (no ``seq x seq`` term); the LM head is scored in chunks of
  :data:`VOCAB_CHUNK` fp32 logits (x3). Rollout memory (KV cache, vLLM) is not counted.
* **batch**: a trained role updates in ``optim.minibatches`` minibatches of its rows per step
  (main ``B * K``, a specialist ``B * K * D``), each row ``policy.max_seq_len`` tokens.
* **per GPU, FSDP2 full sharding**: weights, gradients and optimizer states / ``gpus``; two
  all-gathered units (the largest decoder layer, embedding or LM head) when ``gpus > 1``; the
  activations of the largest minibatch's ``ceil(rows / gpus)`` rows; with LoRA on 3-D
  parameters, one layer's folded ``W + s A B`` and its gradient (peft's ``_LoraFactorsProxy``
  materialises it while the layer runs). Plus 10% headroom.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["NOTES", "LoraMatch", "Plan", "PlanError", "add_parser", "log_plan", "memory_plan"]
__all__ += ["model_config", "resolve_lora_targets", "run"]

GIB = 2**30
HEADROOM = 0.10  # fraction added to the sum of the per-GPU bytes
VOCAB_CHUNK = 1 << 25
"""logits scored at once in the update (as ``policies.lm_pack.VOCAB_CHUNK``; fp32 elements)"""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
TRAINABLE_BYTES = 16
"""bytes per trainable parameter: fp32 gradient, AdamW m and v, and fp32 weight"""
NOTES = {
    "weights": "base in policy.dtype, adapters fp32",
    "gradients": "fp32",
    "optimizer": "AdamW m, v fp32 (+ fp32 master: full FT)",
    "gathered": "FSDP2 all-gather, 2 units",
    "lora_fold": "W + sAB of one layer's experts, + grad",
    "activations": "",
    "scoring": "LM-head chunks, fp32",
}
"""the per-GPU items of :attr:`Plan.parts`, with what they hold"""


class PlanError(ValueError):
    """A plan that cannot be made: an unknown model, an unreadable folder, a non-LM config."""


def model_config(model: str) -> Any:
    """The ``transformers`` config of ``policy.model``: ``"qwen3-30b-a3b"``, ``"tiny-qwen3"``,
    ``"tiny-qwen3-moe"`` or a local folder holding a ``config.json`` (never downloaded)."""
    from policies import qwen

    if model == "qwen3-30b-a3b":
        return qwen.qwen3_30b_a3b_config()
    if model in ("tiny-qwen3", "tiny-qwen3-moe"):
        return qwen.tiny_qwen3(moe=model.endswith("moe")).config
    if not os.path.isdir(model):
        raise PlanError(
            f"policy.model = {model!r} is not a built-in model (qwen3-30b-a3b, tiny-qwen3, "
            "tiny-qwen3-moe) nor an existing folder"
        )
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(model, local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PlanError(f"policy.model = {model!r}: no readable config.json ({first})") from e


@dataclass(frozen=True)
class LoraMatch:
    """What ``policy.lora.targets`` wrap in one model: ``params`` LoRA parameters of one adapter;
    the names for peft's ``target_modules`` (targets matching a Linear or Embedding) and
    ``target_parameters`` (``experts.gate_up_proj``, ...); the ``unmatched`` targets; ``folded``:
    elements of the largest layer's wrapped 3-D parameters (peft folds ``W + s A B`` for each
    into a full-size tensor while the layer runs: ``_LoraFactorsProxy``)."""

    params: int
    target_modules: tuple[str, ...]
    target_parameters: tuple[str, ...]
    unmatched: tuple[str, ...]
    folded: int


def _lora_size(shape: tuple[int, ...], r: int) -> int:
    if len(shape) == 3:  # (E, a, b): ParamWrapper's lora_A (r*E, a|b), lora_B (b|a, r*E)
        return shape[0] * r * (shape[1] + shape[2])
    return r * (shape[0] + shape[1])  # (out, in): lora_A (r, in), lora_B (out, r)


def resolve_lora_targets(model: Any, targets: tuple[str, ...], rank: int) -> LoraMatch:
    """Match ``targets`` against ``model``'s modules and parameters (the meta device is fine)
    and count the LoRA parameters of one adapter of rank ``rank``."""
    from torch import nn

    hits: dict[str, tuple[int, ...]] = {}
    mods, params, unmatched = set(), set(), []
    for t in targets:
        before = len(hits)
        for name, mod in model.named_modules():
            if not (name == t or name.endswith("." + t)):
                continue
            if isinstance(mod, nn.Linear | nn.Embedding):
                hits[f"{name}.weight"] = tuple(mod.weight.shape)
                mods.add(t)
                continue
            for pname, q in mod.named_parameters(recurse=False):
                if q.dim() in (2, 3):
                    hits[f"{name}.{pname}"] = tuple(q.shape)
                    params.add(f"{t}.{pname}")
        for name, q in model.named_parameters():
            if q.dim() in (2, 3) and (name == t or name.endswith("." + t)) and name not in hits:
                hits[name] = tuple(q.shape)
                params.add(t)
        if len(hits) == before:
            unmatched.append(t)
    by_layer: dict[str, int] = {}
    for name, shape in hits.items():
        if len(shape) == 3:
            layer = name.rsplit(".", 2)[0]
            by_layer[layer] = by_layer.get(layer, 0) + math.prod(shape)
    return LoraMatch(
        params=sum(_lora_size(shape, rank) for shape in hits.values()),
        target_modules=tuple(sorted(mods)),
        target_parameters=tuple(sorted(params)),
        unmatched=tuple(unmatched),
        folded=max(by_layer.values(), default=0),
    )


@dataclass(frozen=True)
class Plan:
    """The memory plan of one config on ``gpus`` GPUs (module docstring). ``counts``: parameters
    (elements: ``total_params``, ``active_params``, ``lora_params`` of one adapter,
    ``trainable_params`` of every role), ``models`` / ``adapters`` / ``reference_models`` held,
    ``rows_<role>`` per step, ``rows_per_minibatch``, ``rows_per_gpu``, ``seq_len`` (tokens),
    ``act_bytes_per_token``; ``parts``: bytes per GPU of each item of :data:`NOTES`;
    ``per_gpu``: their sum with :data:`HEADROOM`; ``gpu_mem_gb`` in GiB (None: unknown, and
    ``fits`` None)."""

    model: str
    architecture: str
    dtype: str
    gpus: int
    roles: tuple[str, ...]
    trained_roles: tuple[str, ...]
    lora_rank: int
    lora_targets: tuple[str, ...]
    counts: dict[str, int]
    parts: dict[str, int]
    per_gpu: int
    gpu_mem_gb: float | None
    fits: bool | None

    def as_dict(self) -> dict[str, Any]:
        """Every number flat (``parts`` as ``bytes_<item>``), JSON-serialisable."""
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return d | d.pop("counts") | {f"bytes_{k}": v for k, v in d.pop("parts").items()}

    def table(self) -> str:
        """The plan as text: parameters, batch, per-GPU GiB and the verdict."""
        n, gib = self.counts, self.per_gpu / GIB
        si = lambda v: f"{v / 1e9:8.3f}B" if v >= 1e8 else f"{v / 1e6:8.3f}M"  # noqa: E731
        lora = f"(rank {self.lora_rank} on {', '.join(self.lora_targets)})"
        rows = ", ".join(f"{r} {n[f'rows_{r}']}" for r in self.trained_roles)
        lines = [
            f"memory plan: {self.model} ({self.architecture}), {self.dtype}, {self.gpus} GPU(s)"
            + (", FSDP2 full sharding" if self.gpus > 1 else ""),
            f"  total parameters      {si(n['total_params'])}",
            f"  active per token      {si(n['active_params'])}  (routed experts at "
            "top-k/E; embeddings and LM head included)",
            f"  LoRA per adapter      {si(n['lora_params'])}  "
            + (lora if self.lora_rank else "(rank 0: full fine-tuning)"),
            f"  trainable (all roles) {si(n['trainable_params'])}",
            f"  roles {', '.join(self.roles)} (trained: {', '.join(self.trained_roles) or '-'}):"
            f" {n['models']} base model(s), {n['adapters']} adapter(s), "
            f"{n['reference_models']} reference copies",
            f"  rows per step: {rows}; largest minibatch {n['rows_per_minibatch']} rows, "
            f"{n['rows_per_gpu']} per GPU x {n['seq_len']} tokens",
            f"  activations per token {n['act_bytes_per_token'] / 1024:8.1f} KiB  (checkpointed "
            "layer inputs + one layer's tensors)",
            "  per GPU                    GiB",
            *(f"    {k:<20}{v / GIB:9.2f}  {NOTES[k]}".rstrip() for k, v in self.parts.items()),
            f"    {'total':<20}{gib:9.2f}  with {HEADROOM:.0%} headroom",
        ]
        if self.fits is None:
            lines.append("  verdict: unknown (give --gpu-mem GB; no CUDA device visible)")
        else:
            word, mem = ("fits" if self.fits else "does not fit"), self.gpu_mem_gb
            lines.append(
                f"  verdict: {word}: {gib:.2f} GiB per GPU of {mem:g} GiB ({gib / mem:.0%})"
            )
        return "\n".join(lines)


def _layer_act_elems(c: Any, lora_per_token: int) -> int:
    """Elements saved per token by one decoder layer for its backward (module docstring)."""
    h, nq, nkv = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
    hd = getattr(c, "head_dim", None) or h // nq
    attn = 2 * h + (nq + 2 * nkv) * hd + 2 * (nq + nkv) * hd + nq * hd + h
    experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None)
    if experts:  # fp32 router logits: 2 elements each; per routed expert: in, gate/up, act*up, out
        k, w = c.num_experts_per_tok, c.moe_intermediate_size
        return attn + 2 * h + 2 * experts + k * (h + 4 * w + h) + h + lora_per_token
    return attn + 2 * h + 4 * c.intermediate_size + h + lora_per_token


def _counts(model: Any, c: Any) -> tuple[int, int]:
    """(total, active per token) parameters: all but the routed experts, plus top-k/E of them."""
    named = dict(model.named_parameters())
    total = sum(t.numel() for t in named.values())
    experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None) or 0
    routed = sum(t.numel() for n, t in named.items() if ".experts." in n) if experts else 0
    return total, total - routed + (routed * c.num_experts_per_tok // experts if experts else 0)


def memory_plan(cfg: Any, gpus: int = 1, gpu_mem_gb: float | None = None) -> Plan:
    """The memory plan of a resolved ``TrainConfig`` with ``policy.kind = "lm"`` on ``gpus`` GPUs
    of ``gpu_mem_gb`` GiB each (None: the first CUDA device's memory, else no verdict).

    Raises :class:`PlanError` (a ``ValueError``) on a non-LM config, an unknown model, a LoRA
    target that matches nothing (as the trainer's builder does), or an env that cannot be built.
    """
    import torch

    from experiments.config import frozen_role
    from policies.qwen import build_on_meta
    from sim.trainer import make_env

    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise PlanError(f"gpus = {gpus!r}: need an integer >= 1")
    p, rank = cfg.policy, cfg.policy.lora_rank
    if p.kind != "lm":
        raise PlanError(f"policy.kind = {p.kind!r}: the plan is for language models ('lm')")
    c = model_config(p.model)
    model = build_on_meta(c)
    total, active = _counts(model, c)
    match = resolve_lora_targets(model, p.lora_targets, rank) if rank else None
    if match is not None and match.unmatched:  # as policies.lm_lora.split_targets refuses them
        raise PlanError(
            f"policy.lora.targets: {list(match.unmatched)} match no module or parameter of "
            f"{type(model).__name__} ({p.model!r})"
        )
    lora = match.params if match else 0
    try:  # the env's roles: main and its specialists
        roles = ("main", *make_env(cfg, 1).subagent_roles)
    except Exception as e:  # noqa: BLE001 - the env's own message, on one line
        raise PlanError(f"env {cfg.env.id!r}: {str(e).splitlines()[0] if str(e) else e}") from e
    trained = tuple(r for r in roles if not frozen_role(cfg, r))
    n_trained = min(1, len(trained)) if p.shared else len(trained)

    wb = DTYPE_BYTES[p.dtype]
    if rank:  # fp32 adapters: their weight is in `weights`, 12 more bytes each when trained
        models = 1 if (p.share_base or p.shared) else len(roles)
        adapters = 1 if p.shared else len(roles)
        trainable, refs = lora * n_trained, 0
        weights = models * total * wb + adapters * lora * 4
        optim_b = trainable * (TRAINABLE_BYTES - 8)
    else:  # mixed precision: an fp32 master weight beside a bf16/fp16 one
        models, adapters, trainable = (1 if p.shared else len(roles)), 0, total * n_trained
        refs = n_trained if cfg.loss.kl_coef else 0
        weights = (models + refs) * total * wb
        optim_b = trainable * (TRAINABLE_BYTES - 4 - (4 if wb == 4 else 0))

    bk = cfg.algo.queries_per_step * cfg.algo.group_size
    d = {
        r: 1 if r == "main" else (cfg.role(r).align_target or cfg.algo.align_target) for r in roles
    }
    rows = {r: bk * d[r] for r in trained}
    mb = max((math.ceil(v / cfg.optim.minibatches) for v in rows.values()), default=0)
    lora_tok = 0
    if match:
        topk = int(getattr(c, "num_experts_per_tok", None) or 1)
        lora_tok = rank * (len(match.target_modules) + topk * len(match.target_parameters))
    h = c.hidden_size  # checkpointed inputs, one layer, the final hidden state:
    act_tok = wb * (c.num_hidden_layers * h + _layer_act_elems(c, lora_tok) + h)
    units = [t.numel() for t in model.parameters()]  # the embedding and LM head, at least
    blocks = getattr(getattr(model, "model", None), "layers", None)
    units += [sum(t.numel() for t in m.parameters()) for m in (blocks or [])]
    parts = {
        "weights": math.ceil(weights / gpus),
        "gradients": math.ceil(trainable * 4 / gpus),
        "optimizer": math.ceil(optim_b / gpus),
        "gathered": 2 * max(units) * wb if gpus > 1 else 0,
        "lora_fold": 2 * match.folded * wb if (match and trained) else 0,
        "activations": math.ceil(mb / gpus) * p.max_seq_len * act_tok,
        "scoring": 3 * VOCAB_CHUNK * 4 if trained else 0,
    }
    need = int(sum(parts.values()) * (1 + HEADROOM))
    if gpu_mem_gb is None and torch.cuda.is_available():
        gpu_mem_gb = torch.cuda.get_device_properties(0).total_memory / GIB
    counts = {"total_params": total, "active_params": active, "lora_params": lora}
    counts |= {"trainable_params": trainable, "models": models, "adapters": adapters}
    counts |= {"reference_models": refs, "rows_per_minibatch": mb}
    counts |= {"rows_per_gpu": math.ceil(mb / gpus), "seq_len": p.max_seq_len}
    counts |= {"act_bytes_per_token": act_tok} | {f"rows_{r}": v for r, v in rows.items()}
    return Plan(
        model=p.model,
        architecture=type(model).__name__,
        dtype=p.dtype,
        gpus=gpus,
        roles=roles,
        trained_roles=trained,
        lora_rank=rank,
        lora_targets=p.lora_targets if rank else (),
        counts=counts,
        parts=parts,
        per_gpu=need,
        gpu_mem_gb=gpu_mem_gb,
        fits=None if gpu_mem_gb is None else need <= gpu_mem_gb * GIB,
    )


def log_plan(cfg: Any, gpus: int | None = None) -> dict[str, Any]:
    """The plan's numbers for the trainer to log at start, ``{"plan/<key>": value}``
    (:meth:`Plan.as_dict`); ``gpus`` defaults to the launch's ``WORLD_SIZE`` (1)."""
    n = int(os.environ.get("WORLD_SIZE", "1")) if gpus is None else gpus
    return {f"plan/{k}": v for k, v in memory_plan(cfg, gpus=n).as_dict().items()}


def _positive(kind: type) -> Any:
    def parse(text: str) -> int | float:
        try:
            v = kind(text)
        except ValueError:
            v = 0
        if not (math.isfinite(v) and v > 0):
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what} > 0, got {text!r}")
        return v

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo plan`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "plan",
        help="memory plan of a language-model preset: parameters, bytes per GPU, fits or not",
        description="The memory plan of CONFIG from its model's config on the meta device.",
    )
    p.add_argument("config", metavar="CONFIG", help="TOML config file or preset name")
    p.add_argument("--gpus", type=_positive(int), default=1, metavar="N", help="GPUs (default 1)")
    mem = "GiB per GPU (default: the CUDA device's, else no verdict)"
    p.add_argument("--gpu-mem", type=_positive(float), metavar="GB", help=mem)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config key")
    p.add_argument("--require-fit", action="store_true", help="exit 1 when it does not fit")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo plan``: print the table; 0 (1 with ``--require-fit`` and no fit), 2 bad input."""
    from experiments.config import read_config

    try:
        cfg = read_config(args.config, args.set, command="train").resolve()[1]
        plan = memory_plan(cfg, gpus=args.gpus, gpu_mem_gb=args.gpu_mem)
    except ValueError as e:  # ConfigError and PlanError are ValueErrors
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(plan.table())
    if args.require_fit and not plan.fits:
        why = "no verdict without --gpu-mem" if plan.fits is None else "the plan does not fit"
        print(f"error: --require-fit: {why}", file=sys.stderr)
        return 1
    return 0
