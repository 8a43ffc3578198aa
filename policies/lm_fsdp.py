"""Language models sharded across processes with FSDP2 (``torch.distributed.fsdp.fully_shard``).

When a launcher started several processes and the trainer joined their process group
(:func:`sim.distributed.init_ranks`), :func:`policies.lm_build.build_lm` shards every model it
builds with :func:`shard_model` before the policies are made:

* every decoder layer is one FSDP unit (its weights, LoRA adapters included, sharded over the
  ranks and gathered layer by layer in forward and backward), the base model (hidden states) the
  root unit; the input embedding, the final norm and the output embedding stay whole on every
  rank (FSDP's ``ignored_params``): the policy calls the base and the output embedding
  separately (logits only where needed), and a tied output embedding is the input embedding.
  They are 2% of Qwen3-30B-A3B; with LoRA they are frozen, so everything trained is sharded.
* gradients are **summed** over ranks, not averaged (``set_gradient_divide_factor(1)`` with
  ``set_force_sum_reduction_for_comms``: a plain ``SUM`` reduce-scatter on gloo and nccl): each
  rank's loss is already its part of the global loss (:meth:`sim.distributed.Ranks.global_loss`);
  parameters a rank did not use get zero gradients in the reduction (MoE routing differs).
* the policies score without the shared-prefix KV cache and always run the forward
  (``LMPolicy.sharded``): a collective that every rank must join.

Rollouts with the in-process sampler run inside :func:`full_params`: every unit gathers its
weights once and keeps them for the block, so each rank samples its own queries with as many
forwards as it needs (no collective per forward). That needs the whole model on each device
during rollouts; a model too big for one device samples on a serving engine (``policy.engine =
"vllm"``). The CPU path (``gloo``) is tested; the CUDA path (``nccl``) is untested on GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from policies.lm_heads import base_and_head

__all__ = ["active", "full_params", "shard_model", "sharded_units"]


def active() -> bool:
    """Whether models are to be sharded: a process group of more than one process exists."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _layers(base: nn.Module) -> nn.ModuleList:
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise ValueError(
            f"{type(base).__name__} has no decoder layers at .layers: FSDP2 sharding needs a "
            "Hugging Face decoder-only model (Qwen3, Llama, ...)"
        )
    return layers


def shard_model(model: nn.Module) -> nn.Module:
    """Shard ``model`` (a causal LM, LoRA adapters already added) over the default process group
    in place, as the module docstring says, and return it. On CUDA (``nccl``) the sharded
    weights go to the current device and the whole ones are moved there."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, fully_shard

    cuda = dist.get_backend() == "nccl"
    mesh = init_device_mesh("cuda" if cuda else "cpu", (dist.get_world_size(),))
    base, head = base_and_head(model)
    for layer in _layers(base):
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    whole = {p for n, p in base.named_parameters() if not n.startswith("layers.")}
    fully_shard(base, mesh=mesh, ignored_params=whole, reshard_after_forward=True)
    if cuda:
        device = torch.device("cuda", torch.cuda.current_device())
        for name, child in base.named_children():
            if name != "layers":
                child.to(device)
        head.to(device)
    for unit in base.modules():
        if isinstance(unit, FSDPModule):
            unit.set_gradient_divide_factor(1.0)  # a plain sum (no PREMUL_SUM: gloo lacks it)
            unit.set_force_sum_reduction_for_comms(True)
            unit.set_reduce_scatter_unused_params(True, recurse=False)
    return model


def sharded_units(models: Iterable[nn.Module]) -> list[nn.Module]:
    """The FSDP units of ``models`` (each once, in module order)."""
    from torch.distributed.fsdp import FSDPModule

    seen: dict[int, nn.Module] = {}
    for model in models:
        for m in model.modules():
            if isinstance(m, FSDPModule):
                seen.setdefault(id(m), m)
    return list(seen.values())


@contextmanager
def full_params(models: Iterable[nn.Module]) -> Iterator[None]:
    """Inside the block every FSDP unit of ``models`` holds its whole weights (gathered once on
    entry: a collective; freed on exit), so forwards run without communication and each rank
    may run a different number of them (rollouts, evaluation). A no-op for unsharded models."""
    units = sharded_units(models) if active() else []
    for u in units:
        u.set_reshard_after_forward(False, recurse=False)
        u.unshard()
    try:
        yield
    finally:
        for u in units:
            u.reshard()
            u.set_reshard_after_forward(True, recurse=False)
