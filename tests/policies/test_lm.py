"""Rules of policies/lm.py (LMPolicy), lm_pack.py, trie.py and lm_build.py.

Most tests use a tiny random-init Qwen3 over a small synthetic vocabulary:
:func:`policies.qwen.toy_tokenizer` trained on the species prompts and action texts (Qwen3's
special tokens and chat template, byte-level BPE with merges across words, so a prompt is ~100
tokens instead of ~1,000). The real Qwen3 tokenizer runs end to end in ``test_qwen.py``.
"""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers the envs)
from envs.core import actions_allowed, block_offsets
from policies import RoleSpec, build_policies, lm_pack
from policies.lm import LMPolicy, sample_categorical
from policies.lm_build import check_lm_config
from policies.qwen import tiny_qwen3, toy_tokenizer
from policies.trie import allowed_actions
from sim import policy_loss
from sim.records import Trajectories
from sim.rollout import collect_rollouts

B, K = 2, 2


def _vec(flat: bool = False):
    return gym.make_vec(
        "mgrpo/InvasiveSpecies-v0",
        num_envs=B * K,
        vectorization_mode="vector_entry_point",
        preset="low",
        flat=flat,
    ).unwrapped


def _texts(face) -> list[str]:
    n = len(face.nvec)
    out = []
    for a in itertools.product(*(range(int(v)) for v in face.nvec)):
        a = np.array(a, dtype=np.int64)
        if not face.is_reserved(a) and face.kind(a) is not None:
            out.append(face.to_text(a))
    return sorted(set(out)) if n else out


@pytest.fixture(scope="module")
def world():
    vec = _vec()
    obs, _ = vec.reset(seed=list(range(B * K)), options={"query": np.arange(B * K)})
    sub = vec.sub_tasks["sub"]
    sub_env = gym.make("mgrpo/InvasiveSpecies-v0", preset="low").unwrapped.subagent_env("sub")
    sub_obs = [sub_env.reset(seed=s)[0] for s in range(4)]
    corpus = [vec.text.render({k: v[i] for k, v in obs.items()}) for i in range(B * K)]
    corpus += [sub.text.render(o) for o in sub_obs] + _texts(vec.text) + _texts(sub.text)
    tok = toy_tokenizer(corpus, 1000)
    sub_batch = {k: np.stack([o[k] for o in sub_obs]) for k in sub_obs[0]}
    return SimpleNamespace(vec=vec, obs=obs, sub=sub, sub_obs=sub_batch, tok=tok)


def _policies(w, mode: str, moe: bool = False, seed: int = 0, **kw):
    model = tiny_qwen3(moe=moe, vocab_size=len(w.tok), seed=seed)
    args = dict(mode=mode, max_new_tokens=48, max_seq_len=1024) | kw
    main = LMPolicy(
        model, w.tok, w.vec.text, w.vec.single_observation_space, w.vec.single_action_space,
        seed=seed, **args,
    )  # fmt: skip
    sub = LMPolicy(
        model, w.tok, w.sub.text, w.sub.observation_space, w.sub.action_space, seed=seed + 1,
        **args,
    )  # fmt: skip
    return main, sub


_POLICIES: dict = {}


def _shared_choice(w):
    """One pair of choice-mode policies reused by several tests (building costs time)."""
    if "choice" not in _POLICIES:
        _POLICIES["choice"] = _policies(w, "choice")
    return _POLICIES["choice"]


def _rollout(w, main, sub, seed=0):
    return collect_rollouts(
        w.vec, main, {"sub": sub}, np.arange(B), K, list(range(seed, seed + B * K))
    )


