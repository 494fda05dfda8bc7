"""A process that only writes requests to their sockets at absolute deadlines (`--transport sender`).

Why: on one event loop, a request due while the loop parses a burst of response chunks waits for the
burst (128-token streams at 100 requests/s are 12,800 SSE events a second), so its lateness is the
parsing's, not the schedule's. A thread in the runner's process did not fix the tail: after each
wake-up it must take the GIL from that loop, and on a machine with fewer cores than busy processes the
loop is often descheduled while it holds it (2 cores at 1,000 requests/s, two workers: p99 1.36 and
1.65 times a bare timer's with a thread, 0.94 with this process; docs/runner.md). This process shares no lock
with the loop, and it imports only the standard library, so it starts in milliseconds.

The parent hands over each departure on a SOCK_SEQPACKET socket pair: the socket's descriptor (by
SCM_RIGHTS, so the child holds its own reference: a connection the loop closes meanwhile can never
let the write reach a new socket that took its number), the request's bytes and, where the caller
keeps a crash-safe log, that log's descriptor and the `sent` line around its time. The child writes
the line, tells the parent `decided` with its stamps, then writes the request, then tells it what the
socket took. `decided` is in the parent's socket buffer before the request's first byte leaves, so
when a response is in, the parent reading that buffer finds it: no waiting on the child.

Exactly once: a departure leaves the child's queue either by being decided (then `decided` is sent)
or by a withdrawal the parent asked for (then `withdrawn` is sent), never both: the child is the one
place that decides. `withdraw` reads what the child has said so far and, only if neither came yet,
asks and waits for the answer. The parent handles every message on the thread that calls it (its
event loop, through `add_reader`, or a `withdraw`): `on_send`, `on_write` and `on_written` run there,
in that order. If the child cannot write a `sent` line, it says so and exits: nothing after that goes.

If the child dies, what it had not said `decided` for is handed back (never written); what it had
decided but not confirmed is handed back with the error, whole: it may or may not have gone out.
"""

from __future__ import annotations

import array
import asyncio
import collections
import errno as errno_codes
import heapq
import itertools
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

_now = time.monotonic_ns
_QUEUED, _SENT, _WITHDRAWN = 0, 1, 2
# Parent -> child: submit (id, due, line head and tail lengths) + head + tail + data; withdraw (id); stop.
_SUBMIT, _WITHDRAW, _STOP = b"S", b"W", b"X"
# Child -> parent: decided (id, sent_ns, wire_ns); written (id, bytes taken, errno); withdrawn (id).
_READY, _DECIDED, _WRITTEN, _GONE, _FAILED = b"K", b"D", b"R", b"G", b"F"
_SUB = struct.Struct("=cqqHH")  # kind, id, due_ns, head length, tail length (0, 0: no log line)
_DEC = struct.Struct("=cqqq")
_WRT = struct.Struct("=cqqi")
_ID = struct.Struct("=cq")
# A message carries at most this much of a request (a SEQPACKET message must fit the socket's buffer);
# the caller writes the rest, as it does what a full socket did not take.
_CHUNK = 64 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")
_ANSWER_S = 5.0  # how long `withdraw` waits for a child that has neither sent nor withdrawn


@dataclass(eq=False)
class Departure:
    """One request to write at `due_ns` (monotonic) through `fd` (a duplicate the sender closes).
    `log`: (descriptor, head, tail): the child writes head + decimal sent time + tail to it once it
    decided, before the write (the caller's crash-safe `sent` line); None: no line. Hooks, in the
    parent: `on_send(t)` once decided, `on_write(t)` with the stamp taken just before the write,
    `on_written(rest, error)` after it (`rest`: what the socket did not take, for the caller to write;
    `error`: what stopped the write, or the sender's own failure, with nothing known written)."""

    due_ns: int
    fd: int
    data: bytes
    log: tuple[int, bytes, bytes] | None
    on_send: Callable[[int], None]
    on_write: Callable[[int], None]
    on_written: Callable[[bytes, BaseException | None], None]
    state: int = field(default=_QUEUED, init=False)
    key: int = field(default=-1, init=False)  # the child's name for it, once submitted


