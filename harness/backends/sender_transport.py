"""httpx requests on joulebench's own HTTP/1.1 connections, written at their deadlines by a sender
process (`--transport sender`).

A request that carries the `send_at` extension (a `ScheduledSend`: the runner's open-loop sends) is
prepared on the event loop ahead of its deadline: a connection is taken from the pool (or opened),
the request serialized, and the bytes handed to the `SenderProcess`, which writes them at the
deadline, whatever the loop is parsing then (harness/backends/sender_process.py says why and how). Any
other request (warm-up, closed loop, a policy's release) is written at once by the loop, as aiohttp
would. The loop reads every response: httptools parses it, one body piece per network read (so events that
arrive together share a time, as with aiohttp's `iter_any`).

A scheduled request whose connection fails before its time (the server closed an idle connection,
or answered early, as a server's 408 on an idle keep-alive does) was never written: it is taken back
and handed over again on a new connection, once. One for which no connection can be made fails at
its time, not before (as a request of the other transports would, its connection tried then).

Only plain `http://` targets: a TLS connection's bytes cannot be written around its TLS layer.
Failures map to httpx's exceptions as `aiohttp_transport` maps aiohttp's: no connection ->
ConnectError, a failed write -> WriteError (each with the OSError as its cause, so `blame.py` still
finds a client's own errno); a connection that breaks or answers garbage -> RemoteProtocolError /
ReadError.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import httptools
import httpx

from harness.backends.aiohttp_transport import BODY_SENT, HEADERS_SENT
from harness.backends.sender_process import Departure, SenderProcess

_now = time.monotonic_ns


class ScheduledSend(Protocol):
    """The `send_at` request extension: when to write it, and what to stamp.

    - `sent_line`: (descriptor, head, tail) of the caller's crash-safe `sent` line: the sender
      process writes head + the time it decided + tail before the write; None: no line;
    - `sending(t, logged)`: once the sender decided to write, before the withdrawal that finds it
      sent returns (the request is sent: stamp it; log its line unless `logged`, written already);
    - `on_wire(t)`: just before the bytes are written (by the thread, or by the loop for what the
      socket's buffer did not take at once): stamped before, not after, since the response may be in
      and the request ended before the writer runs again; `on_wire(None)` if the write failed with
      nothing written (it never reached the socket);
    - `written()`: on the loop, once every byte is out;
    - `withdraw`: set by the transport once the request is handed over: takes it back unless it was
      sent (True: never will be). Before that, nothing was handed over."""

    due_ns: int
    withdraw: Callable[[], bool] | None

    @property
    def sent_line(self) -> tuple[int, bytes, bytes] | None: ...

    def sending(self, t_ns: int, logged: bool = False) -> None: ...

    def on_wire(self, t_ns: int | None) -> None: ...

    def written(self) -> None: ...


class _Head:
    """A response's status line and headers."""

    __slots__ = ("headers", "reason", "status")

    def __init__(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status, self.reason, self.headers = status, reason, headers


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection, read by the loop. httptools (llhttp, in C, as uvicorn uses) parses
    each response: h11, in Python, cost 24-38.9 times its CPU per streamed response, 0.15 of a core
    at 1,000 16-token responses a second on the loop that must also keep up with the schedule
    (benchmarks/results/response_parsing.md). The parser's callbacks below run inside `feed_data`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0
        self.key: tuple[str, int] = ("", 0)
        self.body_read = False  # this exchange's body was read to its end
        self.writing = False  # handed to the sender process, its bytes not all written yet
        self.complete = False  # this exchange's response was parsed to its end
        self.keep_alive = False  # ... and the server keeps the connection open after it
        # An exchange's parser, from its request until its response's end; None: nothing is due,
        # so any byte the server sends then is out of turn.
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[_Head] | None = None
        self._body: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._reason: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._pieces: list[bytes] = []
        self._head_only = False  # a HEAD request: its response has no body, whatever it says
        self._until_close = False  # the body ends where the connection does

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    @property
    def fd(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("socket").fileno())

    def reusable(self) -> bool:
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and self.transport.get_write_buffer_size() == 0  # the sender writes around the buffer
            and not self.writing
        )

    def expect_response(self, method: str) -> asyncio.Future[_Head]:
        """A new exchange: its own parser, head and body (nothing of an earlier one carries over)."""
        self._parser = httptools.HttpResponseParser(self)
        self._head = asyncio.get_running_loop().create_future()
        self._body = asyncio.Queue()
        self._reason, self._headers, self._pieces = [], [], []
        self._head_only = method == "HEAD"
        self.body_read = self.complete = self.keep_alive = self._until_close = False
        return self._head

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # the server speaks out of turn (a 408 on an idle connection): not reused
            self.close()
            return
        try:
            parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            # A response out of turn (more bytes after this one's end), garbage, or a protocol switch
            # (not asked for): the exchange fails if it was still open, and the connection is not reused.
            why = (
                "the server switched protocols, which was not asked for"
                if isinstance(exc, httptools.HttpParserUpgrade)  # its text is only a byte offset
                else f"invalid response: {exc.__context__ or exc}"
            )
            self._fail(httpx.RemoteProtocolError(why))
            self.close()
            return
        if self._pieces:
            self._body.put_nowait(b"".join(self._pieces))
            self._pieces = []

    def eof_received(self) -> bool | None:
        if self._parser is not None:
            head = self._head
            if self._until_close and head is not None and head.done() and not head.exception():
                self._end(keep_alive=False)
            else:
                closed = "the server closed the connection before its response's end"
                self._fail(httpx.RemoteProtocolError(closed))
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport = None
            error = httpx.ReadError(f"connection closed: {exc}" if exc else "connection closed")
            error.__cause__ = exc
            self._fail(error)

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self._parser is None:  # the exchange's response has ended: no other is due
            raise httpx.RemoteProtocolError("a response the client did not ask for")

    def on_status(self, reason: bytes) -> None:
        self._reason.append(reason)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head is not None and self._head.done():  # a chunked body's trailers: not the head's
            return
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # informational (100 Continue): the response proper follows
            self._reason, self._headers = [], []
            return
        # RFC 9112 6.3: a response's body is chunked when chunked is its last transfer coding, else
        # (another coding, as gzip alone) it ends where the connection does; without
        # Transfer-Encoding, Content-Length frames it.
        codings = [v for n, v in self._headers if n.lower() == b"transfer-encoding"]
        if codings:
            framed = codings[-1].rsplit(b",", 1)[-1].strip().lower() == b"chunked"
        else:
            framed = any(n.lower() == b"content-length" for n, _ in self._headers)
        self._until_close = not framed and status not in (204, 304) and not self._head_only
        if self._head is not None and not self._head.done():
            self._head.set_result(_Head(status, b"".join(self._reason), list(self._headers)))
        if self._head_only:
            self._end(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)

    def on_message_complete(self) -> None:
        if self._parser is None:  # a HEAD response, ended at its head
            return
        if 100 <= self._parser.get_status_code() < 200:
            return
        self._end(keep_alive=self._parser.should_keep_alive())

    def _end(self, keep_alive: bool) -> None:
        """The response is whole: its body's last pieces, then its end."""
        if self._pieces:
            self._body.put_nowait(b"".join(self._pieces))
            self._pieces = []
        self._body.put_nowait(None)
        self.complete, self.keep_alive = True, keep_alive
        self._parser = None

    def fail_write(self, exc: BaseException) -> None:
        error = httpx.WriteError(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._fail(error)
        self.close()

    def fail(self, exc: Exception) -> None:
        """The request fails with `exc` (the sender's own failure), and the connection with it."""
        self._fail(exc)
        self.close()

    def _fail(self, exc: Exception) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_exception(exc)
            return
        self._body.put_nowait(exc)

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            item = await self._body.get()
            if item is None:
                self.body_read = True
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Unsent(Exception):
    """A scheduled request's connection failed before its time: it was never written."""


class SenderTransport(httpx.AsyncBaseTransport):
    def __init__(self, pool: int, keepalive_s: float) -> None:
        self._keepalive_ns = round(keepalive_s * 1e9)
        self._pool = pool
        self._slots: asyncio.Semaphore | None = None  # requests at once: at most `pool` connections
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._sender: SenderProcess | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"--transport sender: only http:// targets (got {request.url.scheme}://)", request=request
            )
        if self._slots is None:  # made on first use: it belongs to the running loop
            self._slots = asyncio.Semaphore(self._pool)
            if not self._closed:  # started with the first request (a warm-up's), ready for the schedule
                self._sender = SenderProcess()
                self._sender.start(asyncio.get_running_loop())
        await self._slots.acquire()
        try:
            try:
                return await self._exchange(await self._connection(request), request)
            except _Unsent:  # taken back before its time: once more, on a new connection
                try:
                    return await self._exchange(await self._connection(request), request)
                except _Unsent as again:  # the server's doing, twice: its own error
                    assert again.__cause__ is not None
                    raise again.__cause__ from None
        except BaseException:
            self._slots.release()
            raise

    async def _connection(self, request: httpx.Request) -> _Connection:
        key = (request.url.host, request.url.port or 80)
        idle = self._idle.setdefault(key, [])
        now = _now()
        while idle and now - idle[0].idle_since > self._keepalive_ns:  # the oldest first
            idle.pop(0).close()
        while idle:
            conn = idle.pop()  # the most recently used: the warmest
            if conn.reusable():
                return conn
            conn.close()
        try:
            _, conn = await asyncio.get_running_loop().create_connection(_Connection, *key)
        except OSError as exc:
            scheduled: ScheduledSend | None = request.extensions.get("send_at")
            if scheduled is not None:  # fails at its time, as it would have with the other transports
                await asyncio.sleep(max(0, scheduled.due_ns - _now()) / 1e9)
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        conn.key = key
        return conn

    async def _exchange(self, conn: _Connection, request: httpx.Request) -> httpx.Response:
        scheduled: ScheduledSend | None = request.extensions.get("send_at")
        departure: Departure | None = None
        try:
            data = _serialized(request)
            head = conn.expect_response(request.method)
            if scheduled is None:
                trace = request.extensions.get("trace")
                if trace is not None:  # stamped just before the write, as aiohttp's hooks are
                    await trace(HEADERS_SENT, {})
                    await trace(BODY_SENT, {})
                assert conn.transport is not None
                conn.transport.write(data)
            else:
                departure = self._schedule(conn, data, scheduled)
            response = await head
            if departure is not None and self._withdraw(departure):
                early = httpx.RemoteProtocolError("the server answered before the request was sent")
                raise _Unsent from early
        except BaseException as exc:
            conn.close()
            # Not yet written (taken back now): a failure of its connection is retried on another.
            unsent = departure is not None and self._withdraw(departure)
            if unsent and isinstance(exc, Exception) and not isinstance(exc, _Unsent):
                if self._sender is not None and self._sender.failed:  # the client's own: no retry
                    raise RuntimeError(self._sender.failed) from exc
                raise _Unsent from exc
            if isinstance(exc, httpx.TransportError):
                exc.request = request
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, conn, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason},
        )

    def _withdraw(self, departure: Departure) -> bool:
        return self._sender is not None and self._sender.withdraw(departure)

    def _schedule(self, conn: _Connection, data: bytes, scheduled: ScheduledSend) -> Departure:
        """Hand the request's bytes to the sender process, to be written at `scheduled.due_ns`."""
        if self._closed or self._sender is None:
            raise RuntimeError("the transport is closed")
        sender = self._sender
        loop = asyncio.get_running_loop()

        def written(rest: bytes, error: BaseException | None) -> None:  # later on the loop: no reentry
            if isinstance(error, RuntimeError):  # the sender's own failure: the client's error, as is
                loop.call_soon(conn.fail, error)
            elif error is not None:
                if rest == data:
                    scheduled.on_wire(None)
                loop.call_soon(conn.fail_write, error)
            elif rest:  # the socket's buffer was full: the loop writes the rest
                loop.call_soon(_write_rest, conn, rest, scheduled)
            else:
                loop.call_soon(_written_out, conn, scheduled)

        line = scheduled.sent_line
        conn.writing = True  # not back to the pool before its last byte is out
        fd = os.dup(conn.fd)
        departure = Departure(scheduled.due_ns, fd, data, line, scheduled.sending, scheduled.on_wire, written)
        sender.submit(departure)  # it closes `fd`, whatever happens
        scheduled.withdraw = lambda: sender.withdraw(departure)
        return departure

    def release(self, conn: _Connection) -> None:
        """A response read to its end, or given up: its connection back to the pool, or closed."""
        assert self._slots is not None
        self._slots.release()
        if conn.complete and conn.keep_alive and conn.body_read and conn.reusable() and not self._closed:
            conn.idle_since = _now()
            self._idle.setdefault(conn.key, []).append(conn)
            return
        conn.close()

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        if self._sender is not None:
            self._sender.stop()
            self._sender = None


