"""A thread that only writes requests to their sockets at absolute deadlines (`--transport sender`).

Why: on one event loop, a request due while the loop parses a burst of response chunks waits for the
burst (128-token streams at 100 requests/s are 12,800 SSE events a second), so its lateness is the
parsing's, not the schedule's. Here the loop prepares each request ahead of its deadline (connection
taken, bytes serialized) and hands it over; this thread sleeps to the deadline and writes the bytes
with `os.write`, whatever the loop is doing. The loop still reads every response.

The thread needs the GIL to run its few lines after waking; CPython hands it over only after the
holder's switch interval (5 ms by default), so while a sender runs the interval is lowered to
`_SWITCH_S` (restored when the last sender stops). It costs nothing while the thread sleeps: only a
thread waiting for the GIL makes the holder let go.

A departure is sent exactly once or withdrawn: `withdraw` (the loop cancelling a request not yet
due) and the thread's decision to send take one lock, and the thread calls `on_send` (the caller's
stamp and crash-safe log line) under that lock, so once `withdraw` answers False the request has been
stamped as sent. The socket is written through a duplicate of its descriptor, so a connection the loop
closes meanwhile can never let the write reach a new socket that took the same number. If the thread
itself fails (a hook raised), every departure it holds is handed back with that error and it takes no
more: nothing waits for a thread that is gone.
"""

from __future__ import annotations

import heapq
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_now = time.monotonic_ns
# The GIL switch interval while a sender runs: how long a parsing loop may keep the sender waiting.
_SWITCH_S = 0.0001
_QUEUED, _SENT, _WITHDRAWN = 0, 1, 2


@dataclass(eq=False)
class Departure:
    """One request to write at `due_ns` (monotonic), through `fd`, the thread's own duplicate of the
    socket's descriptor (it closes it). In the thread: `on_send(t)` once it is decided, under the
    lock (see the module docstring); `on_write(t)` just before the write; `on_written(rest, error)`
    after it: `rest` is what the socket's buffer did not take (a large prompt to a server that reads
    slowly: the caller writes it, so this thread never waits for a peer), `error` what stopped the
    write, or the thread's own failure (then nothing was written)."""

    due_ns: int
    fd: int
    data: bytes
    on_send: Callable[[int], None]
    on_write: Callable[[int], None]
    on_written: Callable[[bytes, BaseException | None], None]
    state: int = field(default=_QUEUED, init=False)


class SenderThread:
    _users = 0  # senders running in this process (the switch interval is process-wide)
    _saved_switch = 0.005
    _users_lock = threading.Lock()

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Departure]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed: str | None = None  # why it takes no more departures
        self.failed: str | None = None  # how the thread itself failed, if it did
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with SenderThread._users_lock:
            if SenderThread._users == 0:
                SenderThread._saved_switch = sys.getswitchinterval()
                sys.setswitchinterval(_SWITCH_S)
            SenderThread._users += 1
        self._thread = threading.Thread(target=self._run, name="joulebench-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; departures still queued are withdrawn (their descriptors closed)."""
        if self._thread is None:
            return
        with self._cond:
            self._closed = self._closed or "the sender thread has stopped"
            self._cond.notify()
        self._thread.join()
        self._thread = None
        self._drop_queued(None)
        with SenderThread._users_lock:
            SenderThread._users -= 1
            if SenderThread._users == 0:
                sys.setswitchinterval(SenderThread._saved_switch)

    def submit(self, dep: Departure) -> None:
        with self._cond:
            if self._closed is not None:
                raise RuntimeError(self._closed)
            heapq.heappush(self._heap, (dep.due_ns, next(self._order), dep))
            # Woken only if it now sleeps past this one: each wake-up takes the GIL from the loop, and
            # departures come in due order, so most submissions need none.
            if self._heap[0][2] is dep:
                self._cond.notify()

    def withdraw(self, dep: Departure) -> bool:
        """Take back a departure not yet sent: True if it never will be (withdrawn now, by a stop, or
        handed back by a failed thread); False if it was sent (then `on_send` has run)."""
        with self._cond:
            if dep.state == _QUEUED:
                dep.state = _WITHDRAWN
            return dep.state == _WITHDRAWN

    def _next(self) -> Departure | None:
        """The next departure once it is due (None: stopped); its `on_send` done, under the lock."""
        with self._cond:
            while self._closed is None:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, dep = self._heap[0]
                wait_ns = due - _now()
                if wait_ns > 0:
                    self._cond.wait(wait_ns / 1e9)
                    continue
                heapq.heappop(self._heap)
                if dep.state == _WITHDRAWN:
                    os.close(dep.fd)
                    continue
                try:
                    dep.on_send(_now())
                except BaseException:
                    dep.state = _WITHDRAWN
                    self._heap.append((due, 0, dep))  # handed back with the rest
                    raise
                dep.state = _SENT
                return dep
            return None

    def _run(self) -> None:
        try:
            while (dep := self._next()) is not None:
                dep.on_write(_now())  # just before the write: after it, the response may be in
                rest, error = _write(dep.fd, dep.data)
                os.close(dep.fd)
                dep.on_written(rest, error)
        except BaseException as exc:  # a hook failed: hand everything back, take nothing more
            with self._cond:
                self._closed = self.failed = f"the sender thread failed: {type(exc).__name__}: {exc}"
            self._drop_queued(exc)

    def _drop_queued(self, error: BaseException | None) -> None:
        """Withdraw every queued departure and close its descriptor; with `error` (the thread failed),
        hand each back through `on_written`, nothing written."""
        with self._cond:
            queued, self._heap = [dep for _, _, dep in self._heap], []
            for dep in queued:
                dep.state = _WITHDRAWN
        for dep in queued:
            os.close(dep.fd)
            if error is not None:
                dep.on_written(dep.data, error)


def _write(fd: int, data: bytes) -> tuple[bytes, OSError | None]:
    """Write what the (non-blocking) socket takes now: what is left, and the error that stopped it."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except BlockingIOError:
        pass
    except OSError as exc:
        return bytes(view), exc
    return bytes(view), None
