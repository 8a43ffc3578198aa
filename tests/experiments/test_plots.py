"""experiments.plots: figures of real tiny runs and synthetic ones (single seed, single variant,
different lengths), Optuna study figures, and the plot CLI's errors."""

from __future__ import annotations

import json
from collections.abc import Callable

import optuna
import pytest

from experiments import plots
from experiments.plots import plot_runs, plot_study
from tests.experiments.conftest import mgrpo, run_inprocess, write_run

PNG = b"\x89PNG\r\n\x1a\n"


def _pngs_ok(paths) -> bool:
    return all(p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG for p in paths)


def test_plot_runs_writes_every_figure_of_real_runs(ablation_dir, tmp_path):
    found = plots.plot_runs_captioned([ablation_dir], tmp_path / "plots")
    names = {p.name for p, _ in found}
    # species: success, reward per role, d_k, alignment (category errors: 0 in every eval)
    for kind in ("success", "reward_main", "reward_sub", "calls", "alignment"):
        assert f"invasivespecies_{kind}.png" in names
    assert "invasivespecies_category_errors.png" not in names
    assert _pngs_ok([p for p, _ in found])
    for _, cap in found:  # every caption states the seeds and the band
        assert "2 seeds per line" in cap and "seed-bootstrap" in cap
    caps = {p.stem.removeprefix("invasivespecies_"): c for p, c in found}
    assert "EMA weight" in caps["reward_main"] and "oracle's d_k not computed" in caps["calls"]
    assert "final evaluation" in caps["success"]  # TINY runs one (16 episodes)


def _edit_rows(d, edit) -> None:
    """Rewrite ``d/metrics.jsonl`` with ``edit(row)`` applied to every row."""
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    (d / "metrics.jsonl").write_text("".join(json.dumps(edit(r)) + "\n" for r in rows))


def test_single_seed_single_variant_and_different_lengths(tmp_path):
    # one run: no band, one colour; a second run of another length in another variant
    write_run(tmp_path / "a", reward=[0.0, 0.5, 1.0, 1.0])
    paths = plot_runs([tmp_path / "a"], tmp_path / "p1")
    assert _pngs_ok(paths)
    write_run(tmp_path / "b", seed=1, reward=[0.0, 0.5], success={1: 0.5})
    write_run(tmp_path / "c", variant="no_alignment", reward=[0.1, 0.2, 0.3])
    assert _pngs_ok(plot_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "p2"))


def _with_eval(keys: dict) -> Callable[[dict], dict]:
    return lambda r: r | keys if "eval/success" in r else r


def _single(r: dict) -> dict:
    """A single agent's row: no sub role; constraints kept logged as 0 (undefined)."""
    r = {k: v for k, v in r.items() if not k.startswith("sub/")}
    return _with_eval({"eval/constraints_kept": 0.0})(r)


def test_left_out_figures_and_lines_are_named(tmp_path):
    # rule: undefined metrics are left out and said so, never drawn as 0
    for s in (0, 1):
        m = write_run(tmp_path / f"m{s}", seed=s)
        _edit_rows(m, _with_eval({"eval/category_error_rate": 0.5, "eval/constraints_kept": 0.5}))
        _edit_rows(write_run(tmp_path / f"s{s}", seed=s, variant="single_agent"), _single)
        n = write_run(tmp_path / f"n{s}", seed=s, variant="no_alignment",
                      config={"algo.align_mode": "none"})  # fmt: skip
        _edit_rows(n, lambda r: r | {"sub/align_duplicated": 0, "sub/align_empty": 0})
    found = plots.plot_runs_captioned([tmp_path], tmp_path / "p")
    caps = {p.stem.split("_", 1)[1]: c for p, c in found}
    assert "Not drawn (no sub role): single_agent." in caps["reward_sub"]
    undefined = "Left out (not logged or 0 at every evaluation (undefined)): single_agent, "
    assert undefined + "no_alignment." in caps["constraints_kept"]
    assert "Left out (not logged): single_agent, no_alignment." in caps["category_errors"]
    left = "Left out (no alignment or no specialist): single_agent, no_alignment."
    assert left in caps["alignment"]


def test_oracle_d_k_line(tmp_path):
    write_run(tmp_path / "a")
    found = plots.plot_runs_captioned([tmp_path], tmp_path / "p", oracle_queries=20)
    cap = dict((p.stem, c) for p, c in found)["invasivespecies_calls"]
    assert "the env's oracle on 20 held-out queries" in cap


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
