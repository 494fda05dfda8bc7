"""The pytest plugin joulebench installs (entry point `pytest11`): a `joulebench_mock` fixture, a running
`joulebench mock-server` for a test to send requests to (docs/ci.md).

    def test_my_client(joulebench_mock):
        httpx.post(joulebench_mock.url + "/v1/chat/completions", json={...})

    @pytest.mark.joulebench_mock(profile="synthetic-fast", args=["--speed", "10"])
    def test_fast(joulebench_mock): ...

    @pytest.mark.parametrize("joulebench_mock", ["synthetic-fast", "my-profile.json"], indirect=True)
    def test_each_profile(joulebench_mock): ...

A real process (the installed `joulebench mock-server --port 0`, started and stopped by
joulebench/mock_process.py), not an in-process app: the client under test meets the same sockets,
streaming and timing as it would against a server. It prints its URL once it accepts connections; the
fixture stops it by its PID when the test ends.

It imports nothing of `harness`: pytest loads it in every session of every project that installs
joulebench, whose own `harness` package (a common name) may come first on the path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from joulebench.mock_process import mock_server_process

MARKER = "joulebench_mock"


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


@pytest.fixture
def joulebench_mock(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MockServer]:
    """A running `joulebench mock-server` on a free loopback port, stopped by its PID after the test."""
    marker = request.node.get_closest_marker(MARKER)
    options = dict(marker.kwargs) if marker is not None else {}
    profile = getattr(request, "param", None) or options.get("profile")
    args = [*(["--profile", str(profile)] if profile else []), *map(str, options.get("args", ()))]
    log = tmp_path_factory.mktemp("joulebench-mock") / "mock-server.log"
    with mock_server_process(args, log) as (process, url):
        if not url.startswith("http://"):
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"joulebench mock-server {' '.join(args)} did not start ({url or 'no URL'}):\n{tail}")
        yield MockServer(url, process.pid, profile, log)
