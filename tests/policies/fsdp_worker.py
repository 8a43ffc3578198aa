"""One process of the FSDP2 equivalence test (tests/policies/test_fsdp.py), and what it shares
with the one-process reference: the tiny Qwen3-MoE with LoRA on attention and experts, a fixed
recorded batch of rows of varied lengths, and the configs of the two update steps.

Run by the test as ``python -m tests.policies.fsdp_worker OUT`` in two processes with
``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set (as a launcher sets them);
rank 0 writes the gathered adapter and optimizer state to ``OUT``."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

VOCAB = 256
"""a small vocabulary keeps the head cheap; the rest is ``tiny_qwen3(moe=True)``"""
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "experts")
STEPS = (
    # step 1: the default aggregation, one minibatch (7 rows: 4 on rank 0, 3 on rank 1),
    # an entropy bonus
    {"agg": "seq-mean-token-mean", "minibatches": 1, "mu": 1, "entropy_coef": 0.01, "kl": 0.0},
    # step 2: token-mean over two minibatches (4 + 3 rows: 2/2 and 2/1), two epochs, the KL
    # term against the base with adapters disabled, clipping by the global gradient norm
    {"agg": "token-mean", "minibatches": 2, "mu": 2, "entropy_coef": 0.0, "kl": 0.05},
)


def config(step: dict[str, Any]) -> Any:
    """The config fields :func:`sim.update.update_role` reads."""
    optim = SimpleNamespace(
        minibatches=step["minibatches"],
        mu=step["mu"],
        max_grad_norm=0.5,
        grad_norm_limit=0.0,
        param_norm_limit=0.0,
    )
    loss = SimpleNamespace(
        eps_low=0.2,
        eps_high=0.28,
        ratio_level="token",
        agg=step["agg"],
        kl_coef=step["kl"],
        entropy_coef=step["entropy_coef"],
    )
    return SimpleNamespace(optim=optim, loss=loss)


class _Tokenizer:
    """What LMPolicy reads of a tokenizer when it only scores: the stop and padding ids."""

    pad_token_id = 0

    def convert_tokens_to_ids(self, token: str) -> int:
        return 1


def scoring_policy(model: Any, peft: Any) -> Any:
    """An LMPolicy of role ``main`` around ``model`` with the adapter ``main`` of ``peft``,
    for scoring and updates only (no tokenizer or text face needed)."""
    import gymnasium as gym

    from policies.lm import LMPolicy

    policy = LMPolicy(
        model,
        _Tokenizer(),
        SimpleNamespace(role="main"),
        gym.spaces.Dict({"action_mask": gym.spaces.MultiBinary(2)}),
        gym.spaces.MultiDiscrete([2]),
        peft=peft,
        adapter="main",
    )
    policy.entropy_grad = True
    return policy


def build_policy(sharded: bool) -> Any:
    """The policy of role ``main``: tiny Qwen3-MoE (seed 0), LoRA rank 4 on attention and
    experts with seeded random B (so every adapter gets a gradient in step 1); sharded with
    FSDP2 over the process group when ``sharded``."""
    from policies.lm_fsdp import shard_model
    from policies.lm_lora import add_adapters
    from policies.qwen import tiny_qwen3

    model = tiny_qwen3(moe=True, vocab_size=VOCAB, seed=0)
    model.requires_grad_(False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        peft_model = add_adapters(model, ["main"], 4, 8.0, TARGETS)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.02)
    if sharded:
        shard_model(model)
    policy = scoring_policy(model, peft_model)
    policy.sharded = sharded
    policy.prefix_cache = not sharded
    return policy


def recorded_batch() -> Any:
    """7 rows of 1-3 turns (prompts sharing a prefix, responses of 1-5 tokens: 34 tokens in
    all, 1 to 12 a row), old log-probs near the random-init model's own (about -log(VOCAB) =
    -5.5, spread 0.15: ratios near 1, a few clipped), advantages and row weights (one row of
    weight 0, as ``mask`` alignment pads); the same in every process (seeded)."""
    from policies.lm_pack import export, pack
    from sim.records import Trajectories
    from sim.update import Prepared

    rng = np.random.default_rng(7)
    turns = np.array([1, 2, 1, 3, 1, 2, 1])
    prefix = rng.integers(3, VOCAB, 6)
    recs = []
    for _ in range(int(turns.sum())):
        prompt = np.concatenate([prefix, rng.integers(3, VOCAB, rng.integers(2, 6))])
        response = rng.integers(3, VOCAB, rng.integers(1, 6))
        recs.append(
            SimpleNamespace(
                prompt=prompt.astype(np.int32),
                response=response.astype(np.int32),
                logp=np.zeros(len(response), np.float32),
                allowed=None,
            )
        )
    handles = np.arange(len(recs), dtype=np.int64)
    s = len(recs)
    traj = Trajectories.from_steps(
        "main",
        {"rollout": np.arange(len(turns))},
        turns,
        {"action_mask": np.ones((s, 2), np.int8)},
        np.zeros((s, 1), np.int64),
        np.zeros(s),
        handles,
        export(handles, recs),
    )
    tokens = pack(traj, pad_id=0)
    logp_old = torch.from_numpy(rng.normal(-5.6, 0.15, tokens.mask.shape)).float()
    tokens.logp_old = logp_old * tokens.mask
    adv = torch.from_numpy(rng.normal(0.0, 1.0, len(turns))).float()
    weight = torch.ones(len(turns))
    weight[5] = 0.0
    return Prepared(tokens, adv, weight, adv.clone(), torch.zeros(len(turns), dtype=torch.long))


def train(policy: Any, prepared: Any, ranks: Any) -> tuple[Any, list[dict[str, float]]]:
    """The two update steps (:data:`STEPS`) with one Adam; returns the optimizer and each
    step's stats."""
    from sim.update import update_role

    opt = torch.optim.Adam(list(policy.parameters()), lr=3e-3)
    gen = torch.Generator().manual_seed(11)
    ref = policy.reference()
    out = []
    for i, step in enumerate(STEPS):
        cfg = config(step)
        out.append(update_role(cfg, "main", prepared, policy, opt, gen, i, ref, None, ranks))
    return opt, out


def main(out_path: str) -> None:
    """One rank: join the group from the environment, train the sharded policy on the recorded
    batch, gather the adapter and optimizer state (every rank), write it (rank 0)."""
    import torch.distributed as dist

    from sim.distributed import full_state, init_ranks

    torch.set_num_threads(1)
    ranks = init_ranks()
    policy = build_policy(sharded=True)
    prepared = recorded_batch()
    opt, stats = train(policy, prepared, ranks)
    state = full_state({"policy": policy.state_dict(), "optim": opt.state_dict()})
    if ranks.main:
        torch.save({**state, "stats": stats, "world": ranks.world}, out_path)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
