"""Small torch policies: an MLP with one softmax head per MultiDiscrete action component.

Unavailable values (``action_mask == 0``) get probability 0. The log-prob of an action is the
sum over its components ("one env step is one token", DESIGN §3.4). Each policy owns a
``torch.Generator`` for sampling, so runs are reproducible and checkpoints restore it.

:class:`MLPPolicy` is one role's policy (encoder -> trunk -> heads). :func:`shared_policies`
builds the ``shared_policy`` variant: per-role input encoders and action heads around ONE shared
trunk, returned as per-role views of a single ``nn.Module``.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from policies.base import TokenBatch

__all__ = ["MLPPolicy", "SharedPolicyModule", "ObsEncoder", "shared_policies"]


ID_FIELDS = ("query_id", "instruction")
"""Observation fields that identify the task instance (the env protocol's ``ID_FIELDS``): the
text face reads them; a numeric encoder ignores them, with or without the flat mode's ``tool_``
prefix."""


def _encoded(key: str) -> bool:
    return (
        key != "action_mask" and key not in ID_FIELDS and key.removeprefix("tool_") not in ID_FIELDS
    )


class ObsEncoder:
    """Flattens a batched Dict observation to float32 features.

    Every key but ``action_mask`` and the id fields (:data:`ID_FIELDS`) is encoded: Box values are
    divided by their finite bound magnitude (>= 1); MultiBinary is kept as 0/1; Discrete and
    MultiDiscrete become one-hot. Keys are taken in sorted order.
    """

    def __init__(self, space: gym.spaces.Dict) -> None:
        if not isinstance(space, gym.spaces.Dict):
            raise ValueError(f"observation space must be a gymnasium Dict, got {space}")
        self.keys = sorted(k for k in space.spaces if _encoded(k))
        self.parts: list[tuple[str, str, object]] = []
        dim = 0
        for k in self.keys:
            sp = space[k]
            if isinstance(sp, gym.spaces.Box):
                bound = np.maximum(np.abs(np.where(np.isfinite(sp.high), sp.high, 1.0)), 1.0)
                bound = np.maximum(bound, np.abs(np.where(np.isfinite(sp.low), sp.low, 1.0)))
                self.parts.append((k, "box", bound.reshape(-1).astype(np.float32)))
                dim += int(np.prod(sp.shape))
            elif isinstance(sp, gym.spaces.MultiBinary):
                self.parts.append((k, "bin", None))
                dim += int(np.prod(sp.shape))
            elif isinstance(sp, gym.spaces.Discrete):
                self.parts.append((k, "disc", int(sp.n)))
                dim += int(sp.n)
            elif isinstance(sp, gym.spaces.MultiDiscrete):
                nv = sp.nvec.reshape(-1).astype(np.int64)
                self.parts.append((k, "mdisc", nv))
                dim += int(nv.sum())
            else:
                raise ValueError(f"unsupported observation field {k!r}: {sp}")
        self.dim = dim

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``obs`` (batched) -> ``(n, dim)`` float32."""
        n = len(obs["action_mask"])
        cols = []
        for k, kind, extra in self.parts:
            v = np.asarray(obs[k]).reshape(n, -1)
            if kind == "box":
                cols.append(v.astype(np.float32) / extra)
            elif kind == "bin":
                cols.append(v.astype(np.float32))
            elif kind == "disc":
                cols.append(np.eye(extra, dtype=np.float32)[v[:, 0]])
            else:
                offs = np.concatenate([[0], np.cumsum(extra)[:-1]])
                oh = np.zeros((n, int(extra.sum())), dtype=np.float32)
                np.put_along_axis(oh, v.astype(np.int64) + offs[None, :], 1.0, axis=1)
                cols.append(oh)
        return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0), np.float32)


def _layer(i: int, o: int, std: float = np.sqrt(2)) -> nn.Linear:
    lin = nn.Linear(i, o)
    nn.init.orthogonal_(lin.weight, std)
    nn.init.zeros_(lin.bias)
    return lin


