"""``mgrpo show RUN``: held-out episodes of a trained run as the chat transcripts the agents saw.

    mgrpo show runs/p0                      # held-out episode 0, every role
    mgrpo show runs/p0 --episode 3 --role sub
    mgrpo show runs/p0 --untrained          # the same episode with the run's initial policies

Every agent acts through its env text face (``envs/PROTOCOL.md``): each turn shows the user
message the agent got (``messages(obs)``) and what it produced: the exact decoded response of a
language-model policy (its ``response_text(handle)``), else the text form of the action
(``to_text``). Sub-agent calls are shown under the main turn that issued them, with their
instruction in words, f_S and e_S. Actions are the most likely ones (greedy) unless
``--sampled``. Held-out episode N is query ``2**31 + N`` with episode seed N (the queries of
``mgrpo eval --seed 0``). Writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "run", "transcript"]

HELDOUT = 2**31
RULE = "-" * 72


def _first(obs: dict[str, np.ndarray], i: int = 0) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[i] for k, v in obs.items()}


def _said(policy: Any, face: Any, action: np.ndarray, handle: int) -> str:
    """What the agent produced: an LM's exact response, else the action's text form."""
    text_of = getattr(policy, "response_text", None)
    if text_of is not None and handle >= 0:
        return str(text_of(int(handle)))
    return face.to_text(np.asarray(action))


def _turn(face: Any, obs: dict[str, np.ndarray], said: str, header: str, system: bool) -> str:
    messages, tools = face.messages(obs)
    lines = [header]
    for m in messages:
        if m["role"] == "system" and not system:
            continue
        lines.append(f"[{m['role']}]")
        lines.append(str(m["content"]))
    if system and tools:
        names = ", ".join(t["function"]["name"] for t in tools)
        lines.append(f"[tools] {names}")
    lines.append("[assistant]")
    lines.append(said)
    return "\n".join(lines)


def _act(policy: Any, obs: dict[str, np.ndarray], greedy: bool):
    out = policy.act(obs, greedy=greedy)
    handles = out[2] if len(out) == 3 else np.full(len(out[0]), -1, np.int64)
    return out[0], out[1], handles


def transcript(
    run: Any,
    episode: int = 0,
    *,
    role: str | None = None,
    greedy: bool = True,
) -> str:
    """The transcript of held-out ``episode`` (query ``2**31 + episode``) played by ``run``'s
    policies (a :class:`experiments.api.Run`, a run directory, or a live Trainer/Learner).

    Args:
        episode: held-out episode index (>= 0).
        role: show only this role (``"main"`` or a specialist role); None shows all.
        greedy: most likely actions (default) or sampled ones.
    Raises ``ValueError`` for a role the run does not have or a negative episode.
    """
    from experiments.api import load_run
    from sim.rollout import own_streams
    from sim.trainer import make_env

    if isinstance(run, str | Path):
        run = load_run(run)
    cfg = getattr(run, "config", None) or run.cfg
    policies = run.policies
    if not isinstance(episode, int | np.integer) or isinstance(episode, bool) or episode < 0:
        raise ValueError(f"episode must be an int >= 0, got {episode!r}")
    if role is not None and role not in policies:
        raise ValueError(f"role {role!r} is not a role of this run; roles: {list(policies)}")
    env = make_env(cfg, 1)
    subs = {r: policies[r] for r in env.subagent_roles}
    for r, p in subs.items():
        env.set_subagent(r, lambda obs, p=p: _act(p, obs, greedy))
    try:
        with own_streams(policies, int(episode) * 1_000_003 + 7_654_321):
            return _play(env, policies["main"], subs, int(episode), role, greedy, cfg)
    finally:
        env.close()


def _play(env, main, subs, episode, role, greedy, cfg) -> str:
    query = HELDOUT + episode
    obs, _ = env.reset(seed=[episode], options={"query": np.array([query])})
    turns: list[tuple[dict, str]] = []
    for _ in range(env.max_turns + 1):
        if env.done.all():
            break
        action, _, handle = _act(main, obs, greedy)
        turns.append((_first(obs), _said(main, env.text, action[0], int(handle[0]))))
        obs, *_ = env.step(action)
    info = env.final_infos[0]
    calls = info.get("sub_trajectories", [])
    out = [
        f"{cfg.env.id} held-out episode {episode} (query {query}), variant {cfg.variant}, "
        f"{'greedy' if greedy else 'sampled'} actions",
        RULE,
    ]
    for t, (o, said) in enumerate(turns):
        if role in (None, "main"):
            out.append(_turn(env.text, o, said, f"== main, turn {t + 1} ==", system=t == 0))
        for rec in (c for c in calls if c.turn == t and role in (None, c.role)):
            face = env.sub_tasks[rec.role].text
            pol = subs[rec.role]
            for s in range(len(rec.actions)):
                o_s = {k: v[s] for k, v in rec.observations.items()}
                handle = int(rec.handle[s]) if len(rec.handle) else -1
                said_s = _said(pol, face, rec.actions[s], handle)
                head = f"   -- {rec.role} call {rec.invocation + 1}, step {s + 1} --"
                out.append(_turn(face, o_s, said_s, head, system=s == 0))
            out.append(f"   (f_S = {rec.format_ok}, e_S = {rec.expert:.2f})")
    out.append(RULE)
    out.append(
        f"correct = {info['correct']:.0f}, format_ok = {info['format_ok']}, "
        f"calls = {info['calls']}, simulated time = {info['sim_time']:.1f} s, "
        f"turns = {info['turns']}"
    )
    return "\n".join(out)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mgrpo show`` on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "show",
        help="print held-out episodes of a run as the agents' chat transcripts",
        description=(
            "Play held-out episode N (query 2**31 + N) with RUN's policies and print what every "
            "agent saw and produced, through the env's text face. Writes nothing."
        ),
    )
    p.add_argument("run_dir", metavar="RUN", help="a run directory (config.toml, checkpoint.pt)")
    p.add_argument("--episode", type=int, default=0, metavar="N", help="held-out episode (0)")
    p.add_argument("--role", default=None, metavar="NAME", help="only this role (main, sub...)")
    p.add_argument("--sampled", action="store_true", help="sample actions instead of greedy")
    p.add_argument(
        "--untrained",
        action="store_true",
        help="use the run's initial policies (its config and seed), not the checkpoint",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """``mgrpo show``: print the transcript; 0 on success, 2 on bad input."""
    from experiments.api import Run, load_run

    try:
        loaded = load_run(args.run_dir)
        if args.untrained:
            from sim.trainer import Learner

            loaded = Run(loaded.run_dir, loaded.config, Learner(loaded.config))
        text = transcript(loaded, args.episode, role=args.role, greedy=not args.sampled)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0
