"""Rules of experiments/run.py (the shell around the step): resume, a stop on bad numbers that
keeps the last checkpoint, TensorBoard files."""

import numpy as np
import pytest

from experiments.checkpoint import append_metrics, load_checkpoint, read_metrics
from experiments.run import Trainer, TrainingError
from tests.sim.conftest import tiny_config as tiny

ENVS = ["mgrpo/RubiksLogic-v0", "mgrpo/InvasiveSpecies-v0"]


def run(tmp_path, cfg, name="run"):
    tr = Trainer(cfg, tmp_path / name, progress=False)
    tr.train()
    return tr, read_metrics(tmp_path / name / "metrics.jsonl")


def _strip_time(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_resume_from_a_checkpoint_gives_the_same_metrics(tmp_path):
    cfg = tiny(ENVS[0], steps=4, checkpoint_every=2, variant="async_queue")
    full = run(tmp_path, cfg, "full")[1]
    part = Trainer(cfg, tmp_path / "part", progress=False)
    for _ in range(3):  # step 3 runs past the checkpoint of step 2, then the run "dies"
        row = part.train_step()
        append_metrics(tmp_path / "part", row)
        if part.step == 2:
            part.save()
    part.close()  # the run "dies": its lock on the directory goes with it
    resumed = Trainer(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed.step == 2
    resumed.train()
    assert _strip_time(read_metrics(tmp_path / "part" / "metrics.jsonl")) == _strip_time(full)


def test_nan_reward_stops_with_step_and_component_and_keeps_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(ENVS[0], steps=3)
    tr = Trainer(cfg, tmp_path / "r", progress=False)
    tr.train_step()
    tr.save()
    saved = (tmp_path / "r" / "checkpoint.pt").read_bytes()
    import sim.trainer as trainer_mod

    real = trainer_mod.collect_rollouts

    def poisoned(*args, **kwargs):
        batch = real(*args, **kwargs)
        batch.correct[2] = np.nan
        return batch

    monkeypatch.setattr(trainer_mod, "collect_rollouts", poisoned)
    # the failed update is the run's step 2 (metrics.jsonl numbering); the checkpoint of step 1
    msg = r"step 2, role main: bad reward: .*NaN/inf at rows 2.*checkpoint \(step 1\) .* intact"
    with pytest.raises(TrainingError, match=msg):
        tr.train()
    assert (tmp_path / "r" / "checkpoint.pt").read_bytes() == saved
    assert load_checkpoint(tmp_path / "r")["step"] == 1


def test_tensorboard_event_files_are_written(tmp_path):
    tr = Trainer(tiny(ENVS[1], steps=2), tmp_path / "r", progress=False, tensorboard=True)
    tr.train()
    events = list((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