class SenderProcess:
    # CPU seconds of this process's sender children that have stopped: with the live ones', the
    # runner's own (`senders_cpu_s`), so a client's CPU share counts the work it moved out.
    _stopped_cpu_s = 0.0
    _running: ClassVar[set[SenderProcess]] = set()

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._live: dict[int, Departure] = {}  # submitted, not yet written out or withdrawn
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: str | None = None
        self.failed: str | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the child; with `loop`, its messages are handled there as they come (else only
        inside `withdraw` and `poll`)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self._proc = subprocess.Popen(
                # This file alone, isolated and without site: it imports only the standard library, so
                # it starts in milliseconds (the package's imports would take most of a second).
                [sys.executable, "-I", "-S", __file__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self._sock = mine
        SenderProcess._running.add(self)
        # Ready before the first departure is handed over: its time is kept from the start.
        mine.settimeout(_ANSWER_S)
        try:
            ready = mine.recv(1)
        except OSError as exc:
            ready = str(exc).encode()
        if ready != _READY:
            self._fail(f"the sender process did not start ({self._exit_code()})")
            raise RuntimeError(self.failed)
        mine.setblocking(False)
        if loop is not None:
            self._loop = loop
            loop.add_reader(mine.fileno(), self.poll)

    def submit(self, dep: Departure) -> None:
        """Hand `dep` over; its descriptor is closed here whatever happens (the child has its own)."""
        if self._closed is not None or self._sock is None:
            os.close(dep.fd)
            raise RuntimeError(self._closed or "the sender process is not started")
        key = next(self._ids)
        head, tail = (b"", b"") if dep.log is None else dep.log[1:]
        fds = [dep.fd] if dep.log is None else [dep.fd, dep.log[0]]
        message = _SUB.pack(_SUBMIT, key, dep.due_ns, len(head), len(tail)) + head + tail + dep.data[:_CHUNK]
        try:
            self._send(message, fds)
        finally:
            os.close(dep.fd)  # the child holds its own reference now (or never will)
        dep.fd, dep.key = -1, key
        self._live[key] = dep

    def withdraw(self, dep: Departure) -> bool:
        """Take back a departure not yet sent: True if it never will be; False if it was sent (its
        `on_send` and `on_write` have run)."""
        self.poll()
        if dep.state == _QUEUED and self._sock is not None:
            sock = self._sock
            self._send(_ID.pack(_WITHDRAW, dep.key), [])
            deadline = time.monotonic() + _ANSWER_S
            while dep.state == _QUEUED and self._sock is not None:
                if not select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                    self._fail("the sender process did not answer a withdrawal")
                    break
                self.poll()
        return dep.state == _WITHDRAWN

    def poll(self) -> None:
        """Handle every message the child has sent so far."""
        while self._sock is not None:
            try:
                message = self._sock.recv(4096)
            except BlockingIOError:
                return
            except ConnectionResetError:  # it died with messages unread
                message = b""
            except OSError as exc:
                self._fail(f"the sender process's socket failed: {exc}")
                return
            if not message:
                self._fail(f"the sender process exited ({self._exit_code()})")
                return
            self._handle(message)

    def stop(self) -> None:
        """Stop the child; departures still queued are withdrawn (never written)."""
        if self._proc is None:
            return
        self._closed = self._closed or "the sender process has stopped"
        if self in SenderProcess._running:
            SenderProcess._running.discard(self)
            SenderProcess._stopped_cpu_s += self.cpu_s()  # its last moments are a stop's, not sends
        try:
            if self._sock is not None:
                self._send(_ID.pack(_STOP, 0), [])
            self._drain_until_exit()
        finally:
            self._fail("the sender process has stopped")

    def cpu_s(self) -> float:
        """The child's CPU seconds so far (0 once it is gone)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15 of stat)

    def _handle(self, message: bytes) -> None:
        kind = message[:1]
        if kind == _DECIDED:
            _, key, sent_ns, wire_ns = _DEC.unpack(message)
            dep = self._live[key]
            dep.state = _SENT
            dep.on_send(sent_ns)
            dep.on_write(wire_ns)
        elif kind == _WRITTEN:
            _, key, taken, code = _WRT.unpack(message)
            dep = self._live.pop(key)
            error = OSError(code, os.strerror(code)) if code else None
            if error is not None and code == errno_codes.EPIPE:
                error = BrokenPipeError(code, os.strerror(code))
            dep.on_written(dep.data[taken:], error)
        elif kind == _GONE:
            _, key = _ID.unpack(message)
            self._live.pop(key).state = _WITHDRAWN
        elif kind == _FAILED:
            self._fail(f"the sender process failed: {message[1:].decode(errors='replace')}")

    def _send(self, message: bytes, fds: list[int]) -> None:
        assert self._sock is not None
        try:
            self._sock.setblocking(True)  # a full buffer means the child is busy: wait for it
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            self._sock.sendmsg([message], rights)
        except OSError as exc:
            self._fail(f"the sender process's socket failed: {exc}")
            raise RuntimeError(self.failed) from exc
        finally:
            if self._sock is not None:
                self._sock.setblocking(False)

    def _fail(self, why: str) -> None:
        """The child is gone: hand back everything it has not confirmed (unless `stop` asked it to
        go: then what was queued is withdrawn), take nothing more."""
        stopping = self._closed is not None
        if not stopping:
            self.failed = self._closed = why
        self._close()
        error = RuntimeError(why)
        live, self._live = self._live, {}
        for dep in live.values():
            if dep.state == _QUEUED:
                dep.state = _WITHDRAWN
            if not stopping or dep.state == _SENT:
                dep.on_written(dep.data, error)

    def _drain_until_exit(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + _ANSWER_S
        while self._sock is not None and time.monotonic() < deadline:
            select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            self.poll()
        try:
            self._proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._proc.kill()  # by its PID: the child we started
            self._proc.wait()

    def _close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _exit_code(self) -> str:
        assert self._proc is not None
        try:
            code = self._proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return "its socket closed"
        return f"exit code {code}"


_Queued = tuple[int, bytes, int | None, bytes, bytes]  # in the child: fd, data, log fd, line head, tail


def sender_available() -> bool:
    """Whether this system has what the sender process needs (Linux has; macOS lacks SEQPACKET)."""
    return sys.platform == "linux" and hasattr(socket, "SOCK_SEQPACKET")


def senders_cpu_s() -> float:
    """CPU seconds spent by this process's sender children, stopped and running."""
    return SenderProcess._stopped_cpu_s + sum(p.cpu_s() for p in SenderProcess._running)


class _Outbox:
    """The child's messages to the parent, in order, never waiting for it: a parent whose loop is busy
    for a while must not hold up the next request's write. What its socket does not take now waits
    here (and `decided` may then reach the parent after the response: its `withdraw` then asks, and
    reads until the answer comes)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.waiting = sock, collections.deque[bytes]()

    def tell(self, message: bytes) -> None:
        self.waiting.append(message)
        self.flush()

    def flush(self) -> None:
        try:
            while self.waiting:
                self.sock.send(self.waiting[0])
                self.waiting.popleft()
        except BlockingIOError:
            pass


def _child(sock: socket.socket) -> None:
    """The child's loop: sleep to the next deadline or the next message, whichever comes first."""
    heap: list[tuple[int, int]] = []
    queued: dict[int, _Queued] = {}
    sock.setblocking(False)
    out = _Outbox(sock)
    out.tell(_READY)
    stopping = False
    while not stopping:
        wait = None if not heap else (heap[0][0] - _now()) / 1e9
        if wait is None or wait > 0:
            readable, writable, _ = select.select([sock], [sock] if out.waiting else [], [], wait)
            if writable:
                out.flush()
            if readable:
                stopping = _receive(sock, out, heap, queued)
            continue
        _, key = heapq.heappop(heap)
        item = queued.pop(key, None)
        if item is None:
            continue  # withdrawn
        fd, data, log_fd, head, tail = item
        sent = _now()
        if log_fd is not None:
            try:
                _write_line(log_fd, head + str(sent).encode() + tail)
            except OSError as exc:  # not sent: it and everything after it are handed back
                out.tell(_FAILED + f"cannot write the sent line: {exc}".encode())
                break
            os.close(log_fd)
        wire = _now()
        out.tell(_DEC.pack(_DECIDED, key, sent, wire))
        taken, code = _write(fd, data)
        os.close(fd)
        out.tell(_WRT.pack(_WRITTEN, key, taken, code))
    sock.setblocking(True)  # what the parent has not read yet, before going
    for message in out.waiting:
        sock.sendall(message)


def _receive(
    sock: socket.socket, out: _Outbox, heap: list[tuple[int, int]], queued: dict[int, _Queued]
) -> bool:
    """Take in what the parent sent; True once it said stop or went away."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(_SUB.size + 2 * 65535 + _CHUNK, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data or data[:1] == _STOP:
        return True
    if data[:1] == _WITHDRAW:
        _, key = _ID.unpack(data)
        item = queued.pop(key, None)
        if item is not None:  # still queued: gone; else decided already, and the parent knows it
            os.close(item[0])
            if item[2] is not None:
                os.close(item[2])
            out.tell(_ID.pack(_GONE, key))
        return False
    _, key, due, head_len, tail_len = _SUB.unpack_from(data)
    body = data[_SUB.size :]
    log_fd = fds[1] if len(fds) > 1 else None
    head, tail = body[:head_len], body[head_len : head_len + tail_len]
    queued[key] = (fds[0], body[head_len + tail_len :], log_fd, head, tail)
    heapq.heappush(heap, (due, key))
    return False


def _write_line(fd: int, line: bytes) -> None:
    view = memoryview(line)
    while view:
        view = view[os.write(fd, view) :]


def _write(fd: int, data: bytes) -> tuple[int, int]:
    """Write what the (non-blocking) socket takes now: bytes taken, and the errno that stopped it."""
    view, taken = memoryview(data), 0
    try:
        while taken < len(data):
            taken += os.write(fd, view[taken:])
    except BlockingIOError:
        pass
    except OSError as exc:
        return taken, exc.errno or errno_codes.EIO
    return taken, 0


if __name__ == "__main__":
    # Its life is the socket's: the parent says stop, or its end closes when it dies. A Ctrl-C or a
    # SIGTERM to the process group is the parent's to handle (it withdraws what is queued).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _child(socket.socket(fileno=int(sys.argv[1])))
    except OSError:  # the parent went away mid-message
        sys.exit(1)
