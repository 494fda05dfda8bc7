"""httpx requests carried by aiohttp's connection pool (`--transport aiohttp`, the default).

Why: httpcore's pool rescans every connection and every queued request on each request and each
response end (httpx issue #3215), so its cost per request grows with the connections open; at the
concurrency an open-loop run reaches, the client itself falls behind the schedule. aiohttp keeps idle
connections in a per-host deque. `benchmarks/loadgen_fidelity.py` measures both transports (client CPU
per request, lateness, realized rate); its results are in benchmarks/results/loadgen_fidelity.md.

The client code above it still sees httpx: Request in, Response with an async byte stream out, and
httpx's exceptions, mapped so the runner's status taxonomy holds: no connection -> ConnectError; a
connection that breaks or answers garbage -> RemoteProtocolError / ReadError. Each keeps aiohttp's
exception as its cause, so a failure of the client's own (EMFILE from `socket()` arrives as a
ClientConnectorError) is still told apart by its errno (`blame.py`); anything that is neither
aiohttp's nor the socket's (a closed session, a bug) passes through unmapped: the client's own error.

httpx's `trace` request extension (the callable httpcore calls at each step of an exchange) is served
too, for the steps that put the request on the wire: aiohttp's trace hooks report its headers and each
body chunk as they are written, under httpcore's event names (`WIRE_EVENTS`), so one callable stamps
the wire time (`RequestRecord.wire_ns`) whichever transport runs. aiohttp calls its hook just before
the write, which follows at once (the socket write is synchronous), so the stamp is the write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx

# httpcore's trace events (`http11.<step>.complete`) for the request's headers and body written.
HEADERS_SENT = "http11.send_request_headers.complete"
BODY_SENT = "http11.send_request_body.complete"
WIRE_EVENTS = frozenset({HEADERS_SENT, BODY_SENT})


async def _headers_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:
        await ctx.trace_request_ctx(HEADERS_SENT, {})


async def _chunk_sent(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
    if ctx.trace_request_ctx is not None:  # every chunk: the last one is the body's end
        await ctx.trace_request_ctx(BODY_SENT, {})


def _wire_trace() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_headers_sent)
    trace.on_request_chunk_sent.append(_chunk_sent)
    return trace


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, pool: int, keepalive_s: float) -> None:
        self._pool = pool
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession belongs to the event loop it is created in.
        connector = aiohttp.TCPConnector(limit=self._pool, keepalive_timeout=self._keepalive_s)
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # httpx decodes content-encoding itself
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),  # the caller enforces the per-request deadline
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            trace_configs=[_wire_trace()],
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        try:
            response = await self._session.request(
                request.method,
                # httpx has already turned a URL's userinfo into the Authorization header; aiohttp
                # refuses a request that has both.
                str(request.url.copy_with(username=None, password=None)),
                headers=list(request.headers.multi_items()),
                data=request.content or None,
                allow_redirects=False,
                trace_request_ctx=request.extensions.get("trace"),
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.RemoteProtocolError(f"{type(exc).__name__}: {exc}", request=request) from exc
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._response.content.iter_any():  # each read as it arrives
                yield data
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "timed out", request=self._request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=self._request) from exc

    async def aclose(self) -> None:
        # Back to the pool when fully read; otherwise aiohttp closes the connection.
        self._response.release()
