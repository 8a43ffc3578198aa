"""The Python API (experiments.api, re-exported by experiments) and `mgrpo eval`."""

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

import experiments
from experiments import evaluate_cmd
from experiments.api import EvalResult, Run, evaluate, from_config, load_run
from experiments.config import CONFIG_DIR, ConfigError, dump_toml

SPECIES = "mgrpo/InvasiveSpecies-v0"
TINY = {
    "env.id": SPECIES,
    "steps": 2,
    "algo.queries_per_step": 4,
    "algo.group_size": 2,
    "eval.episodes": 8,
    "eval.oracle_episodes": 0,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny trained run (B=4, K=2, 2 steps), as `mgrpo train` lays it out."""
    from experiments import Trainer

    d = tmp_path_factory.mktemp("api") / "run"
    d.mkdir()
    cfg = from_config(TINY)
    (d / "config.toml").write_text(dump_toml(cfg))
    Trainer(cfg, d, progress=False).train()
    return d


def _snapshot(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------ package
def test_package_exports_the_api_without_importing_torch():
    code = (
        "import sys, experiments; assert 'torch' not in sys.modules, 'torch imported'; "
        "print(sorted(experiments.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "load_run" in out.stdout and "from_config" in out.stdout
    from experiments.run import Trainer

    assert experiments.Trainer is Trainer
    assert experiments.load_run is load_run and experiments.evaluate is evaluate
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        experiments.nope  # noqa: B018


# ------------------------------------------------------------------------------ from_config
def test_from_config_preset_path_and_dicts_agree():
    by_name = from_config("quick", steps=10, **{"algo.group_size": 4})
    by_path = from_config(CONFIG_DIR / "quick.toml", steps=10, **{"algo.group_size": 4})
    assert by_name == by_path
    assert by_name.steps == 10 and by_name.algo.group_size == 4
    assert by_name.env.id == SPECIES and by_name.algo.queries_per_step == 32  # from the file
    flat = from_config({"env.id": SPECIES, "algo.group_size": 4})
    nested = from_config({"env": {"id": SPECIES}, "algo": {"group_size": 4}, "ablate": {}})
    assert flat == nested and flat.algo.group_size == 4
    assert from_config() == from_config({})


def test_from_config_variant_override_replaces_the_files_keys():
    cfg = from_config("paper", variant="async_queue")
    assert cfg.variant == "async_queue"
    assert cfg.algo.sub_grouping == "queue_window" and cfg.algo.queue_lag >= 1


def test_from_config_errors_say_what_is_wrong():
    with pytest.raises(ConfigError) as e:
        from_config("quick", **{"algo.group_sise": 4, "optim.lr": -1.0})
    assert len(e.value.problems) == 2
    assert "algo.group_sise" in str(e.value) and "optim.lr" in str(e.value)
    with pytest.raises(ConfigError, match="does not exist; presets: .*quick"):
        from_config("no_such_preset")
    with pytest.raises(ConfigError, match="env"):
        from_config({"env.id": SPECIES, "env.no_such_knob": 1})
    with pytest.raises(TypeError, match="preset name, a TOML path, a dict"):
        from_config(42)


# ------------------------------------------------------------------------------ load_run
def test_load_run_returns_config_policies_metrics_and_step(run_dir):
    import torch

    from experiments.checkpoint import load_checkpoint
    from sim.trainer import Learner

    before = _snapshot(run_dir)
    run = load_run(str(run_dir))
    assert isinstance(run, Run) and isinstance(run.learner, Learner)
    assert run.run_dir == run_dir and run.step == 2
    assert run.config == from_config(TINY)
    assert set(run.policies) == {"main", "sub"}
    assert [r["step"] for r in run.metrics] == [1, 2]
    saved = load_checkpoint(run_dir)["policies"]["main"]
    for k, v in run.policies["main"].state_dict().items():
        assert torch.equal(v, saved[k])
    assert "step=2" in repr(run)
    assert _snapshot(run_dir) == before


def test_load_run_errors_name_what_is_missing(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_run(tmp_path / "nope")
    with pytest.raises(
        FileNotFoundError, match=r"no config\.toml.*run directories under it: .*run"
    ):
        load_run(run_dir.parent)
    d = tmp_path / "half"
    d.mkdir()
    (d / "config.toml").write_text((run_dir / "config.toml").read_text())
    with pytest.raises(FileNotFoundError, match=r"no checkpoint\.pt"):
        load_run(d)
    (d / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_run(d)
    (d / "config.toml").write_text("steps = 2\n[algo]\ngroup_sise = 4\n")
    with pytest.raises(ConfigError, match=r"config\.toml: unknown key 'algo.group_sise'"):
        load_run(d)


# ------------------------------------------------------------------------------ evaluate
def test_evaluate_interval_contains_the_rate_and_files_stay(run_dir, monkeypatch):
    before = _snapshot(run_dir)
    run = load_run(run_dir)
    res = evaluate(run, n=48)
    assert isinstance(res, EvalResult) and res.n == 48 and res.greedy and res.step == 2
    assert 0.0 <= res.ci_low <= res.success <= res.ci_high <= 1.0
    assert res.success == res.successes / 48
    assert set(res.calls) == {"sub"} and res.sim_time > 0
    assert 0.0 <= res.category_error_rate <= 1.0
    assert "success" in str(res) and "[" in str(res)
    assert evaluate(run_dir, n=48).as_dict() | {"wall_s": 0} == res.as_dict() | {"wall_s": 0}
    # chunks of at most EVAL_CHUNK episodes: the same greedy episodes
    monkeypatch.setattr("experiments.api.EVAL_CHUNK", 20)
    chunked = evaluate(run, n=48)
    assert (chunked.successes, chunked.calls, chunked.sim_time) == (
        res.successes,
        res.calls,
        res.sim_time,
    )
    sampled = evaluate(run, n=48, greedy=False, seed=1)
    assert not sampled.greedy and 0.0 <= sampled.ci_low <= sampled.success <= sampled.ci_high
    assert _snapshot(run_dir) == before
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        evaluate(run, n=0)


def test_evaluate_does_not_change_the_training_trajectory(run_dir):
    a, b = load_run(run_dir), load_run(run_dir)
    evaluate(a, n=16, greedy=False)
    evaluate(a.learner, n=16)
    row_a, row_b = a.learner.train_step(), b.learner.train_step()
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    assert strip(row_a) == strip(row_b)


# ------------------------------------------------------------------------------ mgrpo eval
def _eval_cli(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    evaluate_cmd.add_parser(sub)
    args = p.parse_args(["eval", *argv])
    return args.func(args)


def test_mgrpo_eval_prints_the_table(run_dir, capsys):
    assert _eval_cli([str(run_dir), "--episodes", "32", "--seed", "1", "--sampled"]) == 0
    out = capsys.readouterr().out
    assert f"run {run_dir}: {SPECIES}, variant mgrpo, step 2" in out
    for word in ("success", "[", "32 held-out, sampled actions, seed 1", "sub ", "sim time"):
        assert word in out
    assert "category errors" in out


def test_mgrpo_eval_bad_run_dir_exits_2(tmp_path, capsys):
    assert _eval_cli([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        _eval_cli([str(tmp_path), "--episodes", "0"])
