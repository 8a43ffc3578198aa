"""The policy protocol shared by every role and policy kind (DESIGN §5).

A policy maps a batch of observations (a dict of numpy arrays with a leading batch axis, always
holding ``action_mask``) to MultiDiscrete actions and their log-probabilities. For the update it
turns the step's recorded trajectories (``sim.records.Trajectories``: observations, actions,
behaviour log-probs, per-step handles and the policy's own ``extras``) into a :class:`TokenBatch`
of training tensors (:meth:`Policy.pack`), and computes per-token log-probs and entropies of its
own sampled tokens under its current parameters (:meth:`Policy.token_logprobs`). A "token" is one
env step for an MLP and one generated token for a language model; the token mask is 1 only on
tokens the policy sampled. Rewards, alignment, advantages and ``sim.loss`` are shared by all kinds.

Policy kinds are built by name from :mod:`policies.registry` (``policy.kind``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

__all__ = ["Built", "Policy", "RoleSpec", "TokenBatch"]


@dataclass
class TokenBatch:
    """Training tensors of ``num_rows`` trajectories of one role, padded to ``seq_len`` tokens.

    Attributes:
        logp_old: ``(num_rows, seq_len)`` float32 behaviour log-probs of the sampled tokens.
        mask: ``(num_rows, seq_len)`` float32, 1 on tokens the policy sampled, 0 on padding
            (and, for language models, on prompt, tool-response and forced tokens).
        data: kind-specific tensors with leading axis ``num_rows`` (MLP: ``inputs``,
            ``masks``, ``actions``), read only by the policy kind that packed them.
    """

    logp_old: torch.Tensor
    mask: torch.Tensor
    data: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.logp_old.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.logp_old.shape[1])

    def select(self, index: torch.Tensor) -> TokenBatch:
        """Rows ``index`` (any int64 index, repeats allowed)."""
        return TokenBatch(
            self.logp_old[index], self.mask[index], {k: v[index] for k, v in self.data.items()}
        )


@runtime_checkable
class Policy(Protocol):
    """What the trainer and the envs need from a policy of any kind.

    ``__call__`` is the env's sub-agent protocol: ``policy(obs_batch) -> (actions, logp)`` or
    ``(actions, logp, handles)``.
    """

    nvec: np.ndarray
    """``(n_comp,)`` MultiDiscrete sizes of the action."""
    generator: torch.Generator
    """the policy's own sampling generator (checkpointed; evaluation reseeds it)"""
    # optional: ``active_rows_only = True`` asks the rollout to pass only the rows of episodes
    # still running to ``act`` (for policies whose acting is costly, e.g. a language model);
    # ``row_logprobs(batch, rows)``: ``token_logprobs(batch.select(rows))`` without the copy
    # (the update uses it when present; the MLP has it)

    def act(
        self, obs: dict[str, np.ndarray], greedy: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample (or take the most likely) allowed actions: ``(n, n_comp)`` int64, ``(n,)``
        float64 log-probs under the current parameters, and optionally ``(n,)`` int64 handles
        of the policy's own per-step records (see ``sim.records``)."""
        ...

    def __call__(self, obs: dict[str, np.ndarray]) -> Any: ...

    def export_records(self, handles: np.ndarray) -> dict[str, np.ndarray]:
        """The policy's own records of steps ``handles`` (``(num_steps,)`` int64, -1 = none) as
        arrays stored in ``Trajectories.extras`` (an MLP keeps none: ``{}``)."""
        ...

    def pack(self, traj: Any) -> TokenBatch:
        """Training tensors of a role's ``sim.records.Trajectories``; raises ``ValueError``
        naming the role and the field when the records do not match the policy's spaces."""
        ...

    def token_logprobs(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies ``(num_rows, seq_len)`` of the batch's sampled tokens under
        the current parameters (with gradient); values at ``mask == 0`` are finite but
        meaningless."""
        ...

    def parameters(self): ...


@dataclass(frozen=True)
class RoleSpec:
    """What a role's policy acts on: its spaces and its env text face (``None`` if it has none)."""

    observation_space: gym.spaces.Dict
    action_space: gym.spaces.MultiDiscrete
    text: Any = None


@dataclass
class Built:
    """The policies of every role (``main`` first) and, when one module holds all of them
    (``policy.shared``), that module (else ``None``)."""

    policies: dict[str, Any]
    shared_module: nn.Module | None = None
