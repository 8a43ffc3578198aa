"""The larger evaluation after the last step (``eval.final_episodes``, experiments.run): checked
config, logged in the last row only, and no change to training."""

from __future__ import annotations

import pytest

from experiments.checkpoint import read_metrics
from experiments.config import ConfigError, resolve
from tests.experiments.conftest import train_run


@pytest.mark.parametrize("bad", [-1, 70_000, 1.5, True])
def test_bad_final_episodes_names_key_value_and_range(bad):
    with pytest.raises(ConfigError, match=rf"eval.final_episodes = {bad} is invalid; allowed: "
                       r"an integer >= 0 and <= 65_536"):  # fmt: skip
        resolve({"eval.final_episodes": bad})


def test_final_eval_in_the_last_row_and_training_unchanged(tmp_path):
    on = read_metrics(train_run(tmp_path / "on", **{"eval.final_episodes": 24}) / "metrics.jsonl")
    off = read_metrics(train_run(tmp_path / "off", **{"eval.final_episodes": 0}) / "metrics.jsonl")
    final = {k: v for k, v in on[-1].items() if k.startswith("eval/final_")}
    assert final["eval/final_episodes"] == 24 and 0 <= final["eval/final_success_greedy"] <= 1
    assert not any(k.startswith("eval/final_") for row in on[:-1] + off for k in row)

    def strip(rows):  # time keys and the final evaluation aside, the rows are the same
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "eval/final_"))}
                for r in rows]  # fmt: skip

    assert strip(on) == strip(off)
