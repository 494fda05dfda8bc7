"""A process that only writes requests to their sockets at absolute deadlines (`--transport sender`).

Why: on one event loop, a request due while the loop parses a burst of response chunks waits for the
burst (128-token streams at 100 requests/s are 12,800 SSE events a second), so its lateness is the
parsing's, not the schedule's. A thread in the runner's process (this module's predecessor) had to
take the GIL from that loop after each wake-up, and on a machine with fewer cores than busy processes
the loop is often descheduled while it holds it. This process shares no lock with the loop, and it
imports only the standard library (its start is waited for: see `start`).

The parent hands over each departure on a SOCK_SEQPACKET socket pair: the socket's descriptor (by
SCM_RIGHTS, so the child holds its own reference: a connection the loop closes meanwhile can never
let the write reach a new socket that took its number), the request's bytes and, where the caller
keeps a crash-safe log, that log's descriptor and the `sent` line around its time. The child writes
the line, tells the parent `decided` with its stamps, then writes the request, then tells it what the
socket took. The child never waits for the parent to read: what its socket does not take waits in
its outbox. So `decided` is normally in the parent's socket buffer before the request's first byte
leaves; a parent that finds a response before it (its loop did not read for a while) asks, and reads
until the answer comes.

Exactly once: a departure leaves the child's queue either by being decided (then `decided` is sent)
or by a withdrawal the parent asked for (then `withdrawn` is sent), never both: the child is the one
place that decides. `withdraw` reads what the child has said so far and, only if neither came yet,
asks and waits for the answer. The parent handles every message on the thread that calls it (its
event loop, through `add_reader`, or a `withdraw`): `on_send`, `on_write` and `on_written` run there,
in that order. If the child cannot write a `sent` line, it says so and exits: nothing after that goes.

If the child dies or must be killed (it did not answer), what it had not said `decided` for is
handed back with the error: withdrawn where its time had not come, else unknown (it may have gone
out, its message lost with it). A child that fails says where it stopped, so nothing is unknown then.
"""

from __future__ import annotations

import array
import collections
import errno as errno_codes
import heapq
import itertools
import math
import os
import select
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import asyncio

