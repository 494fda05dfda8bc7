"""`joulebench shape` as a subprocess, as a user runs it, and readers of its request log.

Shared by the proxy's tests here, tests/e2e/test_shape_*.py and benchmarks/shape_proxy.py (which
load it by path: test folders are not packages).

    with run_shape_proxy(mock.url, "--policy", "window:period=1", log_dir=tmp_path) as proxy:
        httpx.post(proxy.url + "/v1/completions", json=...)
    lines = read_shape_log(proxy.log)

The proxy listens on a free port (`--port 0`): its base URL is the first stdout line, printed once it
accepts connections; its metrics port is free too (`--metrics-port 0`), named on stderr.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from joulebench_testkit import REPO, first_line, joulebench_argv, stop_process

T = TypeVar("T")
_METRICS = re.compile(r"metrics (http://\S+/metrics)")


@dataclass
class ShapeProxy:
    url: str
    metrics_url: str
    process: subprocess.Popen
    log: Path  # the request log (--log)
    stderr: Path

    def stop(self, timeout_s: float = 15.0) -> int:
        return stop_process(self.process, timeout_s)

    def lines(self) -> list[dict]:
        return read_shape_log(self.log)

    def requests(self) -> dict[int, dict]:
        """The log's `request` lines by id (each request ends in exactly one)."""
        return shape_requests(self.log)


@contextmanager
def run_shape_proxy(
    upstream: str, *args: str, log_dir: Path, timeout_s: float = 60.0
) -> Iterator[ShapeProxy]:
    """`joulebench shape --upstream UPSTREAM ARGS` on free ports, stopped (SIGTERM) when the block ends."""
    stamp = time.monotonic_ns()
    log, stderr = log_dir / f"shape-{stamp}.jsonl", log_dir / f"shape-{stamp}.stderr"
    argv = joulebench_argv("shape", "--upstream", upstream, "--port", "0", "--metrics-port", "0",
                           "--log", str(log), *args)  # fmt: skip
    with stderr.open("w") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
    try:
        url = first_line(process, timeout_s)
        if not url.startswith("http://"):
            raise RuntimeError(f"joulebench shape did not start: {url!r}\n{stderr.read_text()[-3000:]}")
        # Printed on stderr right after the URL, before any request is served.
        match = wait_for(lambda: _METRICS.search(stderr.read_text()), 10, "the metrics URL on stderr")
        yield ShapeProxy(url, match.group(1), process, log, stderr)
    finally:
        stop_process(process)


def read_shape_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def shape_requests(path: Path) -> dict[int, dict]:
    lines = [line for line in read_shape_log(path) if line["k"] == "request"]
    by_id = {line["id"]: line for line in lines}
    assert len(by_id) == len(lines), "a request ended twice"
    return by_id


def wait_for(condition: Callable[[], T], timeout_s: float = 10.0, what: str = "condition") -> T:
    """Poll `condition()` until it returns something truthy (returned), or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.02)

