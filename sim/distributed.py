"""Several processes training one run (``accelerate launch`` or ``torchrun``): ranks, the split of
a step's work, the global normalisation of the loss and the reduction of gradients and metrics.

One process is the default (:data:`SINGLE`): every method of it is the identity and no
collective runs, so a one-process run is numerically unchanged. Under a launcher
(``WORLD_SIZE`` > 1 in the environment) :func:`init_ranks` joins the process group (``gloo`` on
CPU, ``nccl`` on CUDA) and the learner (:mod:`sim.trainer`):

* splits each step's B queries into contiguous shares (whole groups of K rollouts, so
  group-relative advantages never need another rank's rows): :meth:`Ranks.split`;
* gathers every rank's rollouts into the step's global batch (:func:`sim.rollout.concat_batches`),
  so rewards, alignment, advantages and metrics are those of one process on the same rollouts;
* splits each global minibatch of the update across ranks (:meth:`Ranks.share`) and normalises
  every rank's part of the loss by the minibatch's **global** row and token counts
  (:meth:`Ranks.global_loss`): the sum over ranks of the parts is the one-process loss of the
  whole minibatch, and so (FSDP2 summing, not averaging, the gradients) is its gradient;
* all-reduces gradients that FSDP does not reduce (:meth:`Ranks.reduce_grads`) and clips by the
  global gradient norm (:meth:`Ranks.clip_grad_norm`).

Sharded tensors (``DTensor``, from FSDP2) are gathered to whole CPU tensors for checkpoints by
:func:`full_state` (a collective: every rank calls it) and sharded again on load by
:func:`shard_like`.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from sim.loss import loss_counts, loss_denominator
from sim.rollout import RolloutBatch, concat_batches

__all__ = [
    "SINGLE",
    "RankSync",
    "Ranks",
    "check_ranks",
    "full_state",
    "init_ranks",
    "shard_like",
    "shard_optimizer",
]

_STATS = ("clip_frac_low", "clip_frac_high", "approx_kl", "ratio_mean", "kl", "entropy")
"""per-token means of :func:`sim.loss.policy_loss`'s stats (reduced weighted by tokens)"""


def _dtensor() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed
        return None
    return DTensor


