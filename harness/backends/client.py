"""HTTP for every protocol: one request in, one fully measured `RequestRecord` out.

`perform` never raises for anything the server, the network or the client's own stack does: every
outcome becomes a terminal status (`ok`, `http_error`, `timeout`, `connect_error`, `stream_error`,
`client_error`; which one, `blame.failure` decides). Only cancellation propagates, so the runner can
mark the request `cancelled` itself.

    connect_error  no connection could be made (refused, unreachable, DNS, connect timeout)
    http_error     the server answered with a status >= 300 (its error message is kept)
    timeout        no complete response within the per-request timeout (counted from sent_ns)
    stream_error   connected, but the response was cut short, malformed, or carried an error event
    client_error   the client itself failed (out of descriptors, local ports, buffers or memory; its
                   own pool; a bug): the request says nothing about the server
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal, get_args

import httpx

from foundation.flag_fields import check_choice
from foundation.redact import is_secret_header, redact_secret
from harness import __version__
from harness.backends.aiohttp_transport import WIRE_EVENTS, AiohttpTransport
from harness.backends.base import CONTENT, END, Api, StreamFault, error_text, load_json
from harness.backends.blame import describe, failure
from harness.backends.sender_transport import ScheduledSend, SenderTransport
from harness.backends.sse import SSEParser
from harness.records import RequestRecord

_now = time.monotonic_ns
_JSON = {"content-type": "application/json"}
_ERROR_BODY_LIMIT = 64 * 1024
_CLOSED = httpx.ByteStream(b"")
# The response headers a record keeps (`server_timing`, documented in docs/contracts.md): what a
# server says about this request's own timing, size and identity. Any other header is dropped, so a
# server or gateway that echoes a credential in a header of its own never puts it in a run folder;
# a name that looks like a credential (`is_secret_header`) is dropped even if listed here.
KEPT_HEADERS = frozenset({
    # TGI (router/src/server.rs): server-side times (ms; x-compute-time in s), sizes, token counts
    "x-compute-type", "x-compute-time", "x-compute-characters", "x-total-time", "x-validation-time",
    "x-queue-time", "x-inference-time", "x-time-per-token", "x-prompt-tokens", "x-generated-tokens",
    # the server's id for the request (vLLM --enable-request-id-headers, gateways): matches a row to
    # the server's own logs and traces; an id, not a credential
    "x-request-id",
    # server-side durations in general form: W3C Server-Timing, OpenAI's processing time, Envoy's
    # time spent upstream (a gateway in front of the server)
    "server-timing", "openai-processing-ms", "x-envoy-upstream-service-time",
})  # fmt: skip
# Below the keep-alive timeout of common servers (uvicorn: 5 s), so we do not reuse a connection the
# server is closing at that very moment (which would fail a request through no fault of the server).
KEEPALIVE_EXPIRY_S = 2.0
# What a protocol's reader raises on valid JSON of an unexpected shape (a number where an object
# belongs): the server's data is at fault, so these become a StreamFault, not the client's error.
_MISSHAPEN = (AttributeError, TypeError, KeyError, IndexError, ValueError)


Transport = Literal["aiohttp", "httpx", "sender"]
TRANSPORTS: tuple[Transport, ...] = get_args(Transport)


def make_client(
    base_url: str,
    *,
    pool: int,
    timeout_s: float,
    api_key: str | None = None,
    transport: str = "httpx",
) -> httpx.AsyncClient:
    """An AsyncClient whose pool never queues a request: `pool` must cover the run's peak concurrency
    (httpx's default of 100 connections would silently delay request 101 until one frees up).
    `transport`: "httpx" (httpcore), "aiohttp" (see `aiohttp_transport`: cheaper per request) or
    "sender" (see `sender_transport`: requests given a `send_at` are written by a process at their time)."""
    check_choice("--transport", transport, Transport)
    headers = {"user-agent": f"joulebench/{__version__}"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return httpx.AsyncClient(
        base_url=base_url,
        limits=httpx.Limits(
            max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=KEEPALIVE_EXPIRY_S
        ),
        timeout=httpx.Timeout(timeout_s),
        headers=headers,
        trust_env=False,  # a proxy from the environment would sit in every measurement
        follow_redirects=False,
        transport=_transport(transport, pool),
    )


def _transport(name: str, pool: int) -> httpx.AsyncBaseTransport | None:
    if name == "aiohttp":
        return AiohttpTransport(pool, KEEPALIVE_EXPIRY_S)
    if name == "sender":
        return SenderTransport(pool, KEEPALIVE_EXPIRY_S)
    return None  # httpx's own


async def perform(
    client: httpx.AsyncClient,
    api: Api,
    body: bytes,
    rec: RequestRecord,
    timeout_s: float,
    send_at: ScheduledSend | None = None,
) -> None:
    """Send `body` and measure the response into `rec`; the caller sets `rec.sent_ns` just before.
    With `send_at` (the sender transport's scheduled write), `send_at.sending` sets it instead, in the
    sender process at the request's time, and the timeout counts from that time (`due_ns`).
    The API key `make_client` was given never ends up in the record (error text, kept headers)."""
    start_ns = rec.sent_ns if send_at is None else send_at.due_ns
    assert start_ns is not None
    try:
        async with deadline(start_ns / 1e9 + timeout_s):
            await _exchange(client, api, body, rec, send_at)
    except TimeoutError:
        await _attempted(rec, send_at)
        rec.finish("timeout", _now(), f"no complete response within {timeout_s:g} s")
    except Exception as exc:
        await _attempted(rec, send_at)
        status, error = failure(exc, responded=rec.first_byte_ns is not None)
        rec.finish(status, _now(), error)
    finally:
        if rec.error:
            rec.error = redact_secret(rec.error, _api_key(client))


async def _attempted(rec: RequestRecord, send_at: ScheduledSend | None) -> None:
    """A scheduled request that failed before the sender process wrote it (no connection could be made
    for it, or the sender failed) was attempted at its time: it ends no sooner, and is stamped sent
    then, as the other transports stamp a request as they try it (its `sent` line logged as it ends).
    It never reached a socket: no wire time."""
    if send_at is not None and rec.sent_ns is None:
        await asyncio.sleep(max(0, send_at.due_ns - _now()) / 1e9)
        send_at.sending(send_at.due_ns)


def _api_key(client: httpx.AsyncClient) -> str | None:
    """The API key `make_client` sends with every request, if it was given one."""
    authorization = client.headers.get("authorization", "")
    if not authorization.startswith("Bearer "):
        return None
    return authorization.removeprefix("Bearer ") or None


class _WireStamp:
    """httpx's `trace` extension for one request: stamps `rec.wire_ns` each time a part of the request
    is written to the socket, so it ends as the time its last byte went out (sent_ns is stamped before
    the HTTP stack runs: the pool, the connection, the write all come after it)."""

    __slots__ = ("rec",)

    def __init__(self, rec: RequestRecord) -> None:
        self.rec = rec

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event in WIRE_EVENTS:
            self.rec.wire_ns = _now()


async def _exchange(
    client: httpx.AsyncClient, api: Api, body: bytes, rec: RequestRecord, send_at: ScheduledSend | None
) -> None:
    extensions: dict[str, Any] = {"trace": _WireStamp(rec)}
    if send_at is not None:
        extensions["send_at"] = send_at
    request = client.build_request(
        "POST", _url(str(client.base_url), api.path(rec.stream)), content=body, headers=_JSON,
        extensions=extensions,
    )  # fmt: skip
    response = await client.send(request, stream=True)
    try:
        rec.first_byte_ns = _now()
        rec.http_status = response.status_code
        headers = response.headers
        rec.server_timing = server_timing(headers, _api_key(client))
        api.read_headers(headers, rec)
        if response.status_code >= 300:
            text = await _read_capped(response)
            rec.finish("http_error", _now(), http_error_text(response.status_code, text, headers))
        elif rec.stream:
            await _read_stream(response, api, rec)
        else:
            data = await response.aread()
            rec.first_token_ns = rec.last_token_ns = _now()
            try:
                api.read_body(load_json(data, "response body"), headers, rec)
            except _MISSHAPEN as exc:
                raise StreamFault(f"unexpected response body: {describe(exc)}") from exc
            rec.finish("ok", _now())
    finally:
        await response.aclose()
        # httpx's Response and the stream wrapper it reads from refer to each other: one reference
        # cycle per request, which only the cyclic garbage collector frees, in pauses that delay the
        # sends due meanwhile. Closed, the body is never read again; dropping it lets reference
        # counting free the whole exchange at once.
        response.stream = _CLOSED


@functools.lru_cache(maxsize=64)
def _url(base_url: str, path: str) -> httpx.URL:
    # Parsed once: httpx would otherwise parse and merge the URL twice per request (a measurable
    # share of the client's per-request CPU). Same result as httpx's merge: base path + request path.
    return httpx.URL(base_url.rstrip("/") + path)


async def _read_stream(response: httpx.Response, api: Api, rec: RequestRecord) -> None:
    content_type = response.headers.get("content-type", "")
    if "text/event-stream" not in content_type:
        text = (await _read_capped(response)).decode("utf-8", "replace")[:120]
        raise StreamFault(f"expected an SSE stream, got {content_type or 'no content type'}: {text!r}")
    parser = SSEParser()
    chunk_ns = rec.chunk_ns
    fault: str | None = None
    ended = False
    raw = response.aiter_bytes() if "content-encoding" in response.headers else response.aiter_raw()
    try:
        async for data in raw:
            t = _now()  # every event completed by this read arrived now
            for event in parser.feed(data):
                if ended:
                    continue
                try:
                    if event.event == "error":
                        raise StreamFault(f"server error event: {event.data[:200]}")
                    flags = api.read_event(event.data, rec)
                except StreamFault as exc:
                    fault = fault or str(exc)
                    continue
                except _MISSHAPEN as exc:
                    fault = fault or f"unexpected SSE data: {describe(exc)}"
                    continue
                if flags & CONTENT:
                    chunk_ns.append(t)
                if flags & END:
                    ended = True
    finally:
        if chunk_ns:
            rec.first_token_ns, rec.last_token_ns = chunk_ns[0], chunk_ns[-1]
    if fault is not None:
        raise StreamFault(fault)
    # transformers serve (5.x) ends the response after the chunk that carries finish_reason and usage,
    # without [DONE]: a clean end once both arrived is a complete response. A stream cut before them
    # (the text may be whole, but the server's token counts are lost) still fails below.
    ended = ended or (rec.finish_reason is not None and rec.output_tokens is not None and not parser.pending)
    if not ended:
        tail = " (an unterminated event was discarded)" if parser.pending else ""
        raise StreamFault(f"stream ended before its end marker{tail}")
    rec.finish("ok", _now())


async def _read_capped(response: httpx.Response) -> bytes:
    body = b""
    async for data in response.aiter_bytes():
        body += data
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return body


def http_error_text(status: int, body: bytes, headers: Mapping[str, str]) -> str:
    try:
        message = error_text(json.loads(body))
    except ValueError:
        message = body.decode("utf-8", "replace").strip()[:200] or httpx.codes.get_reason_phrase(status)
    text = f"HTTP {status}: {message}"
    retry_after = headers.get("retry-after")
    if retry_after:
        text += f" (retry-after {retry_after})"
    return text[:300]


def server_timing(headers: Mapping[str, str], secret: str | None = None) -> dict[str, Any] | None:
    """The response headers in `KEPT_HEADERS` (TGI: queue, inference, per-token, validation time;
    token counts), numbers parsed; `secret` (the run's API key) replaced by `***` in any value."""
    kept = {
        name: _number(redact_secret(value, secret))
        for name, value in ((k.lower(), v) for k, v in headers.items())
        if name in KEPT_HEADERS and not is_secret_header(name)
    }
    return kept or None


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            number = cast(value)
        except ValueError:
            continue
        return number if math.isfinite(number) else value
    return value


@asynccontextmanager
async def deadline(when: float) -> AsyncIterator[None]:
    """Cancel the body at event-loop time `when` and raise TimeoutError (works on Python 3.10, which
    lacks `asyncio.timeout_at`). A cancellation from elsewhere passes through unchanged."""
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_at(when, expire)
    try:
        yield
    except asyncio.CancelledError:
        if not expired:
            raise
        if hasattr(task, "uncancel"):
            task.uncancel()
        raise TimeoutError from None
    finally:
        handle.cancel()
