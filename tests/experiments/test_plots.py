"""experiments.plots: figures of real tiny runs and synthetic ones (single seed, single variant,
different lengths), Optuna study figures, and the plot CLI's errors."""

from __future__ import annotations

import optuna
import pytest

from experiments import plots
from experiments.plots import plot_runs, plot_study
from tests.experiments.conftest import mgrpo, run_inprocess, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def _pngs_ok(paths) -> bool:
    return all(p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG for p in paths)


def test_plot_runs_writes_every_figure_of_real_runs(ablation_dir, tmp_path):
    paths = plot_runs([ablation_dir], tmp_path / "plots")
    names = {p.name for p in paths}
    # species: success, reward per role, d_k, alignment, constraints kept
    for kind in ("success", "reward_main", "reward_sub", "calls", "alignment",
                 "constraints_kept"):  # fmt: skip
        assert f"invasivespecies_{kind}.png" in names
    assert _pngs_ok(paths)


def test_single_seed_single_variant_and_different_lengths(tmp_path):
    # one run: no band, one colour; a second run of another length in another variant
    write_run(tmp_path / "a", reward=[0.0, 0.5, 1.0, 1.0])
    paths = plot_runs([tmp_path / "a"], tmp_path / "p1")
    assert _pngs_ok(paths) and any(p.name.endswith("category_errors.png") for p in paths)
    write_run(tmp_path / "b", seed=1, reward=[0.0, 0.5], success={1: 0.5})
    write_run(tmp_path / "c", variant="no_alignment", reward=[0.1, 0.2, 0.3])
    assert _pngs_ok(plot_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "p2"))


def test_runs_from_two_envs_get_separate_figures(tmp_path):
    write_run(tmp_path / "s")
    write_run(tmp_path / "r", env="mgrpo/RubiksLogic-v0")
    names = {p.name for p in plot_runs([tmp_path], tmp_path / "plots")}
    assert "invasivespecies_success.png" in names and "rubikslogic_success.png" in names


def _study(n: int) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))
    study.optimize(
        lambda t: t.suggest_int("align_target", 1, 16) / 16 + t.suggest_float("local_share", 0, 1),
        n_trials=n,
    )
    return study


def test_plot_study_history_importances_contour(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths = plot_study(_study(6), tmp_path)
    assert {p.name for p in paths} == {
        "study_history.png", "study_importances.png", "study_contour.png"
    }  # fmt: skip
    assert _pngs_ok(paths)


def test_plot_study_skips_importances_with_one_trial(tmp_path, capsys):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    paths = plot_study(_study(1), tmp_path)
    assert "study_history.png" in {p.name for p in paths}
    assert "study_importances.png" not in {p.name for p in paths}
    assert "importances skipped" in capsys.readouterr().err


def test_plot_cli_default_out_and_bad_input(tmp_path, capsys):
    write_run(tmp_path / "abl" / "r0")
    r = mgrpo("plot", str(tmp_path / "abl"), check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "abl" / "plots" / "invasivespecies_success.png").is_file()
    truncated = write_run(tmp_path / "killed")
    with (truncated / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "main/re')
    assert run_inprocess(plots, ["plot", str(truncated)]) == 0  # a killed run still plots
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.toml").write_text('variant = "mgrpo"\n')
    capsys.readouterr()
    for bad in (tmp_path / "missing", tmp_path / "corrupt"):
        assert run_inprocess(plots, ["plot", str(bad)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("storage", ["nope.db", "sqlite:////nonexistent/dir/x.db"])
def test_plot_cli_bad_storage_exits_2(tmp_path, storage, capsys):
    assert run_inprocess(plots, ["plot", "--storage", storage, "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error:")
