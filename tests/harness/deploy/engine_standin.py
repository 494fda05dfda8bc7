"""A stand-in for the Docker Engine API, served over a real unix socket, for the docker SDK to talk to.

No Docker engine runs on our machines, so this serves the few endpoints that `harness.deploy.container`
uses, shaped after the Engine API reference (moby's `api/swagger.yaml`, API v1.47; docs.docker.com/
reference/api/engine/): `GET /_ping`, `GET /version` (the SDK reads `ApiVersion` from it to choose the
URL prefix), `GET /v1.x/containers/{id}/json` (ContainerInspectResponse: `Id`, `Name` with its leading
slash, `Image`, `State` with `Health`, `Config` with `Image`/`Entrypoint`/`Cmd`/`Env`/`Tty`/`Labels`,
`HostConfig.DeviceRequests`, `RestartCount`), `POST /v1.x/containers/{id}/restart?t=N` (204 No Content),
and `GET /v1.x/containers/{id}/logs` in the multiplexed stream format of a container without a TTY
(frames of an 8-byte header `[stream, 0, 0, 0, size as big-endian uint32]` then the payload; stream 1 is
stdout, 2 stderr; `timestamps=1` prefixes each line with an RFC 3339 nanosecond time and a space;
`since` is a Unix time in seconds). Errors are JSON `{"message": ...}` with 404 for an unknown
container, as the engine answers.

The container's behaviour is scripted: how long a (re)start stays `starting` before `healthy`, whether
it turns `unhealthy` or exits instead, and what it logs on each start.
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.47"


def rfc3339_nano(epoch_ns: int) -> str:
    """Docker's time format: nanoseconds, trailing zeros trimmed, UTC `Z`."""
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{whole}.{fraction}Z" if fraction else f"{whole}Z"


@dataclass
class FakeContainer:
    name: str
    image: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    device_requests: list[dict]
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: bool = True
    start_delay_s: float = 0.3  # `starting` for this long after each (re)start, then `healthy`
    outcome: str = "healthy"  # what a start leads to: healthy | unhealthy | exited
    id: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)
    created_ns: int = field(default_factory=time.time_ns)
    started_ns: int = 0
    restart_count: int = 0
    # (epoch ns, stream 1|2, text) for every line the container wrote, all instances
    log: list[tuple[int, int, str]] = field(default_factory=list)
    restarts: list[dict] = field(default_factory=list)  # the restart requests received (their query)

    def start(self) -> None:
        # A restart within the same second must still be told apart from the previous start.
        self.started_ns = max(time.time_ns(), self.started_ns + 1)
        now = self.started_ns
        self.log.append((now + 1_000, 2, f"INFO starting {self.image} {' '.join(self.cmd)}"))
        self.log.append((now + 2_000, 1, f"INFO instance {self.restart_count} loading model"))

    def state(self) -> dict:
        elapsed = (time.time_ns() - self.started_ns) / 1e9
        settled = elapsed >= self.start_delay_s
        exited = settled and self.outcome == "exited"
        state: dict = {
            "Status": "exited" if exited else "running",
            "Running": not exited,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 0 if exited else 4242,
            "ExitCode": 1 if exited else 0,
            "Error": "",
            "StartedAt": rfc3339_nano(self.started_ns),
            "FinishedAt": "0001-01-01T00:00:00Z",
        }
        if self.healthcheck:
            status = (
                "starting"
                if not settled
                else {"healthy": "healthy", "unhealthy": "unhealthy"}.get(self.outcome, "unhealthy")
            )
            log = []
            if settled:
                code = 0 if status == "healthy" else 1
                output = "" if code == 0 else "curl: (7) Failed to connect to localhost port 8000"
                log = [
                    {
                        "Start": state["StartedAt"],
                        "End": state["StartedAt"],
                        "ExitCode": code,
                        "Output": output,
                    }
                ]
            state["Health"] = {
                "Status": status,
                "FailingStreak": 0 if status != "unhealthy" else 3,
                "Log": log,
            }
        return state

    def inspect(self) -> dict:
        return {
            "Id": self.id,
            "Created": rfc3339_nano(self.created_ns),
            "Path": self.entrypoint[0] if self.entrypoint else self.cmd[0],
            "Args": (self.entrypoint[1:] + self.cmd) if self.entrypoint else self.cmd[1:],
            "State": self.state(),
            "Image": "sha256:" + "ab" * 32,
            "Name": "/" + self.name,
            "RestartCount": self.restart_count,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": {
                "NetworkMode": "joulebench_default",
                "Runtime": "runc",
                "ShmSize": 8 * 2**30,
                "DeviceRequests": self.device_requests,
                "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            },
            "Config": {
                "Hostname": self.id[:12],
                "Tty": False,
                "Env": self.env,
                "Cmd": self.cmd,
                "Entrypoint": self.entrypoint,
                "Image": self.image,
                "Labels": self.labels,
                "Healthcheck": {"Test": ["CMD", "curl", "-fsS", "http://localhost:8000/health"]}
                if self.healthcheck
                else None,
            },
            "NetworkSettings": {"Networks": {}},
        }


