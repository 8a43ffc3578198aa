"""experiments.stats and experiments.report: hand-computed statistics on synthetic run dirs,
bad input (missing, corrupt, truncated), and a report of real tiny runs."""

from __future__ import annotations

import math

import pytest

from experiments import report, stats
from experiments.report import measured_text, write_report
from tests.experiments.conftest import mgrpo, run_inprocess, write_run


# ------------------------------------------------------------------- per-run statistics
def test_per_run_numbers_hand_computed(tmp_path):
    run = stats.load_run(write_run(tmp_path / "a"))
    assert stats.final_success(run) == 1.0  # last eval (step 3)
    assert stats.auc(run) == pytest.approx(0.75)  # (0.5 + 1.0) / 2
    # oracle_fraction 0.5 at step index 1, 1.0 at index 3 -> 4 updates done (1-based)
    assert stats.steps_to_threshold(run, 0.9) == 4
    assert stats.steps_to_threshold(run, 0.4) == 2
    # changes 1, -0.5, 0.5: mean 1/3; squared deviations 4/9 + 25/36 + 1/36 = 7/6; /3 -> 7/18
    assert stats.reward_change_std(run) == pytest.approx(math.sqrt(7 / 18))
    # no smoothing: running max 0, 1, 1, 1; the drop to 0.5 at step 2 is the worst
    assert stats.worst_drawdown(run, weight=0.0) == pytest.approx(0.5)


def test_never_reaching_threshold_is_none(tmp_path):
    run = stats.load_run(write_run(tmp_path / "a", success={1: 0.2, 3: 0.3}))
    assert stats.steps_to_threshold(run, 0.9) is None


def test_ema_is_debiased():
    # weight 0.5: acc 0, 0.5, 0.75 over y = 0, 1, 1; divided by 1 - 0.5**n: 0, 2/3, 6/7
    assert stats.ema([0.0, 1.0, 1.0], 0.5) == pytest.approx([0.0, 2 / 3, 6 / 7])


def test_mean_ci_t_interval():
    # mean 0.75, sd 0.3536, t(0.975, 1) = 12.706 -> half = 12.706 * 0.3536 / sqrt(2) = 3.1766
    m, lo, hi = stats.mean_ci([1.0, 0.5])
    assert m == 0.75 and hi - m == pytest.approx(12.7062 * 0.25, rel=1e-4) and lo < m
    m, lo, hi = stats.mean_ci([0.4])  # one seed: no interval
    assert m == 0.4 and math.isnan(lo) and math.isnan(hi)


def test_welch_p_hand_computed_and_nan_safe():
    # means 0.75 vs 0.25, variances 0.125 each: t = sqrt(2), df = 2 -> p = 1 - 1/sqrt(2)
    assert stats.welch_p([1.0, 0.5], [0.0, 0.5]) == pytest.approx(1 - 1 / math.sqrt(2))
    assert stats.welch_p([1.0], [0.0, 0.5]) is None  # a side with one seed
    assert stats.welch_p([1.0, 1.0], [0.0, 0.0]) is None  # zero variance on both sides


# ------------------------------------------------------------------------ summary table
def test_summary_table_groups_by_env_and_variant(tmp_path):
    write_run(tmp_path / "m0", seed=0, success={1: 0.5, 3: 1.0}, sim_time=10.0)
    write_run(tmp_path / "m1", seed=1, success={1: 0.5, 3: 0.5}, sim_time=10.0)
    write_run(tmp_path / "o0", variant="main_only", seed=0, success={3: 0.0}, sim_time=11.0)
    write_run(tmp_path / "o1", variant="main_only", seed=1, success={3: 0.5}, sim_time=11.0)
    write_run(tmp_path / "r0", env="mgrpo/RubiksLogic-v0")
    table = stats.summary_table(stats.load_runs([tmp_path]))
    key = {(r["env"], r["variant"]): r for r in table}
    assert len(table) == 3
    m = key[("mgrpo/InvasiveSpecies-v0", "mgrpo")]
    o = key[("mgrpo/InvasiveSpecies-v0", "main_only")]
    assert m["n_seeds"] == 2 and m["final_success"] == 0.75 and m["samples"] == 4 * 2 * 2
    assert m["auc"] == pytest.approx((0.75 + 0.5) / 2)
    assert m["steps_to_threshold"] == 4 and m["reached"] == 1  # seed 1 never reaches 0.9
    assert m["dk_sub"] == 2.0  # calls 1, 2, 3, 2
    assert (m["align_duplicated"], m["align_dropped"], m["align_empty"]) == (1.0, 0.5, 0.5)
    assert m["p_value"] is None and m["diff_vs_baseline"] == 0.0
    assert o["p_value"] == pytest.approx(1 - 1 / math.sqrt(2))  # the Welch case above
    assert o["diff_vs_baseline"] == pytest.approx(0.25 - 0.75)
    assert o["sim_time_ratio"] == pytest.approx(1.1)
    r = key[("mgrpo/RubiksLogic-v0", "mgrpo")]
    assert r["n_seeds"] == 1 and math.isnan(r["final_success_lo"])


