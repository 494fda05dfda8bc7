"""`--disconnect-rate` on a whole (non-streaming) response, byte for byte: a 200 status line and headers
that promise a body, then the connection closes before any body byte (harness/mock/faults.py)."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest
from joulebench_testkit import run_mock_server

pytestmark = pytest.mark.slow


def raw_exchange(url: str, path: str, body: dict) -> bytes:
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    received = b""
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):  # until the server closes the connection
            received += chunk
    return received


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "mock", "prompt": "hi", "max_tokens": 8}),
        ("/generate", {"inputs": "hi", "parameters": {"max_new_tokens": 8}}),
    ],
)
def test_whole_response_disconnect_sends_headers_then_closes(tmp_path, path: str, body: dict) -> None:
    with run_mock_server("--disconnect-rate", "1", "--profile", "synthetic-fast", log_dir=tmp_path) as mock:
        received = raw_exchange(mock.url, path, body)
    head, sep, rest = received.partition(b"\r\n\r\n")
    assert sep, received  # the headers are complete ...
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert int(headers["content-length"]) > 0  # ... and promise a body ...
    assert rest == b""  # ... that never comes: the connection closes first
