"""The inference server's container, through the Docker Engine API (the `docker` SDK).

Thin on purpose: it reads `GET /containers/{id}/json`, calls `POST /containers/{id}/restart` and reads
`GET /containers/{id}/logs`; compose (or the user) creates the container. Used between runs of an
experiment: restart for a fresh server state (empty KV and prefix caches, as the thesis did), wait
until healthy, record what ran (image, version, flags, GPUs) and keep the log of each run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, NotFound

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.deploy.cmdline import parse_flags, redact_argv, redact_env
from harness.deploy.health import ServerError, probe, server_version

_DEAD_STATES = {"exited", "dead", "removing"}


class ServerContainer:
    """One server container (name or id) on the engine at `docker_host` (default: DOCKER_HOST, or local)."""

    def __init__(self, client: docker.DockerClient, name: str) -> None:
        self.client = client
        self.name = name
        self._container = self._get()

    @classmethod
    def connect(cls, name: str, docker_host: str | None = None, timeout_s: float = 60) -> ServerContainer:
        try:
            if docker_host:
                client = docker.DockerClient(base_url=docker_host, timeout=int(timeout_s))
            else:
                client = docker.from_env(timeout=int(timeout_s))
        except (DockerException, ValueError) as exc:  # ValueError: an address docker-py cannot parse
            flag, where = ("docker", "DOCKER_HOST or the default socket")
            if docker_host:
                shown = redact_userinfo(docker_host)
                flag, where = "--docker-host", shown if shown.isprintable() else repr(shown)
            raise InputError(
                f"{flag}: cannot reach the Docker engine at {where} ({redact_userinfo(_one_line(exc))})"
            ) from None
        return cls(client, name)

    # ------------------------------------------------------------------ reading
    def inspect(self) -> dict:
        """The container's current `GET /containers/{id}/json` document."""
        try:
            self._container.reload()
        except NotFound:
            raise ServerError(f"container {self.name!r} no longer exists") from None
        return self._container.attrs

    def describe(self, base_url: str | None = None) -> dict:
        """What the run manifest records about the server (no secrets).

        With `base_url`, also ask the server which version it runs (`/version` or `/info`).
        """
        attrs = self.inspect()
        config = attrs.get("Config") or {}
        host_config = attrs.get("HostConfig") or {}
        state = attrs.get("State") or {}
        entrypoint = list(config.get("Entrypoint") or [])
        cmd = list(config.get("Cmd") or [])
        image = config.get("Image") or ""
        info: dict[str, object] = {
            "launcher": "docker",
            "kind": _server_kind(image, entrypoint + cmd),
            "image": image,
            "image_id": attrs.get("Image"),
            "image_version": _tag(image),
            "argv": redact_argv(entrypoint + cmd),
            "flags": parse_flags(redact_argv(cmd)),
            "env": redact_env(config.get("Env") or []),
            "gpus": _gpus(host_config, config.get("Env") or []),
            "container": {
                "id": attrs.get("Id"),
                "name": (attrs.get("Name") or "").lstrip("/"),
                "started_at": state.get("StartedAt"),
                "restart_count": attrs.get("RestartCount", 0),
                "status": state.get("Status"),
                "health": (state.get("Health") or {}).get("Status"),
                "labels": {
                    k: v
                    for k, v in (config.get("Labels") or {}).items()
                    if k.startswith("com.docker.compose.")
                },
            },
        }
        if base_url:
            info["server"] = server_version(base_url)
            info["version"] = info["server"].get("version") or info["image_version"]
        else:
            info["version"] = info["image_version"]
        return info

    # ------------------------------------------------------------------ acting
    def wait_healthy(
        self,
        timeout_s: float = 600,
        health_url: str | None = None,
        poll_s: float = 1.0,
        on_wait: Callable[[float], None] = lambda waited_s: None,
    ) -> float:
        """Block until the server is ready; return the seconds waited.

        Ready means Docker's health check reports `healthy` (our compose file defines one for every
        server); a container without a health check is ready when `health_url` answers 200 (or,
        without one, as soon as it runs). Fails at once if the container stops or turns `unhealthy`.
        """
        start = time.monotonic()
        while True:
            state = self.inspect().get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            if state.get("Status") in _DEAD_STATES or (
                not state.get("Running") and not state.get("Restarting")
            ):
                raise ServerError(
                    f"container {self.name!r} is {state.get('Status')} (exit code {state.get('ExitCode')}); "
                    "see its log"
                )
            if health == "unhealthy":
                raise ServerError(f"container {self.name!r} is unhealthy: {_last_health_output(state)}")
            if health == "healthy" or (
                health in (None, "none") and (health_url is None or probe(health_url))
            ):
                return time.monotonic() - start
            waited = time.monotonic() - start
            if waited >= timeout_s:
                raise ServerError(
                    f"container {self.name!r} not healthy after {timeout_s:g} s (health: {health})"
                )
            on_wait(waited)
            time.sleep(poll_s)

    def restart(
        self, stop_timeout_s: int = 30, health_timeout_s: float = 600, health_url: str | None = None
    ) -> float:
        """Restart the container (SIGTERM, SIGKILL after `stop_timeout_s`), wait until it is healthy again.

        Returns the seconds from the restart request to healthy. The new instance is recognised by its
        start time, so a health status left over from the old one is never taken for the new one's.
        """
        before = (self.inspect().get("State") or {}).get("StartedAt")
        start = time.monotonic()
        try:
            self._container.restart(timeout=stop_timeout_s)
        except APIError as exc:
            raise ServerError(f"container {self.name!r}: restart failed ({_one_line(exc)})") from None
        after = (self.inspect().get("State") or {}).get("StartedAt")
        if after == before:
            raise ServerError(
                f"container {self.name!r}: restart returned but the container did not start again"
            )
        remaining = max(0.0, health_timeout_s - (time.monotonic() - start))
        self.wait_healthy(timeout_s=remaining, health_url=health_url)
        return time.monotonic() - start

    def save_log(self, path: str | Path, since_start: bool = True) -> Path:
        """Write the container's stdout and stderr (Docker's timestamps on every line) to `path`.

        With `since_start`, only the current instance's lines: the log of this run, not of the runs
        before the last restart.
        """
        path = Path(path)
        started_ns = (
            _parse_docker_time((self.inspect().get("State") or {}).get("StartedAt")) if since_start else None
        )
        kwargs: dict[str, object] = {"stdout": True, "stderr": True, "timestamps": True}
        if started_ns:
            kwargs["since"] = (
                started_ns // 1_000_000_000
            )  # whole seconds: Docker's `since` is coarse, we trim below
        try:
            raw: bytes = self._container.logs(**kwargs)
        except APIError as exc:
            raise ServerError(f"container {self.name!r}: cannot read its log ({_one_line(exc)})") from None
        lines = raw.decode("utf-8", errors="replace").splitlines(keepends=True)
        if started_ns:
            lines = [
                line
                for line in lines
                if (_parse_docker_time(line.split(" ", 1)[0]) or started_ns) >= started_ns
            ]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))
        return path

    def _get(self):
        try:
            return self.client.containers.get(self.name)
        except NotFound:
            raise InputError(f"container {self.name!r}: no such container on this Docker engine") from None
        except DockerException as exc:
            raise InputError(f"container {self.name!r}: {_one_line(exc)}") from None