@functools.lru_cache(maxsize=64)
def _pad_index(nvec: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_comp, max(nvec))`` flat index of each component's values (0 past its end) and
    whether the slot is a real value."""
    nvec = np.asarray(nvec, dtype=np.int64)
    width = int(nvec.max())
    offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    slot = np.arange(width)[None, :]
    valid = slot < nvec[:, None]
    idx = np.where(valid, offsets[:, None] + slot, 0)
    return torch.from_numpy(idx), torch.from_numpy(valid)


def _masked_log_softmax(
    logits: torch.Tensor, masks: torch.Tensor, nvec: np.ndarray
) -> torch.Tensor:
    """Log-probs ``(n, n_comp, max(nvec))`` of every component at once (components padded to
    the widest); masked values get a logit of -1e9 and padding -2e9, so their probability is
    exactly 0 (padding's even when a whole component is masked) while every gradient (entropy
    included) stays finite."""
    idx, valid = _pad_index(tuple(int(k) for k in nvec))
    valid = valid.to(logits.device)
    lg = logits[:, idx].masked_fill(~(masks[:, idx] > 0), -1e9).masked_fill(~valid, -2e9)
    return torch.log_softmax(lg, dim=-1)


class MLPPolicy(nn.Module):
    """One role's policy: ``encoder -> trunk -> action heads`` with masked softmaxes.

    Args:
        observation_space: the role's Dict observation space (with ``action_mask``).
        action_space: the role's ``MultiDiscrete`` action space.
        hidden: width of the hidden layers (>= 1).
        seed: seeds the parameter init and the sampling generator.
        trunk: a shared trunk module (``shared_policy``); None builds a private one.
        relevance: ``fn(actions (n, n_comp)) -> (n, n_comp)`` 0/1 weights of the components that
            take effect (see :mod:`policies.relevance`); None counts every component.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Dict,
        action_space: gym.spaces.MultiDiscrete,
        hidden: int = 64,
        seed: int = 0,
        trunk: nn.Module | None = None,
        relevance=None,
    ) -> None:
        super().__init__()
        self.relevance = relevance
        if not isinstance(action_space, gym.spaces.MultiDiscrete):
            raise ValueError(f"action space must be MultiDiscrete, got {action_space}")
        if int(hidden) < 1:
            raise ValueError(f"hidden must be >= 1, got {hidden}")
        self.nvec = np.asarray(action_space.nvec, dtype=np.int64)
        self.obs_encoder = ObsEncoder(observation_space)
        self.input_dim = self.obs_encoder.dim
        init = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(init.initial_seed()))
            self.encoder = nn.Sequential(_layer(self.obs_encoder.dim, hidden), nn.Tanh())
            self.trunk = trunk or nn.Sequential(_layer(hidden, hidden), nn.Tanh())
            self.head = _layer(hidden, int(self.nvec.sum()), std=0.01)
        self.generator = torch.Generator().manual_seed(int(seed) + 1)

    # -- protocol ------------------------------------------------------------------------
    def encode(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """Encoded inputs ``(n, input_dim)`` float32 of a batched observation."""
        return torch.from_numpy(self.obs_encoder(obs))

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(n, input_dim)`` -> ``(n, sum(nvec))`` unmasked logits."""
        return self.head(self.trunk(self.encoder(inputs)))

    def log_prob(
        self, inputs: torch.Tensor, masks: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs ``(n,)`` (summed over the relevant action components, with gradient) and
        entropies ``(n,)`` of ``actions (n, n_comp)`` given ``inputs (n, input_dim)`` and
        ``masks (n, sum(nvec))``."""
        lp = _masked_log_softmax(self.logits(inputs), masks, self.nvec)  # (n, C, W)
        rel = self._relevance(actions).to(lp.device)
        chosen = lp.gather(2, actions.long()[:, :, None]).squeeze(2)  # (n, C)
        logp = (rel * chosen).sum(1)
        ent = -(rel * (lp.exp() * lp).sum(2)).sum(1)
        return logp, ent

    def export_records(self, handles: np.ndarray) -> dict[str, np.ndarray]:
        """An MLP recomputes everything from the recorded observations: no records of its own."""
        return {}

    def pack(self, traj) -> TokenBatch:
        """Pad a role's ``Trajectories`` into ``(num_rows, seq_len, ...)`` tensors: ``inputs``
        (the encoded observations, all steps encoded in one call), ``masks`` (int8 action
        masks) and ``actions``; one token per env step."""
        mask_dim, n_comp = int(self.nvec.sum()), len(self.nvec)
        need = [*self.obs_encoder.keys, "action_mask"]
        missing = [k for k in need if k not in traj.obs]
        if missing:
            raise ValueError(
                f"role {traj.role!r}: the records lack observation field(s) {missing}; "
                f"this policy reads {need}"
            )
        got = traj.obs["action_mask"].shape[1:]
        if got != (mask_dim,) or traj.actions.shape[1:] != (n_comp,):
            raise ValueError(
                f"role {traj.role!r}: records with action_mask {got} and actions "
                f"{traj.actions.shape[1:]} do not match the policy's action space "
                f"(nvec {self.nvec.tolist()}: mask ({mask_dim},), actions ({n_comp},))"
            )
        n = traj.num_rows
        t_max = max(int(traj.lengths.max()) if n else 1, 1)
        inputs = torch.zeros((n, t_max, self.input_dim))
        masks = torch.zeros((n, t_max, mask_dim), dtype=torch.int8)
        actions = torch.zeros((n, t_max, n_comp), dtype=torch.int64)
        logp = torch.zeros((n, t_max))
        valid = torch.zeros((n, t_max))
        if n:
            row, pos = traj.step_rows()
            inputs[row, pos] = self.encode(traj.obs)
            masks[row, pos] = torch.from_numpy(traj.obs["action_mask"].astype(np.int8))
            actions[row, pos] = torch.from_numpy(traj.actions)
            logp[row, pos] = torch.from_numpy(traj.logp).float()
            valid[row, pos] = 1.0
        return TokenBatch(logp, valid, {"inputs": inputs, "masks": masks, "actions": actions})

    def token_logprobs(self, batch: TokenBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step log-probs and entropies ``(num_rows, seq_len)``: the policy runs on the
        valid steps only (``mask > 0``, gathered), scattered back; padding steps get 0 (and no
        gradient), which the loss masks out."""
        return self.row_logprobs(batch, torch.arange(len(batch)))

    def row_logprobs(
        self, batch: TokenBatch, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`token_logprobs` of ``batch.select(rows)`` without copying the selected rows:
        the valid steps of ``rows`` are gathered from ``batch`` directly (the same steps in the
        same order, so the same values and gradients). ``(len(rows), seq_len)`` each."""
        on = batch.mask[rows] > 0
        r, s = torch.nonzero(on, as_tuple=True)
        src = (rows[r], s)
        d = batch.data
        lp, e = self.log_prob(d["inputs"][src], d["masks"][src], d["actions"][src])
        zeros = torch.zeros(on.shape, dtype=lp.dtype)
        return zeros.index_put((r, s), lp), zeros.index_put((r, s), e)

    def _relevance(self, actions: torch.Tensor) -> torch.Tensor:
        if self.relevance is None:
            return torch.ones(actions.shape, dtype=torch.float32)
        return torch.from_numpy(self.relevance(actions.cpu().numpy()))

    @torch.no_grad()
    def act(
        self, obs: dict[str, np.ndarray], greedy: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        x = self.encode(obs)
        masks = torch.from_numpy(np.asarray(obs["action_mask"]))
        lp = _masked_log_softmax(self.logits(x), masks, self.nvec)  # (n, C, W)
        if greedy:
            actions = lp.argmax(2)
        else:  # Gumbel-max over every component at once
            u = torch.rand(lp.shape, generator=self.generator).clamp_(1e-12, 1 - 1e-12)
            actions = (lp - torch.log(-torch.log(u))).argmax(2)
        rel = self._relevance(actions)
        chosen = lp.gather(2, actions[:, :, None]).squeeze(2)
        logp = (rel * chosen).double().sum(1)
        return actions.numpy().astype(np.int64), logp.numpy()

    def __call__(self, obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return self.act(obs)


class SharedPolicyModule(nn.Module):
    """One module for all roles: per-role encoders and heads around one shared trunk."""

    def __init__(self, policies: dict[str, MLPPolicy]) -> None:
        super().__init__()
        self.roles = nn.ModuleDict(policies)


def shared_policies(
    specs: dict[str, tuple[gym.spaces.Dict, gym.spaces.MultiDiscrete]],
    hidden: int = 64,
    seed: int = 0,
    relevance: dict | None = None,
) -> tuple[SharedPolicyModule, dict[str, MLPPolicy]]:
    """Per-role policies sharing one trunk; returns the single module and the role views.

    ``relevance``: optional role -> relevance function (see :class:`MLPPolicy`)."""
    relevance = relevance or {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed) + 7)
        trunk = nn.Sequential(_layer(hidden, hidden), nn.Tanh())
    pols = {
        role: MLPPolicy(
            obs, act, hidden=hidden, seed=seed + 101 * i, trunk=trunk, relevance=relevance.get(role)
        )
        for i, (role, (obs, act)) in enumerate(specs.items())
    }
    return SharedPolicyModule(pols), pols