def test_write_summary_csv_and_markdown(tmp_path):
    write_run(tmp_path / "runs" / "a", seed=0)
    write_run(tmp_path / "runs" / "b", seed=1, variant="main_only")
    table = stats.summary_table(stats.load_runs([tmp_path / "runs"]))
    csv_path, md_path = stats.write_summary(table, tmp_path / "out")
    head = csv_path.read_text().splitlines()[0].split(",")
    assert head[:3] == ["env", "variant", "n_seeds"] and "p_value" in head
    md = md_path.read_text()
    assert "| mgrpo |" in md and "final success (greedy, 95% CI)" in md
    assert "n/a" in md  # one seed per variant: no p-value


# ---------------------------------------------------------------------------- bad input
def test_truncated_last_line_is_skipped_and_flagged(tmp_path):
    d = write_run(tmp_path / "a")
    with (d / "metrics.jsonl").open("a") as f:
        f.write('{"step": 4, "main/rew')  # a run killed mid-write
    run = stats.load_run(d)
    assert run.truncated and run.steps == 4


def test_corrupt_metrics_line_names_path_and_line(tmp_path):
    d = write_run(tmp_path / "a")
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"corrupt metrics: .*metrics.jsonl: line 2"):
        stats.load_run(d)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "config.toml").unlink(), "config.toml is missing"),
        (lambda d: (d / "config.toml").write_text("variant = = 1"), "corrupt config"),
        (lambda d: (d / "metrics.jsonl").unlink(), "metrics.jsonl is missing"),
        (lambda d: (d / "metrics.jsonl").write_text(""), "no metrics rows"),
    ],
)
def test_corrupt_run_dir_is_a_clear_value_error(tmp_path, damage, message):
    d = write_run(tmp_path / "a")
    damage(d)
    with pytest.raises(ValueError, match=message):
        stats.load_runs([d])


def test_find_runs_expands_nested_dirs_and_rejects_empty(tmp_path):
    write_run(tmp_path / "x" / "v" / "s0")
    write_run(tmp_path / "x" / "s1")
    assert [p.name for p in stats.find_runs([tmp_path / "x"])] == ["s1", "s0"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no run dirs found"):
        stats.find_runs([tmp_path / "empty"])
    with pytest.raises(ValueError, match="no such directory"):
        stats.find_runs([tmp_path / "missing"])


def test_report_cli_bad_input_exits_2_without_traceback(tmp_path, capsys):
    # a missing dir, a dir without runs, a corrupt run: one line, exit 2
    (tmp_path / "empty").mkdir()
    bad = write_run(tmp_path / "bad" / "r")
    (bad / "metrics.jsonl").write_text("nope\n{}\n")
    r = mgrpo("report", str(tmp_path / "missing"), check=False)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    for d in (tmp_path / "empty", tmp_path / "bad"):  # the same in-process (faster)
        assert run_inprocess(report, ["report", str(d)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ report
def test_measured_text_states_order_and_significance(tmp_path):
    write_run(tmp_path / "m0", seed=0, success={3: 1.0})
    write_run(tmp_path / "m1", seed=1, success={3: 0.5})
    write_run(tmp_path / "o0", variant="main_only", seed=0, success={3: 0.0})
    write_run(tmp_path / "o1", variant="main_only", seed=1, success={3: 0.5})
    text = measured_text(stats.summary_table(stats.load_runs([tmp_path])))
    assert text[0].startswith("Final greedy success") and "`mgrpo` 0.750" in text[0]
    assert "> `main_only` 0.250" in text[0]
    assert "not significant at 0.05" in text[1]  # p = 0.29


def test_report_of_real_runs(ablation_dir, tmp_path):
    out = write_report(ablation_dir, tmp_path / "docs" / "RESULTS.md")
    md = out.read_text()
    assert "## mgrpo/InvasiveSpecies-v0" in md and "### What was measured" in md
    assert "steps x B x K = 3 x 4 x 2 = 24 episodes per run" in md
    assert "`mgrpo`: 2 seed(s) (0, 1)" in md and "`main_only`: 2 seed(s) (0, 1)" in md
    assert (ablation_dir / "summary.csv").is_file() and (ablation_dir / "summary.md").is_file()
    links = [line[line.index("(") + 1 : -1] for line in md.splitlines() if line.startswith("![")]
    assert links and all((out.parent / link).is_file() for link in links)  # relative links


def test_report_cli_default_out_and_study_figures(ablation_dir, tmp_path):
    (ablation_dir / "plots").mkdir(exist_ok=True)
    (ablation_dir / "plots" / "study_history.png").write_bytes(b"\x89PNG fake")
    r = mgrpo("report", str(ablation_dir), check=False)
    assert r.returncode == 0, r.stderr
    md = (ablation_dir / "REPORT.md").read_text()
    assert "## Hyperparameter study" in md and "(plots/study_history.png)" in md
    (ablation_dir / "plots" / "study_history.png").unlink()
