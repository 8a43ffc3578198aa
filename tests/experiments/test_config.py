"""Rules of experiments/config.py: TOML + --set, one message per problem, variants."""

import tomllib

import pytest

from experiments.config import ConfigError, dump_toml, load_config, parse_overrides, resolve
from sim.config import VARIANTS


def test_defaults_are_the_paper_settings():
    cfg = resolve({})
    assert (cfg.algo.group_size, cfg.algo.align_target) == (8, 8)
    assert cfg.reward.alpha == (0.1, 0.9) and cfg.reward.beta == (0.1, 0.4, 0.5)
    assert (cfg.loss.eps_low, cfg.loss.eps_high) == (0.2, 0.28)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        resolve(
            {
                "algo.group_size": 1,
                "algo.align_target": 0,
                "optim.lr": 0.0,
                "variant": "nope",
            }
        )
    assert e.value.problems == ["variant = 'nope' is invalid; allowed: " + ", ".join(VARIANTS)]
    with pytest.raises(ConfigError) as e:
        resolve(
            {
                "algo.group_size": 1,
                "algo.align_target": 0,
                "optim.lr": 0.0,
                "reward.beta": [0.1, -0.4, 0.5],
                "algo.typo": 3,
            }
        )
    msgs = "\n".join(e.value.problems)
    assert len(e.value.problems) == 5
    assert "algo.group_size = 1 is invalid; allowed: an integer >= 2" in msgs
    assert "algo.align_target = 0 is invalid; allowed: an integer >= 1" in msgs
    assert "optim.lr = 0.0 is invalid; allowed: a finite number > 0.0" in msgs
    assert "reward.beta = -0.4 is invalid" in msgs
    assert "unknown key 'algo.typo'; allowed: algo.queries_per_step" in msgs


def test_a_key_contradicting_the_variant_is_an_error():
    with pytest.raises(
        ConfigError,
        match="algo.align_mode = 'mask' contradicts variant 'no_alignment', which sets 'none'",
    ):
        resolve({"variant": "no_alignment", "algo.align_mode": "mask"})
    with pytest.raises(
        ConfigError, match="roles.sub.frozen = False contradicts variant 'main_only'"
    ):
        resolve({"variant": "main_only", "roles.sub.frozen": False})
    with pytest.raises(ConfigError, match="algo.queue_lag = 0 contradicts variant 'async_queue'"):
        resolve({"variant": "async_queue", "algo.queue_lag": 0})
    assert resolve({"variant": "async_queue", "algo.queue_lag": 3}).algo.queue_lag == 3


def test_variants_set_their_keys():
    assert resolve({"variant": "no_alignment"}).algo.align_mode == "none"
    assert resolve({"variant": "gated_reward"}).reward.form == "gated"
    assert resolve({"variant": "single_agent"}).env.kwargs["flat"] is True
    assert resolve({"variant": "shared_policy"}).policy.shared is True
    q = resolve({"variant": "async_queue"}).algo
    assert (q.sub_grouping, q.queue_lag) == ("queue_window", 1)


def test_set_overrides_parse_toml_values():
    assert parse_overrides(
        ["a.b=4", "c.d=0.5", 'e.f="x"', "g.h=true", "i.j=[1, 2]", "k.l=raw"]
    ) == {"a.b": 4, "c.d": 0.5, "e.f": "x", "g.h": True, "i.j": [1, 2], "k.l": "raw"}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["algo.group_size"])


def test_toml_file_roles_and_round_trip(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        'steps = 5\n[env]\npreset = "heavy"\nreasoner = "subagent"\n'
        "[roles.math]\nlr = 0.01\n[roles.sub]\nfrozen = true\n"
    )
    cfg = load_config(p, ["algo.group_size=4"])
    assert cfg.steps == 5 and cfg.env.preset == "heavy" and cfg.algo.group_size == 4
    assert cfg.env.kwargs == {"reasoner": "subagent"}
    assert cfg.role("math").lr == 0.01 and cfg.role("sub").frozen  # lr of a frozen role: refused
    again = tmp_path / "again.toml"
    again.write_text(dump_toml(cfg))
    assert load_config(again) == cfg
    assert tomllib.loads(dump_toml(cfg))["roles"]["sub"]["frozen"] is True


def test_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
