"""Rules of experiments/checkpoint.py: atomic checkpoints and the metrics log of a run directory."""

import json

import pytest

from experiments.checkpoint import (
    CHECKPOINT,
    append_metrics,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
    truncate_metrics,
)


def test_save_then_load_round_trips_and_leaves_no_temporary_file(tmp_path):
    save_checkpoint(tmp_path, {"step": 3, "x": [1, 2]})
    assert load_checkpoint(tmp_path) == {"step": 3, "x": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(tmp_path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(tmp_path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path)
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path)


def test_a_truncated_last_metrics_line_is_skipped_and_others_are_errors(tmp_path):
    append_metrics(tmp_path, {"step": 0, "a": 1.0})
    path = tmp_path / "metrics.jsonl"
    with open(path, "a") as f:
        f.write('{"step": 1, "a"')  # a run killed mid-write
    assert read_metrics(path) == [{"step": 0, "a": 1.0}]
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_metrics(path)


def test_truncate_keeps_the_rows_up_to_the_checkpointed_step(tmp_path):
    for s in range(5):
        append_metrics(tmp_path, {"step": s})
    truncate_metrics(tmp_path, 2)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