# ---------------------------------------------------------------------- choice mode
_VECS = [_vec(False), _vec(True)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.data())
def test_allowed_actions_are_exactly_the_texts_the_mask_allows(data):
    vec = _VECS[data.draw(st.sampled_from([0, 1]))]
    face = vec.text if data.draw(st.booleans()) else vec.sub_tasks["sub"].text
    nvec = face.nvec
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=int(nvec.sum()),
                                       max_size=int(nvec.sum()))), dtype=np.int8)  # fmt: skip
    acts = allowed_actions(face, mask)
    offs = block_offsets(nvec)
    assert actions_allowed(acts, np.tile(mask, (len(acts), 1)), offs).all()
    brute = [np.array(a) for a in itertools.product(*(range(int(v)) for v in nvec))]
    brute = [a for a in brute if mask[a + offs[:-1]].all() and face.kind(a) is not None]
    assert sorted(face.to_text(a) for a in acts) == sorted({face.to_text(a) for a in brute})


@settings(max_examples=6, deadline=None, derandomize=True)
@given(masks=st.lists(st.lists(st.booleans(), min_size=13, max_size=13), min_size=3, max_size=3))
def test_choice_mode_samples_only_allowed_actions(world, masks):
    _, sub = _shared_choice(world)
    obs = dict(world.sub_obs)
    obs["action_mask"] = np.array(masks + [[1] * 13], dtype=np.int8)
    acts, logp, handles = sub.act({k: v[:4] for k, v in obs.items()})
    for i in range(4):
        allowed = allowed_actions(sub.face, obs["action_mask"][i])
        rec = sub._records[int(handles[i])]
        if len(allowed) == 0:
            assert np.array_equal(acts[i], sub.face.malformed()) and logp[i] == 0
            continue
        assert any(np.array_equal(acts[i], a) for a in allowed)
        text = world.tok.decode(rec.response)
        assert text.endswith("<|im_end|>")
        assert sub.face.to_text(acts[i]) == text.removesuffix("<|im_end|>")
        assert logp[i] <= 0 and np.isclose(logp[i], rec.logp.astype(np.float64).sum())


# ---------------------------------------------------------------------- recomputation
@pytest.mark.parametrize(
    "mode,moe,temp",
    [
        ("choice", False, 1.0),
        ("generate", False, 1.0),
        ("choice", True, 0.7),
        ("generate", True, 0.7),
    ],
)
def test_recomputed_logprobs_equal_the_behaviour_logprobs(world, mode, moe, temp, monkeypatch):
    main, sub = _policies(world, mode, moe=moe, seed=3, temperature=temp)
    batch = _rollout(world, main, sub)
    checked = 0
    for role, pol in (("main", main), ("sub", sub)):
        traj = batch.trajectories[role]
        if traj.num_rows == 0:
            continue
        tb = pol.pack(traj)
        logp, ent = pol.token_logprobs(tb)
        m = tb.mask > 0
        assert (logp - tb.logp_old).abs()[m].max() < 1e-4  # rollout_logp_diff ~ 0
        assert torch.isfinite(ent).all() and (ent[m] >= 0).all()
        # a step's log-prob is the sum of its tokens'
        row = traj.step_rows()[0]
        per_row = np.bincount(row, traj.logp, minlength=traj.num_rows)
        assert np.allclose(per_row, tb.logp_old.double().sum(1).numpy(), atol=1e-4)
        checked += int(m.sum())
        if mode == "generate":  # full-vocabulary scores in small checkpointed chunks agree
            monkeypatch.setattr(lm_pack, "VOCAB_CHUNK", 7 * len(world.tok))
            chunked, ent2 = pol.token_logprobs(tb)
            assert torch.allclose(chunked, logp, atol=1e-6) and torch.allclose(ent2, ent, atol=1e-5)
            (chunked * tb.mask).sum().backward()
            assert all(torch.isfinite(q.grad).all() for q in pol.parameters() if q.grad is not None)
            monkeypatch.undo()
    assert checked > 0


