"""Rules of sim/records.py: the trajectory contract's arrays, row selection and serialisation."""

import numpy as np
import pytest

from sim.records import RECORDS_VERSION, Trajectories


def _traj(lengths=(2, 1, 3), role="sub") -> Trajectories:
    lengths = np.array(lengths)
    s = int(lengths.sum())
    rng = np.random.default_rng(0)
    return Trajectories.from_steps(
        role,
        {"rollout": [0, 0, 3], "invocation": [0, 1, 0], "expert": [1.0, 0.5, 0.0]},
        lengths,
        {"x": rng.random((s, 4)).astype(np.float32), "action_mask": np.ones((s, 5), np.int8)},
        rng.integers(0, 3, (s, 2)),
        rng.random(s),
        np.arange(s),
        {"tokens": np.arange(10), "tokens_offsets": np.array([0, 4, 10])},
    )


def test_offsets_cut_the_steps_by_row():
    t = _traj()
    # lengths 2, 1, 3 -> offsets 0, 2, 3, 6
    assert t.offsets.tolist() == [0, 2, 3, 6] and t.num_rows == 3 and t.num_steps == 6
    row, pos = t.step_rows()
    assert row.tolist() == [0, 0, 1, 2, 2, 2] and pos.tolist() == [0, 1, 0, 0, 1, 2]
    assert t.format_ok.tolist() == [0.0, 0.0, 0.0]  # per-row fields not given default to 0


def test_select_carries_each_rows_steps_and_allows_repeats():
    t = _traj()
    s = t.select(np.array([2, 0, 2]))
    assert s.lengths.tolist() == [3, 2, 3]
    assert s.rollout.tolist() == [3, 0, 3]
    # row 2's steps are 3..5, row 0's 0..1
    assert s.handle.tolist() == [3, 4, 5, 0, 1, 3, 4, 5]
    np.testing.assert_array_equal(s.obs["x"][3:5], t.obs["x"][0:2])


def test_round_trip_through_arrays_and_bytes_is_exact():
    t = _traj()
    assert Trajectories.from_arrays(t.to_arrays()).equals(t)
    assert Trajectories.from_bytes(t.to_bytes()).equals(t)
    assert t.to_arrays()["version_"] == RECORDS_VERSION


def test_another_layout_version_is_refused():
    arrays = _traj().to_arrays()
    arrays["version_"] = np.array(RECORDS_VERSION + 1)
    with pytest.raises(ValueError, match="layout version"):
        Trajectories.from_arrays(arrays)


def test_inconsistent_arrays_name_the_role_and_field():
    t = _traj()
    with pytest.raises(ValueError, match="sub trajectories: logp has 5 steps, offsets say 6"):
        Trajectories(**{**t.__dict__, "logp": t.logp[:5]})
    with pytest.raises(ValueError, match="sub trajectories: expert has shape"):
        Trajectories(**{**t.__dict__, "expert": t.expert[:2]})


def test_empty_keeps_field_shapes():
    e = Trajectories.empty("sub", {"x": ((4,), np.float32)}, n_comp=2)
    assert len(e) == 0 and e.actions.shape == (0, 2) and e.obs["x"].shape == (0, 4)
    assert Trajectories.from_bytes(e.to_bytes()).equals(e)
