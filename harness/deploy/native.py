"""vLLM, TGI or `transformers serve` started as a subprocess, for hosts where Docker is not allowed
(HPC, the lent GPU machine).

`NativeServer` starts the server in its own process group (vLLM forks an engine-core process, TGI's
launcher forks shards and a router), waits for `/health`, keeps the log and the exact command line
in a run folder, and stops the whole group: a stop signal first (uvicorn and TGI's launcher shut down
cleanly on it), SIGKILL after a grace period, and it does not return while any process of the group
is still alive, so no orphan keeps a GPU busy into the next run.

    with NativeServer(vllm_spec("/models/llama", port=8000, extra_args=["--dtype", "bfloat16"]),
                      out_dir=run_dir) as server:
        ...  # server.base_url is healthy here; server.describe() goes into manifest.json
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.deploy.cmdline import parse_flags, redact_argv, redact_env
from harness.deploy.health import ServerError, server_version, wait_http_healthy
from harness.deploy.parallel import TP_FLAGS, flag_int, parallel_args

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
TGI_LAUNCHER = "text-generation-launcher"
TRANSFORMERS_CLI = "transformers"
_PROBE_TIMEOUT_S = 60  # asking an interpreter whether it has vLLM (a cold start on a slow disk)


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one server: its command line, where it listens, extra environment."""

    kind: str  # "vllm" | "tgi" | "transformers"
    argv: tuple[str, ...]
    host: str
    port: int
    env: Mapping[str, str] = field(default_factory=dict)  # set on top of this process's environment
    health_path: str = "/health"
    flags_from: int = 1  # argv[flags_from:] are the engine's flags (server.json parses them)
    # The Python package whose version is the engine's, for servers that do not say it over HTTP.
    package: str | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


def vllm_spec(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    tensor_parallel_size: int | None = None,
    gpus: Sequence[int] | None = None,
) -> LaunchSpec:
    """vLLM's OpenAI-compatible server: `python -m vllm.entrypoints.openai.api_server --model ... [extra]`.

    `tensor_parallel_size` adds `--tensor-parallel-size`; `gpus` (the sidecar's indices) are the GPUs
    that serve, as many as the model is split over (parallel.py).

    `python` is the interpreter that has vLLM (the `vllm` extra of this package, or another
    environment: on the lent GPU machine `python3` with the unpacked site folder on `PYTHONPATH`).
    """
    _check_port(port)
    if shutil.which(python) is None:
        raise InputError(f"--python: {python!r} is not an executable (a path, or a name on PATH)")
    extra, env = parallel_args(extra_args, env or {}, tensor_parallel_size, gpus)
    argv = (python, "-m", VLLM_MODULE, "--model", model, "--host", host, "--port", str(port), *extra)
    return LaunchSpec(kind="vllm", argv=argv, host=host, port=port, env=env, flags_from=3)


def tgi_spec(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    extra_args: Sequence[str] = (),
    launcher: str = TGI_LAUNCHER,
    env: Mapping[str, str] | None = None,
) -> LaunchSpec:
    """TGI's `text-generation-launcher --model-id ... [extra]`, which must be on PATH (or given as a path)."""
    _check_port(port)
    exe = shutil.which(launcher)
    if exe is None:
        raise InputError(
            f"--launcher: {launcher!r} not found on PATH (install TGI locally, or use its Docker image)"
        )
    argv = (exe, "--model-id", model, "--hostname", host, "--port", str(port), *extra_args)
    return LaunchSpec(kind="tgi", argv=argv, host=host, port=port, env=dict(env or {}))


