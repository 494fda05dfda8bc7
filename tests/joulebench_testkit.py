"""Process and HTTP helpers shared by the tests and the benchmarks.

- ports: `free_port()`, `busy_port()` (a port something already listens on);
- the CLI: `joulebench_argv()`, `run_joulebench()` (a subprocess, as a user runs it), `run_main()`
  (in-process), `one_line_error()` (the contract for bad input: one line, `joulebench: error: `);
- processes: `wait_http()`, `stop_process()`, `joulebench_server()` (a `joulebench` server command
  in a subprocess, stopped on exit), `run_mock_server()`, `simulated_sidecar()`, `side_by_side()`
  (independent short commands, one per core at a time);
- `PrometheusServer`: the real Prometheus binary on a free port.

tests/conftest.py loads this file under its own name, `joulebench_testkit` (test folders are not
packages, and `from conftest import ...` would pick whichever conftest was imported first); the
benchmarks put tests/ on sys.path and import it by the same name.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn, TypeVar

import httpx
import yaml

from harness.clock import ClockAnchor
from harness.records import TIME_COLUMNS
from harness.runfolder import RunFolder
from harness.runfolder.requests_file import read_requests, write_requests
from harness.session.embedded_stack import stop_process as stop_started_process
from joulebench.mock_process import first_line as mock_first_line
from joulebench.mock_process import mock_server_process

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"
ERROR_PREFIX = "joulebench: error: "
T = TypeVar("T")
R = TypeVar("R")


# ------------------------------------------------------------------------------------------ ports
def free_port() -> int:
    """A loopback port nothing listens on now (for commands that need a port number up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def busy_port() -> Iterator[int]:
    """A loopback port that is bound and listening until the block ends (the "port in use" case)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


# ------------------------------------------------------------------------------------------ the CLI
def joulebench_argv(*args: str) -> list[str]:
    """`joulebench ARGS` as a subprocess command: this interpreter's `python -m harness`."""
    return [sys.executable, "-m", "harness", *args]


def run_joulebench(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `joulebench ARGS` to completion, as a user would; stdout and stderr captured as text."""
    # A wide terminal, so that rich does not wrap --help or error lines differently from run to run.
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        joulebench_argv(*args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def run_benchmark(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python benchmarks/SCRIPT ARGS` to completion with this interpreter; output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def run_main(args: Sequence[str]) -> int:
    """Run `joulebench ARGS` in this process; its exit status (output goes to capsys as usual)."""
    from harness.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0


def one_line_error(stderr: str, status: int, expected_status: int = 2) -> str:
    """Assert the bad-input contract (exit status, exactly one `joulebench: error:` line) and
    return the message after the prefix."""
    lines = stderr.strip().splitlines()
    assert status == expected_status, f"exit status {status}: {stderr}"
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), stderr
    return lines[0].removeprefix(ERROR_PREFIX)


# ------------------------------------------------------------------------------------------ processes
def wait_http(url: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers 200; fail at once, with the process's output, if `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{_describe(proc)} exited with {proc.returncode}: {_output(proc)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie may wait for a PID 1 that does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_process(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """SIGTERM (what compose and Kubernetes send), SIGKILL if it does not exit in time; the status."""
    return stop_started_process(proc, timeout_s)


def side_by_side(function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`function` over `items`, one per core at a time; the results in the items' order.

    For commands that each start a `joulebench` subprocess of their own, in a folder of their own, and
    end in seconds: nearly all of such a command's time is the interpreter starting and importing (one
    core), so the suite, which runs one test at a time, would otherwise leave the other cores idle.
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))


@dataclass
class ServerProcess:
    """A server command running in a subprocess: its base URL, the process, its log file."""

    url: str
    process: subprocess.Popen
    log: Path

    def stop(self, timeout_s: float = 15.0) -> int:
        return stop_process(self.process, timeout_s)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def joulebench_server(
    args: Sequence[str], port: int, health_path: str, timeout_s: float = 60.0, log_dir: Path | None = None
) -> Iterator[ServerProcess]:
    """`joulebench ARGS` (a server listening on `port`), ready once `health_path` answers 200."""
    log = _log_file(log_dir, args[0])
    with log.open("w") as out:
        process = subprocess.Popen(
            joulebench_argv(*args), stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        try:
            wait_http(server.url + health_path, timeout_s)
        except AssertionError as exc:
            raise RuntimeError(f"joulebench {' '.join(args)}: {exc}\n{server.log_tail()}") from None
        yield server
    finally:
        server.stop()


@contextmanager
def run_mock_server(
    *args: str, timeout_s: float = 60.0, log_dir: Path | None = None, cpu: int | None = None
) -> Iterator[ServerProcess]:
    """`joulebench mock-server ARGS` on a free port (`--port 0`), stopped on exit from the block.

    The mock prints its base URL as its first stdout line once it accepts connections, so there is
    no port to race for and nothing to poll. `cpu` pins it to one core (the capacity benchmark).
    """
    log = _log_file(log_dir, "mock-server")
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    # The same start and stop as the `joulebench_mock` fixture users get.
    with mock_server_process(args, log, timeout_s, cwd=REPO, preexec_fn=pin) as (process, url):
        server = ServerProcess(url, process, log)
        if not url.startswith("http://"):
            raise RuntimeError(f"mock server did not start: {url!r}\n{server.log_tail()}")
        yield server


def simulated_sidecar(
    mock_url: str, *args: str, port: int | None = None, log_dir: Path | None = None
) -> AbstractContextManager[ServerProcess]:
    """`joulebench sidecar --backend simulated` reading the mock at `mock_url`, with extra ARGS."""
    port = port or free_port()
    command = ["sidecar", "--backend", "simulated", "--simulate-from", mock_url,
               "--host", "127.0.0.1", "--port", str(port), *args]  # fmt: skip
    return joulebench_server(command, port, "/healthz", log_dir=log_dir)


def _log_file(log_dir: Path | None, name: str) -> Path:
    folder = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="joulebench-test-"))
    return folder / f"{name}-{time.monotonic_ns()}.log"


def first_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The first stdout line of a server that prints its URL once it listens (or why there is none)."""
    line = mock_first_line(process, time.monotonic() + timeout_s)
    return f"(no URL within {timeout_s} s)" if line is None else line


def _describe(proc: subprocess.Popen) -> str:
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    return " ".join(str(a) for a in args[:6])


def _output(proc: subprocess.Popen) -> str:
    stream = proc.stdout or proc.stderr
    return stream.read()[-2000:] if stream is not None and stream.readable() else ""


# ------------------------------------------------------------------------------------------ Prometheus
class PrometheusServer:
    """The real Prometheus binary on a free port, with `config` (a prometheus.yml as text) or a
    generated one scraping `jobs` ({job: ["host:port", ...]}) every `scrape_s`.

    Skips the test where the binary is missing, except in CI (`CI` set), where that is a failure:
    scripts/test.sh installs Debian's `prometheus`.
    """

    def __init__(
        self,
        tmp: Path,
        jobs: dict[str, list[str]] | None = None,
        scrape_s: float = 0.25,
        config: str | None = None,
    ) -> None:
        binary = require_tool("prometheus", "apt-get install prometheus; scripts/test.sh installs it")
        if config is None:
            interval = f"{round(scrape_s * 1000)}ms"
            config = yaml.safe_dump(
                {
                    "global": {"scrape_interval": interval, "scrape_timeout": interval},
                    "scrape_configs": [
                        {"job_name": job, "static_configs": [{"targets": t}]}
                        for job, t in (jobs or {}).items()
                    ],
                }
            )
        (tmp / "prometheus.yml").write_text(config)
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
        while True:
            targets = httpx.get(self.url + "/api/v1/targets").json()["data"]["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                return
            if time.monotonic() > deadline:
                down = [(t["scrapeUrl"], t["lastError"]) for t in targets]
                raise AssertionError(f"targets not up: {down}")
            time.sleep(0.2)

    def query(self, expr: str) -> list[dict]:
        doc = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10).json()
        assert doc["status"] == "success", f"{expr}: {doc}"
        return doc["data"]["result"]

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


# ------------------------------------------------------------------------------------------ tools
def require_tool(name: str, how: str) -> str:
    """The tool's path; skip where it is missing, except in CI, where a missing tool is a failure."""
    path = shutil.which(name)
    if path:
        return path
    _missing(f"{name} not found (install: {how})", "scripts/test.sh")


def require_module(name: str, how: str) -> ModuleType:
    """The imported module; skip where it is missing, except in CI (as `require_tool`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        pass
    _missing(f"Python package {name} not installed (install: {how})", "the pyproject dev extra")


def _missing(message: str, installer: str) -> NoReturn:
    import pytest  # here, not at the top: the benchmarks import this module without pytest

    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it ({installer})")
    pytest.skip(message)


def run_dirs(out: Path) -> list[Path]:
    """The run folders under a run's --out, without the `latest` link to the newest."""
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.is_symlink())


def on_another_host(folder: Path, into: Path) -> Path:
    """A copy of a shard's run folder as if it had run on another host: its monotonic clock offset and
    its boot_id different (its epoch times, hence what a merge maps through, unchanged)."""
    moved = into / folder.name
    shutil.copytree(folder, moved)
    shift = 7_777_777_777_777
    run = RunFolder.open(moved)
    frame, anchor = read_requests(run.requests_path)
    for column in TIME_COLUMNS:
        frame[column] = frame[column] + shift
    frame["chunk_ns"] = [v + shift for v in frame["chunk_ns"]]
    there = ClockAnchor(anchor.epoch_ns, anchor.mono_ns + shift, "another-host", anchor.uncertainty_ns)
    write_requests(frame, run.requests_path, there)
    manifest = run.manifest()
    manifest["clock"]["anchor"] = there.as_dict()
    for section in [manifest["run"], *manifest["arms"]]:
        section["start_ns"] += shift
        section["end_ns"] += shift
    run.write_manifest(manifest)
    return moved
