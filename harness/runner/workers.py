"""`--workers K`: the plan sent by K worker processes, each with its own event loop and connections.

One event loop that sends on deadlines and also reads every response is late whenever a burst of
chunks is being parsed when a request falls due (128-token streams at 100 requests/s are 12,800 SSE
events a second). A worker sends its share of the plan (`worker_share`) on the plan's own absolute
deadlines (the monotonic clock is one per host, so every worker keeps the one schedule) and parses only
its own streams, so each loop carries 1/K of the load and a host's cores share the parsing.

The parent (`WorkerPool`, in the `Dispatcher`'s place in `execute_plan`) writes the log's header, the
arm boundaries and the end line; it starts every arm on all workers at one time and the next when all
have drained; it relays stops (signals, time limit) and the progress counters. The workers append
their `sent` lines and rows to the same log themselves (`SharedLog`), so a row still reaches the disk
with one `os.write` as the request ends, and recovery after a crash is unchanged. A worker that dies
(its PID is in the manifest's `workers`) stops the run (`worker_lost`): the parent then writes, for
each of its requests without a row, a `client_error` row naming it, so every planned request still has
exactly one row and the `client_errors` flag fails `--strict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from foundation.user_warning import warn
from harness.backends import Target, senders_cpu_s
from harness.clock import ClockAnchor, new_event_loop
from harness.runfolder.request_log import read_log
from harness.runner.arm_clock import ArmClock
from harness.runner.dispatcher import Dispatcher
from harness.runner.loop_probe import lag_figures
from harness.runner.options import RunOptions
from harness.runner.progress import ProgressDisplay, Stats
from harness.runner.result import ArmRun
from harness.runner.worker_share import WorkerShare, owners
from traffic.plan import Plan

_now = time.monotonic_ns
# How far ahead of now the parent starts an arm: the start message must reach every worker first.
LEAD_NS = 50_000_000
# Workers ready this late after --start-at are said on stderr (later than the start message's lead).
_LATE_READY_S = 0.05
_RELAY_S = 0.25  # how often a worker sends its counters to the parent's progress display


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    conn: Connection
    exited: int  # a pidfd: readable once the process has exited
    reply: Any = None  # the awaited message (None: none yet)
    finished: bool = False  # said goodbye: ran to the end
    cpu_s: float = 0.0
    death: dict[str, Any] | None = None  # how it died, if it did


class WorkerPool:
    """The `Dispatcher`'s interface (run, request_stop, abort, finish, stats, arm_windows, ...) over K
    worker processes; see the module docstring."""

    def __init__(
        self,
        plan: Plan,
        target: Target,
        options: RunOptions,
        log_path: Path,
        anchor: ClockAnchor,
        api_key: str | None = None,
    ) -> None:
        # The whole run's requests, log (header written here) and counters; it never sends.
        self._whole = Dispatcher(plan, target, options, log_path, anchor, api_key)
        self.plan, self.options, self.anchor = plan, options, anchor
        self.log_path = Path(log_path)
        self.stats: Stats = self._whole.stats
        self.pool_size = self._whole.pool_size
        self.owner = owners(plan, self._whole.records, options.workers)
        self.arm_windows: list[ArmRun] = []
        self.start_ns: int | None = None
        self.stop_reason: str | None = None
        self._args = (plan, target, replace(options, progress=False), self.log_path, anchor, api_key)
        self._workers: list[_Worker] = []
        self._arm_starts: dict[str, int] = {}
        self._changed: asyncio.Event | None = None
        self._stopping = False
        self._timer: asyncio.TimerHandle | None = None

    @property
    def workers_cpu_s(self) -> float:
        return sum(w.cpu_s for w in self._workers)

    def manifest(self) -> dict[str, Any]:
        """The manifest's `workers` section."""
        return {
            "count": self.options.workers,
            "pids": [w.process.pid for w in self._workers],
            "lost": [w.death for w in self._workers if w.death is not None],
        }

    # --- stopping ---------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        if self._stopping:
            self.abort()
            return
        self._stopping = True
        self.stop_reason = reason
        self._tell(("stop", reason))

    def _time_limit(self) -> None:
        if not self._stopping:  # a run already stopping by hand keeps its own course
            self.request_stop("time_limit")

    def abort(self) -> None:
        self._stopping = True
        self.stop_reason = "aborted"
        self._tell(("abort",))

    def _tell(self, message: tuple[Any, ...]) -> None:
        for w in self._live():
            with contextlib.suppress(OSError):  # it died just now: its sentinel says so
                w.conn.send(message)

    # --- the run ----------------------------------------------------------------------------------

    async def run(self, progress: ProgressDisplay) -> None:
        loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        for k in range(self.options.workers):
            w = _start(k)
            self._workers.append(w)
            w.conn.send((k, *self._args))
            loop.add_reader(w.conn.fileno(), self._on_message, w)
            loop.add_reader(w.exited, self._on_exit, w)
        # Recorded at once: a worker that dies is named by its PID in the log as well as the manifest.
        self._whole.log.event("workers", pids=[w.process.pid for w in self._workers])
        ticker = loop.create_task(_refresh(progress))
        try:
            await self._replies("ready")  # worker 0 warms up first
            self._say_if_late()
            if not self._stopping:
                await self._arms(loop)
            self._tell(("end",))
            while any(w.process.returncode is None for w in self._workers):
                await self._wait()
        finally:
            ticker.cancel()
            if self._timer is not None:
                self._timer.cancel()
            for w in self._workers:
                loop.remove_reader(w.exited)
                os.close(w.exited)
                if not w.conn.closed:
                    loop.remove_reader(w.conn.fileno())
                    w.conn.close()
                if w.process.poll() is None:  # the parent failed: its workers must not go on sending
                    w.process.kill()
                    w.process.wait()
                    w.death = {"worker": w.index, "pid": w.process.pid, "error": "killed: the parent failed"}

    def _say_if_late(self) -> None:
        """Workers ready after --start-at (interpreters slow to start, a long warm-up) send the first
        arm's requests due meanwhile at once: its lateness shows it; this says why."""
        start_at = self.options.start_at_epoch_s
        if start_at is None:
            return
        late_s = (_now() - self.anchor.to_mono_ns(round(start_at * 1e9))) / 1e9
        if late_s > _LATE_READY_S:
            warn(
                f"the {self.options.workers} workers were ready {late_s:.2f} s after --start-at (started "
                "and warmed up): the requests due by then go at once, late; give --start-at more lead"
            )

    async def _arms(self, loop: asyncio.AbstractEventLoop) -> None:
        start_at = self.options.start_at_epoch_s
        fixed = start_at is not None
        lead = LEAD_NS + self._whole.stage_lead_ns()  # the message first, then the workers' own lead
        t0 = self.anchor.to_mono_ns(round(start_at * 1e9)) if start_at is not None else _now() + lead
        gap = round(self.options.arm_gap_s * 1e9)
        clock = ArmClock(t0, fixed, gap, self._whole.arm_last_offset_ns)
        for i, arm in enumerate(self.plan.header.arms):
            if self._stopping:
                return
            start = clock.start(t0)
            if not clock.fixed:  # the workers must hear of it first
                start = max(start, _now() + lead)
            if self.start_ns is None:
                self.start_ns = start
                if self.options.time_limit_s is not None:
                    limit = (start + round(self.options.time_limit_s * 1e9)) / 1e9
                    self._timer = loop.call_at(limit, self._time_limit)
            self._whole.log.event("arm", arm=arm.name, start_ns=start)
            self._arm_starts[arm.name] = start
            self.stats.start_arm(arm.name, start)
            self._tell(("arm", i, start))
            runs: list[tuple[ArmRun, list[int]]] = await self._replies("arm")
            # Never before the start: a stop within the lead ends the arm before anything was due.
            end = max(max((r.end_ns for r, _ in runs), default=_now()), start)
            self._whole.log.event("arm", arm=arm.name, end_ns=end)
            self.arm_windows.append(_merged(arm.name, start, end, runs, self.options.workers))
            clock.ended(arm, end)

    async def _replies(self, kind: str) -> list[Any]:
        """Wait until every live worker has sent a `kind` message; their payloads (the dead send none)."""
        for w in self._workers:
            w.reply = None
        while any(w.reply is None for w in self._live()):
            await self._wait()
        return [w.reply[1:] for w in self._live() if w.reply[0] == kind]

    async def _wait(self) -> None:
        assert self._changed is not None
        await self._changed.wait()
        self._changed.clear()

    def _live(self) -> list[_Worker]:
        return [w for w in self._workers if w.death is None and not w.conn.closed]

    def _on_message(self, w: _Worker) -> None:
        try:
            message = w.conn.recv()
        except (EOFError, OSError):  # it is gone: the sentinel tells how
            asyncio.get_running_loop().remove_reader(w.conn.fileno())
            w.conn.close()
            self._notify()
            return
        kind = message[0]
        if kind == "stats":
            for lateness in message[1]:
                self.stats.on_sent(lateness)
            for status in message[2]:
                self.stats.on_done(status)
        elif kind == "finished":
            w.finished, w.cpu_s = True, message[1]
        elif kind == "failed":
            w.death = {"worker": w.index, "pid": w.process.pid, "error": message[1], "at_ns": _now()}
            print(f"joulebench: worker {w.index} failed: {message[1]}", file=sys.stderr)
        else:
            w.reply = message
        self._notify()

    def _on_exit(self, w: _Worker) -> None:
        asyncio.get_running_loop().remove_reader(w.exited)
        while not w.conn.closed and w.conn.poll():  # what it said before it exited comes first
            self._on_message(w)
        code = w.process.wait()
        if not w.finished and w.death is None:
            how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit {code}"
            w.death = {"worker": w.index, "pid": w.process.pid, "error": how, "at_ns": _now()}
            print(f"joulebench: worker {w.index} (pid {w.process.pid}) died ({how})", file=sys.stderr)
        if w.death is not None and not self._stopping:
            self.request_stop("worker_lost")
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def finish(self) -> None:
        """Rows for the requests of workers that died without one (`client_error`), then the end line."""
        lost = {w.index: w.death for w in self._workers if w.death is not None}
        if len(self._workers) < self.options.workers:  # some never started (the run failed early)
            missing = range(len(self._workers), self.options.workers)
            lost.update({k: {"worker": k, "error": "never started"} for k in missing})
        log = self._whole.log
        if lost:
            contents = read_log(self.log_path)
            for rec, k in zip(self._whole.records, self.owner, strict=True):
                death = lost.get(k)
                if death is None or rec.request_id in contents.rows:
                    continue
                rec.sent_ns = contents.sent.get(rec.request_id)
                rec.arrived_ns = contents.arrived.get(rec.request_id)
                start = self._arm_starts.get(rec.arm)
                if start is not None and not rec.warmup:
                    rec.planned_ns = start + int(self._whole.offset_ns[rec.request_id])
                what = "before the request ended" if rec.sent_ns is not None else "before sending the request"
                pid = f" (pid {death['pid']})" if death.get("pid") else ""
                rec.finish("client_error", death.get("at_ns", _now()),
                           f"worker {k}{pid} died ({death['error']}) {what}")  # fmt: skip
                log.row(rec)
        log.event("end", t=_now(), reason=self.stop_reason or "completed")
        log.close()


