"""The sender thread (harness/backends/sender_thread.py) on real sockets: it writes each departure at
its time while the caller's thread is busy, sends exactly once or not at all, and hands back what a
full socket buffer did not take."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest

from harness.backends.sender_thread import Departure, SenderThread

_now = time.monotonic_ns


class _Stamps:
    def __init__(self) -> None:
        self.sending: list[int] = []
        self.wire: list[int] = []
        self.written: list[tuple[bytes, BaseException | None]] = []
        self.done = threading.Event()

    def on_send(self, t: int) -> None:
        self.sending.append(t)

    def on_write(self, t: int) -> None:
        self.wire.append(t)

    def on_written(self, rest: bytes, error: BaseException | None) -> None:
        self.written.append((rest, error))
        self.done.set()


def _departure(sock: socket.socket, due_ns: int, data: bytes, stamps: _Stamps) -> Departure:
    fd = os.dup(sock.fileno())
    return Departure(due_ns, fd, data, stamps.on_send, stamps.on_write, stamps.on_written)


@pytest.fixture
def sender():
    thread = SenderThread()
    thread.start()
    yield thread
    thread.stop()


def test_departures_leave_at_their_time_in_order_while_this_thread_holds_the_gil(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        stamps = _Stamps()
        start = _now() + 50_000_000
        dues = [start + i * 5_000_000 for i in (3, 0, 2, 1)]  # handed over out of order
        for i, due in enumerate(dues):
            sender.submit(_departure(a, due, b"%d" % i, stamps))
        # Busy in Python (holding the GIL, as a loop parsing chunks does) through every due time.
        while _now() < start + 60_000_000:
            sum(range(1000))
        b.settimeout(1.0)
        received = b""
        while len(received) < 4:
            received += b.recv(100)
        assert received == b"1320"  # written in order of due time, not of submission
        late = [t - due for t, due in zip(stamps.sending, sorted(dues), strict=True)]
        # Written while this thread still held on (a sender that waited for it would be 45 ms late or
        # more); on a quiet machine within the lowered switch interval, 0.1 ms, plus the wake-up.
        assert all(0 <= d < 15_000_000 for d in late), late
        deadline = _now() + 1_000_000_000
        while len(stamps.written) < 4 and _now() < deadline:
            time.sleep(0.001)
        assert stamps.written == [(b"", None)] * 4
        assert all(s <= w for s, w in zip(stamps.sending, stamps.wire, strict=True))


def test_a_withdrawn_departure_is_never_written_and_a_sent_one_cannot_be_withdrawn(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.settimeout(0.5)
        later, soon = _Stamps(), _Stamps()
        kept = _departure(a, _now() + 20_000_000, b"soon", soon)
        gone = _departure(a, _now() + 60_000_000, b"later", later)
        sender.submit(kept)
        sender.submit(gone)
        assert sender.withdraw(gone)
        assert soon.done.wait(1)
        assert not sender.withdraw(kept) and soon.sending  # sent: stamped before withdraw said so
        time.sleep(0.1)
        assert b.recv(100) == b"soon" and later.sending == [] and later.written == []


def test_what_a_full_socket_does_not_take_is_handed_back(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = b"x" * 4_000_000  # far beyond the buffers: the thread must not wait for the reader
        stamps = _Stamps()
        sender.submit(_departure(a, _now(), data, stamps))
        assert stamps.done.wait(2)
        rest, error = stamps.written[0]
        assert error is None and 0 < len(rest) < len(data) and data.endswith(rest)


def test_a_write_to_a_closed_peer_reports_its_error(sender) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    stamps = _Stamps()
    sender.submit(_departure(a, _now(), b"x", stamps))
    assert stamps.done.wait(2)
    assert isinstance(stamps.written[0][1], BrokenPipeError)
    a.close()


def test_stopping_withdraws_what_is_queued_and_restores_the_switch_interval() -> None:
    before = sys.getswitchinterval()
    thread = SenderThread()
    thread.start()
    assert sys.getswitchinterval() < before
    a, b = socket.socketpair()
    with a, b:
        stamps = _Stamps()
        dep = _departure(a, _now() + 10_000_000_000, b"never", stamps)
        thread.submit(dep)
        thread.stop()
        assert thread.withdraw(dep) and stamps.sending == []  # withdrawn by the stop, never sent
        with pytest.raises(OSError):
            os.fstat(dep.fd)  # its descriptor closed
        late = Departure(_now(), -1, b"x", stamps.on_send, stamps.on_write, stamps.on_written)
        with pytest.raises(RuntimeError):
            thread.submit(late)
    assert sys.getswitchinterval() == before


def test_a_failing_hook_hands_every_departure_back_and_the_thread_takes_no_more() -> None:
    thread = SenderThread()
    thread.start()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.settimeout(0.2)
        broken, queued = _Stamps(), _Stamps()

        def fail(t: int) -> None:
            raise OSError(28, "No space left on device")  # the `sent` line could not be written

        first = Departure(_now(), os.dup(a.fileno()), b"first", fail, broken.on_write, broken.on_written)
        thread.submit(_departure(a, _now() + 50_000_000, b"later", queued))
        thread.submit(first)
        assert broken.done.wait(1) and queued.done.wait(1)
        # Neither was written: both handed back with the failure, and both count as never sent.
        assert broken.written[0][0] == b"first" and isinstance(broken.written[0][1], OSError)
        assert queued.written[0][0] == b"later" and queued.sending == [] and thread.withdraw(first)
        with pytest.raises(socket.timeout):
            b.recv(10)
        with pytest.raises(RuntimeError, match="sender thread failed: OSError"):
            thread.submit(Departure(_now(), -1, b"x", queued.on_send, queued.on_write, queued.on_written))
    thread.stop()
