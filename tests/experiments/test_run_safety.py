"""Rules of a run directory's safety and of a failed step's message (issue 15, items 2 and 3):
one writer per run directory (an OS lock naming its holder's pid, released on any exit, kill -9
included), no new run into another run's files, stale temporary checkpoints cleaned up, a stop
on bad numbers that tells the truth about the checkpoint left, progress of a slow step, and
ablate/sweep workers that die with their parent."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.ablate import AblationRun, _train_one
from experiments.checkpoint import append_metrics, read_metrics
from experiments.config import ConfigError, dump_toml, parse_overrides
from experiments.lock import LOCK, RunDirError, acquire_run_dir
from experiments.run import Trainer, TrainingError, _PhaseTicker
from tests.experiments.conftest import mgrpo, set_args
from tests.sim.conftest import tiny_config

SPECIES = "mgrpo/InvasiveSpecies-v0"
SMALL = {"algo.group_size": 2, "algo.align_target": 2, "eval.episodes": 2}


def small(**over):
    return tiny_config(SPECIES, **(SMALL | over))


def _steps(d: Path) -> list[int]:
    return [r["step"] for r in read_metrics(d / "metrics.jsonl")]


def _no_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


# ----------------------------------------------------------------------------- one writer
def test_a_second_trainer_on_a_locked_dir_is_refused_naming_the_pid(tmp_path):
    d = tmp_path / "r"
    first = Trainer(small(), d, progress=True)  # the lock is taken before any work
    for resume in (False, True):  # a second run, or a resume while the run is going
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {os.getpid()}"):
            Trainer(small(seed=1), d, resume=resume, progress=False)
    first.train()  # released when train() returns
    assert _steps(d) == [1, 2, 3]  # every step written once
    Trainer(small(), d, resume=True, progress=False).close()


HOLDER = """
import sys, time
from experiments.lock import acquire_run_dir
lock = acquire_run_dir(sys.argv[1], resume=False)
print("locked", flush=True)
time.sleep(120)
"""


def test_a_writer_in_another_process_holds_the_dir_until_it_is_killed(tmp_path):
    d = tmp_path / "r"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert f"{holder.pid} " in (d / LOCK).read_text()  # pid and command line
        cfg = small()
        with pytest.raises(RunDirError, match=rf"pid {holder.pid}: .*-c"):
            Trainer(cfg, d, progress=False, config_text=dump_toml(cfg))
        assert not (d / "config.toml").exists()  # nothing written without the lock
        # the command line: exit 2, the holder's pid, no traceback
        r = mgrpo("train", *set_args(SMALL | {"env.id": SPECIES}), "--out", str(d), check=False)
        assert r.returncode == 2, r.stderr
        assert f"pid {holder.pid}" in r.stderr and "Traceback" not in r.stderr
    finally:
        holder.send_signal(signal.SIGKILL)  # the OS drops the lock of a killed holder
        holder.wait()
    (d / "config.toml").unlink(missing_ok=True)  # written by the CLI before its lock check
    Trainer(small(), d, progress=False, config_text=dump_toml(small())).close()
    assert (d / "config.toml").read_text() == dump_toml(small())


# ----------------------------------------------------------------------------- another run's files
@pytest.mark.parametrize(
    "files",
    [{"metrics.jsonl": '{"step": 1}\n'}, {"checkpoint.pt": "x"}, {"config.toml": "seed = 9\n"}],
    ids=["metrics", "checkpoint", "other-config"],
)
def test_a_new_run_refuses_a_dir_with_another_runs_files(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(RunDirError, match=r"another run's files .*--resume .*another --out"):
        acquire_run_dir(tmp_path, resume=False, config_text="seed = 0\n")
    acquire_run_dir(tmp_path, resume=True).release()  # a resume is fine


def test_an_empty_dir_or_one_with_this_runs_config_is_fine(tmp_path):
    acquire_run_dir(tmp_path / "new", resume=False, config_text="seed = 0\n").release()
    acquire_run_dir(tmp_path / "new", resume=False, config_text="seed = 0\n").release()
    assert (tmp_path / "new" / "config.toml").read_text() == "seed = 0\n"


def test_a_run_that_died_before_its_first_checkpoint_is_refused_then_resumed_from_0(tmp_path):
    cfg = small(checkpoint_every=10)
    fresh = Trainer(cfg, tmp_path / "fresh", progress=False)
    fresh.train()
    d = tmp_path / "died"
    tr = Trainer(cfg, d, progress=False)
    for _ in range(2):
        append_metrics(d, tr.train_step())
    tr.close()  # the run dies: no checkpoint, two rows
    with pytest.raises(RunDirError, match="metrics.jsonl"):
        Trainer(cfg, d, progress=False)  # would append to the old rows
    Trainer(cfg, d, resume=True, progress=False).train()
    assert _steps(d) == [1, 2, 3]
    assert _no_time(read_metrics(d / "metrics.jsonl")) == _no_time(
        read_metrics(tmp_path / "fresh" / "metrics.jsonl")
    )


def test_stale_checkpoint_tmp_files_are_deleted_at_start_by_the_lock_holder_only(tmp_path):
    stale = tmp_path / ".checkpoint-abc123.tmp"
    stale.write_bytes(b"torn")
    held = acquire_run_dir(tmp_path, resume=True)
    stale2 = tmp_path / ".checkpoint-def456.tmp"  # a write in progress of the holder
    stale2.write_bytes(b"partial")
    with pytest.raises(RunDirError):
        acquire_run_dir(tmp_path, resume=True)
    assert stale2.exists()  # not touched by a writer that did not get the lock
    held.release()
    acquire_run_dir(tmp_path, resume=True).release()
    assert not stale.exists() and not stale2.exists()


# ----------------------------------------------------------------------------- failed steps
def test_a_failed_first_run_says_no_checkpoint_was_written_and_releases_the_lock(tmp_path):
    d = tmp_path / "r"
    with pytest.raises(TrainingError) as e:
        Trainer(small(**{"optim.param_norm_limit": 1.0}), d, progress=False).train()
    assert str(e.value).startswith("step 1, role main: parameter norm ")
    assert f"no checkpoint was written in {d} (the run failed at step 1, before its first" in str(
        e.value
    )
    assert not (d / "checkpoint.pt").exists() and not (d / "metrics.jsonl").exists()
    acquire_run_dir(d, resume=True).release()  # released on the error


def test_a_resumed_run_that_fails_names_its_intact_checkpoint(tmp_path):
    d = tmp_path / "r"
    Trainer(small(steps=2, checkpoint_every=1), d, progress=False).train()
    saved = (d / "checkpoint.pt").read_bytes()
    # the same run continued to step 3 with a guard it now trips
    cfg = small(**{"optim.param_norm_limit": 1.0})
    with pytest.raises(
        TrainingError,
        match=rf"^step 3, role \w+: parameter norm .*the last "
        rf"checkpoint \(step 2\) in {d} is intact",
    ):
        Trainer(cfg, d, resume=True, progress=False).train()
    assert (d / "checkpoint.pt").read_bytes() == saved and _steps(d) == [1, 2]


def test_append_metrics_refuses_nonfinite_values_instead_of_writing_null(tmp_path):
    append_metrics(tmp_path, {"step": 1, "main/loss": 0.5})
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="main/loss"):
            append_metrics(tmp_path, {"step": 2, "main/loss": bad})
    assert _steps(tmp_path) == [1]


def test_an_ablation_cell_reports_the_failed_steps_message_or_a_busy_dir(tmp_path):
    flat = parse_overrides([f"{k}={v}" for k, v in SMALL.items()])
    flat |= {"steps": 3, "env.id": SPECIES, "eval.oracle_episodes": 0}
    bad = AblationRun(SPECIES, "mgrpo", 0, tmp_path / "bad", flat | {"optim.param_norm_limit": 1.0})
    res = _train_one(bad, tensorboard=False)
    assert res["status"] == "failed"
    assert res["error"].startswith("step 1, role main: parameter norm ")
    assert "no checkpoint was written" in res["error"]
    busy = AblationRun(SPECIES, "mgrpo", 0, tmp_path / "busy", flat)
    with acquire_run_dir(busy.run_dir, resume=True):
        res = _train_one(busy, tensorboard=False)
    assert res["status"] == "failed" and f"pid {os.getpid()}" in res["error"]
    assert isinstance(RunDirError("x"), ConfigError)  # the CLI's exit 2


# ----------------------------------------------------------------------------- progress
class _Bar:
    def __init__(self) -> None:
        self.postfix: list[str] = []

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        self.postfix.append(s)


def test_a_slow_step_shows_its_phase_on_the_progress_bar_and_a_fast_one_does_not():
    bar = _Bar()
    ticker = _PhaseTicker(bar, delay=2.0)
    ticker.begin("step 1")
    ticker("update main epoch 3/9")
    ticker.tick(now=ticker.t0 + 1.0)  # fast so far: nothing shown
    assert bar.postfix == []
    ticker.tick(now=ticker.t0 + 2.5)
    assert bar.postfix == ["step 1: update main epoch 3/9 (2 s)"]
    ticker.end()  # the step finished: the ticker stays quiet
    ticker.tick(now=ticker.t0 + 10.0)
    assert len(bar.postfix) == 1


# ----------------------------------------------------------------------------- orphans
def _workers(parent: int) -> list[int]:
    """pids of the multiprocessing workers spawned by ``parent`` (from /proc)."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            cmd = Path(stat).with_name("cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and b"spawn_main" in cmd:
            out.append(int(stat.split("/")[2]))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie (no init reaping it in a container) is dead


