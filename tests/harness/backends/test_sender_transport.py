"""The sender transport's own HTTP/1.1 connections against a real loopback server that misbehaves on
cue: a pooled connection never hands the next request the last one's body, a scheduled request whose
connection the server drops or answers early is taken back and sent once on a new one, and one with
no connection fails at its time. (The recorded-fixture suite and the client faults run through this
transport too: test_recorded_fixtures.py, test_client_faults.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable

import httpx
import pytest
from joulebench_testkit import free_port

from harness.backends.sender_transport import SenderTransport

_now = time.monotonic_ns


class _Scheduled:
    """A `ScheduledSend` that records what the transport did with it."""

    def __init__(self, due_ns: int) -> None:
        self.due_ns = due_ns
        self.withdraw: Callable[[], bool] | None = None
        self.sent_line: tuple[int, bytes, bytes] | None = None
        self.sent: list[int] = []
        self.wire: list[int] = []
        self.done = 0

    def sending(self, t_ns: int, logged: bool = False) -> None:
        self.sent.append(t_ns)

    def on_wire(self, t_ns: int) -> None:
        self.wire.append(t_ns)

    def written(self) -> None:
        self.done += 1


_Then = tuple[float, bytes | None] | None  # after a response on a connection: (delay, bytes or close)


class _Server:
    """Keep-alive HTTP/1.1 on loopback. GET /big answers 500 with a 200 kB body; anything else 200 with
    its path and the connection's number. `after_response(conn)` may return bytes to send (or None to
    close) that long after each response on that connection."""

    def __init__(self, after_response: Callable[[int], _Then] | None = None) -> None:
        self.after_response = after_response
        self.requests: list[tuple[int, str, int]] = []  # (connection, path, arrival)
        self.connections = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ")[1].decode()
                self.requests.append((conn, path, _now()))
                if path == "/big":
                    body = b"x" * 200_000
                    writer.write(b"HTTP/1.1 500 Oops\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                else:
                    body = f"{path} on {conn}".encode()
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
                then = self.after_response(conn) if self.after_response else None
                if then is not None:
                    delay, data = then
                    await asyncio.sleep(delay)
                    if data is None:
                        writer.close()
                        return
                    writer.write(data)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


async def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=SenderTransport(4, 2.0))


def test_a_connection_given_up_mid_body_never_serves_the_next_request_its_rest() -> None:
    async def main() -> list[str]:
        async with _Server() as url, await _client() as client:
            async with client.stream("GET", url + "/big") as response:
                async for _ in response.aiter_raw():
                    break  # as the client reads an error body: only its first 64 kB
            texts = [(await client.get(url + f"/r{i}")).text for i in range(2)]
        return texts

    first, second = asyncio.run(main())
    # Connection 1 was given up before its body's end: closed, never pooled; the next is a new one.
    assert (first, second) == ("/r0 on 2", "/r1 on 2")


def test_a_whole_response_returns_its_connection_to_the_pool() -> None:
    async def main() -> list[str]:
        async with _Server() as url, await _client() as client:
            return [(await client.get(url + f"/r{i}")).text for i in range(3)]

    assert asyncio.run(main()) == ["/r0 on 1", "/r1 on 1", "/r2 on 1"]


@pytest.mark.parametrize(
    "after",
    [(0.05, None), (0.05, b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")],
    ids=["server-closes-the-idle-connection", "server-answers-408-early"],
)
def test_a_scheduled_request_whose_connection_fails_before_its_time_goes_once_on_a_new_one(after) -> None:
    server = _Server(lambda conn: after if conn == 1 else None)

    async def main() -> tuple[httpx.Response, _Scheduled, int]:
        async with server as url, await _client() as client:
            await client.get(url + "/warm")  # connection 1, pooled: it fails 50 ms later
            scheduled = _Scheduled(_now() + 200_000_000)
            response = await client.get(url + "/due", extensions={"send_at": scheduled})
            return response, scheduled, server.connections

    response, scheduled, connections = asyncio.run(main())
    assert response.status_code == 200 and response.text == "/due on 2" and connections == 2
    (arrived,) = [at for _, path, at in server.requests if path == "/due"]
    assert len(scheduled.sent) == 1 and scheduled.done == 1  # written once, by the thread
    assert 0 <= arrived - scheduled.due_ns < 20_000_000  # at its time, not when it was handed over
    assert scheduled.sent[0] <= scheduled.wire[0] <= arrived


def test_a_scheduled_request_with_no_connection_fails_at_its_time() -> None:
    async def main() -> tuple[int, int]:
        async with await _client() as client:
            due = _now() + 150_000_000
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"http://127.0.0.1:{free_port()}/x", extensions={"send_at": _Scheduled(due)})
            assert isinstance(caught.value.__cause__, OSError)
            return due, _now()

    due, failed = asyncio.run(main())
    assert failed >= due


def test_a_sender_process_that_fails_fails_its_request_as_the_clients_own(tmp_path) -> None:
    server = _Server()
    failing = _Scheduled(_now() + 300_000_000)
    read_only = os.open(tmp_path / "log", os.O_RDONLY | os.O_CREAT)
    failing.sent_line = (read_only, b"", b"\n")  # its `sent` line cannot be written

    async def main() -> None:
        async with server as url, await _client() as client:
            await client.get(url + "/warm")
            with pytest.raises(RuntimeError, match="the sender process failed: cannot write the sent line"):
                await client.get(url + "/due", extensions={"send_at": failing})

    asyncio.run(main())
    os.close(read_only)
    # Nothing was written, and no new connection was tried for it: the failure is the client's.
    assert [path for _, path, _ in server.requests] == ["/warm"] and server.connections == 1


class _Scripted(_Server):
    """Answers the Nth request (on whatever connection) with `answers[N]`: raw bytes, and whether to
    close the connection after them (`_Server`'s loopback listener, another script)."""

    def __init__(self, answers: list[tuple[bytes, bool]]) -> None:
        self.answers = answers
        self.connections = 0
        self.requests = 0  # type: ignore[assignment]  # a count here, not _Server's list

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                data, close = self.answers[self.requests]
                self.requests += 1
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


_OK = (b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnext", False)


@pytest.mark.parametrize(
    ("answer", "text", "connections"),
    [
        ((b"HTTP/1.1 200 OK\r\n\r\nuntil the end", True), "until the end", 2),
        ((b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", False), "ok", 1),
        ((b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", False), "ok", 2),
        ((b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\nextra", False), "ok", 2),
        (
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n1\r\nc\r\n0\r\n\r\n", False),
            "abc",
            1,
        ),
        # Transfer-Encoding without chunked last: the body ends where the connection does (RFC 9112 6.3).
        ((b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nto the close", True), "to the close", 2),
    ],
    ids=[
        "body-until-close",
        "informational-first",
        "connection-close",
        "out-of-turn-bytes",
        "chunked",
        "coded",
    ],
)
def test_a_response_is_read_whole_and_its_connection_reused_only_when_the_server_keeps_it(
    answer, text, connections
) -> None:
    server = _Scripted([answer, _OK])

    async def main() -> tuple[int, str, str]:
        async with server as url, await _client() as client:
            first = await client.get(url + "/a")
            await asyncio.sleep(0.05)  # the server's close (or stray bytes) reaches the pooled connection
            return first.status_code, first.text, (await client.get(url + "/b")).text

    assert asyncio.run(main()) == (200, text, "next")
    assert server.connections == connections


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ((b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", True), "before its response's end"),
        ((b"SPDY/9 what\r\n\r\n", False), "invalid response"),
        (
            (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n", False),
            "switched",
        ),
    ],
    ids=["closed-mid-body", "garbage", "upgrade"],
)
def test_a_broken_response_is_the_servers_protocol_error(answer, why) -> None:
    async def main() -> None:
        async with _Scripted([answer]) as url, await _client() as client:
            with pytest.raises(httpx.RemoteProtocolError, match=why):
                await client.get(url + "/a")

    asyncio.run(main())


def test_a_header_with_a_line_break_is_refused_before_anything_is_written() -> None:
    server = _Scripted([_OK])

    async def main() -> None:
        async with server as url, await _client() as client:
            with pytest.raises(httpx.LocalProtocolError, match="CR, LF and NUL"):
                await client.get(url + "/a", headers={"x-key": "k\r\nx-injected: 1"})
            with pytest.raises(httpx.LocalProtocolError, match="CR, LF and NUL"):
                await client.get(url + "/a", headers={"x-key": "k\0"})
            with pytest.raises(httpx.LocalProtocolError, match="not an HTTP token"):
                await client.request("GET /b HTTP/1.1\r\nx:", url + "/a")

            async def streamed():
                yield b"of unknown length"

            with pytest.raises(httpx.LocalProtocolError, match="known length only"):
                await client.post(url + "/a", content=streamed())
            assert (await client.get(url + "/b")).text == "next"  # its slot and connection came back

    asyncio.run(main())
    assert server.requests == 1


def test_a_head_response_ends_at_its_head_and_trailers_stay_out_of_the_headers() -> None:
    head = (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", False)
    head_of_a_body = (b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", False)  # the body is not sent
    trailers = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-head: 1\r\n\r\n"
        b"2\r\nab\r\n0\r\nx-trailer: 2\r\n\r\n",
        False,
    )
    server = _Scripted([head, head_of_a_body, trailers, _OK])

    async def main() -> None:
        async with server as url, await _client() as client:
            for path in ("/a", "/b"):
                response = await client.head(url + path)
                assert (response.status_code, response.content) == (200, b"")
            chunked = await client.get(url + "/c")
            assert (
                chunked.text == "ab"
                and chunked.headers["x-head"] == "1"
                and "x-trailer" not in chunked.headers
            )
            assert (await client.get(url + "/d")).text == "next"

    asyncio.run(main())
    assert server.requests == 4


def test_a_scheduled_body_larger_than_the_senders_share_arrives_whole() -> None:
    """The sender process is handed a request's first 64 kB; the loop writes the rest after it."""
    body = bytes(range(256)) * 1200  # 300 kB

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:  # keep-alive: answers each request with its body's length, and whether it is `body`
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                got = await reader.readexactly(int(length.group(1)) if length else 0)
                answer = b"%d %d" % (len(got), got == body)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer))
                await writer.drain()
        writer.close()

    async def main() -> tuple[str, _Scheduled]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with await _client() as client:
            await client.get(url + "/warm")  # starts the sender process
            scheduled = _Scheduled(_now() + 100_000_000)
            response = await client.post(url + "/due", content=body, extensions={"send_at": scheduled})
        server.close()
        return response.text, scheduled

    text, scheduled = asyncio.run(main())
    assert text == f"{len(body)} 1" and len(scheduled.sent) == 1 and scheduled.done == 1
