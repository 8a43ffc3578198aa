"""Shared fixtures of the policy tests."""

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: torch's 2 OpenMP threads spin against the other busy core (40x slower on
    this 2-core machine under load), so each module runs on one thread, restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
