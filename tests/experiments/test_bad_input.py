"""Generated bad input (issue 15, item 1): every case exits 2 with no traceback, naming the key,
flag or file at fault, before any work.

Cases are generated per config key (types, ranges, choices) and written by hand for the rest
(env arguments, memory, keys the run ignores, files, output paths, resume, ablate, report, plot,
sweep). All of them call ``experiments.cli.main(argv)`` in this process, with the training,
ablation and sweep workers replaced by a stub that fails the test if validation let a case
through; a few also go through the real ``mgrpo`` console script.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiments import cli
from experiments.config import dump_toml, resolve
from tests.experiments.conftest import TINY, set_args, write_run


@dataclass(frozen=True)
class Case:
    category: str
    argv: tuple[str, ...]
    needle: str
    """must appear in stderr (the key, flag or file named)"""

    @property
    def id(self) -> str:
        return f"{self.category}:{' '.join(self.argv)}"[:120]


# ------------------------------------------------------------------ generated per key
INT_KEYS = {
    "seed": (0, 2**32 - 1),
    "steps": (1, 10_000_000),
    "threads": (1, 1024),
    "checkpoint_every": (1, 10_000_000),
    "algo.queries_per_step": (1, 65_536),
    "algo.group_size": (2, 1024),
    "algo.align_target": (1, 1024),
    "optim.mu": (1, 1000),
    "optim.minibatches": (1, 4096),
    "eval.every": (1, 10_000_000),
    "eval.episodes": (1, 65_536),
    "eval.oracle_episodes": (0, 100_000),
    "policy.hidden": (1, 4096),
    "roles.sub.align_target": (1, 1024),
}
FLOAT_KEYS = {
    "adv.eps": (0.0, 1.0),
    "adv.std_floor": (0.0, 1.0),
    "reward.local_share": (0.0, 1.0),
    "loss.eps_low": (0.0, 0.999),
    "loss.eps_high": (0.0, 10.0),
    "loss.kl_coef": (0.0, 100.0),
    "loss.entropy_coef": (0.0, 100.0),
    "optim.lr": (0.0, 10.0),
    "optim.max_grad_norm": (0.0, 1e12),
    "optim.param_norm_limit": (0.0, 1e12),
    "optim.grad_norm_limit": (0.0, 1e12),
    "roles.sub.lr": (0.0, 10.0),
}
CHOICE_KEYS = {
    "variant": '"mgrpo"',
    "env.preset": '"default"',
    "algo.align_mode": '"mask"',
    "algo.sub_grouping": '"per_query"',
    "adv.scale": '"group"',
    "adv.ddof": "0",
    "reward.form": '"linear"',
    "loss.agg": '"token-mean"',
    "loss.ratio_level": '"token"',
    "policy.kind": '"mlp"',
    "policy.shared": "false",
    "roles.sub.frozen": "false",
}


def _train(*sets: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("train", "--quiet", "--out", "OUT", *set_args(list(sets)), *extra)


def generated() -> list[Case]:
    out = []
    for key, (lo, hi) in INT_KEYS.items():
        for v in (lo - 1, hi + 1, 10**12, "1e9", "2.5", "true", '"8"', "[4]"):
            out.append(Case("int", _train(f"{key}={v}"), key))
    for key, (_lo, hi) in FLOAT_KEYS.items():
        for v in (-1.0, hi * 2 + 1, "nan", "inf", "true", '"0.1"', "[0.1]"):
            out.append(Case("float", _train(f"{key}={v}"), key))
    for key, good in CHOICE_KEYS.items():
        for v in ('"bogus"', f"[{good}]", "2" if good[0] == '"' else '"x"'):
            out.append(Case("choice", _train(f"{key}={v}"), key))
        if good in ("0", "false"):
            out.append(Case("choice", _train(f"{key}={'true' if good == '0' else '1'}"), key))
    return out


# ------------------------------------------------------------------ written by hand
SPECIES = 'env.id="mgrpo/InvasiveSpecies-v0"'
HAND = [
    # the findings
    Case("type", _train("variant=['mgrpo']"), "variant"),
    Case("type", _train("adv.ddof=true"), "adv.ddof"),
    Case("type", _train("reward.alpha=[0.1]"), "reward.alpha"),
    Case("type", _train('reward.beta="x"'), "reward.beta"),
    Case("type", _train("reward.beta=[0.1, 0.4, 500]"), "reward.beta"),
    Case("range", _train(f"seed={2**63}"), "seed"),
    Case("range", _train(f"seed={2**64}"), "seed"),
    Case("range", _train("steps=1000000000000"), "steps"),
    Case("range", _train("optim.mu=1000000000"), "optim.mu"),
    Case("size", _train("algo.queries_per_step=1e9"), "algo.queries_per_step"),
    Case("size", _train("policy.hidden=100000"), "policy.hidden"),
    Case("size", _train("algo.queries_per_step=65536", "algo.group_size=32"), "group_size"),
    Case(
        "size",
        _train("algo.queries_per_step=65536", "algo.group_size=16", "env.max_turns=1000"),
        "algo.queries_per_step",
    ),
    Case(
        "size",
        _train(
            "algo.queries_per_step=8192",
            "eval.episodes=65536",
            "policy.hidden=4096",
            "algo.group_size=128",
        ),
        "policy.hidden",
    ),
    # env arguments, validated by the env and named env.<key>
    Case("env", _train('env.id="CartPole-v1"'), "env.id"),
    Case("env", _train('env.id="mgrpo/Nope-v0"'), "env.id"),
    Case("env", _train("env.id=3"), "env.id"),
    Case("env", _train("env.max_turns=1e7"), "env.max_turns"),
    Case("env", _train("env.max_turns=10000000"), "env.max_turns"),
    Case("env", _train("env.max_turns=9.5"), "env.max_turns"),
    Case("env", _train(SPECIES, "env.max_turns=9.5"), "env.max_turns"),
    Case("env", _train('env.max_turns="x"'), "env.max_turns"),
    Case("env", _train("env.max_turns=1"), "env.max_turns"),
    Case("env", _train("env.bogus=3"), "env.bogus"),
    Case("env", _train("env.flat=1"), "env.flat"),
    Case("env", _train('env.reasoner="bogus"'), "env.reasoner"),
    Case("env", _train(SPECIES, "env.top_k=9"), "env.top_k"),
    Case("env", _train(SPECIES, "env.fail_prob=nan"), "env.fail_prob"),
    Case("env", _train("env.fail_prob=1.5"), "env.fail_prob"),
    # keys and roles
    Case("key", _train("algo.typo=3"), "algo.typo"),
    Case("key", _train("foo=3"), "foo"),
    Case("key", _train("roles.sub.typo=3"), "roles.sub.typo"),
    Case("key", _train("a.b.c.d=1"), "a.b.c.d"),
    Case("key", _train("roles.bogus.lr=0.1"), "roles.bogus"),
    Case("key", _train("variant=single_agent", "roles.sub.lr=0.1"), "roles.sub"),
    Case("key", ("train", "--quiet", "--out", "OUT", "--set", "algo.group_size"), "--set"),
    Case("key", _train("roles.sub.init_from=3"), "roles.sub.init_from"),
    Case("key", _train('roles.sub.init_from="NOWHERE"'), "roles.sub.init_from"),
    Case("key", _train('roles.sub.init_from=""'), "roles.sub.init_from"),
    # keys the run ignores, runs that train nothing
    Case("unused", _train("variant=main_only", "roles.main.frozen=true"), "roles.main.frozen"),
    Case("unused", _train("roles.main.frozen=true", "roles.sub.frozen=true"), "frozen"),
    Case("unused", _train("variant=single_agent", "roles.main.frozen=true"), "roles.main.frozen"),
    Case("unused", _train("roles.sub.frozen=true", "roles.sub.lr=0.1"), "roles.sub.lr"),
    Case("unused", _train("variant=main_only", "roles.sub.lr=0.1"), "roles.sub.lr"),
    Case("unused", _train("variant=shared_policy", "roles.main.lr=0.1"), "roles.main.lr"),
    Case("unused", _train("algo.queue_lag=2"), "algo.queue_lag"),
    Case("unused", _train("variant=no_alignment", "algo.queue_lag=1"), "algo.queue_lag"),
    Case("unused", _train("variant=async_queue", "algo.queue_lag=0"), "algo.queue_lag"),
    Case("unused", _train("variant=no_alignment", 'algo.align_mode="mask"'), "algo.align_mode"),
    # files
    Case("file", ("train", "FILES/latin1.toml", "--out", "OUT"), "latin1.toml"),
    Case("file", ("train", "FILES/broken.toml", "--out", "OUT"), "broken.toml"),
    Case("file", ("train", "FILES/nope.toml", "--out", "OUT"), "nope.toml"),
    Case("file", ("train", "FILES", "--out", "OUT"), "is a directory"),
    Case("file", ("train", "FILES/typo.toml", "--out", "OUT"), "algo.typo"),
    Case("file", ("train", "FILES/nested.toml", "--out", "OUT"), "roles.sub"),
    # output paths
    Case("out", ("train", "--out", "/"), "--out"),
    Case("out", ("train", "--out", "FILES/typo.toml"), "--out"),
    Case("out", ("train", "--out", "FILES/typo.toml/sub"), "--out"),
    Case("out", ("train", "--out", "/proc/mgrpo-nope/run"), "--out"),
    Case("out", ("train", "--out", "FILES/" + "x" * 300), "--out"),
    Case("out", ("train", "--out", "FILES/" + "/".join(["y" * 200] * 25)), "--out"),
    Case("out", ("ablate", "--seeds", "1", "--out", "/"), "--out"),
    Case("out", ("sweep", "--trials", "1", "--study", "s", "--out", "FILES/typo.toml"), "--out"),
    Case("out", ("plot", "RUNS", "--out", "FILES/typo.toml"), "--out"),
    Case("out", ("report", "RUNS", "--out", "/proc/mgrpo-nope/R.md"), "--out"),
    Case("out", ("report", "RUNS", "--out", "FILES"), "--out"),
    # resume
    Case("resume", ("train", "--resume"), "--out"),
    Case("resume", ("train", "--resume", "--out", "FILES/nowhere"), "nowhere"),
    Case("resume", ("train", "--resume", "--out", "FILES"), "config.toml"),
    Case("resume", ("train", "--resume", "--quiet", "--out", "RESUME/empty"), "checkpoint.pt"),
    Case("resume", ("train", "--resume", "--quiet", "--out", "RESUME/corrupt"), "checkpoint.pt"),
    Case("resume", ("train", "--resume", "--quiet", "--out", "RESUME/foreign"), "checkpoint.pt"),
    Case("resume", ("train", "--resume", "--quiet", "--out", "RESUME/mismatch"), "variant"),
    Case(
        "resume",
        ("train", "--resume", "--out", "RESUME/ok", "--set", "algo.group_size=3"),
        "algo.group_size",
    ),
    Case(
        "resume",
        ("train", "--resume", "--out", "RESUME/ok", "--set", "variant=main_only"),
        "variant",
    ),
    Case(
        "resume",
        ("train", "--resume", "--out", "RESUME/ok", "--set", "env.max_turns=5"),
        "env.max_turns",
    ),
    Case("resume", ("train", "--resume", "--out", "RESUME/ok", "--set", "steps=0"), "steps"),
    # ablate
    Case("ablate", ("ablate", "FILES/ab_seeds.toml", "--out", "OUT"), "seeds"),
    Case("ablate", ("ablate", "FILES/ab_variants.toml", "--out", "OUT"), "variants"),
    Case("ablate", ("ablate", "FILES/ab_many.toml", "--out", "OUT"), "seeds"),
    Case("ablate", ("ablate", "FILES/ab_envs.toml", "--out", "OUT"), "envs"),
    Case("ablate", ("ablate", "FILES/ab_over.toml", "--out", "OUT"), "env_overrides"),
    Case("ablate", ("ablate", "FILES/ab_key.toml", "--out", "OUT"), "bogus"),
    Case("ablate", ("ablate", "--variants", "mgrpo,bogus", "--out", "OUT"), "bogus"),
    Case("ablate", ("ablate", "--seeds", "0", "--out", "OUT"), "seeds"),
    Case("ablate", ("ablate", "--seeds", "1000000", "--out", "OUT"), "seeds"),
    Case("ablate", ("ablate", "--workers", "0", "--out", "OUT"), "--workers"),
    Case("ablate", ("ablate", "--workers", "100000", "--out", "OUT"), "--workers"),
    Case("ablate", ("ablate", "--seeds", "1", "--set", "variant=mgrpo", "--out", "OUT"), "variant"),
    Case("ablate", ("ablate", "--set", "ablate.seeds=1.5", "--out", "OUT"), "seeds"),
    Case("ablate", ("ablate", "--seeds", "1", "--set", "sweep.seeds=2", "--out", "OUT"), "sweep"),
    Case("ablate", ("ablate", "--seeds", "1", "--envs", "CartPole-v1", "--out", "OUT"), "env.id"),
    Case(
        "ablate",
        (
            "ablate",
            "--seeds",
            "1",
            "--variants",
            "main_only",
            "--set",
            "roles.sub.lr=0.1",
            "--out",
            "OUT",
        ),
        "roles.sub.lr",
    ),
    Case(
        "ablate", ("ablate", "--seeds", "1", "--set", "adv.ddof=true", "--out", "OUT"), "adv.ddof"
    ),
    # report and plot
    Case("report", ("report", "RUNS", "--baseline", "bogus"), "--baseline"),
    Case("report", ("report", "FILES/nowhere"), "nowhere"),
    Case("plot", ("plot", "--storage", "STUDY", "--study", "nosuch"), "nosuch"),
    Case("plot", ("plot", "--storage", "FILES/nowhere.db"), "nowhere.db"),
    Case("plot", ("plot", "FILES/nowhere"), "nowhere"),
    Case("plot", ("plot",), "RUN_DIR"),
    Case("plot", ("plot", "RUNS", "--study", "x"), "--storage"),
    # sweep
    Case("sweep", ("sweep", "--trials", "0", "--study", "s", "--out", "OUT"), "--trials"),
    Case("sweep", ("sweep", "--trials", "10000000", "--study", "s", "--out", "OUT"), "--trials"),
    Case(
        "sweep",
        ("sweep", "--trials", "2", "--study", "s", "--workers", "0", "--out", "OUT"),
        "--workers",
    ),
    Case(
        "sweep",
        ("sweep", "--trials", "2", "--study", "s", "--seeds", "0", "--out", "OUT"),
        "sweep.seeds",
    ),
    Case(
        "sweep",
        ("sweep", "--trials", "2", "--study", "s", "--set", "sweep.seeds=1.5", "--out", "OUT"),
        "sweep.seeds",
    ),
    Case(
        "sweep",
        (
            "sweep",
            "--trials",
            "2",
            "--study",
            "s",
            "--set",
            "sweep.align_target=[0, 5]",
            "--out",
            "OUT",
        ),
        "sweep.align_target",
    ),
    Case(
        "sweep",
        ("sweep", "--trials", "2", "--study", "s", "--set", "sweep.bogus=1", "--out", "OUT"),
        "bogus",
    ),
    Case(
        "sweep",
        ("sweep", "--trials", "2", "--study", "s", "--set", "algo.group_size=1", "--out", "OUT"),
        "algo.group_size",
    ),
    # argparse usage errors (exit 2 from argparse)
    Case("usage", ("train", "--bogus"), "--bogus"),
    Case("usage", ("nosuch",), "nosuch"),
    Case("usage", ("ablate", "--workers", "x"), "--workers"),
    Case("usage", ("check-math", "nomodule:fn", "--kind", "advantages"), "nomodule"),
]
CASES = generated() + HAND


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """The files and directories the cases name (FILES, RUNS, RESUME, STUDY)."""
    root = tmp_path_factory.mktemp("bad")
    files = root / "files"
    files.mkdir()
    (files / "latin1.toml").write_bytes("steps = 5 # caf\xe9\n".encode("latin-1"))
    (files / "broken.toml").write_text("steps = = 3\n")
    (files / "typo.toml").write_text("[algo]\ntypo = 3\n")
    (files / "nested.toml").write_text("[roles]\nsub = 3\n")
    (files / "ab_seeds.toml").write_text("[ablate]\nseeds = 1.5\n")
    (files / "ab_variants.toml").write_text('[ablate]\nvariants = "mgrpo"\n')
    (files / "ab_many.toml").write_text("[ablate]\nseeds = 1000000\n")
    (files / "ab_envs.toml").write_text('[ablate]\nenvs = "mgrpo/RubiksLogic-v0"\n')
    (files / "ab_over.toml").write_text("[ablate]\nenv_overrides = 3\n")
    (files / "ab_key.toml").write_text("[ablate]\nbogus = 3\n")
    runs = root / "runs"
    write_run(runs / "mgrpo" / "s0", variant="mgrpo")
    write_run(runs / "main_only" / "s0", variant="main_only")
    resume = root / "resume"
    config = dump_toml(resolve({**TINY, "env.id": "mgrpo/InvasiveSpecies-v0"}))
    for name in ("ok", "empty", "corrupt", "foreign", "mismatch"):
        (resume / name).mkdir(parents=True)
        (resume / name / "config.toml").write_text(config)
    import torch

    (resume / "empty" / "checkpoint.pt").write_bytes(b"")
    (resume / "corrupt" / "checkpoint.pt").write_bytes(os.urandom(256))
    torch.save(torch.zeros(3), resume / "foreign" / "checkpoint.pt")
    fake = {k: {} for k in ("policies", "optims", "generators")}
    fake |= {"step": 1, "config_variant": "main_only", "policy_kind": "mlp"}
    torch.save(fake, resume / "mismatch" / "checkpoint.pt")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = root / "study.db"
    optuna.create_study(study_name="real", storage=f"sqlite:///{study}")
    return {"FILES": files, "RUNS": runs, "RESUME": resume, "STUDY": study, "OUT": root / "out"}


def _argv(case: Case, places: dict[str, Path]) -> list[str]:
    out = []
    for a in case.argv:
        for name, p in places.items():
            if a == name or a.startswith(name + "/"):
                a = str(p) + a[len(name) :]
        out.append(a)
    return out


@pytest.fixture
def no_work(monkeypatch):
    """Training, ablation and sweep workers fail the test: validation must stop every case."""
    import experiments.ablate
    import experiments.run
    import experiments.sweep.workers

    def boom(*a, **k):
        raise AssertionError("validation let a bad input through to the work")

    monkeypatch.setattr(experiments.run, "Trainer", boom)
    monkeypatch.setattr(experiments.ablate, "run_grid", boom)
    monkeypatch.setattr(experiments.sweep.workers, "run_worker", boom)
    monkeypatch.setattr(experiments.sweep.workers, "worker_main", boom)


# ------------------------------------------------------------------ the tests
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_naming_the_key(case, places, no_work, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        rc = cli.main(_argv(case, places))
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert case.needle in err, err
    assert err.startswith(("error:", "usage:")), err


def test_the_generated_cases_cover_every_category():
    cats = {}
    for c in CASES:
        cats[c.category] = cats.get(c.category, 0) + 1
    assert len(CASES) >= 300, cats
    assert {"int", "float", "choice", "env", "size", "unused", "resume", "out", "ablate"} <= set(
        cats
    )


CONSOLE = [
    ("train", "--set", "variant=['mgrpo']"),
    ("train", "--set", "adv.ddof=true"),
    ("train", "--set", f"seed={2**63}"),
    ("train", "--out", "/"),
    ("train", "--resume"),
    ("train", "FILES/latin1.toml"),
    ("train", "--set", 'env.id="CartPole-v1"'),
    ("train", "--set", "roles.bogus.lr=0.1"),
    ("ablate", "FILES/ab_variants.toml"),
    ("ablate", "FILES/ab_seeds.toml"),
]


@pytest.mark.parametrize("argv", CONSOLE, ids=[" ".join(a) for a in CONSOLE])
def test_the_console_script_exits_2_without_traceback(argv, places, tmp_path):
    script = Path(sys.executable).parent / "mgrpo"
    if not script.exists():  # the README's install always puts it there: CI must not skip
        if os.environ.get("CI") == "true":
            pytest.fail(f"no mgrpo console script at {script}: the install did not create it")
        pytest.skip("no mgrpo console script next to this python (not installed with pip)")
    full = _argv(Case("console", argv, ""), places)
    r = subprocess.run([str(script), *full], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.startswith("error:"), r.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_resume_with_a_safe_key_says_so(places, capsys, no_work):
    with pytest.raises(AssertionError, match="validation let"):  # reaches the (stubbed) work
        cli.main(
            [
                "train",
                "--resume",
                "--quiet",
                "--out",
                str(places["RESUME"] / "ok"),
                "--set",
                "steps=5",
                "--set",
                "eval.every=1",
                "--set",
                "eval.final_episodes=7",
            ]
        )
    err = capsys.readouterr().err
    assert "steps = 5 (was 3; safe to change)" in err and "eval.every = 1" in err
    assert "eval.final_episodes = 7" in err


def test_builtin_names_match_the_registries():
    from sim.config import BUILTIN_NAMES, _Registry

    for qualname, names in BUILTIN_NAMES.items():
        assert set(names) <= set(_Registry(qualname)._full()), qualname


def test_counts_for_the_report(capsys):
    """Not a check: prints the number of cases per category (``pytest -s``)."""
    cats: dict[str, int] = {}
    for c in CASES:
        cats[c.category] = cats.get(c.category, 0) + 1
    print(json.dumps({"total": len(CASES), "console": len(CONSOLE), **cats}))
