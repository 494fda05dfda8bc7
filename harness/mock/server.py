"""The mock server's ASGI application and how it is served (uvicorn on a pre-bound socket).

Routes (both APIs on one port; `flavour` picks which /metrics families and /v1/models shape):

    GET  /health, /metrics, /sim/gpu, /sim/state, /sim/requests
    GET  /v1/models, /version                    POST /v1/completions, /v1/chat/completions
    GET  /info                                   POST /generate, /generate_stream, /

Start-up protocol for scripts and tests: the server binds its socket first (port 0 picks a free
one), then prints its base URL, e.g. `http://127.0.0.1:41234`, as the first line on stdout, and
writes `--ready-file` if asked (JSON: url, host, port, pid). Both happen only once it accepts
connections.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn

from harness.mock import openai_api, tgi_api
from harness.mock.asgi import Hangup, HttpError, Receive, Send, respond, respond_json
from harness.mock.gpu_host import host_gpus
from harness.mock.state import MockState, Settings

Handler = Callable[[MockState, dict, Receive, Send], Awaitable[None]]
_log = logging.getLogger("harness.mock")

_METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


async def health(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    await respond(send, 200, b"", [])


async def metrics(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    assert state.live is not None
    state.live.sync()
    await respond(send, 200, state.metrics.render().encode(), [(b"content-type", _METRICS_TYPE)])


def sim_gpu_document(state: MockState) -> dict:
    """The simulated GPU as docs/contracts.md specifies it (schema_version 1)."""
    assert state.live is not None
    reading = state.live.read_gpu()
    gpu = reading.gpu
    return {
        "schema_version": 1,
        "clock": {"epoch_ns": reading.epoch_ns, "mono_ns": reading.mono_ns, "boot_id": state.live.boot_id},
        "sim_time_s": reading.sim_time_s,
        "speed": state.settings.speed,
        "profile": state.profile.name,
        "gpus": host_gpus(state.settings.host, state.profile, gpu, reading.sim_time_s),
    }


async def sim_gpu(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    await respond_json(send, 200, sim_gpu_document(state))


async def sim_state(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    """The simulator's internals, for debugging and tests (not a contract)."""
    assert state.live is not None
    reading = state.live.read_gpu()
    sim = state.sim
    doc = {
        "sim_time_s": reading.sim_time_s,
        "speed": state.settings.speed,
        "seed": state.settings.seed,
        "profile": state.profile.name,
        "flavour": state.settings.flavour,
        "model": state.settings.model_name,
        "prompt_tokens_counted_by": state.counter.source,
        "in_flight": state.in_flight,
        "frontend_queue": sim.frontend_queue,
        "waiting": sim.num_waiting,
        "running": len(sim.running),
        "kv_cache_usage": sim.kv_usage,
        "steps": sim.steps,
        "preemptions": sim.preemptions,
        "prompt_tokens_total": sim.prompt_tokens_total,
        "generation_tokens_total": sim.generation_tokens_total,
        "energy_j": reading.gpu.energy_j,
        "busy_s": reading.gpu.busy_s,
    }
    await respond_json(send, 200, doc)


async def sim_requests(state: MockState, scope: dict, receive: Receive, send: Send) -> None:
    """Each request's true share of the simulated energy (`truth.py`; for tests, not a contract)."""
    assert state.live is not None
    reading = state.live.read_gpu()
    doc = state.truth.document(reading.gpu.energy_j, reading.sim_time_s, state.sim.step is not None)
    await respond_json(send, 200, doc)


ROUTES: dict[tuple[str, str], Handler] = {
    ("GET", "/health"): health,
    ("GET", "/metrics"): metrics,
    ("GET", "/sim/gpu"): sim_gpu,
    ("GET", "/sim/state"): sim_state,
    ("GET", "/sim/requests"): sim_requests,
    ("GET", "/v1/models"): openai_api.models,
    ("GET", "/version"): openai_api.version,
    ("POST", "/v1/completions"): openai_api.completions,
    ("POST", "/v1/chat/completions"): openai_api.chat_completions,
    ("GET", "/info"): tgi_api.info,
    ("POST", "/generate"): tgi_api.generate,
    ("POST", "/generate_stream"): tgi_api.generate_stream,
    ("POST", "/"): tgi_api.compat_generate,
}
_PATHS = {path for _, path in ROUTES}


class MockApp:
    """The ASGI application: a route table, and errors turned into responses (never into a crash)."""

    def __init__(self, state: MockState, on_ready: Callable[[], None] | None = None) -> None:
        self.state = state
        self.on_ready = on_ready

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        handler = ROUTES.get((scope["method"], scope["path"]))
        if handler is None:
            if scope["path"] in _PATHS:
                await respond_json(send, 405, {"detail": "Method Not Allowed"})
            else:
                await respond_json(send, 404, {"detail": "Not Found"})
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await handler(self.state, scope, receive, tracked)
        except HttpError as exc:
            if not started:
                await respond(send, exc.status, exc.body, exc.headers)
        except Hangup:
            return  # uvicorn closes a connection whose response is incomplete
        except Exception:
            _log.error(
                "mock server: unexpected error on %s %s\n%s",
                scope["method"],
                scope["path"],
                traceback.format_exc(),
            )
            if not started:
                await respond_json(
                    send,
                    500,
                    {"error": {"message": "internal error", "type": "InternalServerError", "code": 500}},
                )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.state.start()
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


class _HangupFilter(logging.Filter):
    """Injected disconnects end responses early on purpose: not an error worth a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


def bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def serve(
    settings: Settings,
    sock: socket.socket,
    ready_file: Path | None = None,
    http: str = "auto",
    loop: str = "auto",
    log_level: str = "warning",
) -> None:
    """Serve until SIGINT/SIGTERM. The socket is already bound, so the URL is known before start."""
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def ready() -> None:
        # The socket listens already; connections made from here on wait in its backlog.
        if ready_file is not None:
            doc = {"url": url, "host": host, "port": port, "pid": os.getpid()}
            tmp = ready_file.with_name(ready_file.name + ".tmp")
            tmp.write_text(json.dumps(doc) + "\n")
            tmp.replace(ready_file)
        print(url, flush=True)

    state = MockState(settings)
    config = uvicorn.Config(
        MockApp(state, on_ready=ready),
        http=http,
        loop=loop,
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=2,
        server_header=True,
    )
    logging.getLogger("uvicorn.error").addFilter(_HangupFilter())
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler it found:
    # make that one a clean exit (status 0, ready file removed) rather than death by signal.
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
    sys.stdout.flush()


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
