"""The policy protocol shared by every role and policy kind (DESIGN §5).

A policy maps a batch of observations (a dict of numpy arrays with a leading batch axis, always
holding ``action_mask``) to MultiDiscrete actions and their log-probabilities, and recomputes
log-probs and entropies of given actions under its current parameters for the update.

The trainer stores what a policy needs to recompute log-probs as an *encoded input* per step
(``encode``), so small policies and language-model policies plug into the same trainer.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Policy(Protocol):
    """What the trainer and the envs need from a policy.

    ``__call__`` is the env's sub-agent protocol: ``policy(obs_batch) -> (actions, logp)``.
    """

    nvec: np.ndarray
    """``(n_comp,)`` MultiDiscrete sizes of the action."""
    input_dim: int
    """width of the encoded input of one row (what ``encode`` returns per row)."""

    def act(
        self, obs: dict[str, np.ndarray], greedy: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample (or take the most likely) allowed actions: ``(n, n_comp)`` int64, ``(n,)``
        float64 log-probs under the current parameters."""
        ...

    def __call__(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]: ...

    def encode(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """The stored input of each row: ``(n, input_dim)`` float32."""
        ...

    def log_prob(
        self, inputs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs ``(n,)`` (summed over action components, with gradient) and entropies
        ``(n,)`` of ``actions (n, n_comp)`` given ``inputs (n, input_dim)`` and ``masks
        (n, sum(nvec))``."""
        ...

    def parameters(self): ...
