"""The pytest plugin joulebench installs (entry point `pytest11`): a `joulebench_mock` fixture, a running
`joulebench mock-server` for a test to send requests to (docs/ci.md).

    def test_my_client(joulebench_mock):
        httpx.post(joulebench_mock.url + "/v1/chat/completions", json={...})

    @pytest.mark.joulebench_mock(profile="synthetic-fast", args=["--speed", "10"])
    def test_fast(joulebench_mock): ...

    @pytest.mark.parametrize("joulebench_mock", ["synthetic-fast", "my-profile.json"], indirect=True)
    def test_each_profile(joulebench_mock): ...

A real process (this interpreter's `python -m harness mock-server --port 0`), not an in-process app:
the client under test meets the same sockets, streaming and timing as it would against a server. It
prints its URL once it accepts connections; the fixture stops it by its PID when the test ends.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MARKER = "joulebench_mock"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class MockServer:
    url: str  # http://127.0.0.1:PORT; OpenAI's API under /v1, TGI's at /generate
    pid: int
    profile: str | None  # None: the mock's default profile
    log: Path  # its stderr


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(profile=None, args=()): the profile (a built-in name or a JSON file) and extra "
        "`joulebench mock-server` flags of the joulebench_mock fixture",
    )


def _joulebench() -> list[str]:
    """The installed `joulebench` script beside this Python: `python -m harness` would put the test run's
    working folder first on the path, where a project's own `harness` package would shadow ours."""
    script = Path(sys.executable).parent / "joulebench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness"]


@pytest.fixture
def joulebench_mock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MockServer]:
    """A running `joulebench mock-server` on a free loopback port, stopped by its PID after the test."""
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    profile = getattr(request, "param", None) or options.get("profile")
    args = [
        "--port",
        "0",
        *(["--profile", str(profile)] if profile else []),
        *map(str, options.get("args", ())),
    ]
    log = tmp_path_factory.mktemp("joulebench-mock") / "mock-server.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [*_joulebench(), "mock-server", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        url = _first_line(process, time.monotonic() + START_TIMEOUT_S)
        if not url.startswith("http://"):
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"joulebench mock-server {' '.join(args)} did not start ({url or 'no URL'}):\n{tail}")
        yield MockServer(url, process.pid, profile, log)
    finally:
        _stop(process)


def _first_line(process: subprocess.Popen[str], deadline: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            return ""
    return process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to its PID (the mock shuts down cleanly on it), SIGKILL if it is still there in time."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    if process.stdout is not None:
        process.stdout.close()
