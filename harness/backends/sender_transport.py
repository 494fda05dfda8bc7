"""httpx requests on joulebench's own HTTP/1.1 connections, written at their deadlines by a sender
thread (`--transport sender`).

A request that carries the `send_at` extension (a `ScheduledSend`: the runner's open-loop sends) is
prepared on the event loop ahead of its deadline: a connection is taken from the pool (or opened),
the request serialized (h11), and the bytes handed to the `SenderThread`, which writes them at the
deadline, whatever the loop is parsing then (harness/backends/sender_thread.py says why and how). Any
other request (warm-up, closed loop, a policy's release) is written at once by the loop, as aiohttp
would. The loop reads every response: h11 parses it, one body piece per network read (so events that
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
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import h11
import httpx

from harness.backends.aiohttp_transport import BODY_SENT, HEADERS_SENT
from harness.backends.sender_thread import Departure, SenderThread

_now = time.monotonic_ns


class ScheduledSend(Protocol):
    """The `send_at` request extension: when to write it, and what to stamp.

    - `sending(t)`: in the sender thread once it decided to write, under its lock (the request is
      sent: stamp it, log it);
    - `on_wire(t)`: just before the bytes are written (by the thread, or by the loop for what the
      socket's buffer did not take at once): stamped before, not after, since the response may be in
      and the request ended before the writer runs again; `on_wire(None)` if the write failed with
      nothing written (it never reached the socket);
    - `written()`: on the loop, once every byte is out;
    - `withdraw`: set by the transport once the request is handed over: takes it back unless it was
      sent (True: never will be). Before that, nothing was handed over."""

    due_ns: int
    withdraw: Callable[[], bool] | None

    def sending(self, t_ns: int) -> None: ...

    def on_wire(self, t_ns: int | None) -> None: ...

    def written(self) -> None: ...


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: h11's client state, read by the loop."""

    def __init__(self) -> None:
        self.h11 = h11.Connection(h11.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0
        self.key: tuple[str, int] = ("", 0)
        self.body_read = False  # this exchange's body was read to its end
        self.writing = False  # handed to the sender thread, its bytes not all written yet
        self._head: asyncio.Future[h11.Response] | None = None
        self._body: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

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
            and self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
        )

    def expect_response(self) -> asyncio.Future[h11.Response]:
        """A new exchange: its own head and body (nothing of an earlier one carries over)."""
        self._head = asyncio.get_running_loop().create_future()
        self._body = asyncio.Queue()
        self.body_read = False
        return self._head

    def data_received(self, data: bytes) -> None:
        self._feed(data)

    def eof_received(self) -> bool | None:
        self._feed(b"")
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.transport = None
            error = httpx.ReadError(f"connection closed: {exc}" if exc else "connection closed")
            error.__cause__ = exc
            self._fail(error)

    def _feed(self, data: bytes) -> None:
        try:
            self.h11.receive_data(data)
            pieces: list[bytes] = []
            while True:
                event = self.h11.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    break
                if isinstance(event, h11.Response):
                    if self._head is not None and not self._head.done():
                        self._head.set_result(event)
                elif isinstance(event, h11.Data):
                    pieces.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    if pieces:
                        self._body.put_nowait(b"".join(pieces))
                        pieces = []
                    self._body.put_nowait(None)
            if pieces:
                self._body.put_nowait(b"".join(pieces))
        except h11.RemoteProtocolError as exc:
            self._fail(httpx.RemoteProtocolError(str(exc)))
            self.close()

    def fail_write(self, exc: BaseException) -> None:
        error = httpx.WriteError(f"{type(exc).__name__}: {exc}")
        error.__cause__ = exc
        self._fail(error)
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
        self._sender: SenderThread | None = None
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(
                f"--transport sender: only http:// targets (got {request.url.scheme}://)", request=request
            )
        if self._slots is None:  # made on first use: it belongs to the running loop
            self._slots = asyncio.Semaphore(self._pool)
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
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
            events: list[h11.Request | h11.Data] = [
                h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
            ]
            if request.content:
                events.append(h11.Data(data=request.content))
            data = b"".join(conn.h11.send(e) or b"" for e in [*events, h11.EndOfMessage()])
            head = conn.expect_response()
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
            status_code=response.status_code,
            headers=list(response.headers),
            stream=_Body(self, conn, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": bytes(response.reason)},
        )

    def _withdraw(self, departure: Departure) -> bool:
        return self._sender is not None and self._sender.withdraw(departure)

    def _schedule(self, conn: _Connection, data: bytes, scheduled: ScheduledSend) -> Departure:
        """Hand the request's bytes to the sender thread, to be written at `scheduled.due_ns`."""
        if self._closed:
            raise RuntimeError("the transport is closed")
        if self._sender is None:
            self._sender = SenderThread()
            self._sender.start()
        sender = self._sender
        loop = asyncio.get_running_loop()

        def written(rest: bytes, error: BaseException | None) -> None:  # in the sender thread
            if error is not None:
                if rest == data:
                    scheduled.on_wire(None)
                loop.call_soon_threadsafe(conn.fail_write, error)
            elif rest:  # the socket's buffer was full: the loop writes the rest
                loop.call_soon_threadsafe(_write_rest, conn, rest, scheduled)
            else:
                loop.call_soon_threadsafe(_written_out, conn, scheduled)

        conn.writing = True  # not back to the pool before its last byte is out
        fd = os.dup(conn.fd)
        departure = Departure(scheduled.due_ns, fd, data, scheduled.sending, scheduled.on_wire, written)
        try:
            sender.submit(departure)
        except BaseException:
            os.close(fd)
            raise
        scheduled.withdraw = lambda: sender.withdraw(departure)
        return departure

    def release(self, conn: _Connection) -> None:
        """A response read to its end, or given up: its connection back to the pool, or closed."""
        assert self._slots is not None
        self._slots.release()
        done = conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE
        if done and conn.body_read and not conn.writing and conn.transport is not None and not self._closed:
            conn.h11.start_next_cycle()
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
