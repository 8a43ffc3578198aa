import numpy as np
import pytest

from envs.core.latency import LatencyModel


def test_latency_is_median_times_lognormal_and_no_tool_is_free():
    model = LatencyModel({"a": (2.0, 0.5)})
    med, sig = model.table(("a",))
    out = LatencyModel.sample(np.array([0, -1]), np.array([1.0, 3.0]), med, sig)
    # 2 * exp(0.5 * 1) for the call, 0 for "no tool"
    np.testing.assert_allclose(out, [2 * np.exp(0.5), 0.0])


def test_bad_latency_is_rejected():
    with pytest.raises(ValueError, match="median > 0"):
        LatencyModel({"a": (0.0, 0.1)})
