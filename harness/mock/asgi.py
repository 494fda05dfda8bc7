"""Small ASGI helpers: the mock's endpoints are plain ASGI callables (see docs/mock.md for why).

Kept minimal on purpose: one body read, one JSON encoder (compact, non-ASCII kept raw like vLLM's
pydantic and TGI's serde output), responses in one or two `send` calls, and a watch for the client
going away.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

MAX_BODY_BYTES = 32 * 2**20
JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(obj: Any) -> str:
    return _encoder.encode(obj)


class Hangup(Exception):
    """Drop the connection without completing the response (the app returns; uvicorn closes it)."""


class HttpError(Exception):
    """An HTTP error answer, raised by validation and turned into a response by the dispatcher."""

    def __init__(
        self,
        status: int,
        body: Any,
        headers: list[tuple[bytes, bytes]] | None = None,
        content_type: bytes = b"application/json",
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body if isinstance(body, bytes) else dumps(body).encode()
        self.headers = [(b"content-type", content_type), *(headers or [])]


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or None if the client went away first. Over MAX_BODY_BYTES: 413."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HttpError(413, b"Payload Too Large", content_type=b"text/plain; charset=utf-8")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


GONE = object()  # what `read_json` returns when the client went away before its body arrived


async def read_json(
    scope: dict, receive: Receive, wrong_type: HttpError, not_json: Callable[[Exception], HttpError]
) -> Any:
    """A request's JSON body, or GONE. vLLM and TGI word their refusals differently, so each API passes
    its own: `wrong_type` when the content type is not JSON, `not_json(exc)` when the body does not parse."""
    content_type = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise wrong_type
    raw = await read_body(receive)
    if raw is None:
        return GONE
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise not_json(exc) from None


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A whole response. With its Content-Length, as vLLM's and TGI's servers send (not chunked)."""
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})


async def respond_json(
    send: Send, status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await respond(send, status, dumps(obj).encode(), [*JSON_HEADERS, *(headers or [])])


async def send_whole(
    send: Send, body: bytes, headers: list[tuple[bytes, bytes]], truncate: bool = False, hang_up: bool = False
) -> None:
    """A complete response; or (faults) one whose body is cut in half, or headers then a hang-up."""
    if truncate:
        body = body[: len(body) // 2]
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": [*headers, *length]})
    if hang_up:
        raise Hangup
    await send({"type": "http.response.body", "body": body})


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class DisconnectWatch:
    """Notices the client going away while the handler waits for tokens (one task per request)."""

    def __init__(self, receive: Receive, on_gone: Callable[[], None]) -> None:
        self.gone = False
        self._on_gone = on_gone
        self._task = asyncio.ensure_future(receive())
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future) -> None:
        if not task.cancelled() and task.exception() is None and task.result()["type"] == "http.disconnect":
            self.gone = True
            self._on_gone()

    def close(self) -> None:
        self._task.remove_done_callback(self._done)
        self._task.cancel()
