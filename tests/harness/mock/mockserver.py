"""Start `joulebench mock-server` as a subprocess for a test, and stop it afterwards.

    with run_mock_server("--speed", "20", "--seed", "3") as server:
        httpx.get(server.url + "/v1/models")

The server is started with `--port 0`; its first stdout line is its base URL, printed once it accepts
connections. Its stderr goes to a log file whose tail is shown if it fails to start.
"""

from __future__ import annotations

import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


@dataclass
class MockServer:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not exit in time; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


@contextmanager
def run_mock_server(*args: str, timeout_s: float = 60.0, log_dir: Path | None = None) -> Iterator[MockServer]:
    """A mock server with extra CLI `args` (e.g. "--speed", "10"), stopped on exit from the block."""
    folder = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="mock-server-"))
    log = folder / f"mock-server-{time.monotonic_ns()}.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness", "mock-server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=REPO,
        )
    server = MockServer(url="", process=process, log=log)
    try:
        server.url = _first_line(process, timeout_s)
        if not server.url.startswith("http://"):
            raise RuntimeError(f"mock server did not start: {server.url!r}\n{_tail(log)}")
        yield server
    finally:
        server.stop()


def _first_line(process: subprocess.Popen, timeout_s: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return f"(no URL within {timeout_s} s)"
    return process.stdout.readline().strip()


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