def test_left_padded_prompts_without_a_shared_prefix_also_match(world):
    from policies.lm import _Record

    main, _ = _policies(world, "generate", seed=4, max_new_tokens=10)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17]]  # no common first token
    resp, lps, _, _ = main._sample(prompts, None, False)
    recs = [_Record(np.array(p, np.int32), np.array(r, np.int32), np.array(lp, np.float32), None)
            for p, r, lp in zip(prompts, resp, lps, strict=True)]  # fmt: skip
    h = np.array([main._store(r) for r in recs])
    obs = {k: v[:3] for k, v in world.obs.items()}
    traj = Trajectories.from_steps(
        "main", {}, np.ones(3), obs, np.zeros((3, 5)), [sum(x) for x in lps], h,
        main.export_records(h),
    )  # fmt: skip
    tb = main.pack(traj)
    assert tb.data["prefix"].shape[1] == 0
    logp, _ = main.token_logprobs(tb)
    assert torch.isfinite(logp).all()
    assert (logp - tb.logp_old).abs()[tb.mask > 0].max() < 1e-4


def test_importing_policies_does_not_import_transformers():
    code = (
        "import sys, policies; assert 'transformers' not in sys.modules; "
        "print('lm' in policies.policy_kinds())"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "True"


def test_pack_masks_only_sampled_tokens_and_keeps_the_exact_ids(world):
    main, sub = _shared_choice(world)
    batch = _rollout(world, main, sub, seed=11)
    traj = batch.trajectories["main"]
    tb = main.pack(traj)
    d = tb.data
    for r in range(traj.num_rows):
        steps = traj.handle[traj.offsets[r] : traj.offsets[r + 1]]
        recs = [main._records[int(h)] for h in steps]
        resp = np.concatenate([x.response for x in recs]).astype(np.int64)
        n_tok = len(resp)
        assert np.array_equal(d["tok_ids"][r, :n_tok].numpy(), resp)  # responses, no prompt
        assert (d["tok_step"][r, n_tok:] == -1).all() and (tb.mask[r, n_tok:] == 0).all()
        n_allowed = np.concatenate([[len(a) for a in x.allowed] for x in recs])
        assert np.array_equal(tb.mask[r, :n_tok].numpy(), (n_allowed > 1).astype(np.float32))
        forced = n_allowed == 1
        assert forced.any() and (tb.logp_old[r, :n_tok][torch.from_numpy(forced)] == 0).all()
        for s, x in enumerate(recs):  # the shared prefix + a segment: exact prompt + response
            seg = d["seg_ids"][r, s, : int(d["seg_len"][r, s])].numpy()
            seg = np.concatenate([d["prefix"][r].numpy(), seg])
            assert np.array_equal(seg, np.concatenate([x.prompt, x.response]))
    assert d["prefix"].shape[1] > 10  # the system message and the tools


def test_records_survive_serialisation_and_row_selection(world):
    main, sub = _shared_choice(world)
    traj = _rollout(world, main, sub, seed=5).trajectories["main"]
    back = Trajectories.from_bytes(traj.to_bytes())
    a, b = main.pack(traj), main.pack(back)
    assert all(torch.equal(a.data[k], b.data[k]) for k in a.data)
    idx = np.array([2, 0, 2])
    sel, ref = main.pack(traj.select(idx)), a.select(torch.from_numpy(idx))
    t = sel.seq_len
    assert torch.equal(sel.logp_old, ref.logp_old[:, :t]) and torch.equal(sel.mask, ref.mask[:, :t])
    assert torch.allclose(main.token_logprobs(sel)[0], main.token_logprobs(ref)[0][:, :t])


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=1, max_size=40).filter(
        lambda w: sum(w) > 0
    )
)
def test_the_sampler_never_draws_a_zero_probability_index_and_follows_the_weights(w):
    p = torch.tensor(w, dtype=torch.float32)
    probs = (p / p.sum()).expand(4000, -1).contiguous()
    idx = sample_categorical(probs, torch.Generator().manual_seed(0))
    assert (probs[0, idx] > 0).all()
    freq = torch.bincount(idx, minlength=len(w)).float() / len(idx)
    assert (freq - probs[0]).abs().max() < 0.05
    again = sample_categorical(probs, torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)


