"""Rule: a fixed config and seed give the recorded metrics bit for bit (time keys excepted).

Skips with a message when this machine's fingerprint differs from the recording machine's."""

import json

import pytest

from tests.golden.golden import GOLDEN, configs, fingerprint, run_config

RECORDED = json.loads(GOLDEN.read_text())


def _differs() -> str:
    here = fingerprint()
    diff = [
        f"{k}: recorded {v!r}, here {here.get(k)!r}"
        for k, v in RECORDED["fingerprint"].items()
        if here.get(k) != v
    ]
    return "; ".join(diff)


@pytest.mark.parametrize("name", sorted(configs()))
def test_metrics_equal_the_goldens(tmp_path, name):
    diff = _differs()
    if diff:
        pytest.skip(f"golden metrics were recorded on another machine ({diff})")
    assert name in RECORDED["runs"], f"no golden for {name}: run python -m tests.golden.golden"
    got = run_config(configs()[name], tmp_path / name)
    want = RECORDED["runs"][name]
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys(), f"step {step}: keys differ: {set(g) ^ set(w)}"
        bad = {k: (w[k], g[k]) for k in w if g[k] != w[k]}
        assert not bad, f"step {step}: (golden, now) {bad}"