def _start(index: int) -> _Worker:
    """A worker process and its end of a socket pair. A fresh interpreter, not multiprocessing: a fork
    would copy whatever threads the caller runs, and multiprocessing's spawn re-imports the caller's
    main module, which any script without a `__main__` guard would run again."""
    mine, theirs = socket.socketpair()
    root = str(Path(__file__).resolve().parents[2])
    code = f"import sys; sys.path.insert(0, {root!r}); from {__name__} import worker_entry; worker_entry()"
    with theirs:
        fd = theirs.fileno()
        argv = [sys.executable, "-c", code, str(fd)]
        process = subprocess.Popen(argv, pass_fds=[fd], stdin=subprocess.DEVNULL)
    exited = os.pidfd_open(process.pid)
    return _Worker(index, process, Connection(mine.detach()), exited)


async def _refresh(progress: ProgressDisplay) -> None:
    while True:
        await asyncio.sleep(0.5)
        progress.refresh()


def _merged(name: str, start: int, end: int, runs: list[tuple[ArmRun, list[int]]], count: int) -> ArmRun:
    """One arm's figures over the workers: counts and CPU summed, the loop lags of all together."""
    windows = [r for r, _ in runs]
    lags = [lag for _, worker_lags in runs for lag in worker_lags]
    cpu = [w.cpu_s or 0.0 for w in windows]
    senders = [w.sender_cpu_s for w in windows if w.sender_cpu_s is not None]
    return ArmRun(
        name, start, end, sum(w.planned for w in windows), sum(w.sent for w in windows), sum(cpu),
        lag_figures(lags), workers=count, busiest_cpu_s=max(cpu, default=0.0),
        sender_cpu_s=sum(senders) if senders else None,
    )  # fmt: skip