def _kill_parent_and_check_workers_die(argv: list[str], started: str) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not glob.glob(started):  # a worker is training
            assert p.poll() is None, "the command ended early"
            time.sleep(0.1)
        workers = _workers(p.pid)
        assert workers, "no worker process found"
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.time() + 10
        while time.time() < deadline and any(map(_alive, workers)):
            time.sleep(0.1)
        assert not any(map(_alive, workers)), "workers outlived their parent"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:  # never leave orphans behind, even when the test fails
            if _alive(w):
                os.kill(w, signal.SIGKILL)


LONG = SMALL | {"env.id": SPECIES, "steps": 100_000, "eval.oracle_episodes": 0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_ablate_workers_die_with_their_killed_parent(tmp_path):
    argv = ["ablate", "--variants", "mgrpo", "--seeds", "1", "--workers", "1", "--quiet"]
    argv += ["--out", str(tmp_path), *set_args(LONG)]
    _kill_parent_and_check_workers_die(argv, str(tmp_path / "*/*/seed*/metrics.jsonl"))


SWEEP = """
steps = 100000
[env]
id = "mgrpo/InvasiveSpecies-v0"
[algo]
queries_per_step = 4
group_size = 2
align_target = 2
[eval]
episodes = 2
oracle_episodes = 0
[sweep]
align_target = [1, 4]
local_share = [0.0, 1.0]
seeds = 1
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_die_with_their_killed_parent(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "out"
    argv = ["sweep", str(cfg), "--trials", "4", "--study", "o", "--workers", "2"]
    argv += ["--out", str(out), "--no-plots"]
    _kill_parent_and_check_workers_die(argv, str(out / "trials/*/seed*/metrics.jsonl"))
