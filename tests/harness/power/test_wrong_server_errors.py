"""Power URLs that point at the wrong server get one line naming the URL, and `run` leaves no folder.

httpx's text for an error status is two lines; these once reached the user as they were.
Real processes: the mock server (not a sidecar), a plain `http.server` (neither sidecar nor mock).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joulebench_testkit import one_line_error, run_joulebench, run_mock_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    with run_mock_server(log_dir=tmp_path_factory.mktemp("mock")) as server:
        yield server


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Quiet(SimpleHTTPRequestHandler):
    """Python's file server: 404 File not found for /samples and /sim/gpu."""

    def log_message(self, *args) -> None:
        pass


class JsonList(Quiet):
    """Answers 200 with a JSON list, whatever is asked."""

    def do_GET(self) -> None:
        body = json.dumps([1, 2]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def run_against(target: str, sidecar: str, out) -> str:
    result = run_joulebench(
        "run", "--target", target, "--sidecar", sidecar, "--prompts", "synthetic", "--n", "2",
        "--no-progress", "--out", str(out), timeout=120,
    )  # fmt: skip
    message = one_line_error(result.stderr, result.returncode)
    assert not out.exists() or not any(out.iterdir()), "a run folder was left behind"
    return message


def test_sidecar_flag_pointing_at_the_mock_server(mock, tmp_path):
    message = run_against(mock.url, mock.url, tmp_path / "runs")
    assert message.startswith(f"{mock.url}/samples")
    assert message.endswith("cannot read the sidecar (HTTP 404 Not Found; is it a joulebench sidecar?)")


def test_sidecar_flag_pointing_at_a_plain_http_server(mock, tmp_path):
    with http_server(Quiet) as url:
        message = run_against(mock.url, url, tmp_path / "runs")
    assert (
        message.startswith(f"{url}/samples")
        and "HTTP 404 File not found; is it a joulebench sidecar?" in message
    )


def test_sidecar_flag_pointing_at_a_server_answering_a_json_list(mock, tmp_path):
    with http_server(JsonList) as url:
        message = run_against(mock.url, url, tmp_path / "runs")
    assert message.endswith("not a joulebench sidecar (expected a JSON object)")


def test_simulate_from_pointing_at_a_plain_http_server():
    with http_server(Quiet) as url:
        result = run_joulebench(
            "sidecar", "--backend", "simulated", "--simulate-from", url, "--port", "0", timeout=60
        )
    message = one_line_error(result.stderr, result.returncode)
    assert message == (
        f"--simulate-from: cannot read {url}/sim/gpu: "
        "HTTP 404 File not found (is it a joulebench mock server?)"
    )