# --------------------------------------------------------------------------- in the worker process


class _Relay(Stats):
    """A worker's counters, kept to be sent to the parent's display."""

    def __init__(self, planned: int) -> None:
        super().__init__(planned=planned)
        self.lateness: list[int] = []
        self.statuses: list[str] = []

    def on_sent(self, lateness_ns: int) -> None:
        self.lateness.append(lateness_ns)

    def on_done(self, status: str) -> None:
        self.statuses.append(status)
        self.done += 1

    def flush(self, conn: Connection) -> None:
        if self.lateness or self.statuses:
            conn.send(("stats", self.lateness, self.statuses))
            self.lateness, self.statuses = [], []


def worker_entry() -> None:
    """The worker process's entry: its socket's descriptor is its one argument; the first message on
    it is `worker_main`'s arguments."""
    conn = Connection(int(sys.argv[1]))
    worker_main(conn, *conn.recv())


def worker_main(
    conn: Connection,
    index: int,
    plan: Plan,
    target: Target,
    options: RunOptions,
    log_path: Path,
    anchor: ClockAnchor,
    api_key: str | None,
) -> None:
    """A worker process: its share of the plan, on the arms' starts its parent sends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the parent decides
    dispatcher = None
    try:
        share = WorkerShare(index, options.workers)
        dispatcher = Dispatcher(plan, target, options, log_path, anchor, api_key, share)
        relay = _Relay(dispatcher.stats.planned)
        dispatcher.stats = relay
        loop = new_event_loop(options.precise_timer)
        control = _Control(conn, dispatcher, loop)
        gc.freeze()
        try:
            loop.run_until_complete(dispatcher.run(ProgressDisplay(relay, False), control.follow))
        finally:
            loop.close()
            dispatcher.finish()
        relay.flush(conn)
        conn.send(("finished", time.process_time() + senders_cpu_s()))  # with its sender process's
    except BaseException as exc:  # said to the parent, which accounts for this worker's requests
        with contextlib.suppress(OSError):
            conn.send(("failed", "".join(traceback.format_exception_only(exc)).strip()))
        if dispatcher is not None:
            dispatcher.log.close()
        raise SystemExit(1) from None


class _Control:
    """The parent's messages, read on the worker's loop: stops act at once, the rest wait in a queue."""

    def __init__(self, conn: Connection, dispatcher: Dispatcher, loop: asyncio.AbstractEventLoop) -> None:
        self._conn, self._d = conn, dispatcher
        self._queue: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()
        loop.add_reader(conn.fileno(), self._read, loop)

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            message = self._conn.recv()
        except (EOFError, OSError):  # the parent died: stop at once, nobody will start another arm
            loop.remove_reader(self._conn.fileno())
            self._d.abort()
            message = ("end",)
        handlers: dict[str, Callable[[], None]] = {
            "stop": lambda: self._d.request_stop(message[1]),
            "abort": self._d.abort,
        }
        handler = handlers.get(message[0])
        if handler is not None:
            handler()
        else:
            self._queue.put_nowait(message)

    async def follow(self, d: Dispatcher) -> None:
        relay = d.stats
        assert isinstance(relay, _Relay)
        conn = self._conn
        ticker = asyncio.get_running_loop().create_task(self._relay(relay))
        try:
            conn.send(("ready",))
            while True:
                message = await self._queue.get()
                if message[0] == "end":
                    return
                _, i, start = message
                arm = d.plan.header.arms[i]
                await d.wait_until(start - d.stage_lead_ns(arm))
                window = await d.run_arm(arm, start)
                relay.flush(conn)
                conn.send(("arm", window, d.arm_lags[arm.name]))
        finally:
            ticker.cancel()

    async def _relay(self, relay: _Relay) -> None:
        while True:
            await asyncio.sleep(_RELAY_S)
            relay.flush(self._conn)
