"""`mgrpo sweep`: end to end on tiny budgets, workers sharing one study, a killed worker and a
rerun, heartbeat retries, PostgreSQL and journal storages, multi-objective, bad input."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from experiments import cli, sweep
from experiments.config import ConfigError, resolve
from experiments.sweep.objective import Objective, counts_towards_total
from tests.experiments.conftest import free_port, mgrpo

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings(
    "ignore::optuna.exceptions.ExperimentalWarning", "ignore::UserWarning"
)

TINY = """
steps = {steps}
[env]
id = "mgrpo/InvasiveSpecies-v0"
[algo]
queries_per_step = 4
group_size = 2
[eval]
episodes = 8
oracle_episodes = 16
every = {every}
[sweep]
align_target = [1, 8]
local_share = [0.0, 1.0]
seeds = {seeds}
heartbeat_interval = 1
grace_period = 2
{extra}
"""


def write_config(
    tmp_path: Path, *, steps: int = 3, every: int = 1, seeds: int = 1, extra: str = ""
) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(TINY.format(steps=steps, every=every, seeds=seeds, extra=extra))
    return path


def _entry() -> list[str]:
    """The ``mgrpo sweep`` command."""
    return ["experiments.cli", "sweep"]


def mgrpo_sweep(*args: str, **kw) -> subprocess.CompletedProcess:
    """``mgrpo sweep ARGS`` in a subprocess."""
    return mgrpo("sweep", *args, check=False, **kw)


def counted(study: optuna.Study) -> int:
    return sum(map(counts_towards_total, study.get_trials(deepcopy=False)))


def states(study: optuna.Study) -> dict[int, str]:
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


# ----------------------------------------------------------------------------- end to end
def test_cli_sweep_of_4_trials_writes_runs_attrs_summary_and_plots(tmp_path):
    cfg = write_config(tmp_path, seeds=2)
    out = tmp_path / "out"
    r = mgrpo_sweep(str(cfg), "--trials", "4", "--study", "e2e", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "study: e2e" in r.stdout and f"sqlite:///{out.resolve()}/study.db" in r.stdout
    assert "best: trial" in r.stdout
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{out}/study.db")
    assert counted(study) == 4
    for t in study.trials:
        # every trial: one run dir per seed, its config holds the trial's D and w
        assert [Path(d).name for d in t.user_attrs["run_dirs"]] == ["seed0", "seed1"]
        for d in t.user_attrs["run_dirs"]:
            assert Path(d) == (out / "trials" / str(t.number) / Path(d).name).resolve()
            text = (Path(d) / "config.toml").read_text()
            assert f"align_target = {t.params['align_target']}" in text
            assert (Path(d) / "metrics.jsonl").is_file()
        if t.state == optuna.trial.TrialState.COMPLETE:
            # the value is the greedy success at the budget, mean over the 2 lock-step seeds
            assert len(t.user_attrs["final"]) == 2
            assert t.value == pytest.approx(sum(t.user_attrs["final"]) / 2)
            # intermediate values at each evaluation row (eval.every = 1: after steps 1, 2, 3)
            assert sorted(t.intermediate_values) == [1, 2, 3]
    assert (out / "sweep.json").is_file()
    pngs = sorted(p.name for p in (out / "plots").glob("study_*.png"))
    assert "study_history.png" in pngs
    assert all((out / "plots" / p).stat().st_size > 0 for p in pngs)


def test_two_workers_share_one_sqlite_study_and_stop_at_the_total(tmp_path):
    cfg = write_config(tmp_path, extra='pruner = "none"')
    out = tmp_path / "out"
    r = mgrpo_sweep(
        str(cfg),
        "--trials",
        "3",
        "--study",
        "w2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--no-plots",
    )
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="w2", storage=f"sqlite:///{out}/study.db")
    # exactly the total: workers count running trials before they start one
    assert counted(study) == 3
    assert sorted(states(study).values()) == ["COMPLETE"] * 3


def test_worker_killed_mid_trial_then_rerun_keeps_completed_trials_and_retries(tmp_path):
    cfg = write_config(tmp_path, steps=30, every=10, extra='pruner = "none"')
    out = tmp_path / "out"
    args = [str(cfg), "--trials", "3", "--study", "kill", "--out", str(out), "--no-plots"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *_entry(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = out / "study.db"
    rows: list[tuple[int, str]] = []
    deadline = time.monotonic() + 60
    try:
        # wait for a COMPLETE trial and a RUNNING one (training), then SIGKILL the worker
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            if db.exists():
                try:
                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
                    rows = con.execute("select number, state from trials").fetchall()
                    con.close()
                except sqlite3.Error:
                    rows = []
                running = [n for n, s in rows if s == "RUNNING"]
                # RUNNING with its parameters drawn: its run has started writing metrics
                if "COMPLETE" in dict(rows).values() and running:
                    metrics = out / "trials" / str(running[0]) / "seed0" / "metrics.jsonl"
                    if metrics.exists() and metrics.stat().st_size > 0:
                        break
            time.sleep(0.05)
        else:
            pytest.fail(f"no RUNNING trial after a COMPLETE one: {rows}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    storage = f"sqlite:///{db}"
    before = optuna.load_study(study_name="kill", storage=storage)
    done = {t.number: t.value for t in before.trials if t.state.name == "COMPLETE"}
    killed = [t.number for t in before.trials if t.state.name == "RUNNING"]
    assert done and len(killed) == 1

    r = mgrpo_sweep(*args)
    assert r.returncode == 0, r.stderr
    after = optuna.load_study(study_name="kill", storage=storage)
    trials = {t.number: t for t in after.trials}
    # no completed trial lost, the killed one failed and retried with its parameters
    assert all(trials[n].state.name == "COMPLETE" and trials[n].value == v for n, v in done.items())
    assert trials[killed[0]].state.name == "FAIL"
    retries = [t for t in after.trials if t.system_attrs.get("failed_trial") == killed[0]]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == trials[killed[0]].params
    assert counted(after) == 3


def test_stale_heartbeat_of_a_remote_worker_is_failed_and_retried(tmp_path):
    # a RUNNING trial of a worker on another machine whose heartbeat stopped: after grace_period
    # (2 s) the worker here fails it, runs its retry, and the study reaches its total
    flat, _base, sw = sweep.load_sweep(write_config(tmp_path, extra='pruner = "none"'))
    url = f"sqlite:///{tmp_path}/study.db"
    storage = sweep.open_storage(url, sw)
    study = optuna.create_study(study_name="hb", storage=storage)
    dist = {
        "align_target": optuna.distributions.IntDistribution(1, 8),
        "local_share": optuna.distributions.FloatDistribution(0.0, 1.0),
    }
    dead = study.ask(dist)
    dead.set_user_attr("host", "another-machine")
    dead.set_user_attr("pid", 1)
    storage.record_heartbeat(dead._trial_id)
    assert sweep.run_worker(0, url, "hb", flat, sw, str(tmp_path / "out"), 2, False) == 0
    study = optuna.load_study(study_name="hb", storage=url)
    assert states(study)[dead.number] == "FAIL"
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry and retry[0].state.name == "COMPLETE" and retry[0].params == dead.params
    assert counted(study) == 2


def test_journal_storage_retries_the_trial_of_a_dead_local_worker(tmp_path):
    # journal storage has no heartbeat: a RUNNING trial whose process on this host is gone is
    # failed and re-enqueued when a worker starts
    cfg = write_config(tmp_path, extra='pruner = "none"')
    flat, _base, sw = sweep.load_sweep(cfg)
    url = f"journal:{tmp_path}/journal.log"
    study = optuna.create_study(
        study_name="j", storage=sweep.open_storage(url, sw), direction="maximize"
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    t = study.ask(
        {
            "align_target": optuna.distributions.IntDistribution(1, 8),
            "local_share": optuna.distributions.FloatDistribution(0.0, 1.0),
        }
    )
    t.set_user_attr("host", socket.gethostname())
    t.set_user_attr("pid", gone.pid)
    out = str(tmp_path / "out")
    argv = [str(cfg), "--trials", "2", "--study", "j", "--storage", url, "--out", out, "--no-plots"]
    assert cli.main(["sweep", *argv]) == 0
    study = optuna.load_study(study_name="j", storage=sweep.open_storage(url, sw))
    assert states(study)[t.number] == "FAIL"
    retry = [r for r in study.trials if r.system_attrs.get("failed_trial") == t.number]
    assert retry and retry[0].state.name == "COMPLETE" and retry[0].params == t.params
    assert counted(study) == 2


def test_multi_objective_sweep_uses_nsga2_and_records_stability(tmp_path, capsys):
    cfg = write_config(tmp_path)
    out = tmp_path / "out"
    argv = [str(cfg), "--trials", "2", "--study", "mo", "--out", str(out)]
    assert cli.main(["sweep", *argv, "--multi-objective"]) == 0
    assert "best (Pareto front)" in capsys.readouterr().out
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{out}/study.db")
    assert len(study.directions) == 2 and counted(study) == 2
    for t in study.trials:
        # (success, stability); stability = -std of reward changes <= 0; no pruning reports
        assert len(t.values) == 2 and t.values[1] <= 0.0 and t.intermediate_values == {}
    # the same study without --multi-objective: incompatible directions, exit 2
    assert cli.main(["sweep", *argv]) == 2
    assert "directions" in capsys.readouterr().err


def test_rerun_continues_the_study_up_to_the_new_total(tmp_path):
    cfg = write_config(tmp_path, extra='pruner = "none"')
    argv = [str(cfg), "--study", "c", "--out", str(tmp_path / "out"), "--no-plots"]
    assert cli.main(["sweep", *argv, "--trials", "1"]) == 0
    assert cli.main(["sweep", *argv, "--trials", "1"]) == 0  # reached: nothing more
    assert cli.main(["sweep", *argv, "--trials", "2"]) == 0
    study = optuna.load_study(study_name="c", storage=f"sqlite:///{tmp_path}/out/study.db")
    assert counted(study) == 2 and len(study.trials) == 2


def test_pruned_trial_keeps_its_partial_runs(tmp_path):
    # a pruner that prunes everything: the trial stops at the first evaluation (step 1)
    flat, _base, sw = sweep.load_sweep(write_config(tmp_path))
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    study.optimize(Objective(flat, sw, tmp_path, 1, False, 0), n_trials=1)
    t = study.trials[0]
    assert t.state.name == "PRUNED" and t.user_attrs["pruned_at"] == 1
    lines = (Path(t.user_attrs["run_dirs"][0]) / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1


# ----------------------------------------------------------------------------- PostgreSQL
# postgres_url: tests/experiments/conftest.py (a throwaway server; fails under CI=true)
def test_postgresql_backed_sweep_and_rerun(tmp_path, postgres_url):
    cfg = write_config(tmp_path, extra='pruner = "none"')
    out = str(tmp_path / "out")
    argv = [str(cfg), "--study", "pg", "--storage", postgres_url, "--out", out, "--no-plots"]
    assert cli.main(["sweep", *argv, "--trials", "2"]) == 0
    assert cli.main(["sweep", *argv, "--trials", "3"]) == 0  # a rerun continues the study
    study = optuna.load_study(study_name="pg", storage=postgres_url)
    assert counted(study) == 3
    assert not (tmp_path / "out" / "study.db").exists()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "url, message",
    [
        ("postgresql+psycopg://postgres@127.0.0.1:{port}/x", "cannot open storage"),
        ("sqlite:////nonexistent/dir/study.db", "cannot open storage"),
        ("not-a-url", "is not a URL"),
        ("journal:/nonexistent/dir/journal.log", "does not exist"),
    ],
)
def test_unreachable_storage_exits_2_with_a_message(tmp_path, capsys, url, message):
    cfg = write_config(tmp_path)
    url = url.format(port=free_port())  # nothing listens there
    code = cli.main(["sweep", str(cfg), "--trials", "2", "--study", "x", "--storage", url])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "sets, message",
    [
        (["sweep.align_target=[8, 2]"], "sweep.align_target"),
        (["sweep.align_target=[0, 4]"], "integers >= 1"),
        (["sweep.local_share=[0.0, 2.0]"], "sweep.local_share"),
        (["sweep.b1=[-0.1, 0.2]"], "sweep.b1"),
        (["sweep.align_target=4", "sweep.local_share=0.5"], "nothing to sweep"),
        (["sweep.seeds=0"], "sweep.seeds"),
        (["sweep.grace_period=1"], "must exceed"),
        (["sweep.color=1"], "unknown key(s) in [sweep]: color"),
        (["roles.sub.align_target=4"], "would shadow"),
    ],
)
def test_bad_ranges_are_config_errors(tmp_path, sets, message):
    cfg = write_config(tmp_path)
    with pytest.raises(ConfigError) as e:
        sweep.load_sweep(cfg, sets)
    assert any(message in p for p in e.value.problems)


def test_bad_ranges_and_empty_study_exit_2(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert (
        cli.main(["sweep", str(cfg), "--trials", "2", "--study", "x", "--set", "sweep.seeds=0"])
        == 2
    )
    assert cli.main(["sweep", str(cfg), "--trials", "0", "--study", "x"]) == 2
    err = capsys.readouterr().err
    assert "sweep.seeds" in err and "--trials 0" in err


def test_defaults_when_the_table_is_absent(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text("steps = 3\n")
    _flat, base, sw = sweep.load_sweep(path)
    # D in [1, 16], w in [0, 1], b1 fixed (the config's), one seed
    assert sw.space() == {"align_target": (1, 16), "local_share": (0.0, 1.0)}
    assert sw.b1 is None and sw.seeds == 1 and base.steps == 3


def test_b1_range_sets_the_first_beta():
    flat = {"steps": 3}
    base = resolve(flat)
    cfg = sweep.trial_config(flat, base, {"align_target": 3, "local_share": 0.5, "b1": 0.2}, 7)
    # b2 = (1 - b1)(1 - w) = 0.8 * 0.5 = 0.4; b3 = (1 - b1) w = 0.4
    assert cfg.seed == 7 and cfg.algo.align_target == 3
    assert cfg.reward.betas() == pytest.approx((0.2, 0.4, 0.4))


def test_stability_is_minus_the_std_of_reward_changes():
    # changes [1, -1, 1]: mean 1/3, std = sqrt(((2/3)^2 * 2 + (4/3)^2) / 3) = sqrt(8/9)
    assert sweep.stability([0.0, 1.0, 0.0, 1.0]) == pytest.approx(-((8 / 9) ** 0.5))
    assert sweep.stability([0.5]) == 0.0


def test_redact_hides_the_password():
    url = "postgresql+psycopg://user:secret@db.example:5432/optuna"
    assert "secret" not in sweep.redact(url) and "user" in sweep.redact(url)
