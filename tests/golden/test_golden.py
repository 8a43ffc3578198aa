"""Rule: a fixed config and seed give the recorded metrics bit for bit (time keys excepted).

Compares with the recording whose fingerprint matches this machine (tests/golden/golden.py); skips
with what differs when no recording does."""

import pytest

from tests.golden.golden import configs, fingerprint, matching, recordings, run_config

RECORDINGS = recordings()
HERE = fingerprint()
MATCH = matching(RECORDINGS, HERE)


def _differs() -> str:
    return "; ".join(
        f"{p.name}: "
        + ", ".join(f"{k} {v!r}" for k, v in r["fingerprint"].items() if HERE.get(k) != v)
        for p, r in RECORDINGS.items()
    )


@pytest.mark.parametrize("name", sorted(configs()))
def test_metrics_equal_the_goldens(tmp_path, name):
    if MATCH is None:
        pytest.skip(
            f"golden metrics were recorded on other machines ({_differs()}; here: {HERE}); "
            "record this one with python -m tests.golden.golden --add where the others pass"
        )
    recorded = RECORDINGS[MATCH]
    assert name in recorded["runs"], f"no golden for {name}: run python -m tests.golden.golden"
    got = run_config(configs()[name], tmp_path / name)
    want = recorded["runs"][name]
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys(), f"step {step}: keys differ: {set(g) ^ set(w)}"
        bad = {k: (w[k], g[k]) for k in w if g[k] != w[k]}
        assert not bad, f"step {step}: (golden, now) {bad}"
