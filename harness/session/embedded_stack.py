"""The embedded default of `joulebench run` (no `--target`): a whole measurement with no GPU and no Docker.

It starts `joulebench mock-server` (a simulated GPU behind vLLM's API) and `joulebench sidecar
--backend simulated` (which reads that GPU as it would read NVML) as subprocesses on free loopback
ports, and runs a built-in plan through the same path as any other run: idle capture, three arms,
power from the sidecar's sample log, the join and the report.

The built-in plan: the same 60 synthetic prompts, 128 output tokens each (`ignore_eos`), under three
schedules at the same mean rate of 4 requests/s — `fixed` (every 0.25 s), `uniform` (gaps uniform in
[0.083, 0.417] s) and `bursty` (bursts of 8, 8 ms apart, every 2 s) — 15 s per arm, about a minute in
all. The mock runs at `--speed 1`: its simulated seconds are wall seconds, so every figure of the
report (W, J, requests/s, latency, lateness) is what the simulated GPU would show. A faster virtual
clock would finish sooner with the same J per request, but it multiplies watts and rates by the speed
factor and the client's lateness counts that many times more in simulated time; not worth a confusing
first report.

The subprocesses run in their own sessions, so a Ctrl-C in the terminal reaches only joulebench,
which stops the run gracefully and then stops them; on Linux they also get SIGTERM if joulebench
itself dies (PR_SET_PDEATHSIG). Their logs are copied into the run folder (`embedded/`).
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from foundation.errors import InputError
from traffic.spec import PlanSpec

MOCK_PROFILE = "h100-vllm0.26-llama3.2-1b"
SIDECAR_INTERVAL_S = 0.05  # 20 Hz power samples: several per request (a request lasts ~0.3 s)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
EMBEDDED_DIR = "embedded"

DEFAULT_PLAN: dict[str, Any] = {
    "prompts": "synthetic",
    "schedules": [
        "fixed:interval=0.5",
        "uniform:low=0.1,high=0.5",
        "bursty:size=8,intra=0.01,gap=2.4",
    ],
    "rate": 4.0,  # every arm's mean rate after load matching (docs/plans.md): same offered load
    "n": 60,
    "max_tokens": 128,
    "ignore_eos": True,
    "seed": 0,
}


def default_plan_spec() -> PlanSpec:
    return PlanSpec.parse(DEFAULT_PLAN, label=lambda path: f"built-in plan: {path}")


def over_default_plan(given: Mapping[str, Any]) -> dict[str, Any]:
    """The plan settings `given` (PlanSpec fields; None: not given) laid over the built-in plan.

    Given schedules replace the built-in ones, and take the built-in rate with them: it is the load
    matching of those three schedules, and would silently rescale the given ones. A duration given
    without n takes the place of the built-in n (either one sets an arm's length)."""
    values = {key: value for key, value in given.items() if value is not None}
    plan = dict(DEFAULT_PLAN)
    if "schedules" in values:
        del plan["rate"]
    if "duration" in values:
        del plan["n"]
    return {**plan, **values}


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM to the process we started (by its handle, never by name), SIGKILL if it is still there
    after `timeout_s`; its exit status, and its pipes closed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return process.returncode


def _die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Linux: the child gets SIGTERM when its parent dies (PR_SET_PDEATHSIG = 1).

    libc is loaded here, in the parent: between fork and exec the child must not take the loader's
    locks, which another thread of the parent (the status spinner) may have held at the fork."""
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)


class EmbeddedStack:
    """The mock server and a simulated sidecar, started together and always stopped together."""

    def __init__(self, console: Console, mock_args: tuple[str, ...] = ()) -> None:
        self.console = console
        self.mock_args = mock_args  # more mock-server flags (an experiment's `target.mock_args`)
        self.workdir = Path(tempfile.mkdtemp(prefix="joulebench-embedded-"))
        self.processes: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.mock_url = ""
        self.sidecar_url = ""
        self.folder: Path | None = None  # the run folder, once there is one: the logs are copied there

    def __enter__(self) -> EmbeddedStack:
        try:
            with self.console.status("starting the mock server and the simulated power sidecar"):
                self._start()
        except BaseException:
            self.stop()
            raise
        self.console.print(
            f"embedded: mock server {self.mock_url}, simulated power sidecar {self.sidecar_url}"
        )
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _start(self) -> None:
        ready = self.workdir / "mock-ready.json"
        self._spawn(
            "mock-server",
            ["mock-server", "--host", "127.0.0.1", "--port", "0", "--profile", MOCK_PROFILE, "--seed", "0",
             "--speed", "1", "--ready-file", str(ready), *self.mock_args],
        )  # fmt: skip
        self.mock_url = self._wait("mock-server", lambda: _ready_url(ready))
        self._spawn(
            "sidecar",
            ["sidecar", "--backend", "simulated", "--simulate-from", self.mock_url, "--host", "127.0.0.1",
             "--port", "0", "--interval", str(SIDECAR_INTERVAL_S)],
        )  # fmt: skip
        # The sidecar's readiness line (stderr, once serving) names the port it bound.
        log = self.workdir / "sidecar.log"
        self.sidecar_url = self._wait("sidecar", lambda: _sidecar_url(log))

    def _spawn(self, name: str, args: list[str]) -> None:
        command = [sys.executable, "-m", "harness", *args]
        self.commands[name] = command
        with (self.workdir / f"{name}.log").open("w") as log:
            self.processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent(),
            )  # fmt: skip

    def _wait(self, name: str, probe: Any) -> str:
        process = self.processes[name]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (found := probe()) is None:
            if process.poll() is not None:
                raise InputError(
                    f"embedded default: {name} exited with {process.returncode}: {self._last(name)}"
                )
            if time.monotonic() > deadline:
                raise InputError(
                    f"embedded default: {name} not ready after {READY_TIMEOUT_S:g} s: {self._last(name)}"
                )
            time.sleep(0.05)
        return found

    def _last(self, name: str) -> str:
        lines = (self.workdir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else "(no output)"

    def stop(self) -> None:
        """SIGTERM both (the sidecar first: it reads the mock), SIGKILL what is still there after 10 s;
        then their logs go to the run folder and the scratch folder goes away."""
        for name in reversed(list(self.processes)):
            stop_process(self.processes[name], STOP_TIMEOUT_S)
        if self.folder is not None:
            target = self.folder / EMBEDDED_DIR
            target.mkdir(exist_ok=True)
            for name in self.processes:
                source = self.workdir / f"{name}.log"
                if source.is_file():
                    shutil.copyfile(source, target / source.name)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def describe(self) -> dict[str, Any]:
        """For the manifest: what ran, where, and how it ended."""
        return {
            "mock_server": {"url": self.mock_url, "profile": MOCK_PROFILE, "speed": 1.0},
            "sidecar": {"url": self.sidecar_url, "backend": "simulated", "interval_s": SIDECAR_INTERVAL_S},
            "processes": {
                name: {"command": self.commands[name][1:], "pid": p.pid, "exit_code": p.returncode}
                for name, p in self.processes.items()
            },
            "logs": EMBEDDED_DIR,
        }


def _ready_url(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet (or half written)


_SIDECAR_READY = re.compile(r"(http://127\.0\.0\.1:\d+)/metrics")


def _sidecar_url(log: Path) -> str | None:
    try:
        match = _SIDECAR_READY.search(log.read_text(errors="replace"))
    except OSError:
        return None
    return match.group(1) if match else None