def _comm_device() -> torch.device:
    """Where collectives take their tensors: the current CUDA device under ``nccl``, else
    the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _is_sharded(t: Any) -> bool:
    cls = _dtensor()
    return cls is not None and isinstance(t, cls)


@dataclass(frozen=True)
class Ranks:
    """This process's place among ``world`` processes (``rank`` 0 writes the run's files).

    With ``world == 1`` every method returns its input unchanged and runs no collective.
    """

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    # ------------------------------------------------------------------ splitting work
    def split(self, n: int) -> slice:
        """This rank's contiguous share of ``n`` items (queries, eval episodes): sizes differ by
        at most one, the first ranks take the extra ones. ``ValueError`` when ``n < world``."""
        if n < self.world:
            raise ValueError(f"{n} items cannot be split across {self.world} processes")
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def count(self, n: int) -> int:
        """The size of this rank's share of ``n`` items (:meth:`split`)."""
        share = self.split(n)
        return share.stop - share.start

    def share(self, mb: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of one global minibatch ``mb`` (row indices, ``(m,)`` int64) and
        their weights (``weight``: the role's ``(num_rows,)`` row weights).

        Contiguous shares as :meth:`split`; a rank left without rows (``m < world``) gets the
        minibatch's first row with weight 0: it counts nowhere in the loss but runs the forward
        and backward that the sharded model's collectives need on every rank.
        """
        if self.world == 1:
            return mb, weight[mb]
        part = torch.tensor_split(mb, self.world)[self.rank]
        if len(part) == 0:
            return mb[:1], torch.zeros(1, dtype=weight.dtype)
        return part, weight[part]

    # ------------------------------------------------------------------ collectives
    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over ranks (a new tensor; ``t`` itself with one process)."""
        if self.world == 1:
            return t
        import torch.distributed as dist

        out = t.detach().clone().to(_comm_device())
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def max(self, x: float) -> float:
        """The largest ``x`` over ranks."""
        if self.world == 1:
            return x
        import torch.distributed as dist

        t = torch.tensor([x], dtype=torch.float64, device=_comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` with one process."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # ------------------------------------------------------------------ the update
    def global_loss(
        self,
        loss: torch.Tensor,
        stats: dict[str, float],
        agg: str,
        mask: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """This rank's part of a minibatch loss, normalised by the minibatch's global counts.

        ``loss`` was aggregated (``agg``) over this rank's rows with their own counts
        (``mask (num_rows, seq_len)``, ``weights (num_rows,)``); the part is ``loss x local
        denominator / global denominator`` (:func:`sim.loss.loss_denominator`), so the parts sum
        to the one-process loss of the whole minibatch. Every rank pads to the same ``seq_len``
        (they slice one global batch). The returned stats are the global ones: ``loss`` and
        ``pg_loss`` summed parts, the per-token means weighted by the ranks' tokens.
        """
        if self.world == 1:
            return loss, stats
        local = loss_counts(mask, weights)
        d_local = loss_denominator(agg, local)
        vec = [local[0], local[1], loss.detach().double().cpu() * d_local]
        vec += [d_local * stats["pg_loss"]] + [local[1] * stats[k] for k in _STATS]
        tot = self.sum(torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in vec]))
        d_glob = loss_denominator(agg, torch.stack([tot[0], tot[1], local[2]]))
        out = dict(stats)
        out["loss"], out["pg_loss"] = float(tot[2] / d_glob), float(tot[3] / d_glob)
        n_tok = max(float(tot[1]), 1.0)
        for i, k in enumerate(_STATS):
            out[k] = float(tot[4 + i]) / n_tok
        return loss * float(d_local / d_glob), out

    def reduce_grads(self, params: list[torch.Tensor]) -> None:
        """Sum over ranks the gradients that FSDP does not reduce (plain, unsharded tensors: a
        replicated model such as an MLP policy, or FSDP's ignored parameters); sharded
        (``DTensor``) gradients are left as they are."""
        if self.world == 1:
            return
        plain = [p.grad for p in params if p.grad is not None and not _is_sharded(p.grad)]
        if not plain:
            return
        flat = self.sum(torch.cat([g.reshape(-1) for g in plain]))
        for g, part in zip(plain, torch.split(flat, [g.numel() for g in plain]), strict=True):
            g.copy_(part.view_as(g))

    def sq_norm(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Float64 squared L2 norm over every rank of ``tensors``: sharded ones summed over their
        shards, plain ones (the same on every rank) counted once."""
        f64 = torch.float64
        sharded = [t.to_local() for t in tensors if _is_sharded(t)]
        plain = [t for t in tensors if not _is_sharded(t)]
        total = torch.zeros((), dtype=f64)
        for t in sharded:
            total = total + torch.linalg.vector_norm(t.detach(), dtype=f64).cpu() ** 2
        if sharded:
            total = self.sum(total)
        for t in plain:
            total = total + torch.linalg.vector_norm(t.detach(), dtype=f64).cpu() ** 2
        return total

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over every rank's gradients: the total norm of the
        whole (unsharded) gradient, and every gradient scaled by ``max_norm / (norm + 1e-6)``
        when that is below 1. With one process: ``clip_grad_norm_`` itself."""
        if self.world == 1:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        grads = [p.grad for p in params if p.grad is not None]
        norm = self.sq_norm(grads).sqrt().float()
        coef = max_norm / (float(norm) + 1e-6)
        if coef < 1.0 and math.isfinite(float(norm)):
            with torch.no_grad():
                for g in grads:
                    g.mul_(coef)
        return norm


SINGLE = Ranks()
"""one process: the default; no collective ever runs"""


def init_ranks() -> Ranks:
    """This process's :class:`Ranks` from the launcher's environment (``WORLD_SIZE``, ``RANK``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: set by ``accelerate launch`` and
    ``torchrun``), joining the default process group if no one has (``nccl`` when CUDA is
    available, selecting the device ``LOCAL_RANK``; else ``gloo``). :data:`SINGLE` without a
    launcher (``WORLD_SIZE`` unset or 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE = {world}, but this torch has no torch.distributed")
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size())


def full_state(obj: Any) -> Any:
    """``obj`` (nested dicts, lists and tuples) with every sharded tensor gathered whole onto the
    CPU (``DTensor.full_tensor``); other values as they are. A collective when ``obj`` holds
    sharded tensors: every rank calls it, in the same order (any rank may then write it)."""
    if _is_sharded(obj):
        return obj.full_tensor().cpu()
    if isinstance(obj, dict):
        return {k: full_state(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(full_state(v) for v in obj)
    return obj


def shard_like(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A whole tensor ``value`` laid out as ``like``: sharded as ``like`` is when it is a
    ``DTensor`` (each rank keeps its own shard; no communication), else ``value``."""
    if not _is_sharded(like):
        return value
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(
        value.to(like.device, like.dtype), like.device_mesh, like.placements, src_data_rank=None
    )


def shard_optimizer(sd: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A whole optimizer state dict (:func:`full_state` of ``optimizer.state_dict()``) with
    every per-parameter tensor laid out as its parameter is (:func:`shard_like`), ready for
    ``optimizer.load_state_dict``; ``sd`` itself when no parameter is sharded."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(_is_sharded(p) for p in params):
        return sd
    state = {}
    for i, st in sd["state"].items():
        p = params[int(i)]
        state[i] = {
            k: shard_like(v, p) if isinstance(v, torch.Tensor) and v.shape == p.shape else v
            for k, v in st.items()
        }
    return {**sd, "state": state}


def check_ranks(ranks: Ranks, cfg: Any) -> Ranks:
    """``ranks`` if ``cfg`` can train across them, else ``ValueError`` naming the key: every
    rank needs a query and an evaluation episode; the rollout engine and a KL reference copied
    from a full (not LoRA) language model are one-process only."""
    if ranks.world == 1:
        return ranks
    w = ranks.world
    for key, n in (
        ("algo.queries_per_step", cfg.algo.queries_per_step),
        ("eval.episodes", cfg.eval.episodes),
    ):
        if n < w:
            raise ValueError(
                f"{key} = {n} is fewer than the {w} processes: each process needs at least one "
                f"(raise it to >= {w} or launch fewer processes)"
            )
    if cfg.policy.kind == "lm" and cfg.policy.engine != "hf":
        raise ValueError(
            f"policy.engine = {cfg.policy.engine!r} runs in one process only (not yet across "
            f"{w}); use policy.engine = 'hf' or launch one process"
        )
    if cfg.policy.kind == "lm" and cfg.loss.kl_coef > 0 and cfg.policy.lora_rank == 0:
        raise ValueError(
            "loss.kl_coef > 0 across processes needs LoRA (policy.lora.rank > 0: the reference "
            "is the base with the adapters disabled); a sharded full model cannot be copied"
        )
    return ranks


class RankSync:
    """Mixin of :class:`sim.trainer.Learner`: what its state and batches need across processes
    (needs ``self.ranks`` and ``self.policies``); with one process every method returns its
    input."""

    ranks: Ranks
    policies: dict[str, Any]

    def _gathered(self, local: RolloutBatch) -> RolloutBatch:
        """Every rank's rollouts as one batch (rank order = query order): the step's global
        batch, the same on every rank (:func:`sim.rollout.concat_batches`)."""
        if self.ranks.world == 1:
            return local
        merges = {r: getattr(p, "merge_records", None) for r, p in self.policies.items()}
        return concat_batches(self.ranks.gather(local), merges)

    def _whole(self, st: dict[str, Any]) -> dict[str, Any]:
        """A state dict with its sharded tensors (``policies``, ``optims``) gathered whole, and
        every rank's sampling streams (``rank_states``: ``generators``, ``env_keys``): a
        collective; rank 0 writes it."""
        if self.ranks.world == 1:
            return st
        st = st | full_state({k: st[k] for k in ("policies", "optims")})
        st["rank_states"] = self.ranks.gather({k: st[k] for k in ("generators", "env_keys")})
        return st

    def _sharded(self, role: str, sd: dict) -> dict:
        """A whole state dict of ``role``'s policy laid out as its parameters are (each rank
        keeps its shard)."""
        if self.ranks.world == 1:
            return sd
        own = self.policies[role].state_dict()
        return {k: shard_like(v, own[k]) if k in own else v for k, v in sd.items()}

    def _own_rank(self, st: dict[str, Any]) -> dict[str, Any]:
        """``st`` with this rank's generator and env states when the checkpoint holds one per
        rank of this many processes. Written by another number of processes, the run goes on
        (with a warning: it will not reproduce an uninterrupted one) from the checkpoint's
        streams, each rank's policies reseeded from (step, rank) when there are several."""
        per_rank = st.get("rank_states")
        if per_rank is None and self.ranks.world == 1:
            return st
        if per_rank is not None and len(per_rank) == self.ranks.world:
            return st | per_rank[self.ranks.rank]
        warnings.warn(
            f"the checkpoint was written by {len(per_rank or [0])} process(es), this run has "
            f"{self.ranks.world}: the sampling streams restart, so the resumed run will not "
            "reproduce an uninterrupted one",
            stacklevel=3,
        )
        if self.ranks.world > 1:  # distinct streams per rank
            gens = {}
            for i, (r, p) in enumerate(self.policies.items()):
                p.generator.manual_seed(int(st["step"]) * 1_000_003 + 7_919 * self.ranks.rank + i)
                gens[r] = p.generator.get_state()
            st = st | {"generators": gens}
        return st
