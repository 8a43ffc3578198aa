"""Rules of sim.update: the update runs the policy once per distinct source row (issue 14
item 2) and gives the update of the duplicated rows, up to float rounding."""

import gymnasium as gym
import numpy as np
import torch

from policies import MLPPolicy
from policies.base import TokenBatch
from sim.update import Prepared, update_role
from tests.sim.conftest import tiny_config

OBS = gym.spaces.Dict(
    {"x": gym.spaces.Box(0.0, 1.0, (3,), np.float32), "action_mask": gym.spaces.MultiBinary(5)}
)
ACT = gym.spaces.MultiDiscrete([2, 3])


class Counting(MLPPolicy):
    """An MLP that counts the rows it scores in the update."""

    rows = 0

    def token_logprobs(self, batch):
        self.rows += len(batch)
        return super().token_logprobs(batch)

    def row_logprobs(self, batch, rows):
        self.rows += len(rows)
        return super().row_logprobs(batch, rows)


def _prepared(source: bool) -> Prepared:
    g = torch.Generator().manual_seed(1)
    n, t = 6, 3
    base = TokenBatch(
        -torch.rand((n, t), generator=g),
        (torch.arange(t)[None, :] < torch.tensor([3, 1, 2, 3, 2, 1])[:, None]).float(),
        {
            "inputs": torch.rand((n, t, 3), generator=g),
            "masks": torch.ones((n, t, 5), dtype=torch.int8),
            "actions": torch.stack(
                [
                    torch.randint(0, 2, (n, t), generator=g),
                    torch.randint(0, 3, (n, t), generator=g),
                ],
                -1,
            ),
        },
    )
    index = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 1, 0])  # alignment's copies
    m = len(index)
    adv = torch.randn(m, generator=g)
    weight = torch.tensor([1.0, 0.0] * (m // 2))
    return Prepared(
        base.select(index), adv, weight, adv.clone(), torch.zeros(m, dtype=torch.long),
        index if source else None,
    )  # fmt: skip


def test_duplicated_rows_are_scored_once_with_the_same_update():
    cfg = tiny_config("mgrpo/RubiksLogic-v0", **{"optim.mu": 2, "optim.minibatches": 2})
    out, params, scored = {}, {}, {}
    for source in (False, True):
        pol = Counting(OBS, ACT, hidden=8, seed=0)
        opt = torch.optim.Adam(pol.parameters(), 1e-2)
        gen = torch.Generator().manual_seed(7)
        out[source] = update_role(cfg, "sub", _prepared(source), pol, opt, gen, step=0)
        params[source] = [p.detach().clone() for p in pol.parameters()]
        scored[source] = pol.rows
    assert scored[False] == 2 * 12  # mu epochs x every aligned row
    assert scored[True] < scored[False]  # each minibatch: its distinct source rows only
    for a, b in zip(params[False], params[True], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    for k in out[False]:
        np.testing.assert_allclose(out[True][k], out[False][k], rtol=1e-5, atol=1e-7, err_msg=k)