def _server_kind(image: str, argv: list[str]) -> str:
    text = " ".join([image, *argv])
    if "vllm" in text:
        return "vllm"
    if "text-generation" in text:
        return "tgi"
    if "mock-server" in text:
        return "mock"
    return "unknown"


def _tag(image: str) -> str | None:
    """`vllm/vllm-openai:v0.26.0` -> `v0.26.0` (None for a digest-only or untagged reference)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def _gpus(host_config: dict, env: list[str]) -> dict[str, object]:
    """The GPUs the container was given: Docker device requests and the NVIDIA runtime's variables."""
    requests = [
        {
            "driver": req.get("Driver"),
            "count": req.get("Count"),
            "device_ids": req.get("DeviceIDs") or [],
            "capabilities": req.get("Capabilities") or [],
        }
        for req in host_config.get("DeviceRequests") or []
    ]
    variables = dict(entry.partition("=")[::2] for entry in env)
    return {
        "device_requests": requests,
        "visible_devices": variables.get("NVIDIA_VISIBLE_DEVICES") or variables.get("CUDA_VISIBLE_DEVICES"),
        "runtime": host_config.get("Runtime"),
    }


def _last_health_output(state: dict) -> str:
    log = (state.get("Health") or {}).get("Log") or []
    return _one_line(log[-1].get("Output", "")) if log else "no health check output"


_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


def _parse_docker_time(text: str | None) -> int | None:
    """Docker's RFC 3339 times (nanosecond fractions, trailing zeros trimmed) -> epoch ns; None if not one."""
    match = _DOCKER_TIME.match(text or "")
    if not match:
        return None
    whole, fraction, zone = match.groups()
    zone = "+00:00" if zone == "Z" else zone
    seconds = datetime.fromisoformat(whole + zone).astimezone(timezone.utc).timestamp()
    if seconds <= 0:  # Docker's zero time (0001-01-01T00:00:00Z): never started
        return None
    return int(seconds) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def _one_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    return " ".join(text.split()) if text else type(exc).__name__
