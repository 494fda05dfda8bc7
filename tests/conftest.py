"""Fixtures shared by every test folder.

`mock_server`: starts `joulebench mock-server` subprocesses (free port, stopped after the test):

    def test_x(mock_server):
        server = mock_server("--speed", "10", "--profile", "synthetic-fast")
        httpx.get(server.url + "/v1/models")

It returns a `MockServer` (url, process, log); the helper itself is tests/harness/mock/mockserver.py
(`run_mock_server`, a context manager, for module-scoped servers).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest


def _load_mockserver():
    # Test folders are not packages, so load the helper by path, under one name for everyone.
    if "mockserver" not in sys.modules:
        path = Path(__file__).parent / "harness" / "mock" / "mockserver.py"
        spec = importlib.util.spec_from_file_location("mockserver", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["mockserver"] = module
        spec.loader.exec_module(module)
    return sys.modules["mockserver"]


mockserver = _load_mockserver()


@pytest.fixture
def mock_server(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start mock servers with extra CLI args; each is stopped when the test ends."""
    with ExitStack() as stack:
        yield lambda *args, **kwargs: stack.enter_context(
            mockserver.run_mock_server(*args, log_dir=tmp_path, **kwargs)
        )
