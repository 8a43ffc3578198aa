"""Benchmark: one M-GRPO step of the tiny Qwen3 in generate mode against the Hugging Face floor.

Ours: ``Learner.train_step()`` of ``lm_tiny_generate`` (Rubik's, ``env.max_turns = 3`` as the
preset, B = 8 queries x K = 8 rollouts, ``policy.max_new_tokens = 32`` per turn, float32, one
torch thread, evaluation off), timed after one warm-up step: rollout (env + prompts + our KV-cache
sampler), advantages (rewards, alignment, packing) and the update (recomputed log-probs, loss,
backward, Adam), all roles.

The floor, in the same process on the same weights (a deepcopy of every role's model taken just
before the timed step), does exactly the same work with plain Hugging Face calls:

* one ``model.generate`` per sampling call our step made (``LMPolicy._sample`` is wrapped on the
  instances to record it): the same prompt ids, left-padded, ``min_new_tokens = max_new_tokens =
  L`` with ``L`` the longest response of that call, ``do_sample=True``, KV cache, no top-k/top-p,
  no stop token (so every row runs ``L`` steps without a min-length logits processor);
* one forward + backward + Adam step per trained role over the sequences its update used (the
  role's packed rows after alignment: prompt + response of every turn), the standard way (as
  TRL's GRPOTrainer): full-vocabulary logits at the response positions only (``logits_to_keep``;
  at every position they would not fit in memory), cross-entropy on the response tokens, in
  micro-batches (``--micro-batch`` sequences, gradients accumulated) then one optimizer step.

Also reported: where our time goes, by timers wrapped around the policies' methods (prompt
building = chat template + tokenization, the sampler's prefill and decode loop, parse/decode and
records, export, pack, the update's log-prob forward, the optimizer) and the env time (the
rollout minus the policies' ``act`` and ``export_records``). The goal is ours <= 1.3x the floor
(TRL's GRPOTrainer: 1.42-1.56x on a comparable setup on this machine). One timed step on a
shared CPU: expect noise; the load average (``os.getloadavg``) is recorded.

    python benchmarks/bench_lm.py [--quick] [--moe] [--queries 8] [--group-size 8] [--tokens 32]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import platform
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from experiments.api import from_config
from sim.trainer import Learner

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 1.3


class Meter:
    """Wall-time totals per key and the sampling calls recorded while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.t: dict[str, float] = defaultdict(float)
        self.calls: list[dict[str, Any]] = []

    def wrap(self, obj: Any, name: str, key: str, hook: Callable | None = None) -> None:
        """Replace ``obj.name`` (an instance attribute) by a timed version; ``hook(args,
        out)`` runs after each call while the meter is on."""
        fn = getattr(obj, name)

        def timed(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kw)
            if self.on:
                self.t[key] += time.perf_counter() - t0
                if hook is not None:
                    hook(args, out)
            return out

        setattr(obj, name, timed)


def instrument(learner: Learner, meter: Meter) -> None:
    """Wrap the policies' methods and the optimizers' ``step`` with the meter's timers."""
    for role, pol in learner.policies.items():

        def record(args: tuple, out: tuple, role: str = role) -> None:
            prompts = [list(map(int, p)) for p in args[0]]
            lens = [len(r) for r in out[0]]
            meter.calls.append(
                {"role": role, "prompts": prompts, "L": max(lens, default=0), "sampled": sum(lens)}
            )

        meter.wrap(pol, "act", "act")
        meter.wrap(pol, "prompt_ids", "prompt")
        meter.wrap(pol, "_sample", "sample", record)
        meter.wrap(pol, "_prefill", "prefill")
        meter.wrap(pol, "export_records", "export")
        meter.wrap(pol, "pack", "pack")
        meter.wrap(pol, "token_logprobs", "logprobs")
    for opt in learner.optims.values():
        meter.wrap(opt, "step", "opt_step")


def role_sequences(learner: Learner) -> dict[str, list[tuple[list[int], list[int]]]]:
    """Per trained role, the (prompt, response) ids of every segment its update ran: the packed
    rows after alignment (duplicates included), prefix + segment split at the response."""
    out = {}
    for role, p in learner.last_prepared.items():
        if learner.frozen[role] or len(p) == 0:
            continue
        d = p.tokens.data
        prefix = d["prefix"][0].tolist()
        seg_ids, seg_len, tok_step = d["seg_ids"].numpy(), d["seg_len"].numpy(), d["tok_step"]
        seqs = []
        for r in range(len(p)):
            steps = tok_step[r][tok_step[r] >= 0].numpy()
            n_resp = np.bincount(steps, minlength=seg_len.shape[1])
            for s in np.flatnonzero(seg_len[r] > 0):
                seg = seg_ids[r, s, : seg_len[r, s]].tolist()
                k = int(n_resp[s])
                seqs.append((prefix + seg[: len(seg) - k], seg[len(seg) - k :]))
        out[role] = seqs
    return out


