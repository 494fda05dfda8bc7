"""`joulebench shape`: the proxy's life, from bound sockets to the log's last line.

Start-up: both sockets are bound first (a port in use is one line naming the flag), then the log is
opened and the policy started; the base URL is printed as the first stdout line once the proxy
accepts connections (as `joulebench mock-server` does), and a line on stderr names the policy, the
upstream, the metrics URL and the log.

Ctrl-C or SIGTERM: the proxy stops accepting connections and answers new requests on open ones 503;
the policy goes on releasing what it holds and in-flight requests go on, for up to `--grace`
seconds (a second signal cuts it short). Then what is still held is answered 503 and recorded
`cancelled_while_held`, what is in flight is cut and recorded `cancelled`, and the log's last line
says why the proxy stopped and how many of each. Exit status 0 after SIGTERM, 130 after Ctrl-C.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web

from foundation.errors import InputError
from harness.clock import ClockAnchor, new_event_loop
from harness.shaping_proxy.proxy_config import ProxyConfig
from harness.shaping_proxy.proxy_descriptors import raise_fd_limit
from harness.shaping_proxy.proxy_executor import PolicyExecutor
from harness.shaping_proxy.proxy_log import ProxyLog
from harness.shaping_proxy.proxy_metrics import CONTENT_TYPE, ProxyMetrics
from harness.shaping_proxy.proxy_relay import MAX_BODY_BYTES, ShapingProxy

CONNECT_TIMEOUT_S = 10.0
_EXIT_STATUS = {"SIGTERM": 0, "SIGINT": 130}


def bind(host: str, port: int, flags: tuple[str, str]) -> socket.socket:
    """A listening socket, or one line naming the host and port `flags` (port 0: a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(4096)
        except OSError:
            sock.close()
            raise
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"{flags[0]} {host!r} {flags[1]} {port}: cannot listen there ({reason})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve_proxy(config: ProxyConfig) -> int:
    """Run the proxy until Ctrl-C or SIGTERM; the exit status."""
    listen = bind(config.host, config.port, ("--host", "--port"))
    try:
        metrics_sock = bind(config.metrics_host, config.metrics_port, ("--metrics-host", "--metrics-port"))
    except InputError:
        listen.close()
        raise
    open_files = raise_fd_limit()
    if open_files < config.max_held + 64:
        print(f"joulebench shape: warning: --max-held {config.max_held} held requests need as many open "
              f"files, and this process may open {open_files} (ulimit -n)", file=sys.stderr)  # fmt: skip
    loop = new_event_loop()
    try:
        return loop.run_until_complete(_serve(config, listen, metrics_sock))
    finally:
        listen.close()
        metrics_sock.close()
        loop.close()


async def _serve(config: ProxyConfig, listen: socket.socket, metrics_sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    executor = PolicyExecutor(config.spec.create(np.random.default_rng(config.seed)), loop, config.spec.name)
    anchor = ClockAnchor.now()
    header = {
        "policy": {"kind": config.spec.kind, "name": config.spec.name, **config.spec.model_dump(mode="json")},
        "policy_start_ns": executor.start_ns,
        "upstream": config.upstream_url,
        "listen": url_of(listen),
        "max_held": config.max_held,
        "grace_s": config.grace_s,
    }
    try:
        log = ProxyLog(config.log, anchor, header)
    except OSError as exc:
        raise InputError(f"--log {config.log}: cannot write there ({exc.strerror or exc})") from None
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S),
        auto_decompress=False,  # bytes pass as the upstream sent them, Content-Encoding and all
        # Nothing of the client library's own: only what the client sent reaches the upstream.
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
    )
    proxy = ShapingProxy(config.upstream_url, executor, session, log, config.max_held, config.spec.name)
    runner = web.ServerRunner(
        web.Server(proxy.handle, request_factory=_make_request, handler_cancellation=True),
        shutdown_timeout=1.0,
        access_log=None,
    )
    metrics_runner = web.ServerRunner(web.Server(_metrics_handler(proxy.metrics)), access_log=None)
    stop = _Signals(loop)
    try:
        await runner.setup()
        await metrics_runner.setup()
        site = web.SockSite(runner, listen, backlog=4096)
        await site.start()
        await web.SockSite(metrics_runner, metrics_sock).start()
        print(url_of(listen), flush=True)
        print(f"joulebench shape: policy {config.spec.name}; upstream {config.upstream_url}; metrics "
              f"{url_of(metrics_sock)}/metrics" + (f"; log {config.log}" if config.log else ""),
              file=sys.stderr, flush=True)  # fmt: skip
        reason = await stop.first()
        await site.stop()  # no new connections; open ones get 503 from here on
        deadline_ns = time.monotonic_ns() + round(config.grace_s * 1e9)
        ended = await proxy.drain(deadline_ns, stop.second)
        log.end(t=time.monotonic_ns(), reason=reason, requests=proxy.received, **ended)
        print(f"joulebench shape: stopped ({reason}) after {proxy.received} requests; held at stop "
              f"{ended['held_at_stop']} ({ended['held_cancelled']} answered 503 after the grace), in "
              f"flight {ended['in_flight_at_stop']} ({ended['in_flight_cut']} cut)",
              file=sys.stderr, flush=True)  # fmt: skip
        return _EXIT_STATUS[reason]
    finally:
        stop.close()
        await runner.cleanup()
        await metrics_runner.cleanup()
        await session.close()
        log.close()


def _make_request(
    message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
) -> web.BaseRequest:
    # aiohttp's own factory, with room for long prompts (its default limit is 1 MiB).
    loop = asyncio.get_running_loop()
    return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY_BYTES)


def _metrics_handler(metrics: ProxyMetrics) -> Any:
    async def handle(request: web.BaseRequest) -> web.Response:
        if request.path != "/metrics":
            return web.Response(status=404, text="only /metrics here\n")
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    return handle


class _Signals:
    """SIGINT and SIGTERM: the first one stops the proxy; a second one cuts the grace short."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._first: asyncio.Future[str] = loop.create_future()
        self.second = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._received, sig.name)

    def _received(self, name: str) -> None:
        if self._first.done():
            self.second.set()
        else:
            self._first.set_result(name)

    async def first(self) -> str:
        return await self._first

    def close(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)
