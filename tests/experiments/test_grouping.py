"""experiments.grouping: runs are seeds of one line only when their configs differ in the seed
(and seed-derived keys); otherwise separate labelled lines with a notice, or ``--strict`` exit 2.
Synthetic run dirs (``write_run``)."""

from __future__ import annotations

from experiments import plots, report, stats
from experiments.grouping import group_runs, notices
from experiments.report import write_report
from tests.experiments.conftest import run_inprocess, write_run


def _labels(root) -> dict[str, int]:
    return {line.label: len(rs) for line, rs in group_runs(stats.load_runs([root])).items()}


def test_runs_differing_only_in_seed_pool_into_one_line(tmp_path):
    for s in (0, 1, 2):  # threads and checkpoint_every are run mechanics, not config
        write_run(tmp_path / f"s{s}", seed=s, config={"threads": 1 + s, "checkpoint_every": 5})
    runs = stats.load_runs([tmp_path])
    assert _labels(tmp_path) == {"mgrpo": 3} and notices(group_runs(runs)) == []
    table = stats.summary_table(runs)
    assert len(table) == 1 and table[0]["n_seeds"] == 3 and "config" not in table[0]


def test_run_in_progress_is_a_seed_of_its_finished_siblings(tmp_path):
    # config.toml holds the planned steps: 2 rows logged of 4 planned is the same config
    write_run(tmp_path / "s0", seed=0)
    write_run(tmp_path / "s1", seed=1, reward=[0.0, 1.0], success={1: 0.5}, config={"steps": 4})
    assert _labels(tmp_path) == {"mgrpo": 2}


def test_different_D_gives_two_labelled_lines_and_a_notice(tmp_path, capsys):
    for s in (0, 1):
        write_run(tmp_path / "d4" / f"s{s}", seed=s)  # align_target = 4
        write_run(tmp_path / "d8" / f"s{s}", seed=s, config={"algo.align_target": 8})
    assert _labels(tmp_path) == {"mgrpo (D=4)": 2, "mgrpo (D=8)": 2}
    paths = plots.plot_runs([tmp_path], tmp_path / "plots")
    assert paths
    err = capsys.readouterr().err
    assert "notice:" in err and "algo.align_target" in err
    assert "mgrpo (D=4): d4/s0, d4/s1" in err and "mgrpo (D=8): d8/s0, d8/s1" in err
    table = stats.summary_table(stats.load_runs([tmp_path]))
    assert [(r["config"], r["n_seeds"]) for r in table] == [("D=4", 2), ("D=8", 2)]


def test_different_B_gives_two_lines_and_the_tables_say_so(tmp_path, capsys):
    write_run(tmp_path / "b2", seed=0)  # queries_per_step = 2
    write_run(tmp_path / "b4", seed=1, config={"algo.queries_per_step": 4})
    assert _labels(tmp_path) == {"mgrpo (B=2)": 1, "mgrpo (B=4)": 1}
    table = stats.summary_table(stats.load_runs([tmp_path]))
    csv_path, md_path = stats.write_summary(table, tmp_path / "out")
    assert csv_path.read_text().splitlines()[0].startswith("env,variant,config,n_seeds")
    assert "| mgrpo | B=2 | 1 |" in md_path.read_text()
    assert [r["samples"] for r in table] == [4 * 2 * 2, 4 * 4 * 2]  # no longer pooled: n=1 each


def test_strict_refuses_mixed_configs_one_line_per_conflict(tmp_path, capsys):
    write_run(tmp_path / "a", seed=0)
    write_run(tmp_path / "b", seed=1, config={"algo.align_target": 8})
    write_run(tmp_path / "c", variant="main_only", seed=0)
    write_run(tmp_path / "d", variant="main_only", seed=1, config={"algo.group_size": 4})
    capsys.readouterr()
    assert run_inprocess(plots, ["plot", str(tmp_path), "--strict", "--out",
                                 str(tmp_path / "p")]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)
    assert "algo.align_target" in err[0] and "algo.group_size" in err[1]
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").glob("*.png"))
    assert run_inprocess(report, ["report", str(tmp_path), "--strict"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert not (tmp_path / "REPORT.md").exists()


def test_stage2_init_from_its_own_seeds_stage1_run_is_still_a_seed(tmp_path):
    for s in (0, 1):
        write_run(tmp_path / "stage1" / f"s{s}", seed=s)
        # rule 1: the path's last component is s<seed>
        write_run(tmp_path / "stage2" / f"s{s}", seed=s, variant="main_only",
                  config={"roles.sub.init_from": str(tmp_path / "stage1" / f"s{s}")})  # fmt: skip
        # rule 2: the path holds a config.toml with the run's own seed
        write_run(tmp_path / "other" / f"seed{s}", seed=s)
        write_run(tmp_path / "stage2b" / f"s{s}", seed=s, variant="no_alignment",
                  config={"roles.sub.init_from": str(tmp_path / "other" / f"seed{s}")})  # fmt: skip
    # a seed-1 run starting from seed 0's stage-1 run is not seed-derived: a separate line
    write_run(tmp_path / "stage3" / "s0", seed=0, variant="gated_reward",
              config={"roles.sub.init_from": str(tmp_path / "stage1" / "s0")})  # fmt: skip
    write_run(tmp_path / "stage3" / "s1", seed=1, variant="gated_reward",
              config={"roles.sub.init_from": str(tmp_path / "stage1" / "s0")})  # fmt: skip
    labels = _labels(tmp_path)
    assert labels["main_only"] == 2 and labels["no_alignment"] == 2
    assert sorted(k for k in labels if k.startswith("gated_reward")) == [
        "gated_reward (init=stage1)",  # each seed from its own stage-1 run
        "gated_reward (init=stage1/s0)",  # every seed from seed 0's run
    ]


def test_report_names_lines_and_compares_with_the_baseline_of_the_same_config(tmp_path, capsys):
    for s in (0, 1):
        write_run(tmp_path / "d4" / f"s{s}", seed=s, success={3: 0.5 + 0.25 * s})
        write_run(tmp_path / "d8" / f"s{s}", seed=s, success={3: 0.75},
                  config={"algo.align_target": 8})  # fmt: skip
        write_run(tmp_path / "mo" / f"s{s}", variant="main_only", seed=s, success={3: 0.25},
                  config={"algo.align_target": 8})  # fmt: skip
    md = write_report(tmp_path).read_text()
    err = capsys.readouterr().err
    assert err.startswith("notice:") and err.count("notice:") == 1  # once, not per figure
    assert "**Runs that are not seeds of one experiment.**" in md and "algo.align_target" in md
    assert "  - `mgrpo (D=4)`: 2 seed(s) (0, 1)" in md and "| mgrpo | D=8 | 2 |" in md
    # main_only has D=8: compared with mgrpo (D=8), 0.25 - 0.75
    assert "`main_only` vs `mgrpo (D=8)` (2 seed pairs): difference in final success -0.500" in md


def test_ablation_layout_keeps_variant_labels_and_no_config_column(tmp_path):
    for v in ("mgrpo", "main_only"):
        for s in (0, 1, 2):
            write_run(tmp_path / v / f"s{s}", variant=v, seed=s)
    runs = stats.load_runs([tmp_path])
    assert _labels(tmp_path) == {"mgrpo": 3, "main_only": 3} and notices(group_runs(runs)) == []
    csv_path, md_path = stats.write_summary(stats.summary_table(runs), tmp_path)
    assert "config" not in csv_path.read_text().splitlines()[0].split(",")
    assert "| variant | seeds |" in md_path.read_text()