def transformers_spec(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    continuous_batching: bool = True,
    extra_args: Sequence[str] = (),
    executable: str = TRANSFORMERS_CLI,
    env: Mapping[str, str] | None = None,
) -> LaunchSpec:
    """Hugging Face transformers' OpenAI-compatible server: `transformers serve MODEL [flags]`.

    The model is given as the positional argument (first, so that a trailing switch of `extra_args`
    cannot swallow it), which makes the server load it at start and serve only it (otherwise it loads
    whatever a request names, on first use, inside the measurement).
    `continuous_batching` adds `--continuous-batching`: without it every request runs its own
    `generate()`, with no batching across requests.
    """
    _check_port(port)
    exe = shutil.which(executable)
    if exe is None:
        where = "is not an executable" if os.path.isfile(executable) else "not found on PATH"
        raise InputError(
            f"--executable: {executable!r} {where} (pip install 'transformers[serving]', "
            "or give the path of its `transformers` command)"
        )
    asked = continuous_batching and "--continuous-batching" not in extra_args
    batching = ("--continuous-batching",) if asked else ()
    argv = (exe, "serve", model, "--host", host, "--port", str(port), *batching, *extra_args)
    return LaunchSpec(
        kind="transformers", argv=argv, host=host, port=port, env=dict(env or {}), flags_from=2,
        package="transformers",
    )  # fmt: skip


class NativeServer:
    """A server subprocess with its log (`server.log`) and description (`server.json`) in `out_dir`."""

    def __init__(
        self,
        spec: LaunchSpec,
        out_dir: str | Path,
        health_timeout_s: float = 600,
        grace_s: float = 30,
        stop_signal: int = signal.SIGTERM,
        on_wait: Callable[[float], None] = lambda waited_s: None,
    ) -> None:
        self.spec = spec
        self.out_dir = Path(out_dir)
        self.health_timeout_s = health_timeout_s
        self.grace_s = grace_s
        self.stop_signal = stop_signal
        self.on_wait = on_wait
        self.log_path = self.out_dir / "server.log"
        self.info_path = self.out_dir / "server.json"
        self.proc: subprocess.Popen | None = None
        self._record: dict[str, object] = {}
        self._hurry = False

    @property
    def base_url(self) -> str:
        return self.spec.base_url

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> NativeServer:
        if self.proc is not None:
            raise RuntimeError("server already started")
        if _listening(self.spec.base_url):
            # Something (an earlier server?) already answers there: its /health would pass for ours.
            raise InputError(f"--port: {self.spec.base_url} is already in use; stop what listens there first")
        if self.spec.kind == "vllm":
            _check_vllm(self.spec.argv[0], {**os.environ, **self.spec.env})
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 (closed by the `with` below)
        except OSError as exc:
            raise InputError(
                f"{self.log_path}: cannot write the server log ({exc.strerror or exc})"
            ) from None
        env = {**os.environ, **self.spec.env}
        anchor = ClockAnchor.now()
        with log:
            try:
                # A new session (and process group): the server's children can be signalled together,
                # and a Ctrl-C in our terminal reaches us only, so that we decide how the server stops.
                self.proc = subprocess.Popen(
                    list(self.spec.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ServerError(f"cannot start {self.spec.argv[0]}: {exc.strerror or exc}") from None
        self._record = {
            "launcher": "native",
            "kind": self.spec.kind,
            "argv": redact_argv(self.spec.argv),
            "flags": parse_flags(redact_argv(self.spec.argv[self.spec.flags_from :])),
            "env": redact_env(env),
            "gpus": {
                "visible_devices": env.get("CUDA_VISIBLE_DEVICES") or env.get("NVIDIA_VISIBLE_DEVICES"),
                # vLLM's flags were checked when its spec was made: no error here, after the start.
                "tensor_parallel_size": (
                    flag_int(self.spec.argv[self.spec.flags_from :], TP_FLAGS)
                    if self.spec.kind == "vllm"
                    else None
                ),
            },
            "base_url": self.base_url,
            "pid": self.proc.pid,
            "started": anchor.as_dict(),
            "log": self.log_path.name,
            "version": None,
        }
        self._write_record()
        return self

    def wait_healthy(self) -> float:
        """Block until `/health` answers 200; fails at once if the server process exits first."""
        assert self.proc is not None, "start() first"
        waited = wait_http_healthy(
            self.base_url + self.spec.health_path,
            timeout_s=self.health_timeout_s,
            failed=self._exited_reason,
            on_wait=self.on_wait,
        )
        self._record["healthy_after_s"] = round(waited, 3)
        said = server_version(self.base_url)
        if said.get("version") is None and self.spec.package is not None:
            said = package_version(self.spec.argv[0], self.spec.package, {**os.environ, **self.spec.env})
        self._record["server"] = said
        self._record["version"] = said.get("version")
        self._write_record()
        return waited

    def poll(self) -> int | None:
        """The server's exit code if it has exited, else None."""
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> int | None:
        """Stop the server and everything it started; return the leader's exit code (None if never started).

        Stop signal to the process group, SIGKILL to the group after `grace_s`, then wait until the group
        is empty. Idempotent.
        """
        if self.proc is None:
            return None
        pgid = self.proc.pid  # leader of its own session: pgid == pid
        how = "exited by itself" if self.proc.poll() is not None else "stopped"
        if _group_alive(pgid):
            _signal_group(pgid, self.stop_signal)
            if not _wait_group(pgid, self.proc, self.grace_s, lambda: self._hurry):
                how = "killed after grace period"
                _signal_group(pgid, signal.SIGKILL)
                if not _wait_group(pgid, self.proc, 10):
                    raise ServerError(f"processes of group {pgid} survived SIGKILL")
        code = self.proc.wait()
        if "stopped" not in self._record:
            self._record.update(stopped=ClockAnchor.now().as_dict(), exit_code=code, stop=how)
            self._write_record()
        return code

    def hurry(self) -> None:
        """Cut a running `stop()` short: SIGKILL now instead of at the end of the grace period.

        Safe to call from a signal handler (a second Ctrl-C while stopping).
        """
        self._hurry = True

    def describe(self) -> dict:
        """What the run manifest records about this server (as in `server.json`)."""
        return json.loads(json.dumps(self._record))

    def __enter__(self) -> NativeServer:
        self.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers
    def _exited_reason(self) -> str | None:
        code = self.poll()
        if code is None:
            return None
        return (
            f"{self.spec.kind} server exited with code {code} before it was healthy; "
            f"last log line: {self.last_log_line()!r}"
        )

    def last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1][:300] if lines else ""

    def _write_record(self) -> None:
        tmp = self.info_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self._record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.info_path)


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise InputError(f"--port: {port} is not a TCP port (1-65535)")


