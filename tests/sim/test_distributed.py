"""Rules of sim/distributed.py and sim.rollout.concat_batches that need no second process: how a
step's work is split across ranks, how each rank's part of a minibatch loss is normalised, and
how the ranks' rollouts are put back together. (Two real processes: tests/policies/test_fsdp.py.)
"""

import numpy as np
import pytest
import torch

from policies import RoleSpec, build_policies
from sim.distributed import SINGLE, Ranks, check_ranks
from sim.loss import LOSS_AGG_MODES, loss_counts, loss_denominator, policy_loss
from sim.rollout import collect_rollouts, concat_batches
from sim.trainer import make_env
from tests.sim.conftest import tiny_config
from tests.sim.test_rollout import TokenLike


def test_one_process_changes_nothing():
    mb, weight = torch.tensor([3, 0, 2]), torch.tensor([1.0, 0.5, 0.0, 2.0])
    idx, w = SINGLE.share(mb, weight)
    assert idx is mb and torch.equal(w, weight[mb])
    assert SINGLE.split(5) == slice(0, 5) and SINGLE.count(5) == 5
    loss, stats = torch.tensor(1.5), {"pg_loss": 1.5}
    assert SINGLE.global_loss(loss, stats, "token-mean", None, None) == (loss, stats)
    t = torch.ones(3)
    assert SINGLE.sum(t) is t and SINGLE.max(2.0) == 2.0 and SINGLE.gather(7) == [7]


def test_shares_are_contiguous_in_rank_order_and_differ_by_at_most_one():
    # 7 queries on 3 ranks: 3, 2, 2
    shares = [Ranks(r, 3).split(7) for r in range(3)]
    assert shares == [slice(0, 3), slice(3, 5), slice(5, 7)]
    with pytest.raises(ValueError, match="2 items cannot be split across 3 processes"):
        Ranks(0, 3).split(2)


def test_a_minibatch_is_split_and_a_rank_left_without_rows_borrows_one_of_weight_zero():
    weight = torch.tensor([1.0, 1.0, 0.5, 1.0, 1.0])
    mb = torch.tensor([4, 1, 2])
    assert Ranks(0, 2).share(mb, weight)[0].tolist() == [4, 1]
    assert Ranks(1, 2).share(mb, weight)[0].tolist() == [2]
    assert Ranks(1, 2).share(mb, weight)[1].tolist() == [0.5]
    idx, w = Ranks(3, 4).share(torch.tensor([4, 1]), weight)  # 2 rows, 4 ranks
    assert idx.tolist() == [4] and w.tolist() == [0.0]  # runs the model, counts nowhere


@pytest.mark.parametrize("agg", LOSS_AGG_MODES)
def test_parts_normalised_by_the_global_counts_sum_to_the_whole_minibatch_loss(agg):
    # 5 rows of 1..6 tokens (one row of weight 0, one without tokens), split 2 / 3: each part's
    # loss times (its denominator / the global one) sums to the loss of all 5 rows
    g = torch.Generator().manual_seed(0)
    n, t = 5, 6
    mask = (torch.arange(t)[None, :] < torch.tensor([[1], [6], [3], [0], [4]])).float()
    logp = torch.randn(n, t, generator=g) * 0.1 - 2.0
    old = logp + torch.randn(n, t, generator=g) * 0.2
    adv, weight = torch.randn(n, generator=g), torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0])
    whole, _ = policy_loss(logp, old, adv, mask, agg=agg, weights=weight)
    counts = loss_counts(mask, weight)
    total = 0.0
    for part in (slice(0, 2), slice(2, 5)):
        p = dict(logp=logp[part], logp_old=old[part], advantages=adv[part], mask=mask[part])
        loss, _ = policy_loss(**p, agg=agg, weights=weight[part])
        local = loss_counts(mask[part], weight[part])
        total += float(loss) * float(loss_denominator(agg, local) / loss_denominator(agg, counts))
    assert total == pytest.approx(float(whole), rel=1e-6)
    # the counts: rows with weight > 0 and a token (3 of 5), their tokens (1 + 6 + 4), the width
    assert counts.tolist() == [3.0, 11.0, 6.0]


