"""Roles as processes (issue 13, items 2 and 3): the main side and the specialists' side of one
run in separate ``mgrpo train --role NAME --storage URL`` processes end with the metrics of a
one-process run (time keys excepted), on SQLite and PostgreSQL, for MLP and tiny-LM policies,
and after a ``kill -9`` of either side and a ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.checkpoint import read_metrics
from tests.experiments.conftest import mgrpo, set_args

SPECIES = {
    "env.id": "mgrpo/InvasiveSpecies-v0",
    "steps": 4,
    "checkpoint_every": 2,
    "algo.queries_per_step": 4,
    "algo.group_size": 4,
    "algo.align_target": 4,
    "eval.every": 2,
    "eval.episodes": 16,
    "eval.oracle_episodes": 0,
    "eval.final_episodes": 16,  # the final evaluation runs on the main side only
}
RUBIKS_MATH_ASYNC = {  # two specialists in one process, the paper's unsynchronized variant
    "env.id": "mgrpo/RubiksLogic-v0",
    "env.reasoner": "subagent",
    "variant": "async_queue",
    "algo.queue_lag": 1,
    "steps": 3,
    "algo.queries_per_step": 4,
    "algo.group_size": 2,
    "algo.align_target": 2,
    "eval.every": 3,
    "eval.episodes": 8,
    "eval.oracle_episodes": 0,
    "eval.final_episodes": 0,
}
TINY_LM = {
    "env.id": "mgrpo/RubiksLogic-v0",
    "policy.kind": "lm",
    "policy.mode": "choice",
    "policy.max_new_tokens": 64,
    "env.preset": "low",
    "env.max_turns": 3,
    "steps": 2,
    "algo.queries_per_step": 2,
    "algo.group_size": 2,
    "algo.align_target": 2,
    "eval.every": 2,
    "eval.episodes": 2,
    "eval.oracle_episodes": 0,
    "optim.minibatches": 1,
    "threads": 1,
    "eval.final_episodes": 0,
}


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _popen(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _train_args(keys: dict, out: Path, url: str, roles: tuple[str, ...], *extra: str) -> list:
    role_args = [a for r in roles for a in ("--role", r)]
    return [
        "train",
        *set_args(keys),
        "--out",
        str(out),
        "--quiet",
        "--storage",
        url,
        "--wait-timeout",
        "120",
        *role_args,
        *extra,
    ]


def _finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 240) -> None:
    for p, log in zip(procs, logs, strict=True):
        assert p.wait(timeout=timeout) == 0, log.read_text()[-3000:]


def _one_process(tmp_path: Path, keys: dict) -> list[dict]:
    """The same run in one process (in this one: no interpreter start)."""
    import torch

    from experiments.config import resolve
    from experiments.run import Trainer

    threads = torch.get_num_threads()
    try:
        Trainer(resolve(keys), tmp_path / "one", progress=False).train()
    finally:
        torch.set_num_threads(threads)
    return read_metrics(tmp_path / "one" / "metrics.jsonl")


def _split(tmp_path: Path, keys: dict, url: str, sides: list[tuple[str, ...]]) -> list[dict]:
    procs, logs = [], []
    for i, roles in enumerate(sides):
        log = tmp_path / f"side{i}.log"
        procs.append(_popen(_train_args(keys, tmp_path / f"side{i}", url, roles), log))
        logs.append(log)
    _finish(procs, logs)
    return read_metrics(tmp_path / "side0" / "metrics.jsonl")


@pytest.mark.parametrize(
    "keys, sides",
    [
        (SPECIES, [("main",), ("sub",)]),
        (RUBIKS_MATH_ASYNC, [("main",), ("sub", "math")]),
        (dict(RUBIKS_MATH_ASYNC, steps=2), [("main", "math"), ("sub",)]),
    ],
    ids=["species", "rubiks-two-specialists-async", "rubiks-main-with-math"],
)
def test_split_run_equals_one_process_sqlite(tmp_path, keys, sides):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    split = _split(tmp_path, keys, url, sides)
    one = _one_process(tmp_path, keys)
    assert len(split) == keys["steps"]
    assert _strip(split) == _strip(one)
    assert any("eval/success_greedy" in r for r in split)
    sub_rows = read_metrics(tmp_path / "side1" / "metrics.jsonl")  # the sub side's own rows
    assert [r["step"] for r in sub_rows] == list(range(1, keys["steps"] + 1))
    assert all(not k.startswith("main/") for r in sub_rows for k in r)


def test_split_run_equals_one_process_postgresql(tmp_path, postgres_url):
    split = _split(tmp_path, SPECIES, postgres_url, [("main",), ("sub",)])
    assert _strip(split) == _strip(_one_process(tmp_path, SPECIES))


def test_split_tiny_lm_equals_one_process(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    split = _split(tmp_path, TINY_LM, url, [("main",), ("sub",)])
    one = _one_process(tmp_path, TINY_LM)
    assert _strip(split) == _strip(one)
    assert split[0]["sub/tokens"] > 0 and split[0]["main/tokens"] > 0


def _rows_done(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("victim", [0, 1], ids=["kill-main", "kill-sub"])
def test_kill_9_either_side_and_resume_ends_like_an_uninterrupted_run(tmp_path, victim):
    keys = dict(SPECIES, steps=6)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    sides = [("main",), ("sub",)]
    logs = [tmp_path / f"side{i}.log" for i in range(2)]
    procs = [
        _popen(_train_args(keys, tmp_path / f"side{i}", url, r), logs[i])
        for i, r in enumerate(sides)
    ]
    metrics = tmp_path / f"side{victim}" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while _rows_done(metrics) < 3:  # past the checkpoint of step 2, before the end
        assert time.monotonic() < deadline, logs[victim].read_text()[-2000:]
        assert procs[victim].poll() is None, logs[victim].read_text()[-2000:]
        time.sleep(0.01)
    procs[victim].send_signal(signal.SIGKILL)
    procs[victim].wait()
    assert _rows_done(metrics) < keys["steps"]
    resume = ["train", "--resume", "--out", str(tmp_path / f"side{victim}"), "--quiet"]
    log = tmp_path / "resumed.log"
    procs[victim] = _popen(resume, log)  # --storage and --role come from split.json
    logs[victim] = log
    _finish(procs, logs)
    split = read_metrics(tmp_path / "side0" / "metrics.jsonl")
    assert [r["step"] for r in split] == list(range(1, 7))  # nothing lost or duplicated
    assert _strip(split) == _strip(_one_process(tmp_path, keys))


# ----------------------------------------------------------------------------- bad input
DB = "sqlite:///{tmp}/s.db"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--role", "boss", "--storage", DB], "this config has roles main, sub"),
        (["--role", "main", "--role", "sub", "--storage", DB], "every role"),
        (["--role", "main"], "--role needs --storage"),
        (["--storage", DB], "--storage needs --role"),
        (["--role", "main", "--storage", "mysql://x@y/z"], "sqlite"),
        (
            ["--role", "sub", "--storage", DB, "--set", "variant=shared_policy"],
            "cannot be split",
        ),
    ],
    ids=["unknown-role", "all-roles", "no-storage", "no-role", "bad-scheme", "shared-policy"],
)
def test_bad_split_options_exit_2_before_training(tmp_path, capsys, extra, message):
    from experiments import cli

    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    argv = ["train", *set_args(SPECIES), "--out", str(tmp_path / "r"), "--quiet", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_a_second_process_for_a_held_role_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "first.log"
    first = _popen(_train_args(SPECIES, tmp_path / "a", url, ("sub",)), log)
    try:
        deadline = time.monotonic() + 60
        while "waiting for" not in log.read_text():  # it holds the role and waits for main
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        r = mgrpo(*_train_args(SPECIES, tmp_path / "b", url, ("sub",)), check=False)
        assert r.returncode == 2, r.stderr
        assert "is held by" in r.stderr and "Traceback" not in r.stderr
    finally:
        first.kill()
        first.wait()


def test_a_side_that_waits_too_long_stops_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = _train_args(SPECIES, tmp_path / "a", url, ("sub",))
    args[args.index("--wait-timeout") + 1] = "4"
    r = mgrpo(*args, check=False)
    assert r.returncode != 0
    assert "timed out after" in r.stderr and "'written'" in r.stderr
    assert json.loads((tmp_path / "a" / "split.json").read_text())["roles"] == ["sub"]
