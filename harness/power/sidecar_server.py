"""The sidecar process: a backend, the sampler, the sample ring (+ optional file log) and the HTTP endpoints.

Endpoints (stdlib HTTP server on its own threads; nothing here runs on a sampler thread):
- `GET /metrics` — Prometheus text exposition (exposition.py);
- `GET /samples?since=SEQ&limit=N&state=1` — the high-rate sample log from row SEQ on (samplelog.py):
  power, energy and, with `state=1`, the GPUs' state (clocks, temperature, power limit, throttle
  reasons) and, where the host exposes RAPL, CPU package and DRAM energy (rapl.py); without it the
  page is schema version 1, as joulebench before these rows reads it;
- `GET /time` — this host's clock now: `{"epoch_ns", "mono_ns", "boot_id", "uncertainty_ns"}`, so a
  harness on another host can estimate the offset from the request's round trip (clocksync.py);
- `GET /healthz` — backend, GPUs, rows sampled.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from foundation.errors import InputError
from harness import __version__
from harness.clock import ClockAnchor
from harness.power.exposition import make_registry, render
from harness.power.gpu_backend import PowerBackend
from harness.power.rapl import RaplSampler, discover
from harness.power.samplelog import (
    COLUMNS,
    FORMAT,
    SAMPLES_SCHEMA_VERSION,
    SampleLogWriter,
    SampleRing,
    base_header,
    base_page,
    samples_document,
)
from harness.power.sampler import Sampler, SamplerConfig
from harness.power.series import STATE_COLUMNS

MAX_PAGE_ROWS = 200_000
DEFAULT_PAGE_ROWS = 50_000


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sidecar: Sidecar


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: tighter round trips for /time probes
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK (~40 ms), which would also blur /time round trips.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Prometheus scrapes every second; an access log would be noise

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        self._send(status, json.dumps(doc, separators=(",", ":")).encode(), "application/json")

    def do_GET(self) -> None:
        sidecar = self.server.sidecar
        url = urlsplit(self.path)
        if url.path == "/metrics":
            self._send(200, render(sidecar.registry), CONTENT_TYPE_LATEST)
        elif url.path == "/samples":
            query = parse_qs(url.query)
            try:
                since = _int_param(query, "since", 0, 0, None)
                limit = _int_param(query, "limit", DEFAULT_PAGE_ROWS, 1, MAX_PAGE_ROWS)
                state = _int_param(query, "state", 0, 0, 1)
            except ValueError as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, sidecar.samples(since, limit, state=bool(state)))
        elif url.path == "/time":
            self._json(200, ClockAnchor.now().as_dict())
        elif url.path == "/healthz":
            self._json(200, sidecar.health())
        elif url.path == "/":
            index = b"joulebench sidecar: /metrics /samples?since=SEQ&state=1 /time /healthz\n"
            self._send(200, index, "text/plain")
        else:
            self._json(404, {"error": f"no such endpoint: {url.path}"})


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    if name not in query:
        return default
    raw = query[name][-1]
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an integer {bounds}, got {raw!r}")
    return int(raw)


def _bind(host: str, port: int) -> _Server:
    server_cls = _IPv6Server if ":" in host else _Server
    try:
        return server_cls((host, port), _Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise InputError(f"--port {port}: {host}:{port} is already in use") from None
        raise InputError(f"--host/--port: cannot listen on {host}:{port} ({exc.strerror or exc})") from None


def log_header(
    backend: PowerBackend,
    config: SamplerConfig,
    anchor: ClockAnchor,
    host_energy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a reader needs to interpret sample rows: clock anchor, cadence, GPUs, the state rows' values
    and the host's RAPL domains (the /samples and --log header)."""
    periods = config.periods()
    return {
        "format": FORMAT,
        "schema_version": SAMPLES_SCHEMA_VERSION,
        "sidecar_version": __version__,
        "backend": backend.name,
        "clock": anchor.as_dict(),
        "interval_s": periods["power"],
        "counter_interval_s": periods["counter"],
        # true: each power sample is taken at a random point of its period, not on a fixed phase
        "phase_jitter": config.phase_jitter,
        "gpus": [
            {
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "driver": g.driver,
                "energy_method": "counter" if g.has_counter else "integrated",
                "instant_power": g.instant_power,
            }
            for g in backend.devices()
        ],
        "columns": list(COLUMNS),
        "state_columns": list(STATE_COLUMNS),
        "state_interval_s": periods["state"],
        # {"domains": [...], "note": why there are none}; absent: a sidecar that does not sample RAPL
        **({"host_energy": host_energy} if host_energy is not None else {}),
    }


class Sidecar:
    def __init__(
        self,
        backend: PowerBackend,
        *,
        host: str = "127.0.0.1",
        port: int = 9400,
        interval_s: float = 0.1,
        log_path: Path | None = None,
        ring_capacity: int = 2**19,
    ) -> None:
        self.backend = backend
        self.anchor = ClockAnchor.now()
        self.ring = SampleRing(ring_capacity)
        self.sampler = Sampler(backend, self.ring, SamplerConfig(interval_s=interval_s))
        domains, note = discover()
        self.host_energy = {"domains": [d.as_dict() for d in domains], "note": note}
        self.rapl = RaplSampler(self.ring, domains, self.sampler.config.periods()["counter"])
        self.registry = make_registry(self.sampler, self.anchor, backend.name, self.rapl)
        self._server = _bind(host, port)
        self._server.sidecar = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="sidecar-http", daemon=True)
        try:
            self.writer = SampleLogWriter(log_path, self.ring, self.header) if log_path else None
        except InputError:
            self._server.server_close()
            raise
        self._stopped = False

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def header(self) -> dict[str, Any]:
        return log_header(self.backend, self.sampler.config, self.anchor, self.host_energy)

    def samples(self, since: int, limit: int, *, state: bool = False) -> dict[str, Any]:
        """A `/samples` page; `state`: also the state and host energy rows (schema version 2)."""
        if state:
            rows, dropped, next_seq = self.ring.since(since, limit)
            return samples_document(self.header(), rows, dropped, next_seq)
        rows, dropped, next_seq = base_page(self.ring, since, limit)
        return samples_document(base_header(self.header()), rows, dropped, next_seq)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "backend": self.backend.name,
            "gpus": [
                {"index": g.identity.index, "uuid": g.identity.uuid, "method": g.method, "errors": g.errors}
                for g in self.sampler.gpus()
            ],
            "rows": self.ring.next_seq,
        }

    def start(self) -> None:
        self.sampler.start()
        self.rapl.start()
        if self.writer:
            self.writer.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and sampling, flush the log, release the backend (safe to call twice)."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():  # shutdown() would wait forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()
        self.sampler.stop()
        self.rapl.stop()
        if self.writer:
            self.writer.stop()
        self.backend.close()
