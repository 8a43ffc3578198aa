"""Rules of an ablation grid in the store (experiments/grid_store.py, grid_worker.py,
grid_files.py, ablate_remote.py, grid_report.py): cells claimed exactly once by workers on
several "machines" (output directories), a killed worker's cell retried, stage-2 cells after
their stage-1 cell and on another machine, the report from anywhere, bad input."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from experiments import cli
from experiments.grid_files import get_pilot
from experiments.grid_store import GridError, cells_of, claim, enqueue, waiting_for
from experiments.store import SCHEMA_VERSION, Store
from tests.experiments.conftest import SPECIES, free_port

GRID = [
    "steps=3",
    "algo.queries_per_step=4",
    "algo.group_size=2",
    "eval.episodes=8",
    "eval.oracle_episodes=0",
    "eval.every=2",
    "threads=1",
    f'env.id="{SPECIES}"',
]
PROTOCOL = [  # the paper's two stages, small (as tests/experiments/test_paper_protocol.py)
    *GRID,
    "steps=2",
    "ablate.stage1.steps=1",
    "ablate.stage1.eval.every=1",
    "ablate.pilot.batches=1",
]


def _sets(keys: list[str]) -> list[str]:
    return [a for k in keys for a in ("--set", k)]


def _fake(key: str, needs: tuple[str, ...] = ()) -> tuple[str, dict]:
    """A cell spec for claim tests (never trained)."""
    return key, {"flat": {"seed": 0}, "links": {}, "needs": list(needs), "pilot": None}


def _store_runs(store: Store, grid: str) -> set[str]:
    return {r for r in store.runs() if r.startswith(f"grid:{grid}:")}


def _steps(store: Store, run_id: str) -> list[int]:
    return [row["step"] for row in store.run(run_id).metrics("cell").values()]


# ----------------------------------------------------------------------------- claims
def test_a_stale_cell_is_taken_over_counted_and_failed_after_its_attempts(tmp_path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        enqueue(store, "g", [_fake("a")])
        first = claim(store, "g", "w1", stale_after=1.0, max_attempts=2)
        assert first.key == "a" and first.attempt == 1
        # w1's last heartbeat is younger than its stale_after: nobody else takes the cell
        assert claim(store, "g", "w2", stale_after=0.2, max_attempts=2) is None
        time.sleep(1.2)  # w1 "killed": no heartbeat for over 1 s
        second = claim(store, "g", "w2", stale_after=0.2, max_attempts=2)
        assert (second.key, second.attempt, second.took_over) == ("a", 2, "w1")
        assert not first.heartbeat() and not first.finish({})  # w1 lost it: nothing changes
        time.sleep(0.4)  # w2 dies too: 2 attempts used, the cell fails naming its worker
        assert claim(store, "g", "w3", stale_after=0.2, max_attempts=2) is None
        (cell,) = cells_of(store, "g")
        assert cell.state == "failed" and cell.attempts == 2
        assert "failed after 2 attempt(s): its worker w2 stopped" in cell.error


def test_a_released_cell_is_retried_until_its_attempts_are_used(tmp_path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        enqueue(store, "g", [_fake("a")])
        claim(store, "g", "w1", max_attempts=2).release("OSError: disk full")  # counted
        (cell,) = cells_of(store, "g")
        assert (cell.state, cell.attempts, cell.error) == ("pending", 1, "OSError: disk full")
        claim(store, "g", "w1", max_attempts=2).release("interrupted", count=False)  # Ctrl-C
        assert cells_of(store, "g")[0].attempts == 1
        lease = claim(store, "g", "w2", max_attempts=2)
        assert lease.attempt == 2 and lease.release("OSError: disk full")
        (cell,) = cells_of(store, "g")
        assert cell.state == "failed" and "after 2 attempt(s); the last: OSError" in cell.error


def test_a_cell_waits_for_its_needs_and_fails_when_one_fails(tmp_path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        enqueue(store, "g", [_fake("s1"), _fake("s2", ("s1",)), _fake("s3", ("s2",))])
        s1 = claim(store, "g", "w1")
        assert s1.key == "s1"
        assert claim(store, "g", "w2") is None  # s2 needs s1, s3 needs s2
        msg = waiting_for(store, "g")
        assert "1 running cell(s): s1 (w1)" in msg and "pending cell(s) that need s1, s2" in msg
        s1.fail("bad numbers")
        assert claim(store, "g", "w2") is None
        state = {c.key: (c.state, c.error) for c in cells_of(store, "g")}
        assert state["s2"] == ("failed", "not run: it needs s1, which failed")
        assert state["s3"] == ("failed", "not run: it needs s2, which failed")


def test_the_same_plan_is_kept_another_plan_under_the_name_is_refused(tmp_path):
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        assert enqueue(store, "g", [_fake("a"), _fake("b")])
        claim(store, "g", "w1").finish({"x": 1})
        assert not enqueue(store, "g", [_fake("a"), _fake("b")])  # kept: a stays done
        assert [c.state for c in cells_of(store, "g")] == ["done", "pending"]
        with pytest.raises(GridError, match="holds another plan .* cell c is not in the stored"):
            enqueue(store, "g", [_fake("a"), _fake("c")])


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    from experiments.store.schema import cells, meta

    url = f"sqlite:///{tmp_path / 's.db'}"
    with Store(url) as store:
        with store.begin(write=True) as conn:
            conn.execute(update(meta).values(value="1"))
            for t in ("mgrpo_grid_pilots", "mgrpo_cell_needs", "mgrpo_cells", "mgrpo_grids"):
                conn.exec_driver_sql(f"DROP TABLE {t}")
    with Store(url) as store:
        with store.begin() as conn:
            assert conn.execute(meta.select()).one().value == str(SCHEMA_VERSION)
            assert conn.execute(cells.select()).all() == []


# ----------------------------------------------------------------------------- two stages
@pytest.fixture(scope="module")
def protocol_grid(tmp_path_factory) -> dict:
    """The paper protocol (stage 1, mgrpo and main_only from it, the pilot's D) on SQLite:
    machine 1 plans it and trains one cell (the stage-1 one), machine 2 joins and trains the
    rest, machine 1 runs the same command again and summarises."""
    root = tmp_path_factory.mktemp("protocol")
    url = f"sqlite:///{root / 'store.db'}"
    m1, m2 = root / "m1", root / "m2"
    plan = ["ablate", "paper_protocol", "--storage", url, "--grid", "p", "--variants"]
    plan += ["mgrpo,main_only", "--seeds", "1", "--envs", SPECIES, *_sets(PROTOCOL), "--quiet"]
    codes = [cli.main([*plan, "--out", str(m1), "--max-cells", "1"])]
    codes.append(cli.main(["ablate", "--storage", url, "--join", "--out", str(m2), "--quiet"]))
    codes.append(cli.main([*plan, "--out", str(m1)]))  # idempotent: nothing left to train
    return {"url": url, "m1": m1, "m2": m2, "root": root, "codes": codes}


def test_stage2_cells_start_after_stage1_and_run_from_a_materialised_stage1(protocol_grid):
    g = protocol_grid
    assert g["codes"] == [0, 0, 0]
    s1 = "InvasiveSpecies/stage1/seed0"
    with Store(g["url"]) as store:
        cells = {c.key: c for c in cells_of(store, "p")}
        found, d = get_pilot(store, "p", "InvasiveSpecies/pilot.json")
    assert list(cells) == [s1, "InvasiveSpecies/mgrpo/seed0", "InvasiveSpecies/main_only/seed0"]
    assert all(c.state == "done" and c.attempts == 1 for c in cells.values())
    m1_owner = cells[s1].owner
    for key, c in cells.items():
        if key == s1:
            continue
        assert c.started >= cells[s1].finished  # never before its stage-1 cell was done
        assert c.owner != m1_owner  # trained on machine 2 ...
        run = g["m2"] / key
        text = (run / "config.toml").read_text()
        # ... from machine 2's copy of the stage-1 run, with the stored pilot D
        assert f'init_from = "{(g["m2"] / s1).absolute()}"' in text
        assert found and d is not None and f"align_target = {d}" in text
    copy, orig = g["m2"] / s1 / "checkpoint.pt", g["m1"] / s1 / "checkpoint.pt"
    assert copy.read_bytes() == orig.read_bytes()
    # machine 1's second command copied the finished grid in and summarised it
    assert (g["m1"] / "InvasiveSpecies/main_only/seed0/checkpoint.pt").is_file()
    assert (g["m1"] / "summary.csv").is_file()


def test_report_from_a_third_directory_reproduces_the_grid_summary(protocol_grid, capsys):
    g = protocol_grid
    third = g["root"] / "third"
    argv = ["report", "--storage", g["url"], "--local", str(third), "--baseline-queries", "0"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert (third / "summary.csv").read_text() == (g["m1"] / "summary.csv").read_text()
    assert (third / "REPORT.md").is_file()
    assert not (third / "InvasiveSpecies/mgrpo/seed0/checkpoint.pt").exists()  # metrics only
    assert cli.main(["plot", "--storage", g["url"], "--local", str(third)]) == 0
    assert (third / "plots" / "invasivespecies_success.png").is_file()


# ----------------------------------------------------------------------------- two workers
def _running_of(store: Store, grid: str, pid: int) -> str | None:
    """The cell that process ``pid`` runs now (owners are host:pid:token)."""
    for c in cells_of(store, grid):
        if c.state == "running" and c.owner.split(":")[1] == str(pid):
            return c.key
    return None


def _wait_until(what, proc: subprocess.Popen, log: Path, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.05)
    return found


def test_two_workers_on_postgres_finish_every_cell_once_also_with_one_killed(
    tmp_path, postgres_url, capsys
):
    from experiments.store.testing import create_schema

    url = create_schema(postgres_url, f"t_{uuid.uuid4().hex[:12]}")
    plan = ["ablate", "--storage", url, "--grid", "g", "--no-work", "--out", str(tmp_path / "p")]
    plan += ["--variants", "mgrpo,main_only", "--seeds", "2", *_sets(GRID)]
    assert cli.main(plan) == 0
    join = ["ablate", "--storage", url, "--join", "--stale-after", "2"]
    log = tmp_path / "a.log"
    # worker a: another process (another "machine": its own --out)
    a = subprocess.Popen(
        [sys.executable, "-m", "experiments.cli", *join, "--out", str(tmp_path / "a")],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    store = Store(url)
    victim = _wait_until(lambda: _running_of(store, "g", a.pid), a, log)

    def kill_a_once_b_runs_a_cell() -> None:  # both workers hold a cell: kill -9 a mid-cell
        _wait_until(lambda: _running_of(store, "g", os.getpid()), a, log)
        a.send_signal(signal.SIGKILL)

    killer = threading.Thread(target=kill_a_once_b_runs_a_cell)
    killer.start()
    try:  # worker b: this process
        assert cli.main([*join, "--out", str(tmp_path / "b")]) == 0
    finally:
        killer.join()
        a.kill()
        a.wait()
    assert a.returncode == -signal.SIGKILL and "(attempt 2)" in capsys.readouterr().out
    cells = {c.key: c for c in cells_of(store, "g")}
    assert len(cells) == 4 and all(c.state == "done" for c in cells.values())
    # the victim's cell: taken over by b after 2 s without heartbeat; the others: claimed once
    assert {k: c.attempts for k, c in cells.items()} == {k: 1 + (k == victim) for k in cells}
    assert cells[victim].owner.split(":")[1] == str(os.getpid())
    # each cell trained to its end and uploaded once: one store run per cell (the victim's
    # second attempt), whose metrics are the steps 1..3 once each
    want = {f"grid:g:{k}:{c.attempts}" for k, c in cells.items()}
    assert _store_runs(store, "g") == want
    for c in cells.values():
        assert c.result["run_id"] in want and _steps(store, c.result["run_id"]) == [1, 2, 3]
    assert not (tmp_path / "a" / victim / "checkpoint.pt").exists()  # killed before its end
    store.close()


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--join"], "--join needs --storage URL"),
        (["quick", "--storage", "{url}", "--join"], "CONFIG is not needed"),
        (["--storage", "{url}", "--join", "--grid", "nope"], "has no grid 'nope'; grids there: g"),
        (["--storage", "{pg}", "--join"], "cannot open store"),
        (["--storage", "{missing}", "--join"], "missing.db does not exist"),
        (["--storage", "{url}", "--grid", "g", *_sets(GRID)], "holds another plan"),
        (["--storage", "{url}", "--join", "--stale-after", "0"], "--stale-after 0: must be > 0"),
    ],
    ids=["no-storage", "config", "no-grid", "unreachable", "no-file", "other-plan", "stale"],
)
def test_bad_grid_input_exits_2_before_training(tmp_path, capsys, argv, message):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Store(url) as store:
        enqueue(store, "g", [_fake("x")])
    pg = f"postgresql+psycopg://u@127.0.0.1:{free_port()}/db"
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    argv = [a.replace("{url}", url).replace("{pg}", pg).replace("{missing}", missing) for a in argv]
    out = tmp_path / "out"
    assert cli.main(["ablate", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("metrics.jsonl"))
    assert not (tmp_path / "missing.db").exists()


def test_report_of_a_missing_grid_lists_the_grids(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with Store(url) as store:
        enqueue(store, "g", [_fake("x")])
    assert cli.main(["report", "--storage", url, "--grid", "h"]) == 2
    assert "has no grid 'h'; grids there: g" in capsys.readouterr().err
    assert cli.main(["report", "--storage", url]) == 2  # g has no finished cell
    assert "grid 'g' has no finished cell yet" in capsys.readouterr().err
    assert not any(tmp_path.rglob("metrics.jsonl"))  # nothing was trained