_UNSAFE = re.compile(rb"[\r\n\0]")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2: a method is a token


def _serialized(request: httpx.Request) -> bytes:
    """The request as HTTP/1.1 bytes: httpx has set Host and Content-Length. Connection is left out,
    so that the connection is kept alive (HTTP/1.1's default)."""
    method = request.method.encode("ascii", "replace")
    if not _TOKEN.fullmatch(method):
        raise httpx.LocalProtocolError(f"method {request.method!r}: not an HTTP token", request=request)
    if "transfer-encoding" in request.headers:  # a streamed body: its length is unknown until sent
        raise httpx.LocalProtocolError("the sender writes bodies of known length only", request=request)
    lines = [b"%s %s HTTP/1.1" % (method, request.url.raw_path)]
    for name, value in request.headers.raw:
        if _UNSAFE.search(name) or _UNSAFE.search(value):  # would split the header: another request
            raise httpx.LocalProtocolError(
                f"header {name!r}: CR, LF and NUL are not allowed", request=request
            )
        if name.lower() != b"connection":
            lines.append(name + b": " + value)
    lines.append(b"")
    lines.append(request.content)
    return b"\r\n".join(lines)


def _write_rest(conn: _Connection, rest: bytes, scheduled: ScheduledSend) -> None:
    if conn.transport is None:  # gone meanwhile: its reader fails the request
        return
    scheduled.on_wire(_now())
    conn.transport.write(rest)
    _written_out(conn, scheduled)


def _written_out(conn: _Connection, scheduled: ScheduledSend) -> None:
    conn.writing = False
    scheduled.written()


class _Body(httpx.AsyncByteStream):
    def __init__(self, owner: SenderTransport, conn: _Connection, request: httpx.Request) -> None:
        self._owner, self._conn, self._request = owner, conn, request
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for data in self._conn.body():
                yield data
        except httpx.TransportError as exc:
            exc.request = self._request
            raise

    async def aclose(self) -> None:
        if not self._released:  # back to the pool if read to its end; otherwise closed
            self._released = True
            self._owner.release(self._conn)