def test_a_config_that_cannot_be_split_names_the_key():
    cfg = tiny_config("mgrpo/RubiksLogic-v0", **{"algo.queries_per_step": 2})
    with pytest.raises(ValueError, match="algo.queries_per_step = 2 is fewer than the 4"):
        check_ranks(Ranks(0, 4), cfg)
    lm = tiny_config("mgrpo/RubiksLogic-v0", **{"policy.kind": "lm", "loss.kl_coef": 0.1})
    with pytest.raises(ValueError, match="loss.kl_coef > 0 across processes needs LoRA"):
        check_ranks(Ranks(0, 2), lm)
    assert check_ranks(SINGLE, lm) is SINGLE


B, K = 3, 2


@pytest.fixture(scope="module")
def world():
    cfg = tiny_config("mgrpo/InvasiveSpecies-v0")
    env = make_env(cfg, B * K)
    specs = {"main": RoleSpec(env.single_observation_space, env.single_action_space, env.text)}
    specs |= {
        r: RoleSpec(*env.subagent_spaces[r], env.sub_tasks[r].text) for r in env.subagent_roles
    }
    pols = build_policies("mlp", specs, cfg.policy, 0).policies
    rng = np.random.default_rng(3)
    return cfg, pols, rng.integers(0, 2**31, B), rng.integers(0, 2**31, B * K).tolist()


def _collect(cfg, pols, queries, seeds, main=None):
    env = make_env(cfg, len(queries) * K)
    subs = {r: pols[r] for r in env.subagent_roles}
    return collect_rollouts(env, main or pols["main"], subs, queries, K, seeds, greedy=True)


def test_rollouts_of_two_ranks_concatenated_are_those_of_one_process(world):
    # greedy acting and per-episode env seeds: queries 0 | 1, 2 collected apart and joined
    # equal all three collected at once, every role's rows, ids, steps and outcomes
    cfg, pols, queries, seeds = world
    whole = _collect(cfg, pols, queries, seeds)
    parts = [
        _collect(cfg, pols, queries[:1], seeds[:K]),
        _collect(cfg, pols, queries[1:], seeds[K:]),
    ]
    joined = concat_batches(parts, {})
    assert joined.trajectories.keys() == whole.trajectories.keys()
    for role, traj in whole.trajectories.items():
        got, want = joined.trajectories[role].to_arrays(), traj.to_arrays()
        assert got.keys() == want.keys(), role
        for k in want:
            if k == "logp":  # a float32 matmul's rows may round with the batch's size (1 ulp)
                np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=role)
            else:
                assert np.array_equal(got[k], want[k]), (role, k)
    for key in ("queries", "correct", "format_ok", "sim_time", "category_errors", "calls_total"):
        assert np.array_equal(getattr(joined, key), getattr(whole, key)), key
    assert joined.env_steps == whole.env_steps
    assert concat_batches(parts[:1], {}) is parts[0]


def test_the_ranks_record_handles_are_made_distinct_and_their_records_merged_by_the_policy(world):
    cfg, pols, queries, seeds = world
    seen = []

    def merge(extras, shifts):
        seen.append(shifts)
        return {
            "echo": np.concatenate(
                [e["echo"] + 10 * s for e, s in zip(extras, shifts, strict=True)]
            )
        }

    parts = [
        _collect(cfg, pols, q, s, main=TokenLike(pols["main"]))
        for q, s in ((queries[:1], seeds[:K]), (queries[1:], seeds[K:]))
    ]
    main = concat_batches(parts, {"main": merge}).main
    first = parts[0].main.handle
    assert seen == [[0, int(first.max()) + 1]]  # part 1's handles start past part 0's
    assert len(np.unique(main.handle)) == len(main.handle)  # distinct across the parts
    assert np.array_equal(main.extras["echo"], main.handle * 10)  # records follow their handles
    with pytest.raises(ValueError, match="role 'main': its policy keeps records of its own"):
        concat_batches(parts, {})