# ---------------------------------------------------------------------- seeds
def test_same_seed_same_samples_and_generator_restore(world):
    obs = world.obs
    p1, _ = _policies(world, "generate", seed=7, max_new_tokens=12)
    p2, _ = _policies(world, "generate", seed=7, max_new_tokens=12)
    state = p1.generator.get_state()
    a1, l1, h1 = p1.act(obs)
    a2, l2, h2 = p2.act(obs)
    assert np.array_equal(a1, a2) and np.array_equal(l1, l2)
    r1 = [p1._records[int(h)].response for h in h1]
    assert all(np.array_equal(x, p2._records[int(h)].response) for x, h in zip(r1, h2, strict=True))
    _, _, h3 = p1.act(obs)  # the generator moved on
    assert any(
        not np.array_equal(x, p1._records[int(h)].response) for x, h in zip(r1, h3, strict=True)
    )
    p1.generator.set_state(state)
    _, l4, h4 = p1.act(obs)
    assert np.array_equal(l1, l4)
    assert all(np.array_equal(x, p1._records[int(h)].response) for x, h in zip(r1, h4, strict=True))


def test_greedy_ignores_the_generator(world):
    p, _ = _policies(world, "generate", seed=1, max_new_tokens=6)
    a1 = [p._records[int(h)].response for h in p.act(world.obs, greedy=True)[2]]
    torch.rand(3, generator=p.generator)
    a2 = [p._records[int(h)].response for h in p.act(world.obs, greedy=True)[2]]
    assert all(np.array_equal(x, y) for x, y in zip(a1, a2, strict=True))


# ---------------------------------------------------------------------- learning
def test_a_reference_copy_has_its_own_model_and_the_same_logprobs(world):
    main, sub = _shared_choice(world)
    traj = _rollout(world, main, sub, seed=9).trajectories["main"]
    ref = copy.deepcopy(main).requires_grad_(False)
    assert ref.model is not main.model and ref.tokenizer is main.tokenizer
    assert all(k.startswith("model.") for k in main.state_dict())  # one copy of each weight
    tb = main.pack(traj)
    assert torch.equal(ref.token_logprobs(tb)[0], main.token_logprobs(tb)[0].detach())
    assert torch.equal(ref.generator.get_state(), main.generator.get_state())


