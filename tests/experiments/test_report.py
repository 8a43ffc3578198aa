"""experiments.stats and experiments.report: hand-computed statistics on synthetic run dirs,
bad input (missing, corrupt, truncated), and a report of real tiny runs."""

from __future__ import annotations

import json
import math

import pytest

from experiments import report, stats
from experiments.report import measured_text, write_report
from tests.experiments.conftest import mgrpo, run_inprocess, write_run


# ------------------------------------------------------------------- per-run statistics
def test_per_run_numbers_hand_computed(tmp_path):
    run = stats.load_run(write_run(tmp_path / "a"))
    assert stats.final_success(run) == 0.75  # mean of the last 3 (here: both) evals 0.5, 1.0
    assert stats.auc(run) == pytest.approx(0.75)  # (0.5 + 1.0) / 2
    # B x K = 4; changes 1, -0.5, 0.5 (var ddof=1: 7/12) at levels 0.5, 0.75, 0.75:
    # expected 2 p (1 - p) / 4 = 0.125, 0.09375, 0.09375 (mean 0.3125 / 3) -> 5.6
    assert stats.stability_ratio(run) == pytest.approx(5.6)
    # no smoothing: the drop from 1 to 0.5 (> 0.3) is one collapse
    assert stats.collapses(run, weight=0.0) == 1 and stats.collapses(run) == 0


def test_threshold_must_hold_for_3_evaluations_else_censored(tmp_path):
    # oracle fraction = success: 0.95 at step 2 alone does not count; steps 4, 5, 6 do
    d = write_run(tmp_path / "a", reward=[0.5] * 6,
                  success={0: 0.2, 1: 0.95, 2: 0.5, 3: 0.95, 4: 0.96, 5: 0.97})  # fmt: skip
    assert stats.time_to_threshold(stats.load_run(d), 0.9) == (4, True)
    run = stats.load_run(write_run(tmp_path / "b"))  # evals 0.5 (step 2), 1.0 (step 4)
    assert stats.time_to_threshold(run, 0.9) == (4, False)  # a streak cut short: censored
    assert stats.time_to_threshold(run, 0.99) == (4, False)
    assert stats.steps_to_threshold(run, 0.9) is None


def test_never_reaching_threshold_is_censored_at_the_last_evaluation(tmp_path):
    run = stats.load_run(write_run(tmp_path / "a", success={1: 0.2, 3: 0.3}))
    assert stats.time_to_threshold(run, 0.9) == (4, False)


def test_final_eval_is_read_from_the_last_row_only(tmp_path):
    d = write_run(tmp_path / "a")
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    rows[1] |= {"eval/final_success_greedy": 0.1, "eval/final_episodes": 100}  # resumed
    rows[-1] |= {"eval/final_success_greedy": 0.25, "eval/final_episodes": 2000}
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    run = stats.load_run(d)
    assert stats.final_eval(run) == 0.25 and stats.final_eval_counts(run) == (500, 2000)
    rows[-1] = {k: v for k, v in rows[-1].items() if not k.startswith("eval/final")}
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)) + "\n")
    assert math.isnan(stats.final_eval(stats.load_run(d)))


def test_ema_is_debiased():
    # weight 0.5: acc 0, 0.5, 0.75 over y = 0, 1, 1; divided by 1 - 0.5**n: 0, 2/3, 6/7
    assert stats.ema([0.0, 1.0, 1.0], 0.5) == pytest.approx([0.0, 2 / 3, 6 / 7])