def left_pad(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(p)
        attn[i, width - len(p) :] = 1
    return ids, attn


def floor_generate(models: dict[str, Any], calls: list[dict], pad: int, temp: float):
    """One ``generate`` per recorded sampling call, no stop token (every row runs ``L``
    tokens, no min-length processor); returns (seconds, generated tokens)."""
    secs, tokens = 0.0, 0
    for c in calls:
        if c["L"] == 0:
            continue
        ids, attn = left_pad(c["prompts"], pad)
        t0 = time.perf_counter()
        out = models[c["role"]].generate(
            input_ids=ids,
            attention_mask=attn,
            max_new_tokens=c["L"],
            min_new_tokens=c["L"],
            do_sample=True,
            use_cache=True,
            pad_token_id=pad,
            temperature=temp,
            top_k=0,
            top_p=1.0,
        )
        secs += time.perf_counter() - t0
        assert out.shape[1] == ids.shape[1] + c["L"], (out.shape, ids.shape, c["L"])
        tokens += len(c["prompts"]) * c["L"]
    return secs, tokens


def floor_train(model: Any, seqs: list, lr: float, pad: int, mb: int, step: bool = True):
    """Forward (logits at response positions) + backward over ``seqs`` in micro-batches of
    ``mb``, then one Adam step; returns seconds per phase."""
    opt = torch.optim.Adam(model.parameters(), lr)
    opt.zero_grad(set_to_none=True)
    n_tok = sum(len(r) for _, r in seqs)
    t = {"fwd": 0.0, "bwd": 0.0, "opt": 0.0}
    for i in range(0, len(seqs), mb):
        chunk = seqs[i : i + mb]
        p_ids, p_attn = left_pad([p for p, _ in chunk], pad)
        width = max(len(r) for _, r in chunk)
        r_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        r_attn = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (_, r) in enumerate(chunk):
            r_ids[j, : len(r)], r_attn[j, : len(r)] = torch.as_tensor(r), 1
        ids, attn = torch.cat([p_ids, r_ids], 1), torch.cat([p_attn, r_attn], 1)
        pos = (attn.cumsum(1) - 1).clamp(min=0)
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, logits_to_keep=width + 1)
        logits = out.logits[:, :-1].float()
        ce = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), r_ids.reshape(-1), reduction="none"
        )
        loss = (ce * r_attn.reshape(-1)).sum() / n_tok
        t1 = time.perf_counter()
        loss.backward()
        t["fwd"] += t1 - t0
        t["bwd"] += time.perf_counter() - t1
    if step:
        t0 = time.perf_counter()
        opt.step()
        t["opt"] = time.perf_counter() - t0
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke size: B=2, K=2, 8 new tokens")
    p.add_argument("--moe", action="store_true", help="tiny-qwen3-moe instead of tiny-qwen3")
    p.add_argument("--queries", type=int, default=8, help="B (default 8)")
    p.add_argument("--group-size", type=int, default=8, help="K (default 8)")
    p.add_argument("--tokens", type=int, default=32, help="policy.max_new_tokens (default 32)")
    p.add_argument("--max-turns", type=int, default=3, help="env.max_turns (default 3)")
    p.add_argument("--micro-batch", type=int, default=64, help="floor sequences per forward")
    p.add_argument("--profile", type=int, default=0, help="then profile one more step: top N")
    p.add_argument("--out", default=str(RESULTS / "bench_lm.json"), help="JSON path")
    a = p.parse_args()
    if a.quick:
        a.queries, a.group_size, a.tokens = 2, 2, 8
    if min(a.queries, a.group_size, a.tokens, a.max_turns, a.micro_batch) < 1:
        p.error("--queries, --group-size, --tokens, --max-turns, --micro-batch must be >= 1")
    torch.set_num_threads(1)
    model = "tiny-qwen3-moe" if a.moe else "tiny-qwen3"
    cfg = from_config(
        "lm_tiny_generate",
        **{
            "steps": 100,
            "threads": 1,
            "env.max_turns": a.max_turns,
            "algo.queries_per_step": a.queries,
            "algo.group_size": a.group_size,
            "policy.model": model,
            "policy.mode": "generate",
            "policy.max_new_tokens": a.tokens,
            "eval.every": 10**6,
            "eval.episodes": 1,
            "eval.oracle_episodes": 0,
        },
    )
    learner = Learner(cfg)
    meter = Meter()
    instrument(learner, meter)
    learner.train_step()  # warm-up (its evaluation of step 1 included)
    models = {r: copy.deepcopy(pol.model) for r, pol in learner.policies.items()}
    load = os.getloadavg()
    meter.on = True
    row = learner.train_step()
    meter.on = False
    ours = {k: row[f"time/{k}_s"] for k in ("rollout", "adv", "update")}
    ours["total"] = sum(ours.values())

    pol = learner.policies["main"]
    pad, temp = pol.pad_id, pol.temperature
    seqs = role_sequences(learner)
    # floor warm-up: a short generate and one forward+backward without an optimizer step
    floor_generate(models, [dict(meter.calls[0], L=2)], pad, temp)
    for role, s in seqs.items():
        floor_train(models[role], s[: a.micro_batch], cfg.optim.lr, pad, a.micro_batch, False)
    gen_s, gen_tokens = floor_generate(models, meter.calls, pad, temp)
    tr = {"fwd": 0.0, "bwd": 0.0, "opt": 0.0}
    for role, s in seqs.items():
        for k, v in floor_train(models[role], s, cfg.optim.lr, pad, a.micro_batch).items():
            tr[k] += v
    train_s = sum(tr.values())
    floor = {"generate": gen_s, "train": train_s, **tr, "total": gen_s + train_s}

    m = dict(meter.t)
    sampled = sum(c["sampled"] for c in meter.calls)
    trained = sum(len(r) for s in seqs.values() for _, r in s)
    seq_tokens = sum(len(q) + len(r) for s in seqs.values() for q, r in s)
    sample = m.get("sample", 0)
    where = {  # name -> (ours s, floor s or None)
        "env and rollout bookkeeping": (
            ours["rollout"] - m.get("act", 0) - m.get("export", 0),
            None,
        ),
        "prompts (chat template + tokenize)": (m.get("prompt", 0), None),
        "sampling (ours) / generate (floor)": (sample, gen_s),
        "  sampler prefill": (m.get("prefill", 0), None),
        "  sampler decode loop": (sample - m.get("prefill", 0), None),
        "parse, decode, records (act rest)": (m.get("act", 0) - m.get("prompt", 0) - sample, None),
        "export_records": (m.get("export", 0), None),
        "advantages (pack inside)": (ours["adv"], None),
        "  of which pack": (m.get("pack", 0), None),
        "update: log-prob forward": (m.get("logprobs", 0), tr["fwd"]),
        "update: loss + backward + clip": (
            ours["update"] - m.get("logprobs", 0) - m.get("opt_step", 0),
            tr["bwd"],
        ),
        "update: optimizer step": (m.get("opt_step", 0), tr["opt"]),
    }
    ratio = ours["total"] / floor["total"]
    print(
        f"\nOne M-GRPO step, {model}, generate mode, B={a.queries} x K={a.group_size}, "
        f"max_new_tokens {a.tokens}, env.max_turns {a.max_turns}, torch threads 1; "
        f"{len(meter.calls)} sampling calls, {sampled:,} sampled tokens; update: {trained:,} "
        f"response tokens in {sum(len(s) for s in seqs.values())} sequences "
        f"({seq_tokens:,} tokens); load average {load[0]:.2f} (shared machine: noisy)"
    )
    print(f"{'':<24} {'ours s':>9} {'floor s':>9} {'x floor':>8}")
    for name, o, f in (
        ("rollout / generate", ours["rollout"], gen_s),
        ("advantages", ours["adv"], 0.0),
        ("update / train step", ours["update"], train_s),
        ("total", ours["total"], floor["total"]),
    ):
        print(f"{name:<24} {o:>9.3f} {f:>9.3f} {f'{o / f:.2f}' if f else '-':>8}")
    print(
        f"sampled tokens/s: ours {sampled / ours['rollout']:,.0f} (rollout), floor "
        f"{gen_tokens / gen_s:,.0f} (generate, {gen_tokens:,} tokens); step tokens/s: ours "
        f"{sampled / ours['total']:,.0f}, floor {gen_tokens / floor['total']:,.0f}"
    )
    print(f"ours / floor: {ratio:.2f}x (goal <= {GOAL}x; TRL GRPOTrainer 1.42-1.56x)")
    print(f"\nwhere our step goes {'ours s':>21} {'floor s':>9}")
    for k, (v, f) in where.items():
        print(f"{k:<36} {v:>9.3f} {'' if f is None else f'{f:>9.3f}'}")

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = {
        "model": model,
        "B": a.queries,
        "K": a.group_size,
        "max_new_tokens": a.tokens,
        "env": cfg.env.id,
        "env_max_turns": a.max_turns,
        "micro_batch": a.micro_batch,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "loadavg_before": load,
        "loadavg_after": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "ours_s": ours,
        "floor_s": floor,
        "ratio_total": ratio,
        "ratio_rollout_to_generate": ours["rollout"] / gen_s,
        "ratio_update_to_train": ours["update"] / train_s,
        "goal_ratio": GOAL,
        "sampled_tokens": sampled,
        "floor_generated_tokens": gen_tokens,
        "update_response_tokens": trained,
        "update_sequence_tokens": seq_tokens,
        "tokens_per_s": {
            "ours_rollout": sampled / ours["rollout"],
            "floor_generate": gen_tokens / gen_s,
            "ours_step": sampled / ours["total"],
            "floor_step": gen_tokens / floor["total"],
        },
        "where_s": {k: {"ours": v, "floor": f} for k, (v, f) in where.items()},
        "timers_s": m,
        "calls": [
            {
                "role": c["role"],
                "rows": len(c["prompts"]),
                "prompt_len_min": min(map(len, c["prompts"])),
                "prompt_len_max": max(map(len, c["prompts"])),
                "L": c["L"],
                "sampled": c["sampled"],
            }
            for c in meter.calls
        ],
        "metrics_row": {k: v for k, v in row.items() if isinstance(v, int | float)},
    }
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")
    if a.profile:
        prof = cProfile.Profile()
        prof.runcall(learner.train_step)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(a.profile)


if __name__ == "__main__":
    main()
