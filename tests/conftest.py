"""Fixtures of the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets a fresh cache directory (``$MGRPO_CACHE``: the oracle reference cache),
    so no test reads or writes ``~/.cache/mgrpo-sim`` or another test's results."""
    monkeypatch.setenv("MGRPO_CACHE", str(tmp_path_factory.mktemp("mgrpo-cache")))
