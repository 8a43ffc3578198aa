"""Rules of the one config layer (experiments/config.py) shared by train, ablate and sweep: presets,
command tables, precedence of --set over the file, variants against preset keys, role names."""

import pytest

from experiments import cli
from experiments.ablate import plan
from experiments.config import (
    ConfigError,
    find_config,
    load_config,
    read_config,
    resolve,
    resolve_layers,
)
from experiments.env_check import check_env
from experiments.sweep import load_sweep
from tests.experiments.conftest import SPECIES, TINY, set_args

BOTH_TABLES = """
steps = 5
[algo]
sub_grouping = "per_query"
[ablate]
variants = ["mgrpo", "main_only"]
bogus_ablate_key = 1
[sweep]
seeds = 2
bogus_sweep_key = 1
"""


@pytest.fixture
def both(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text(BOTH_TABLES)
    return path


# ------------------------------------------------------------------------ presets and tables
def test_preset_names_resolve_to_the_configs_folder():
    assert find_config("quick").name == "quick.toml"
    assert find_config("paper.toml").name == "paper.toml"
    with pytest.raises(ConfigError, match="does not exist; presets: .*quick"):
        load_config("no_such_preset")


def test_train_ignores_the_ablate_and_sweep_tables(both):
    # their keys are not training keys (and not checked here: each command checks its own)
    assert load_config(both).steps == 5
    # the quick preset holds an [ablate] table: `mgrpo train quick` works
    assert load_config("quick", ["steps=3"]).steps == 3


def test_each_command_reads_its_own_table_and_set_overrides_it(both):
    assert read_config(both, command="train").table == {}
    ablate = read_config(both, ["ablate.seeds=4"], command="ablate").table
    assert ablate == {"variants": ["mgrpo", "main_only"], "bogus_ablate_key": 1, "seeds": 4}
    sweep = read_config(both, ["sweep.seeds=3"], command="sweep").table
    assert sweep == {"seeds": 3, "bogus_sweep_key": 1}


def test_set_of_another_commands_table_is_an_error(both):
    with pytest.raises(ConfigError) as e:
        read_config(both, ["sweep.seeds=2", "ablate.seeds=2"], command="train")
    assert e.value.problems == [
        "--set sweep.seeds: [sweep] is read by `mgrpo sweep`, not by `mgrpo train`",
        "--set ablate.seeds: [ablate] is read by `mgrpo ablate`, not by `mgrpo train`",
    ]


def test_sweep_ignores_the_ablate_table():
    # paper_claims holds [ablate] (with env_overrides): the sweep reads the rest
    _flat, base, sw = load_sweep("paper_claims", ["steps=3"])
    assert base.steps == 3 and sw.seeds == 1
    with pytest.raises(ConfigError, match="not by `mgrpo sweep`"):
        load_sweep("paper_claims", ["ablate.seeds=2"])


# ------------------------------------------------------------------------ precedence, variants
def test_set_beats_the_file():
    assert load_config("paper", ["algo.group_size=4"]).algo.group_size == 4


def test_a_variant_on_the_command_line_replaces_the_files_variant_keys():
    # paper.toml states sub_grouping = "per_query" (the default); async_queue owns it
    cfg = load_config("paper", ["variant=async_queue"])
    assert cfg.variant == "async_queue"
    assert (cfg.algo.sub_grouping, cfg.algo.queue_lag) == ("queue_window", 1)
    assert cfg.algo.align_mode == "duplicate_drop" and cfg.steps == 400  # the rest of the file
    assert load_config("paper", ["variant=no_alignment"]).algo.align_mode == "none"


def test_a_file_value_compatible_with_the_variant_is_kept(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[algo]\nqueue_lag = 3\n")
    assert load_config(path, ["variant=async_queue"]).algo.queue_lag == 3
    path.write_text("[algo]\nqueue_lag = 0\n")  # contradicts >= 1: replaced by the default 1
    assert load_config(path, ["variant=async_queue"]).algo.queue_lag == 1
    path.write_text("[roles.sub]\nfrozen = false\n")
    assert load_config(path, ["variant=main_only"]).role("sub").frozen is True


def test_a_contradiction_stated_by_the_same_source_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('variant = "no_alignment"\n[algo]\nalign_mode = "mask"\n')
    msg = "algo.align_mode = 'mask' contradicts variant 'no_alignment', which sets 'none'"
    with pytest.raises(ConfigError, match=msg):
        load_config(path)
    with pytest.raises(ConfigError, match=msg):
        load_config(None, ["variant=no_alignment", 'algo.align_mode="mask"'])


def test_a_command_line_key_contradicting_the_files_variant_is_an_error(tmp_path):
    # the user states the key; the file's variant is in effect: both stated, no silent winner
    path = tmp_path / "c.toml"
    path.write_text('variant = "no_alignment"\n')
    with pytest.raises(ConfigError, match="contradicts variant 'no_alignment'"):
        load_config(path, ['algo.align_mode="mask"'])


def test_resolved_keys_resolve_alone_to_the_same_config():
    # what ablate workers and stored studies get: no layers needed any more
    flat, cfg = resolve_layers({"algo.sub_grouping": "per_query"}, {"variant": "async_queue"})
    assert flat["algo.sub_grouping"] == "queue_window" and resolve(flat) == cfg


def test_ablate_grid_variants_count_as_command_line(tmp_path):
    runs = plan("paper", [], tmp_path, variants=["async_queue", "mgrpo"], seeds=1)
    cfgs = {r.variant: resolve(r.flat) for r in runs}
    assert cfgs["async_queue"].algo.sub_grouping == "queue_window"
    assert cfgs["mgrpo"].algo.sub_grouping == "per_query"
    with pytest.raises(ConfigError, match="--set variant: the grid sets each run's variant"):
        plan("paper", ["variant=async_queue"], tmp_path, variants=["mgrpo"], seeds=1)


def test_ablate_set_beats_the_files_env_overrides(tmp_path):
    # paper_claims: [ablate.env_overrides."mgrpo/InvasiveSpecies-v0"] steps = 150
    runs = plan("paper_claims", ["steps=3"], tmp_path, variants=["mgrpo"], seeds=1)
    assert {resolve(r.flat).steps for r in runs} == {3}
    runs = plan("paper_claims", [], tmp_path, variants=["mgrpo"], seeds=1)
    assert {r.env_id: resolve(r.flat).steps for r in runs}[SPECIES] == 150


# ------------------------------------------------------------------------ role names
def test_a_mistyped_role_name_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        check_env(resolve({"roles.bogus.lr": 0.1, "roles.sub.lr": 0.1}))
    assert e.value.problems == [
        "roles.bogus: unknown role 'bogus'; roles of mgrpo/RubiksLogic-v0 with these env "
        "settings: main, sub"
    ]


def test_role_names_follow_the_env_settings():
    check_env(resolve({"env.reasoner": "subagent", "roles.math.lr": 0.1, "roles.main.lr": 0.1}))
    with pytest.raises(ConfigError, match="settings: main$"):  # flat env: main only
        check_env(resolve({"variant": "single_agent", "roles.sub.lr": 0.1}))


def test_train_with_an_unknown_role_exits_2_with_one_line(tmp_path, capsys):
    argv = ["train", "--quiet", "--out", str(tmp_path), "--set", "roles.bogus.frozen=true"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: invalid config:",
        "  roles.bogus: unknown role 'bogus'; roles of mgrpo/RubiksLogic-v0 with these env "
        "settings: main, sub",
    ]
    assert not (tmp_path / "config.toml").exists()


# ------------------------------------------------------------------------ the commands
@pytest.mark.parametrize(
    "argv",
    [["quick", "--set", "steps=1"], ["paper", "--set", "variant=async_queue", "--set", "steps=1"]],
)
def test_presets_train_with_a_variant_and_other_commands_tables(tmp_path, argv):
    tiny = {k: v for k, v in TINY.items() if k != "steps"} | {"eval.oracle_episodes": 0}
    assert cli.main(["train", *argv, "--quiet", "--out", str(tmp_path), *set_args(tiny)]) == 0
    assert (tmp_path / "metrics.jsonl").is_file()
