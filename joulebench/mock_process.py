"""`joulebench mock-server` as a subprocess: started on a free port, its URL read, stopped by its PID.

The `joulebench_mock` fixture (pytest_plugin.py) and joulebench's own test kit (tests/joulebench_testkit.py)
both start mock servers this way. No pytest here (the benchmarks start mock servers too) and nothing of
`harness`: pytest loads the plugin in every session of every project that installs joulebench, whose own
`harness` package (a common name) may come first on the path.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


def _joulebench() -> list[str]:
    """The installed `joulebench` script beside this Python: `python -m harness` would put the test run's
    working folder first on the path, where a project's own `harness` package would shadow ours."""
    script = Path(sys.executable).parent / "joulebench"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "harness"]


@contextmanager
def mock_server_process(
    args: Sequence[str],
    log: Path,
    timeout_s: float = START_TIMEOUT_S,
    cwd: Path | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`joulebench mock-server --port 0 ARGS` (stderr to `log`) and the first line it printed: its URL,
    else "" (it exited) or why there is none (not within `timeout_s`); either way it did not start, and
    the caller says so, with the log. Stopped by its PID when the block ends, whichever way."""
    with log.open("w") as err:
        process = subprocess.Popen(
            [*_joulebench(), "mock-server", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=cwd, preexec_fn=preexec_fn,
        )  # fmt: skip
    try:
        line = first_line(process, time.monotonic() + timeout_s)
        yield process, f"(no URL within {timeout_s} s)" if line is None else line
    finally:
        stop(process)


def first_line(process: subprocess.Popen[str], deadline: float) -> str | None:
    """The first stdout line of a server that prints its URL once it listens ("" if it exited without
    one); None if nothing came by `deadline` (time.monotonic())."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(max(0.0, deadline - time.monotonic())):
            return None
    return process.stdout.readline().strip()


def stop(process: subprocess.Popen[str]) -> None:
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
