"""`mgrpo show`: held-out episodes of a run as the chat transcripts every agent saw."""

import argparse
import hashlib

import pytest

from experiments import show
from tests.experiments.conftest import train_run

RUBIKS = "mgrpo/RubiksLogic-v0"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("show") / "run", **{"env.id": RUBIKS})


class _Delegating:
    """Wraps the main policy: delegate one look-up on the first turn, then act as trained."""

    def __init__(self, inner):
        self.inner, self.generator, self.turn = inner, inner.generator, 0

    def act(self, obs, greedy=False):
        a, lp = self.inner.act(obs, greedy=greedy)[:2]
        if self.turn == 0:
            a[:, 0], a[:, 1], a[:, 2], a[:, 3] = 0, 1, 1, 0  # search_agent: opposite of green
        self.turn += 1
        return a, lp


def test_transcript_shows_every_agents_prompt_and_reply(run_dir):
    from experiments.api import load_run

    run = load_run(run_dir)
    run.learner.policies["main"] = _Delegating(run.policies["main"])
    text = show.transcript(run, 2)
    assert "held-out episode 2 (query 2147483650)" in text
    assert "== main, turn 1 ==" in text and "[system]" in text and "Clues:" in text
    # the delegated call is shown under the turn that issued it, instruction in words
    assert "-- sub call 1, step 1 --" in text and '"opposite of green"' in text
    assert "this cube's colour scheme" in text and "(f_S = " in text
    assert "correct = " in text and "calls = {'sub': " in text


def test_role_filter_and_bad_input(run_dir):
    only_main = show.transcript(run_dir, 0, role="main")
    assert "== main" in only_main and "-- sub" not in only_main
    with pytest.raises(ValueError, match="role 'math' is not a role of this run"):
        show.transcript(run_dir, 0, role="math")
    with pytest.raises(ValueError, match="episode must be an int >= 0"):
        show.transcript(run_dir, -1)


def test_cli_prints_and_writes_nothing(run_dir, capsys, tmp_path):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.rglob("*.*")}
    ns = argparse.Namespace(
        run_dir=str(run_dir), episode=1, role=None, sampled=False, untrained=True
    )
    assert show.run(ns) == 0
    assert "held-out episode 1" in capsys.readouterr().out
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.rglob("*.*")}
    assert before == after
    ns.run_dir = str(tmp_path / "nothing")
    assert show.run(ns) == 2 and "not a run directory" in capsys.readouterr().err
