"""Fixtures shared by every test folder, and the loading of the shared helper module.

tests/joulebench_testkit.py (free ports, `joulebench` subprocesses, the mock server, Prometheus) is
loaded here by path under its own name, so every test module imports it the same way:

    from joulebench_testkit import run_mock_server, free_port

`mock_server`: starts `joulebench mock-server` subprocesses (free port, stopped after the test):

    def test_x(mock_server):
        server = mock_server("--speed", "10", "--profile", "synthetic-fast")
        httpx.get(server.url + "/v1/models")

It returns a `ServerProcess` (url, process, log); `run_mock_server`, a context manager, serves
module-scoped servers.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType

import pytest

TESTKIT = "joulebench_testkit"


def _load_testkit() -> ModuleType:
    # Test folders are not packages (and each has its own conftest.py), so load the helper by path,
    # once, under a name no test folder's module can shadow.
    if TESTKIT not in sys.modules:
        spec = importlib.util.spec_from_file_location(TESTKIT, Path(__file__).parent / f"{TESTKIT}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[TESTKIT] = module
        spec.loader.exec_module(module)
    return sys.modules[TESTKIT]


testkit = _load_testkit()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--alone",
        choices=("with-others", "skip", "only"),
        default="with-others",
        help="tests marked `alone`: run them with the others (default), leave them out, or run only them "
        "(scripts/test.sh runs the others on two workers, then these by themselves); composes with -m and -k",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mode = config.getoption("--alone")
    if mode == "with-others":
        return
    keep = [item for item in items if (item.get_closest_marker("alone") is not None) == (mode == "only")]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture
def mock_server(tmp_path: Path) -> Iterator[Callable[..., object]]:
    """Start mock servers with extra CLI args; each is stopped when the test ends."""
    with ExitStack() as stack:
        yield lambda *args, **kwargs: stack.enter_context(
            testkit.run_mock_server(*args, log_dir=tmp_path, **kwargs)
        )