def test_a_few_updates_move_choice_probability_toward_the_rewarded_action(world):
    _, sub = _policies(world, "choice", seed=2)
    opt = torch.optim.Adam(sub.parameters(), lr=3e-2)
    obs = {k: np.repeat(v[:1], 16, axis=0) for k, v in world.sub_obs.items()}
    good = 0  # reward the action type "search"

    def rate() -> float:
        return float((sub.act(obs)[0][:, 0] == good).mean())

    before = rate()
    for _ in range(6):
        acts, logp, h = sub.act(obs)
        traj = Trajectories.from_steps(
            "sub", {}, np.ones(16, np.int64), obs, acts, logp, h, sub.export_records(h)
        )
        tb = sub.pack(traj)
        r = torch.from_numpy((acts[:, 0] == good).astype(np.float32))
        adv = r - r.mean()
        lp, _ = sub.token_logprobs(tb)
        loss, _ = policy_loss(lp, tb.logp_old, adv, tb.mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert rate() > max(before, 0.5)  # measured: 0.44 -> 1.0


# ---------------------------------------------------------------------- bad input
def test_pack_without_lm_records_names_the_role(world):
    main, _ = _shared_choice(world)
    traj = Trajectories.from_steps(
        "scout", {}, [1], {k: v[:1] for k, v in world.obs.items()}, np.zeros((1, 5)), [0.0]
    )
    with pytest.raises(ValueError, match="role 'scout'.*lm.handle"):
        main.pack(traj)
    empty = main.pack(Trajectories.empty("main", {"x": ((2,), np.float32)}, 5))
    assert len(empty) == 0 and main.token_logprobs(empty)[0].shape == (0, 1)
    with pytest.raises(ValueError, match="no records for handles"):
        main.export_records(np.array([10**9]))


def test_policy_arguments_are_checked(world):
    model = tiny_qwen3(vocab_size=len(world.tok))
    sp = (world.vec.text, world.vec.single_observation_space, world.vec.single_action_space)
    with pytest.raises(ValueError, match="policy.mode"):
        LMPolicy(model, world.tok, *sp, mode="beam")
    with pytest.raises(ValueError, match="Linear is not a causal LM"):
        LMPolicy(torch.nn.Linear(2, 2), world.tok, *sp)
    with pytest.raises(ValueError, match="policy.max_new_tokens"):
        LMPolicy(model, world.tok, *sp, max_new_tokens=64, max_seq_len=64)
    small = LMPolicy(model, world.tok, *sp, max_new_tokens=8, max_seq_len=40)
    with pytest.raises(ValueError, match="policy.max_seq_len = 40"):
        small.act(world.obs)
    short = LMPolicy(model, world.tok, *sp, mode="choice", max_new_tokens=2)
    with pytest.raises(ValueError, match="policy.max_new_tokens = 2"):
        short.act(world.obs)


class _Cfg(SimpleNamespace):
    pass


@pytest.mark.parametrize(
    "cfg,match",
    [
        (dict(mode="beam"), "policy.mode"),
        (dict(max_new_tokens=64, max_seq_len=64), "policy.max_new_tokens"),
        (dict(max_new_tokens=0), "policy.max_new_tokens"),
        (dict(temperature=0.0), "policy.temperature"),
        (dict(dtype="int8"), "policy.dtype"),
        (dict(model="/nonexistent/model"), "policy.model = '/nonexistent/model'"),
        (dict(max_seq_len=50_000), "policy.max_seq_len = 50000 exceeds the model's context"),
    ],
)
def test_config_errors_name_the_key(cfg, match):
    with pytest.raises(ValueError, match=match):
        check_lm_config(_Cfg(**cfg))


def test_model_folders_are_checked_before_any_work(tmp_path, world):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        check_lm_config(_Cfg(model=str(tmp_path / "empty")))
    m = tiny_qwen3(vocab_size=len(world.tok))
    m.save_pretrained(tmp_path / "notok")
    with pytest.raises(ValueError, match="no tokenizer"):
        check_lm_config(_Cfg(model=str(tmp_path / "notok")))
    world.tok.save_pretrained(tmp_path / "notok")
    with pytest.raises(ValueError, match="max_seq_len = 50000 exceeds the model's context"):
        check_lm_config(_Cfg(model=str(tmp_path / "notok"), max_seq_len=50_000))
    (tmp_path / "notok" / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(ValueError, match="'vit' is not a causal language model"):
        check_lm_config(_Cfg(model=str(tmp_path / "notok")))


def test_the_lm_kind_builds_from_a_saved_folder_shared_or_not(tmp_path, world):
    m = tiny_qwen3(vocab_size=len(world.tok), seed=4)
    m.save_pretrained(tmp_path / "m")
    world.tok.save_pretrained(tmp_path / "m")
    specs = {
        "main": RoleSpec(
            world.vec.single_observation_space, world.vec.single_action_space, world.vec.text
        ),
        "sub": RoleSpec(world.sub.observation_space, world.sub.action_space, world.sub.text),
    }
    cfg = _Cfg(model=str(tmp_path / "m"), mode="choice", max_new_tokens=48, max_seq_len=1024)
    cfg.shared = True
    built = build_policies("lm", specs, cfg, seed=0)
    main, sub = built.policies["main"], built.policies["sub"]
    assert built.shared_module is main.model is sub.model
    sd = m.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in main.model.state_dict().items())
    acts, logp, h = main.act(world.obs)
    assert acts.shape == (B * K, 5) and logp.shape == (B * K,) and h.dtype == np.int64
    cfg.shared = False
    built = build_policies("lm", specs, cfg, seed=0)
    assert built.shared_module is None
    assert built.policies["main"].model is not built.policies["sub"].model
    specs["sub"] = RoleSpec(world.sub.observation_space, world.sub.action_space, None)
    with pytest.raises(ValueError, match=r"role\(s\) \['sub'\] have no text face"):
        build_policies("lm", specs, cfg, seed=0)
