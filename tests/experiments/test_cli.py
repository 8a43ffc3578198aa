"""CLI smoke tests with tiny budgets: `mgrpo train`, its errors, Ctrl-C and SIGKILL + resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.experiments.conftest import mgrpo, set_args

TINY = set_args(
    {
        "steps": 4,
        "algo.queries_per_step": 4,
        "algo.group_size": 2,
        "eval.episodes": 8,
        "eval.oracle_episodes": 16,
        "eval.every": 2,
        "checkpoint_every": 2,
    }
)


def metrics(run_dir: Path):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_train_writes_config_metrics_and_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = mgrpo("train", *TINY, "--out", str(out), "--quiet")
    assert "done" in r.stdout
    assert (out / "config.toml").is_file() and (out / "checkpoint.pt").is_file()
    rows = metrics(out)
    assert [x["step"] for x in rows] == [1, 2, 3, 4]
    assert rows[-1]["eval/oracle_success"] > 0


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path):
    r = mgrpo(
        "train",
        "--set",
        "algo.group_size=1",
        "--set",
        "optim.lr=-1",
        "--set",
        'env.id="mgrpo/Nope-v0"',
        "--out",
        str(tmp_path / "x"),
        check=False,
    )
    assert r.returncode == 2
    assert "algo.group_size = 1 is invalid" in r.stderr and "optim.lr = -1 is invalid" in r.stderr
    assert "Traceback" not in r.stderr
    r = mgrpo("train", "--set", 'env.id="mgrpo/Nope-v0"', "--out", str(tmp_path / "y"), check=False)
    assert r.returncode == 2 and "is not registered" in r.stderr
    r = mgrpo("train", "--set", "env.bogus=3", "--out", str(tmp_path / "z"), check=False)
    assert r.returncode == 2 and "bogus" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("kill_after", [1, 3])
def test_sigkill_then_resume_gives_the_uninterrupted_metrics(tmp_path, kill_after):
    full, part = tmp_path / "full", tmp_path / "part"
    mgrpo("train", *TINY, "--out", str(full), "--quiet")
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", "train", *TINY, "--out", str(part), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        f = part / "metrics.jsonl"
        if f.exists() and len(f.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.01)
    p.send_signal(signal.SIGKILL)
    p.wait()
    mgrpo("train", "--resume", "--out", str(part), "--quiet")
    assert metrics(part) == metrics(full)


def test_ctrl_c_writes_a_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "train",
            *TINY,
            "--set",
            "steps=400",
            "--out",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130
    assert "mgrpo train --resume --out" in err
    assert (out / "checkpoint.pt").is_file()
