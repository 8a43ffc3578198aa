"""The store of split trainers (experiments.store), each rule on SQLite and on PostgreSQL: sub
rows round-trip exactly and in (query, rollout, invocation) order, writes are idempotent and
conflicts are errors, concurrent writers lose and duplicate nothing, schema / config / claim /
wait / blob / URL errors are clear."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid

import numpy as np
import pytest
from sqlalchemy import func, select, update

from experiments.store import (
    SCHEMA_VERSION,
    ChecksumError,
    ClaimError,
    ConflictError,
    MissingError,
    RunConfigError,
    SchemaVersionError,
    Store,
    StoreError,
    StoreURLError,
    WaitTimeout,
    state_dict_from_bytes,
)
from experiments.store.schema import claims, meta, sub_rows, weights
from sim.records import Trajectories
from tests.experiments.conftest import free_port

B, K = 4, 3  # queries, group size: rollouts 0..11


def make_traj(seed: int, role: str = "sub", n: int = 10, extras: bool = True) -> Trajectories:
    """``n`` sub rows of distinct (rollout, invocation) in random order, 1..3 steps each, with
    observation fields of several dtypes and shapes (as the Rubik's sub-agent's) and
    language-model-like extras (ragged arrays, one of them empty)."""
    rng = np.random.default_rng(seed)
    keys = rng.permutation(B * K * 3)[:n]  # (rollout, invocation) = divmod(key, 3)
    lengths = rng.integers(1, 4, n)
    s = int(lengths.sum())
    rows = {
        "rollout": keys // 3,
        "invocation": keys % 3,
        "finish_order": rng.integers(0, 3, n),
        "format_ok": rng.integers(0, 2, n).astype(float),
        "expert": rng.random(n),
        "version": np.full(n, seed % 5),
    }
    obs = {
        "results": rng.integers(-1, 9, (s, 18)).astype(np.int8),
        "budget": rng.random((s, 2)).astype(np.float32),
        "query_id": rng.integers(0, 2**40, s),
        "grid": rng.integers(0, 2, (s, 2, 3)).astype(bool),
        "action_mask": rng.integers(0, 2, (s, 14)).astype(np.int8),
    }
    ex = {}
    if extras:
        ex = {
            "lm.handle": np.arange(s, dtype=np.int64),
            "lm.response_ids": rng.integers(0, 1000, 7).astype(np.int32),
            "lm.response_logp": rng.random(7).astype(np.float32),
            "lm.allowed_ids": np.zeros(0, np.int32),
        }
    return Trajectories.from_steps(
        role, rows, lengths, obs, rng.integers(0, 5, (s, 4)), -rng.random(s), None, ex
    )


def correct_of(seed: int) -> np.ndarray:
    """``(B*K,)`` c_M per rollout."""
    return np.random.default_rng(seed + 1000).random(B * K)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh, empty store: a SQLite file, or a new schema on the throwaway server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from experiments.store.testing import create_schema

    return create_schema(request.getfixturevalue("postgres_url"), f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(url, tmp_path):
    with Store(url, blob_dir=tmp_path / "blobs", blob_threshold=2000) as s:
        yield s


def count(store: Store, table, run_id: str = "r") -> int:
    with store.begin() as conn:
        q = select(func.count()).select_from(table).where(table.c.run_id == run_id)
        return conn.execute(q).scalar_one()


# ----------------------------------------------------------------------------- sub rows
def test_sub_rows_round_trip_exactly_in_query_rollout_invocation_order(store):
    run = store.open_run("r", "seed = 0\n")
    traj, correct = make_traj(0), correct_of(0)
    assert run.put_sub_rows(3, traj, correct, group_size=K)
    got = run.get_sub_rows(3, "sub")
    # written in random order, read back sorted by (query, rollout, invocation)
    order = np.lexsort((traj.invocation, traj.rollout, traj.rollout // K))  # last key first
    assert got.trajectories.equals(traj.select(order))  # every array, dtypes included
    t = got.trajectories
    assert t.obs["grid"].dtype == bool and t.obs["grid"].shape[1:] == (2, 3)
    assert t.obs["budget"].dtype == np.float32 and t.obs["results"].dtype == np.int8
    assert t.extras["lm.allowed_ids"].shape == (0,) and t.extras["lm.allowed_ids"].dtype == np.int32
    np.testing.assert_array_equal(got.query, traj.rollout[order] // K)
    np.testing.assert_array_equal(got.c_main, correct[traj.rollout[order]])
    assert np.all(np.diff(got.query * 1000 + got.rollout * 10 + got.invocation) > 0)


def test_a_role_nobody_called_is_an_empty_step_not_a_missing_one(store):
    run = store.open_run("r", "")
    empty = make_traj(1, n=0, extras=False)
    run.put_sub_rows(0, empty, correct_of(1), group_size=K)
    got = run.get_sub_rows(0, "sub")
    assert len(got) == 0 and set(got.trajectories.obs) == set(empty.obs)
    with pytest.raises(MissingError, match="no sub rows of role 'sub' at step 1"):
        run.get_sub_rows(1, "sub")


# ----------------------------------------------------------------------------- idempotence
def test_retried_writes_are_no_ops(store):
    run = store.open_run("r", "")
    traj, correct = make_traj(2), correct_of(2)
    blob = b"\x01" * 5000  # over the threshold: a file in the blob dir
    first = [
        run.put_sub_rows(0, traj, correct, group_size=K),
        run.mark(0, "sub", "written"),
        run.put_metrics(0, "main", {"main/loss": 0.5, "time/step_s": 1.0}),
        run.put_weights(0, "sub", blob),
        run.put_weights(0, "main", b"small"),
    ]
    # a retry (the step recomputed after a restart: rows in another order, other time/* keys)
    again = [
        run.put_sub_rows(0, traj.select(np.arange(len(traj))[::-1]), correct, group_size=K),
        run.mark(0, "sub", "written"),
        run.put_metrics(0, "main", {"main/loss": 0.5, "time/step_s": 2.0}),
        run.put_weights(0, "sub", blob),
        run.put_weights(0, "main", b"small"),
    ]
    assert all(first) and not any(again)
    assert store.open_run("r", "").config_hash == run.config_hash
    assert count(store, sub_rows) == len(traj) and count(store, weights) == 2
    assert run.get_metrics(0, "main") == {"main/loss": 0.5, "time/step_s": 1.0}  # first kept
    assert run.marked_steps("sub", "written") == [0]
    assert len(list((store.blob_dir.root / "run-r" / "sub").iterdir())) == 1


def test_writes_of_other_content_for_a_stored_key_are_conflicts(store):
    run = store.open_run("r", "")
    traj, correct = make_traj(3), correct_of(3)
    run.put_sub_rows(0, traj, correct, group_size=K)
    run.put_metrics(0, "main", {"main/loss": 0.5})
    run.put_weights(0, "sub", b"\x01" * 5000)
    changed = make_traj(3)
    changed.logp[0] += 1e-12
    with pytest.raises(ConflictError, match="step 0 role 'sub': the store holds other sub rows"):
        run.put_sub_rows(0, changed, correct, group_size=K)
    with pytest.raises(ConflictError, match="other sub rows"):  # c_M is part of the content
        run.put_sub_rows(0, traj, correct + 0.5, group_size=K)
    with pytest.raises(ConflictError, match="differ from this write in main/loss"):
        run.put_metrics(0, "main", {"main/loss": 0.25})
    with pytest.raises(ConflictError, match="other weights"):
        run.put_weights(0, "sub", b"\x02" * 5000)
    # nothing changed, and the refused blob file was removed
    assert run.get_sub_rows(0, "sub").trajectories.equals(
        traj.select(np.lexsort((traj.invocation, traj.rollout)))
    )
    assert run.get_weights(0, "sub") == b"\x01" * 5000
    assert len(list((store.blob_dir.root / "run-r" / "sub").iterdir())) == 1


# ----------------------------------------------------------------------------- concurrency
def _writer(url: str, worker: int, steps: list[int], barrier) -> None:
    """Write steps ``steps`` (sub rows, metrics, weights, marker) in a shuffled order."""
    with Store(url) as store:
        run = store.open_run("r", "shared config\n")
        barrier.wait(timeout=60)
        for step in np.random.default_rng(worker).permutation(steps).tolist():
            run.put_sub_rows(step, make_traj(step), correct_of(step), group_size=K)
            run.put_metrics(step, "sub", {"sub/loss": float(step)})
            run.put_weights(step, "sub", bytes([step]) * 100)
            run.mark(step, "sub", "published")


def test_concurrent_writers_lose_and_duplicate_nothing(url):
    # 3 processes, steps 0-5, each step written by 2 of them at about the same time
    plan = {0: [0, 1, 2, 3], 1: [2, 3, 4, 5], 2: [4, 5, 0, 1]}
    ctx = mp.get_context("fork")  # the test module is not importable by a spawned process
    barrier = ctx.Barrier(len(plan))
    procs = [ctx.Process(target=_writer, args=(url, w, s, barrier)) for w, s in plan.items()]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    with Store(url) as store:
        run = store.run("r")
        assert count(store, sub_rows) == sum(len(make_traj(s)) for s in range(6))
        assert run.marked_steps("sub", "published") == list(range(6))
        assert sorted(run.metrics("sub")) == list(range(6))
        for step in range(6):
            traj = make_traj(step)
            got = run.get_sub_rows(step, "sub")
            assert got.trajectories.equals(traj.select(np.lexsort((traj.invocation, traj.rollout))))
            assert run.get_weights(step, "sub") == bytes([step]) * 100


# ----------------------------------------------------------------------------- versions, configs
def test_a_store_of_another_schema_version_is_refused(url):
    with Store(url) as store:
        with store.begin(write=True) as conn:
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="99"))
    with pytest.raises(SchemaVersionError) as e:
        Store(url)
    msg = f"schema version 99; this mgrpo-sim reads schema version {SCHEMA_VERSION}"
    assert msg in str(e.value)


def test_a_run_id_of_another_config_is_refused_naming_both_hashes(store):
    run = store.open_run("r", "seed = 0\nsteps = 3\n")
    with pytest.raises(RunConfigError) as e:
        store.open_run("r", "seed = 1\nsteps = 3\n")
    msg = str(e.value)
    assert run.config_hash[:12] in msg and "-seed = 0; +seed = 1" in msg
    assert store.run("r").config_text == "seed = 0\nsteps = 3\n"
    with pytest.raises(MissingError, match="no run 'other'"):
        store.run("other")


# ----------------------------------------------------------------------------- claims
def rewind_heartbeat(store: Store, role: str, seconds: float) -> None:
    """Make a claim look ``seconds`` older (no heartbeat since: its holder was killed)."""
    with store.begin(write=True) as conn:
        c = claims.c
        conn.execute(update(claims).where(c.role == role).values(heartbeat=c.heartbeat - seconds))


def heartbeat_of(store: Store, role: str) -> float:
    with store.begin() as conn:
        return conn.execute(select(claims.c.heartbeat).where(claims.c.role == role)).scalar_one()


def test_a_held_role_cannot_be_claimed_twice_until_its_claim_is_stale(store):
    run = store.open_run("r", "")
    first = run.claim("sub", stale_after=30)
    with pytest.raises(ClaimError, match=f"role 'sub' of run 'r' is held by {first.owner}"):
        run.claim("sub")
    run.claim("main").release()  # other roles are free
    rewind_heartbeat(store, "sub", 31)  # no heartbeat for 31 s > 30 s: stale
    second = run.claim("sub")
    assert second.took_over == first.owner
    with pytest.raises(ClaimError, match="lost its claim"):
        first.heartbeat()
    second.release()
    run.claim("sub").release()  # released: free again


def test_heartbeats_keep_a_claim_alive_and_report_its_loss(store):
    run = store.open_run("r", "")
    held = run.claim("sub", stale_after=30).keep_alive(interval=0.02)
    before = heartbeat_of(store, "sub")
    deadline = time.monotonic() + 20  # the beat thread may be slow on a loaded machine
    while heartbeat_of(store, "sub") <= before:
        assert time.monotonic() < deadline, "no heartbeat within 20 s"
        time.sleep(0.02)
    held.check()
    for _ in range(100):  # as if the holder had hung (its beat thread may refresh it between)
        rewind_heartbeat(store, "sub", 100)
        try:
            taker = run.claim("sub")
            break
        except ClaimError:
            continue
    else:
        raise AssertionError("could not take over the rewound claim in 100 tries")
    deadline = time.monotonic() + 20  # the holder's next heartbeat finds the claim gone
    while held._lost is None:
        assert time.monotonic() < deadline, "the holder never noticed its lost claim"
        time.sleep(0.02)
    with pytest.raises(ClaimError, match="lost its claim"):
        held.check()
    held.release()
    with pytest.raises(ClaimError, match="held by"):  # the release left the new claim alone
        run.claim("sub")
    taker.release()


# ----------------------------------------------------------------------------- waiting
def test_wait_for_reports_what_it_waits_for_and_times_out_naming_it(store):
    run = store.open_run("r", "")
    run.mark(2, "sub", "published")
    said: list[str] = []
    with pytest.raises(WaitTimeout) as e:
        run.wait_for(2, ["sub", "math"], "published", timeout=0.2, on_wait=said.append)
    assert isinstance(e.value, TimeoutError)
    assert "timed out after 0.2 s waiting for marker 'published' of role 'math' at step 2" in str(
        e.value
    )
    assert said and said[0].startswith("waiting for marker 'published' of role 'math' at step 2")


def test_wait_for_returns_once_the_marker_appears(store):
    run = store.open_run("r", "")
    threading.Timer(0.15, run.mark, args=(0, "sub", "written")).start()
    said: list[str] = []
    waited = run.wait_for(0, "sub", "written", timeout=10, poll=0.02, on_wait=said.append)
    assert 0.1 < waited < 5 and len(said) == 1
    assert run.wait_for(0, "sub", "written", timeout=0, on_wait=said.append) == pytest.approx(
        0, abs=0.5
    )
    assert len(said) == 1  # nothing to wait for: no message


# ----------------------------------------------------------------------------- weights, blobs
def test_large_weights_go_to_the_blob_dir_and_are_checksummed(store, url):
    run = store.open_run("r", "")
    big, small = bytes(range(256)) * 16, b"adapter"  # 4096 bytes > the 2000-byte threshold
    run.put_weights(1, "sub", big)
    run.put_weights(1, "main", small)  # inline
    (path,) = (store.blob_dir.root / "run-r" / "sub").iterdir()
    assert path.name.startswith("00000001-") and not list(path.parent.glob(".tmp-*"))
    assert path.read_bytes() == big
    assert run.get_weights(1, "sub") == big and run.get_weights(1, "main") == small
    data = bytearray(big)
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="has sha256"):
        run.get_weights(1, "sub")
    with store.begin(write=True) as conn:  # inline rows are checked too
        conn.execute(update(weights).where(weights.c.role == "main").values(data=b"x"))
    with pytest.raises(ChecksumError, match="has 1 bytes"):
        run.get_weights(1, "main")
    with Store(url) as no_dir, pytest.raises(StoreError, match="open the store with blob_dir"):
        no_dir.run("r").get_weights(1, "sub")
    with pytest.raises(MissingError, match="no weights of role 'sub' at step 2"):
        run.get_weights(2, "sub")


def test_state_dicts_are_published_as_safetensors(store):
    torch = pytest.importorskip("torch")
    run = store.open_run("r", "")
    sd = {"w": torch.randn(10, 100).T, "b": torch.zeros(3, dtype=torch.bfloat16)}  # w: a view
    run.put_weights(0, "sub", sd)
    got = state_dict_from_bytes(run.get_weights(0, "sub"))
    assert got.keys() == sd.keys() and all(torch.equal(got[k], sd[k]) for k in sd)
    assert got["b"].dtype == torch.bfloat16


# ----------------------------------------------------------------------------- bad URLs
@pytest.mark.parametrize(
    "bad, message",
    [
        ("not-a-url", "is not a URL"),
        ("postgresql+psycopg://u:secret@host:notaport/db", "is malformed"),
        ("mysql://u:secret@host/db", "unknown scheme 'mysql'; the store opens sqlite:// or "),
        ("sqlite://", "in-memory SQLite"),
        ("sqlite:////nonexistent/folder/store.db", "does not exist"),
        ("postgresql+psycopg://u:secret@127.0.0.1:{port}/db", "cannot open store"),
    ],
)
def test_bad_urls_are_clear_errors_with_the_password_masked(bad, message):
    bad = bad.format(port=free_port())  # nothing listens there
    with pytest.raises(StoreURLError) as e:
        Store(bad, connect_timeout_s=2)
    assert message in str(e.value) and "secret" not in str(e.value)
    if "secret" in bad:
        assert "u:***@" in str(e.value)


def test_tied_tensors_are_stored_once_and_come_back_tied():
    import torch

    from experiments.store import state_dict_from_bytes, state_dict_to_bytes

    emb = torch.randn(50, 8)
    sd = {"embed.weight": emb, "lm_head.weight": emb, "norm.weight": torch.ones(8)}
    blob = state_dict_to_bytes(sd)
    assert len(blob) < 50 * 8 * 4 * 2  # the tied matrix once
    back = state_dict_from_bytes(blob)
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], v) for k, v in sd.items())
