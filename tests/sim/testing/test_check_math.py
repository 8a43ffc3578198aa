"""``mgrpo check-math``: a table of cases; exit 0 all pass, 1 any fails, 2 bad usage."""

import argparse

import pytest

from experiments import check_math

IMPLS = "tests/sim/testing/impls.py"


def cli(argv):
    p = argparse.ArgumentParser(prog="mgrpo")
    sub = p.add_subparsers()
    check_math.add_parser(sub)
    args = p.parse_args(["check-math", *argv])
    return args.func(args)


def test_ours_passes_and_the_convention_is_named(capsys):
    assert cli(["sim.advantages:group_advantages", "--kind", "advantages"]) == 0
    out = capsys.readouterr().out
    assert "worked_one_group" in out and "-> PASSED" in out
    assert "convention: matches paper: population std, eps 1e-06" in out


def test_a_wrong_implementation_exits_1_with_the_diff(capsys):
    assert cli([f"{IMPLS}:sample_std_advantages", "--kind", "advantages"]) == 1
    out = capsys.readouterr().out
    assert "- worked_one_group: row 0: expected -1.10221, got -0.954544" in out
    assert "closest 'verl'" in out


def test_declared_convention_and_overrides(capsys):
    argv = [f"{IMPLS}:sample_std_advantages", "--kind", "advantages", "--ddof", "1"]
    assert cli(argv) == 0
    assert "ddof=1" in capsys.readouterr().out
    argv = [f"{IMPLS}:trl_advantages", "--kind", "advantages", "--convention", "trl"]
    assert cli([*argv, "--no-detect"]) == 0


def test_alignment_and_loss_kinds():
    assert cli(["sim.alignment:align", "--kind", "alignment", "--examples", "5"]) == 0
    assert cli([f"{IMPLS}:numpy_align", "--kind", "alignment", "--numpy", "--examples", "5"]) == 0
    assert cli([f"{IMPLS}:other_rollout_duplicates_align", "--kind", "alignment"]) == 1
    assert cli(["sim.loss:policy_loss", "--kind", "loss", "--eps-high", "0.3"]) == 0
    assert cli([f"{IMPLS}:one_sided_clip_loss", "--kind", "loss"]) == 1


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["no_such_module_xyz:f", "--kind", "loss"], "cannot import 'no_such_module_xyz'"),
        (["sim.advantages:nothing", "--kind", "advantages"], "has no attribute 'nothing'"),
        (["sim.advantages", "--kind", "advantages"], "must be MODULE:FUNCTION"),
        (["sim.advantages:ADV_SCALES", "--kind", "advantages"], "not a function"),
        (["missing.py:f", "--kind", "advantages"], "no such file"),
        (["sim.loss:policy_loss", "--kind", "loss", "--convention", "trl"], "do(es) not apply"),
        (["sim.loss:policy_loss", "--kind", "loss", "--agg", "sum"], "agg must be one of"),
        (["sim.loss:policy_loss", "--kind", "loss", "--numpy"], "--numpy does not apply"),
        (
            ["sim.advantages:group_advantages", "--kind", "advantages", "--convention", "x"],
            "unknown convention 'x'",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv, words, capsys):
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err


def test_argparse_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        cli(["sim.loss:policy_loss", "--kind", "gradients"])
    assert info.value.code == 2


def test_a_module_in_the_current_directory(tmp_path, monkeypatch, capsys):
    (tmp_path / "my_grpo_math.py").write_text(
        "from sim.advantages import group_advantages\n"
        "def adv(r, g):\n    return group_advantages(r, g, ddof=1, eps=1e-4, std_floor=0.0)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli(["my_grpo_math:adv", "--kind", "advantages", "--convention", "trl"]) == 0
    assert "convention: matches trl: sample std, eps 0.0001" in capsys.readouterr().out