def _listening(base_url: str) -> bool:
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is already gone
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting to be reaped do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():  # not Linux: ask the kernel whether the group exists at all
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc_dir.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


def _wait_group(
    pgid: int, leader: subprocess.Popen, timeout_s: float, give_up: Callable[[], bool] = lambda: False
) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        leader.poll()  # reap the leader as soon as it exits, so it stops counting
        if not _group_alive(pgid):
            return True
        if time.monotonic() >= deadline or give_up():
            return False
        time.sleep(0.05)


def _check_vllm(python: str, env: Mapping[str, str]) -> None:
    """Ask the interpreter whether it has vLLM before the run folder is made: a server that could never
    start leaves nothing behind (one that starts and then fails keeps its log there)."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
    try:
        found = subprocess.run(
            [python, "-c", probe], stdin=subprocess.DEVNULL, capture_output=True, env=dict(env),
            timeout=_PROBE_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"--python: {python!r} does not run ({exc})") from None
    if found.returncode != 0:
        raise InputError(
            f"--python: {python!r} has no vLLM (`import vllm` fails there): install it, or give the "
            "interpreter that has it"
        )


def package_version(executable: str, package: str, env: Mapping[str, str]) -> dict[str, object]:
    """The version of `package` as the interpreter of a console script (its `#!` line) imports it.

    For servers with no version route: the package that interpreter imports is the one serving,
    whatever else is installed on the host. `{"version": None}` when it cannot be told.
    """
    try:
        with open(executable, "rb") as script:
            first = script.readline(512).decode(errors="replace")
    except OSError:
        return {"version": None}
    interpreter = first[2:].split() if first.startswith("#!") else []
    # Only a Python interpreter is asked (pip writes a /bin/sh trampoline for long interpreter paths).
    named = [Path(word).name for word in interpreter[:2]]
    if not any(name.startswith("python") for name in named):
        return {"version": None}
    probe = f"import {package}; print({package}.__version__)"
    try:
        found = subprocess.run(
            [*interpreter, "-c", probe], stdin=subprocess.DEVNULL, capture_output=True, text=True,
            env=dict(env), timeout=_PROBE_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return {"version": None}
    version = found.stdout.strip()
    if found.returncode != 0 or not version:
        return {"version": None}
    return {"version": version, "source": f"{package}.__version__"}