_now = time.monotonic_ns
_QUEUED, _SENT, _WITHDRAWN = 0, 1, 2
# Parent -> child: submit (_SUB) + line head + tail + data, with its descriptors; withdraw (id); stop.
_SUBMIT, _WITHDRAW, _STOP = b"S", b"W", b"X"
# Child -> parent: decided (id, sent_ns, wire_ns); written (id, bytes taken, errno); withdrawn (id).
_READY, _DECIDED, _WRITTEN, _GONE, _FAILED = b"K", b"D", b"R", b"G", b"F"
_SUB = struct.Struct("=cqqHHB")  # kind, id, due_ns, line head and tail lengths, descriptors sent (2: a log)
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
    parent: `on_send(t, logged)` once decided (`logged`: the child wrote that line; False where it
    was decided by a child that died without saying so), `on_write(t)` with the stamp taken just
    before the write,
    `on_written(rest, error)` after it (`rest`: what the socket did not take, for the caller to write;
    `error`: what stopped the write, or the sender's own failure, with nothing known written)."""

    due_ns: int
    fd: int
    data: bytes
    log: tuple[int, bytes, bytes] | None
    on_send: Callable[[int, bool], None]
    on_write: Callable[[int], None]
    on_written: Callable[[bytes, BaseException | None], None]
    state: int = field(default=_QUEUED, init=False)
    key: int = field(default=-1, init=False)  # the child's name for it, once submitted


class SenderProcess:
    # CPU seconds of this process's sender children that have ended: with the running ones', what
    # `senders_cpu_s` counts as the runner's own (one dispatcher per process, so one sum serves).
    _ended_cpu_s = 0.0
    _running: ClassVar[set[SenderProcess]] = set()

    def __init__(self) -> None:
        self._ids = itertools.count()
        self._live: dict[int, Departure] = {}  # submitted, not yet written out or withdrawn
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: str | None = None
        self._stopping = False  # `stop` asked it to go
        self._cpu_s = 0.0  # the child's CPU seconds, as last read
        self.failed: str | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the child and wait until it is ready (so the first departure's time is kept); with
        `loop`, its messages are handled there as they come (else only in `withdraw` and `poll`)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:
                self._proc = subprocess.Popen(
                    # This file alone, isolated and without site: it imports only the standard library.
                    # Its own session: a Ctrl-C at the terminal, or a signal to the runner's process
                    # group, is the runner's to handle (it withdraws what is queued, then stops it).
                    [sys.executable, "-I", "-S", __file__, str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True,
                )  # fmt: skip
        except BaseException:
            mine.close()
            raise
        self._sock = mine
        SenderProcess._running.add(self)
        mine.setblocking(False)
        if not _ready(mine, _READ, _ANSWER_S) or mine.recv(1) != _READY:
            self._fail("the sender process did not start")
            raise RuntimeError(self.failed)
        if loop is not None:
            self._loop = loop
            loop.add_reader(mine.fileno(), self.poll)

    def submit(self, dep: Departure) -> None:
        """Hand `dep` over; its descriptor is closed here whatever happens (the child has its own)."""
        try:
            if self._closed is not None or self._sock is None:
                raise RuntimeError(self._closed or "the sender process is not started")
            key = next(self._ids)
            head, tail = (b"", b"") if dep.log is None else dep.log[1:]
            fds = [dep.fd] if dep.log is None else [dep.fd, dep.log[0]]
            sub = _SUB.pack(_SUBMIT, key, dep.due_ns, len(head), len(tail), len(fds))
            self._send(sub + head + tail + dep.data[:_CHUNK], fds)
        finally:
            os.close(dep.fd)
        dep.fd, dep.key = -1, key
        self._live[key] = dep

    def withdraw(self, dep: Departure) -> bool:
        """Take back a departure not yet sent: True if it never will be; False if it was sent, or may
        have been (its `on_send` has run). A child that does not answer within `_ANSWER_S` is killed
        (by its PID) before anything it held counts as withdrawn."""
        self.poll()
        if dep.state == _QUEUED and self._sock is not None:
            try:
                self._send(_ID.pack(_WITHDRAW, dep.key), [])
            except RuntimeError:
                return dep.state == _WITHDRAWN  # it failed: resolved by `_fail`
            deadline = time.monotonic() + _ANSWER_S
            while dep.state == _QUEUED and self._sock is not None:
                if not _ready(self._sock, _READ, deadline - time.monotonic()):
                    self._fail("the sender process did not answer a withdrawal")
                    break
                self.poll()
        return dep.state == _WITHDRAWN

    def poll(self) -> None:
        """Handle every message the child has sent so far."""
        gone = self._read()
        if gone is not None:
            self._fail(*gone)

    def stop(self) -> None:
        """Stop the child; departures still queued are withdrawn (never written)."""
        if self._proc is None or self._stopping:
            return
        self._stopping = True
        self._closed = self._closed or "the sender process has stopped"
        gone = None
        try:
            if self._sock is not None:
                self._send(_ID.pack(_STOP, 0), [])
                deadline = time.monotonic() + _ANSWER_S
                while self._sock is not None and (gone := self._read()) is None:  # until it has gone
                    if not _ready(self._sock, _READ, deadline - time.monotonic()):
                        break
        except RuntimeError:
            pass  # it failed meanwhile: `_fail` resolved what it held
        finally:
            self._fail(*(gone or ("the sender process has stopped", False)))

    def cpu_s(self) -> float:
        """The child's CPU seconds so far (its last reading once it is gone)."""
        if self in SenderProcess._running:
            try:
                with open(f"/proc/{self.pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                self._cpu_s = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (14, 15)
            except (OSError, IndexError, ValueError):
                pass
        return self._cpu_s

    def _read(self) -> tuple[str, bool] | None:
        """Handle what the child has sent so far. Once it is gone: why, and whether it said where it
        stopped (it failed, and said so); None while it runs."""
        while self._sock is not None:
            try:
                message = self._sock.recv(4096)
            except BlockingIOError:
                return None
            except ConnectionResetError:
                # Linux says so once, before what the child sent last (it exited with messages of
                # ours unread): read on to those, then the end.
                continue
            except OSError as exc:
                return f"the sender process's socket failed: {exc}", False
            if not message:
                return f"the sender process exited ({self._exit_code()})", False
            if message[:1] == _FAILED:  # it stopped where it failed: nothing it has not said went out
                return f"the sender process failed: {message[1:].decode(errors='replace')}", True
            self._handle(message)
        return None

    def _handle(self, message: bytes) -> None:
        kind = message[:1]
        if kind == _DECIDED:
            _, key, sent_ns, wire_ns = _DEC.unpack(message)
            dep = self._live[key]
            dep.state = _SENT
            dep.on_send(sent_ns, dep.log is not None)
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

    def _send(self, message: bytes, fds: list[int]) -> None:
        """Send to the child; while its queue is full, read what it says meanwhile (it may be waiting
        for us to read before it reads again). RuntimeError once it is gone or stuck."""
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        deadline = time.monotonic() + _ANSWER_S
        while self._sock is not None:
            try:
                self._sock.sendmsg([message], rights)
                return
            except BlockingIOError:
                pass
            except OSError as exc:  # gone: what it said before it went may say why
                self._fail(*(self._read() or (f"the sender process's socket failed: {exc}", False)))
                break
            if not _ready(self._sock, _READ | _WRITE, deadline - time.monotonic()):
                self._fail(f"the sender process took no message for {_ANSWER_S:g} s")
                break
            self.poll()
        raise RuntimeError(self._closed)

    def _fail(self, why: str, known: bool = False) -> None:
        """The child is gone, or must go: make sure of it (by its PID), read the rest of what it
        said, then resolve every departure it did not confirm; take nothing more.

        Queued ones are withdrawn where `stop` asked it to go; else handed back with the failure
        (`on_written`). Whether a queued one whose time had come went out is known only where the
        child said where it stopped (`known`), or exited by itself (then it had said all it did);
        otherwise (it died, or was killed) it may have, its message lost with it: that one counts as
        sent at its time, unconfirmed (`on_send(due, False)`: the caller logs its `sent` line), and is
        handed back failed."""
        sock, self._sock = self._sock, None
        if sock is None and self not in SenderProcess._running:
            return  # resolved already
        if self.failed is None and (known or not self._stopping):  # (known: the child said it failed)
            self.failed = why
        self._closed = self._closed or why
        if self._proc is not None and self in SenderProcess._running:
            self.cpu_s()
            try:
                self._proc.wait(_ANSWER_S if self._stopping else 0)  # a stopping child goes by itself
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            known = known or self._proc.returncode == 0
            SenderProcess._running.discard(self)
            SenderProcess._ended_cpu_s += self._cpu_s
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            self._sock = sock  # the rest of what it said (it has gone: nothing more comes)
            rest = self._read()
            self._sock = None
            sock.close()
            if rest is not None and rest[1]:  # it said it failed: that is the reason, and known
                known = True
                self.failed = self._closed = rest[0]
        error = RuntimeError(self.failed or why)
        now = _now()
        live, self._live = self._live, {}
        for dep in live.values():
            if dep.state == _QUEUED:
                if known or dep.due_ns > now:
                    dep.state = _WITHDRAWN
                else:
                    dep.state = _SENT
                    dep.on_send(dep.due_ns, False)
            if not (self._stopping and dep.state == _WITHDRAWN):
                dep.on_written(b"" if dep.state == _SENT else dep.data, error)

    def _exit_code(self) -> str:
        assert self._proc is not None
        self.cpu_s()  # its last reading, while it can still be read (a zombie's, before it is reaped)
        try:
            return f"exit code {self._proc.wait(1.0)}"
        except subprocess.TimeoutExpired:
            return "its socket closed"


_READ, _WRITE = select.POLLIN, select.POLLOUT


def _ready(sock: socket.socket, events: int, timeout_s: float) -> bool:
    """Whether `sock` is ready for `events` within `timeout_s` (poll: any descriptor number)."""
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(max(0, math.ceil(timeout_s * 1000))))


_Queued = tuple[int, bytes, int | None, bytes, bytes]  # in the child: fd, data, log fd, line head, tail


def sender_available() -> bool:
    """Whether this system has what the sender process needs (Linux has; macOS lacks SEQPACKET)."""
    return sys.platform == "linux" and hasattr(socket, "SOCK_SEQPACKET")


def senders_cpu_s() -> float:
    """CPU seconds spent by this process's sender children, stopped and running."""
    return SenderProcess._ended_cpu_s + sum(p.cpu_s() for p in SenderProcess._running)


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
    size = _SUB.size + 2 * 65535 + _CHUNK
    data, ancillary, flags, _ = sock.recvmsg(size, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data or data[:1] == _STOP:
        return True
    if data[:1] == _SUBMIT and (flags & socket.MSG_CTRUNC or len(fds) != _SUB.unpack_from(data)[5]):
        # The kernel dropped descriptors (this process has too many open): it cannot write this one.
        out.tell(_FAILED + b"a request's descriptors did not arrive (too many open files?)")
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
    _, key, due, head_len, tail_len, _ = _SUB.unpack_from(data)
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
    # Its life is the socket's: the parent says stop, or its end closes when it dies. On a low number
    # (the parent's may be over select's 1,024).
    low = os.dup(int(sys.argv[1]))
    os.close(int(sys.argv[1]))
    mine = socket.socket(fileno=low)
    mine.setblocking(False)
    try:
        _child(mine)
    except OSError:  # the parent went away mid-message
        sys.exit(1)
