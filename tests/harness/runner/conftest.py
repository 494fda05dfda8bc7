"""Fixtures of the runner tests (helpers are in runner_helpers.py)."""

from __future__ import annotations

import pytest
from joulebench_testkit import run_mock_server


@pytest.fixture(scope="module")
def fast_mock(tmp_path_factory):
    """A mock that is never the bottleneck (1 ms steps, room for 4096 sequences)."""
    with run_mock_server("--profile", "synthetic-fast", log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server
