"""The sender process (harness/backends/sender_process.py) on real sockets: it writes each departure at
its time while the caller's thread is busy, writes the caller's `sent` line first, sends exactly once
or not at all, hands back what a full socket buffer did not take, and what it had not sent when it
failed or died."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time

import pytest

from harness.backends import sender_process
from harness.backends.sender_process import _CHUNK, Departure, SenderProcess, senders_cpu_s

_now = time.monotonic_ns


class _Stamps:
    def __init__(self) -> None:
        self.sending: list[int] = []
        self.wire: list[int] = []
        self.written: list[tuple[bytes, BaseException | None]] = []

    def on_send(self, t: int, logged: bool = False) -> None:
        self.sending.append(t)

    def on_write(self, t: int) -> None:
        self.wire.append(t)

    def on_written(self, rest: bytes, error: BaseException | None) -> None:
        self.written.append((rest, error))


def _departure(sock: socket.socket, due_ns: int, data: bytes, stamps: _Stamps, log=None) -> Departure:
    fd = os.dup(sock.fileno())
    return Departure(due_ns, fd, data, log, stamps.on_send, stamps.on_write, stamps.on_written)


def _poll_until(sender: SenderProcess, done, timeout_s: float = 2.0) -> None:
    """The parent handles the child's messages when it polls (its loop's reader, in the runner)."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        sender.poll()
        time.sleep(0.001)
    assert done()


@pytest.fixture
def sender():
    process = SenderProcess()
    process.start()
    yield process
    process.stop()