class EngineStandIn:
    """Serves `containers` on a unix socket; `url` is what `docker.DockerClient(base_url=...)` takes."""

    def __init__(self, socket_path: str, containers: list[FakeContainer]) -> None:
        self.socket_path = socket_path
        self.containers = containers
        self.requests: list[tuple[str, str]] = []  # (method, path with query) in the order received
        for container in containers:
            container.start()
        handler = _make_handler(self)
        self.server = _UnixHTTPServer(socket_path, handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return "unix://" + self.socket_path

    def find(self, ref: str) -> FakeContainer | None:
        for container in self.containers:
            if ref in (container.name, container.id) or (len(ref) >= 12 and container.id.startswith(ref)):
                return container
        return None

    def __enter__(self) -> EngineStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


_CONTAINER_PATH = re.compile(
    r"^/v(?P<version>[\d.]+)/containers/(?P<ref>[^/]+)/(?P<action>json|restart|logs)$"
)


def _make_handler(engine: EngineStandIn):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the engine (and the SDK's connection pool) expect

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def address_string(self) -> str:  # a unix socket peer has no host address
            return "unix"

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._route("POST")

        def _route(self, method: str) -> None:
            engine.requests.append((method, self.path))
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            path = re.sub(r"^/v[\d.]+(?=/_ping$|/version$)", "", parts.path)
            if path == "/_ping":
                return self._send(200, b"OK", "text/plain; charset=utf-8", head=method == "HEAD")
            if path == "/version" and method == "GET":
                return self._json(200, _version())
            match = _CONTAINER_PATH.match(parts.path)
            if not match:
                return self._json(404, {"message": "page not found"})
            container = engine.find(match["ref"])
            if container is None:
                return self._json(404, {"message": f"No such container: {match['ref']}"})
            action = match["action"]
            if action == "json" and method == "GET":
                return self._json(200, container.inspect())
            if action == "restart" and method == "POST":
                container.restarts.append(query)
                container.log.append((time.time_ns(), 2, "INFO received SIGTERM, shutting down"))
                container.restart_count += 1
                container.start()
                return self._send(204, b"", None)
            if action == "logs" and method == "GET":
                return self._send(200, _logs(container, query), "application/vnd.docker.multiplexed-stream")
            return self._json(405, {"message": f"{method} not allowed on {parts.path}"})

        def _json(self, status: int, body: dict) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str | None, head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Api-Version", API_VERSION)
            self.send_header("Docker-Experimental", "false")
            self.send_header("Ostype", "linux")
            self.send_header("Server", "Docker/28.2.2 (linux)")
            if content_type:
                self.send_header("Content-Type", content_type)
            if status != 204:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and not head:
                self.wfile.write(body)

    return Handler


def _version() -> dict:
    return {
        "Platform": {"Name": "Docker Engine - Community"},
        "Components": [{"Name": "Engine", "Version": "28.2.2", "Details": {"ApiVersion": API_VERSION}}],
        "Version": "28.2.2",
        "ApiVersion": API_VERSION,
        "MinAPIVersion": "1.24",
        "GitCommit": "45873be",
        "GoVersion": "go1.24.3",
        "Os": "linux",
        "Arch": "amd64",
        "KernelVersion": "6.8.0",
        "BuildTime": "2025-05-30T12:00:00.000000000+00:00",
    }


def _logs(container: FakeContainer, query: dict[str, str]) -> bytes:
    streams = {1} if query.get("stdout") in ("1", "true") else set()
    if query.get("stderr") in ("1", "true"):
        streams.add(2)
    since_ns = int(float(query.get("since", "0")) * 1e9)
    out = bytearray()
    for ts, stream, text in container.log:
        if stream not in streams or ts < since_ns:
            continue
        line = (
            f"{rfc3339_nano(ts)} {text}\n" if query.get("timestamps") in ("1", "true") else f"{text}\n"
        ).encode()
        out += struct.pack(">BxxxL", stream, len(line)) + line
    return bytes(out)