# ------------------------------------------------------------------------ summary table
def test_summary_table_groups_by_env_and_variant(tmp_path):
    eval_eps = {"eval.episodes": 4}
    write_run(tmp_path / "m0", seed=0, success={1: 0.5, 3: 1.0}, sim_time=10.0, config=eval_eps)
    write_run(tmp_path / "m1", seed=1, success={1: 0.5, 3: 0.5}, sim_time=10.0, config=eval_eps)
    write_run(tmp_path / "o0", variant="main_only", seed=0, success={3: 0.0}, sim_time=11.0,
              config=eval_eps)  # fmt: skip
    write_run(tmp_path / "o1", variant="main_only", seed=1, success={3: 0.5}, sim_time=11.0,
              config=eval_eps)  # fmt: skip
    write_run(tmp_path / "r0", env="mgrpo/RubiksLogic-v0")
    table = stats.summary_table(stats.load_runs([tmp_path]))
    key = {(r["env"], r["variant"]): r for r in table}
    assert len(table) == 3
    m = key[("mgrpo/InvasiveSpecies-v0", "mgrpo")]
    o = key[("mgrpo/InvasiveSpecies-v0", "main_only")]
    # final success per seed: (0.5 + 1.0) / 2 and (0.5 + 0.5) / 2
    assert m["per_seed"]["final_success"] == [0.75, 0.5] and m["final_success"] == 0.625
    assert m["final_success_method"] == "bootstrap" and 0.5 <= m["final_success_lo"] <= 0.625
    assert m["n_seeds"] == 2 and m["samples"] == 4 * 2 * 2
    assert m["reached"] == 0 and m["censored"] == 2 and m["steps_to_threshold"] is None
    assert m["dk_sub"] == 2.0  # calls 1, 2, 3, 2
    # per rollout (B x K = 4): duplicated 2, 0, 0, 2 -> 1 / 4; dropped and empty 0.5 / 4
    assert (m["align_duplicated"], m["align_dropped"], m["align_empty"]) == (0.25, 0.125, 0.125)
    assert m["p_value"] is None and m["diff_vs_baseline"] == 0.0 and m["baseline_line"] == "mgrpo"
    # seed pairs (0, 0.75) and (0.5, 0.5): differences -0.75 and 0; the 4 sign swaps give
    # means -0.375, 0.375, -0.375, 0.375: all as extreme as the observed, p = 1
    assert o["diff_vs_baseline"] == pytest.approx(-0.375) and o["n_pairs"] == 2
    assert o["p_value"] == 1.0 and o["p_holm"] == 1.0 and o["p_min"] == 0.5
    assert o["sim_time_ratio"] == pytest.approx(1.1)
    r = key[("mgrpo/RubiksLogic-v0", "mgrpo")]
    assert r["n_seeds"] == 1 and math.isnan(r["final_success_lo"])  # no episodes: no interval


def test_all_seeds_at_zero_get_the_clopper_pearson_interval(tmp_path):
    for s in range(5):  # 5 seeds x 1 eval x 256 episodes, all failed: 0 of 1,280
        write_run(tmp_path / f"s{s}", seed=s, success={3: 0.0}, config={"eval.episodes": 256})
    (row,) = stats.summary_table(stats.load_runs([tmp_path]))
    assert row["final_success_method"] == "exact" and row["final_success_lo"] == 0.0
    assert row["final_success_hi"] == pytest.approx(0.00288, abs=1e-5)  # 1 - 0.025**(1/1280)
    assert "0.000 [0.000, 0.003]*" in stats.format_markdown([row])


def test_write_summary_csv_and_markdown(tmp_path):
    write_run(tmp_path / "runs" / "a", seed=0)
    write_run(tmp_path / "runs" / "b", seed=1, variant="main_only")
    table = stats.summary_table(stats.load_runs([tmp_path / "runs"]))
    csv_path, md_path = stats.write_summary(table, tmp_path / "out")
    head = csv_path.read_text().splitlines()[0].split(",")
    assert head[:3] == ["env", "variant", "n_seeds"] and "p_holm" in head
    assert head[-1] == "per_seed"
    md = md_path.read_text()
    assert "| mgrpo |" in md and "final success (greedy, last 3 evals, 95% CI)" in md
    assert "n/a" in md  # different seeds: no pair, no p-value
    assert "#### Per seed" in md and "| main_only | 1 |" in md


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
    assert "(2 seed pairs)" in text[1] and "smallest possible with 2 pairs: 0.5" in text[1]
    assert "not significant at 0.05" in text[1]  # differences -1, 0: p = 1


def test_report_of_real_runs(ablation_dir, tmp_path):
    out = write_report(ablation_dir, tmp_path / "docs" / "RESULTS.md")
    md = out.read_text()
    assert "## mgrpo/InvasiveSpecies-v0" in md and "### What was measured" in md
    assert "steps x B x K = 3 x 4 x 2 = 24 episodes per run" in md
    assert "`mgrpo`: 2 seed(s) (0, 1)" in md and "`main_only`: 2 seed(s) (0, 1)" in md
    assert (ablation_dir / "summary.csv").is_file() and (ablation_dir / "summary.md").is_file()
    links = [line[line.index("(") + 1 : -1] for line in md.splitlines() if line.startswith("![")]
    assert links and all((out.parent / link).is_file() for link in links)  # relative links
    assert "## Claims of the paper and the article" in md and "### Per seed" in md
    assert "Final evaluation after the last step (16 episodes per run)" in md  # TINY's
    assert (ablation_dir / "claims.md").is_file() and (ablation_dir / "claims.json").is_file()
    assert "seeds per line" in md and "EMA weight" in md  # the captions


def test_report_cli_default_out_and_study_figures(ablation_dir, tmp_path):
    (ablation_dir / "plots").mkdir(exist_ok=True)
    (ablation_dir / "plots" / "study_history.png").write_bytes(b"\x89PNG fake")
    r = mgrpo("report", str(ablation_dir), check=False)
    assert r.returncode == 0, r.stderr
    md = (ablation_dir / "REPORT.md").read_text()
    assert "## Hyperparameter study" in md and "(plots/study_history.png)" in md
    (ablation_dir / "plots" / "study_history.png").unlink()