def test_departures_leave_at_their_time_in_order_while_this_thread_is_busy(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        stamps = _Stamps()
        start = _now() + 100_000_000
        dues = [start + i * 5_000_000 for i in (3, 0, 2, 1)]  # handed over out of order
        for i, due in enumerate(dues):
            sender.submit(_departure(a, due, b"%d" % i, stamps))
        # Busy in Python through every due time and long after, never polling: the child needs
        # nothing from here.
        while _now() < start + 250_000_000:
            sum(range(1000))
        b.settimeout(1.0)
        received = b""
        while len(received) < 4:
            received += b.recv(100)
        assert received == b"1320"  # written in order of due time, not of submission
        _poll_until(sender, lambda: len(stamps.written) == 4)
        late = [t - due for t, due in zip(stamps.sending, sorted(dues), strict=True)]
        # Written while this thread was busy (a sender that waited for it would be 235 ms late or
        # more; a busy 2-core machine may stall any process for a while).
        assert all(0 <= d < 100_000_000 for d in late), late
        assert stamps.written == [(b"", None)] * 4
        assert all(s <= w for s, w in zip(stamps.sending, stamps.wire, strict=True))


def test_the_sent_line_is_written_with_the_decided_time_before_the_request(sender) -> None:
    """The log is a pipe kept full: the child's line waits for room, and the request waits for it."""
    a, b = socket.socketpair()
    log_read, log_write = os.pipe()
    os.set_blocking(log_write, False)
    filler = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filler += os.write(log_write, b"-" * 4096)
    os.set_blocking(log_write, True)
    with a, b:
        a.setblocking(False)
        b.settimeout(0.3)
        stamps = _Stamps()
        sender.submit(_departure(a, _now(), b"x", stamps, (log_write, b'{"t":', b"}\n")))
        with pytest.raises(socket.timeout):
            b.recv(10)  # its line cannot be written yet: nor can the request
        drained = b""
        while len(drained) < filler:
            drained += os.read(log_read, filler - len(drained))
        b.settimeout(2.0)
        assert b.recv(10) == b"x"
        _poll_until(sender, lambda: stamps.written)
        assert os.read(log_read, 100) == b'{"t":%d}\n' % stamps.sending[0]
    os.close(log_read)
    os.close(log_write)


def test_a_withdrawn_departure_is_never_written_and_a_sent_one_cannot_be_withdrawn(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.settimeout(1.0)
        later, soon = _Stamps(), _Stamps()
        kept = _departure(a, _now() + 20_000_000, b"soon", soon)
        gone = _departure(a, _now() + 300_000_000, b"later", later)
        sender.submit(kept)
        sender.submit(gone)
        assert sender.withdraw(gone)
        assert b.recv(100) == b"soon"
        # Not polled since: withdraw reads what the child said, so once it says False the request is
        # stamped sent and on the wire.
        assert not sender.withdraw(kept) and soon.sending and soon.wire
        time.sleep(0.4)
        sender.poll()
        assert later.sending == [] and later.written == []
        with pytest.raises(socket.timeout):
            b.recv(100)


def test_what_a_full_socket_does_not_take_is_handed_back(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        data = b"x" * 4_000_000  # far beyond the buffers: the child must not wait for the reader
        stamps = _Stamps()
        sender.submit(_departure(a, _now(), data, stamps))
        _poll_until(sender, lambda: stamps.written)
        rest, error = stamps.written[0]
        # It was handed the first _CHUNK bytes; the socket took less than those.
        assert error is None and len(data) - _CHUNK < len(rest) < len(data) and data.endswith(rest)


def test_a_write_to_a_closed_peer_reports_its_error(sender) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.close()
    stamps = _Stamps()
    sender.submit(_departure(a, _now(), b"x", stamps))
    _poll_until(sender, lambda: stamps.written)
    assert isinstance(stamps.written[0][1], BrokenPipeError)
    a.close()


def test_stopping_withdraws_what_is_queued_and_ends_the_child(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        stamps = _Stamps()
        dep = _departure(a, _now() + 10_000_000_000, b"never", stamps)
        sender.submit(dep)
        with pytest.raises(OSError):
            os.fstat(dep.fd)  # the caller's duplicate is closed once handed over
        sender.stop()
        # Withdrawn by the stop: never sent, and not handed back as a failure either.
        assert sender.withdraw(dep) and stamps.sending == [] and stamps.written == []
        assert sender.failed is None
        assert sender._proc is not None and sender._proc.returncode == 0
        late = _departure(a, _now(), b"x", stamps)
        with pytest.raises(RuntimeError, match="stopped"):
            sender.submit(late)
        with pytest.raises(OSError):
            os.fstat(late.fd)  # refused, and its descriptor closed all the same


def test_a_sent_line_it_cannot_write_hands_every_departure_back_and_it_takes_no_more(
    sender, tmp_path
) -> None:
    a, b = socket.socketpair()
    read_only = os.open(tmp_path / "log", os.O_RDONLY | os.O_CREAT)
    with a, b:
        a.setblocking(False)
        b.settimeout(0.2)
        broken, queued = _Stamps(), _Stamps()
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGSTOP)  # all three wait for it: it reads one message at a time
        sender.submit(_departure(a, _now() + 300_000_000, b"later", queued))
        first = _departure(a, _now(), b"first", broken, (read_only, b"", b"\n"))
        sender.submit(first)
        unread = _Stamps()  # after the failing one: the child goes without reading it
        sender.submit(_departure(a, _now() + 300_000_000, b"unread", unread))
        os.kill(sender.pid, signal.SIGCONT)
        # Read only once it has gone: Linux then reports a reset before its last messages.
        assert sender._proc is not None and sender._proc.wait(2) == 0
        _poll_until(sender, lambda: broken.written and queued.written and unread.written)
        # Neither was written: both handed back with the failure, and both count as never sent.
        assert broken.written[0][0] == b"first" and "cannot write the sent line" in str(broken.written[0][1])
        assert queued.written[0][0] == b"later" and queued.sending == [] and sender.withdraw(first)
        with pytest.raises(socket.timeout):
            b.recv(10)
        assert sender.failed and "cannot write the sent line" in sender.failed
        assert unread.sending == [] and "cannot write the sent line" in str(unread.written[0][1])
        with pytest.raises(RuntimeError, match="sender process failed"):
            sender.submit(_departure(a, _now(), b"x", queued))
    os.close(read_only)
    sender.stop()


def test_a_child_that_dies_hands_back_what_it_had_not_sent(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        stamps = _Stamps()
        dep = _departure(a, _now() + 10_000_000_000, b"never", stamps)
        sender.submit(dep)
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGKILL)  # the child we started, by its PID
        _poll_until(sender, lambda: stamps.written)
        assert stamps.written[0][0] == b"never" and "exited" in str(stamps.written[0][1])
        assert sender.withdraw(dep) and stamps.sending == []
    sender.stop()


def test_a_parent_that_reads_nothing_for_a_while_does_not_hold_up_the_writes(sender) -> None:
    """More messages than its socket's buffer holds (two per request): the child keeps them and goes
    on writing at each time, rather than waiting for the parent's loop to read."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        stamps = _Stamps()
        start, n = _now() + 300_000_000, 2000
        dues = [start + i * 250_000 for i in range(n)]
        for due in dues:
            sender.submit(_departure(a, due, b"x", stamps))
        time.sleep((dues[-1] - _now()) / 1e9 + 0.05)  # not polling meanwhile
        _poll_until(sender, lambda: len(stamps.written) == n)
        late = [t - due for t, due in zip(stamps.sending, dues, strict=True)]
        # A scheduling stall may hit some; a child blocked on a full socket would fall behind for
        # good (4,000 messages, where its buffer holds 278 of them with Linux's default 208 kB).
        assert min(late) >= 0 and sum(d > 50_000_000 for d in late) < 0.05 * n, sorted(late)[-20:]


def test_a_child_whose_runner_went_away_ends_without_writing_what_is_queued(sender) -> None:
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.5)
        sender.submit(_departure(a, _now() + 200_000_000, b"never", _Stamps()))
        assert sender._sock is not None and sender._proc is not None
        sender._sock.close()  # as when the runner dies: its end of the pair closes
        sender._sock = None
        assert sender._proc.wait(2) == 0
        with pytest.raises(socket.timeout):
            b.recv(10)
    sender.stop()


def test_the_child_runs_in_a_session_of_its_own(sender) -> None:
    # So that a Ctrl-C at the terminal, sent to the runner's process group, is the runner's to handle.
    assert sender.pid is not None and os.getsid(sender.pid) == sender.pid != os.getsid(0)


def test_a_child_that_does_not_answer_is_killed_before_its_departures_count_as_withdrawn(
    sender, monkeypatch
) -> None:
    monkeypatch.setattr(sender_process, "_ANSWER_S", 0.3)  # after its start, which may take longer
    a, b = socket.socketpair()
    with a, b:
        b.settimeout(0.5)
        stamps = _Stamps()
        due = _now() + 800_000_000
        dep = _departure(a, due, b"late", stamps)
        sender.submit(dep)
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGSTOP)  # stuck (a frozen cgroup, a debugger)
        assert sender.withdraw(dep)  # not answered in 0.3 s, before its time: killed, then withdrawn
        assert sender._proc is not None and sender._proc.returncode == -signal.SIGKILL
        assert sender.failed and "did not answer" in sender.failed
        time.sleep((due - _now()) / 1e9 + 0.1)  # past its time: a child still alive would have written it
        with pytest.raises(socket.timeout):
            b.recv(10)
    sender.stop()


def test_stop_kills_a_child_that_does_not_go(sender, monkeypatch) -> None:
    monkeypatch.setattr(sender_process, "_ANSWER_S", 0.3)
    assert sender.pid is not None
    os.kill(sender.pid, signal.SIGSTOP)
    sender.stop()
    assert sender._proc is not None and sender._proc.returncode == -signal.SIGKILL


def test_what_a_killed_child_may_have_sent_counts_as_sent_at_its_time_and_failed(sender) -> None:
    """Its time had come and nothing was said about it: the child may have written it, its message
    still in its outbox. It counts as sent at its time (its `sent` line the caller's to write), and
    failed; never as withdrawn."""
    a, b = socket.socketpair()
    with a, b:
        stamps = _Stamps()
        assert sender.pid is not None
        os.kill(sender.pid, signal.SIGSTOP)
        dep = _departure(a, _now(), b"maybe", stamps)
        sender.submit(dep)
        time.sleep(0.05)
        os.kill(sender.pid, signal.SIGKILL)
        _poll_until(sender, lambda: stamps.written)
        assert not sender.withdraw(dep) and stamps.sending == [dep.due_ns]
        assert stamps.written[0][1] is not None and stamps.wire == []
    sender.stop()


def test_the_childs_cpu_time_is_counted(sender) -> None:
    before = senders_cpu_s()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        stamps = _Stamps()
        for _ in range(5000):  # all due at once: the child is busy for a while
            sender.submit(_departure(a, _now(), b"", stamps))
        _poll_until(sender, lambda: len(stamps.written) == 5000, timeout_s=20)
        running = senders_cpu_s() - before
        sender.stop()
    # Linux counts CPU in clock ticks (10 ms): 5,000 decisions, log-free, take well over one.
    assert running > 0.02 and senders_cpu_s() - before >= running


def test_a_withdrawal_that_comes_after_the_decision_waits_for_its_message(sender) -> None:
    """The decision's message still in the child's outbox (this side has not read for a while) when
    the response is in: `withdraw` asks, reads until it comes, and says sent, stamps set."""
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        filler = _Stamps()
        for _ in range(600):  # 1,200 messages, unread: more than the socket holds
            sender.submit(_departure(a, _now(), b"", filler))
        last = _Stamps()
        dep = _departure(a, _now(), b"last", last)
        sender.submit(dep)
        b.settimeout(2.0)
        received = b""
        while not received.endswith(b"last"):
            received += b.recv(100)
        assert last.sending == []  # not read yet: its message waits behind the others
        assert not sender.withdraw(dep) and len(last.sending) == 1 and len(last.wire) == 1


def test_a_failure_met_while_handing_over_names_the_childs_reason_and_hands_everything_back(
    sender, tmp_path
) -> None:
    a, b = socket.socketpair()
    read_only = os.open(tmp_path / "log", os.O_RDONLY | os.O_CREAT)
    with a, b:
        a.setblocking(False)
        failing, queued, late = _Stamps(), _Stamps(), _Stamps()
        sender.submit(_departure(a, _now() + 300_000_000, b"queued", queued))
        sender.submit(_departure(a, _now(), b"failing", failing, (read_only, b"", b"\n")))
        assert sender._proc is not None and sender._proc.wait(2) == 0
        # Not polled: the next hand-over meets the closed socket, and reads why.
        with pytest.raises(RuntimeError, match="cannot write the sent line"):
            sender.submit(_departure(a, _now(), b"late", late))
        assert failing.written and queued.written and late.written == []
        assert all("cannot write the sent line" in str(s.written[0][1]) for s in (failing, queued))
        sender.stop()  # nothing left to do, and no error
    os.close(read_only)
