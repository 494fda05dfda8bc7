"""Helpers for the power tests: free ports, subprocess cleanup, the real Prometheus binary.

A module of its own (not conftest.py) because every test folder has a conftest.py and
`from conftest import ...` would pick whichever was imported first.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers 200 (fail early if the process died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"process exited with {proc.returncode}: {out}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def joulebench(*args: str) -> list[str]:
    """The CLI as a subprocess command (the venv's interpreter, like the `joulebench` script)."""
    return [sys.executable, "-c", "from harness.cli import main; main()", *args]


class PrometheusServer:
    """The real Prometheus binary on a free port, scraping `jobs` ({job: [host:port]}) every `scrape_s`."""

    def __init__(self, tmp: Path, jobs: dict[str, list[str]], scrape_s: float = 0.25) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip(
                "prometheus is not installed (Debian package prometheus; scripts/test.sh installs it)"
            )
        interval = f"{round(scrape_s * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": t}]} for job, t in jobs.items()
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(self.url + "/-/ready", timeout_s=60, proc=self.proc)
        except BaseException:
            self.stop()
            raise

    def wait_targets_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            targets = httpx.get(self.url + "/api/v1/targets").json()["data"]["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                return
            time.sleep(0.2)
        raise AssertionError(f"targets not up: {[(t['scrapeUrl'], t['lastError']) for t in targets]}")

    def query(self, expr: str) -> list[dict]:
        doc = httpx.get(self.url + "/api/v1/query", params={"query": expr}).json()
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()
