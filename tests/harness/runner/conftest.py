"""Fixtures of the runner tests (helpers are in runner_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def fast_mock(tmp_path_factory):
    """A mock that is never the bottleneck (1 ms steps, room for 4096 sequences)."""
    from mockserver import run_mock_server

    with run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server
