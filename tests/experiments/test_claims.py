"""experiments.claims: each claim's verdict from paired seeds (supported, contradicted, not
significant, not measured) on synthetic run dirs."""

from __future__ import annotations

import json

import pytest

from experiments import stats
from experiments.claims import claims_table, format_claims, write_claims
from tests.experiments.conftest import write_run

SPECIES, RUBIKS = "mgrpo/InvasiveSpecies-v0", "mgrpo/RubiksLogic-v0"


def _grid(root, n_seeds: int, mgrpo: float, main_only: float, **extra) -> list:
    for s in range(n_seeds):
        write_run(root / "mgrpo" / f"s{s}", seed=s, success={3: mgrpo - 0.01 * s}, **extra)
        write_run(root / "main_only" / f"s{s}", variant="main_only", seed=s,
                  success={3: main_only + 0.01 * s}, **extra)  # fmt: skip
    return stats.load_runs([root])


def _row(rows, claim: str, env: str = SPECIES) -> dict:
    (row,) = [r for r in rows if r["claim"] == claim and r["env"] == env]
    return row


def test_seven_seeds_all_better_is_supported(tmp_path):
    rows = claims_table(_grid(tmp_path, 7, mgrpo=0.9, main_only=0.2))
    r = _row(rows, "cotrain>main")
    # all 7 differences positive: p = 2 / 2**7; Holm over the 2 tested claims of the env
    # (co-training and data: the data claim's differences are all 0, p = 1)
    assert r["n_pairs"] == 7 and r["p_value"] == pytest.approx(1 / 64)
    assert r["p_holm"] == pytest.approx(2 / 64) and r["verdict"] == "supported"
    assert r["effect"] == pytest.approx(0.7 - 0.02 * 3)  # mean of 0.7 - 0.02 s, s = 0..6
    assert _row(rows, "data>main")["verdict"] == "not significant"


def test_seven_seeds_all_worse_is_contradicted(tmp_path):
    r = _row(claims_table(_grid(tmp_path, 7, mgrpo=0.2, main_only=0.9)), "cotrain>main")
    assert r["effect"] < 0 and r["verdict"] == "contradicted"


def test_three_seeds_cannot_be_significant_and_say_so(tmp_path):
    r = _row(claims_table(_grid(tmp_path, 3, mgrpo=0.9, main_only=0.2)), "cotrain>main")
    assert r["p_value"] == 0.25 and r["verdict"] == "not significant"
    assert "3 pairs cannot give p < 0.05" in r["note"]


def test_claims_without_their_runs_are_not_measured(tmp_path):
    rows = claims_table(_grid(tmp_path, 2, mgrpo=0.9, main_only=0.2))
    sync = _row(rows, "sync>async")
    assert sync["verdict"] == "not measured in these runs" and "`async_queue`" in sync["note"]
    reasoner = _row(rows, "reasoner", RUBIKS)  # a claim about an env without runs
    assert reasoner["note"] == f"no runs of {RUBIKS}"
    precise = _row(rows, "precise")  # constraints kept: not logged by these runs
    assert precise["verdict"] == "not measured in these runs" and "undefined" in precise["note"]


def test_balance_claim_pairs_the_paper_split_with_other_splits(tmp_path):
    for s in range(2):
        write_run(tmp_path / "w" / f"s{s}", seed=s, success={3: 0.9})
        write_run(tmp_path / "w3" / f"s{s}", seed=s, success={3: 0.5},
                  config={"reward.local_share": 0.3})  # fmt: skip
    r = _row(claims_table(stats.load_runs([tmp_path])), "balance")
    assert (r["a"], r["b"]) == ("mgrpo (w=(unset))", "mgrpo (w=0.3)")
    assert r["effect"] == pytest.approx(0.4) and r["n_pairs"] == 2


def test_claims_files(tmp_path):
    rows = claims_table(_grid(tmp_path / "runs", 2, mgrpo=0.9, main_only=0.2))
    md, js = write_claims(rows, tmp_path)
    assert "| co-training beats training the main agent alone | paper |" in md.read_text()
    data = json.loads(js.read_text())  # NaN written as null: valid JSON
    assert len(data) == len(rows) and data[0]["a_seeds"] == [0.9, 0.89]
    assert "Smallest raw p the design allows (2 pairs: 0.5)" in format_claims(rows)
