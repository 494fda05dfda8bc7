"""A shaped arm: its users arrive on the plan's schedule, and a shaping policy releases their requests.

The executor of the policy contract (traffic/shaping/policy_api.py, docs/shaping.md "The interface"),
in the call order `traffic.shaping.simulate` follows on its simulated clock: each user arrives at the
arm's start + its offset, an absolute deadline (`arrived`, logged, so a killed run knows what was
held; the policy is told the planned time, the record keeps when the runner got there); after the
events of a moment the policy is polled, again until it releases nothing, and what it releases is
launched at once. The loop sleeps until the next arrival or the poll the policy asked for, whichever
is first, and wakes early at any event of a request in flight (sent, first token, finished): releases
may depend on them (`concurrency-cap`, `slo-slack`). The arm ends when every request arrived, was
released and finished.

`ShapedArm` is that bookkeeping on a clock it is given (the tests drive it on a fake one); `play` runs
it on the event loop. Times reported to the policy never go back: an event stamped before the last
time reported (a response read while the loop was busy) is reported at that time.

A stop (Ctrl-C, SIGTERM, the time limit) ends `play` where it waits: the requests the policy still
holds are recorded `cancelled` and never sent; those whose users had not arrived stay `not_sent`. A
policy that breaks the contract (a bug, or a user's class that raises) ends its arm the same way,
its error in theirs.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.records import RequestRecord
from harness.runfolder.request_log import HELD_CANCELLED
from traffic.shaping import Arrival, Policy, ProtocolError, parse_policy
from traffic.shaping.concurrency_cap import ConcurrencyCapSpec
from traffic.shaping.grouping import BatchSpec, WindowSpec
from traffic.shaping.release_rates import PaceSpec, PassthroughSpec, TokenBucketSpec
from traffic.shaping.slo_slack import SloSlackSpec

_now = time.monotonic_ns


@dataclass(frozen=True)
class Step:
    """What one moment of the loop decided: requests to launch now, and when to look again."""

    release: list[RequestRecord] = field(default_factory=list)
    wake_ns: int | None = None  # None: only at an event of a request in flight (or the arm is over)


class ShapedArm:
    """One shaped arm's executor state: who arrived, what the policy holds, what it released.

    `recs` in arrival order with their `planned_ns` set; `arrivals[i]` what the policy is told of
    `recs[i]`; `on_arrival` is called with each record as its user arrives (the log's `arrived` line).
    """

    def __init__(
        self,
        name: str,
        policy: Policy,
        recs: Sequence[RequestRecord],
        arrivals: Sequence[Arrival],
        on_arrival: Callable[[RequestRecord], None] = lambda rec: None,
    ) -> None:
        self.name = name  # the policy's, in error texts
        self.policy = policy
        self.recs = list(recs)
        self.arrivals = list(arrivals)
        self.on_arrival = on_arrival
        self.next = 0  # index of the next user to arrive
        self.held: dict[int, RequestRecord] = {}
        self.out: dict[int, RequestRecord] = {}  # released, not reported finished
        self.first_seen: set[int] = set()
        self.fault: str | None = None
        self.now_ns: int | None = None  # the last time reported to the policy
        self.wake_ns: int | None = None  # the poll the policy last asked for

    @property
    def done(self) -> bool:
        """Every user arrived, and every request was released and finished (or the policy failed)."""
        return self.fault is not None or (self.next == len(self.recs) and not self.held and not self.out)

    def start(self, now_ns: int) -> None:
        self._call(self.policy.start, self._at(now_ns))

    def step(self, now_ns: int) -> Step:
        """Report the arrivals due by `now_ns`, then poll until the policy releases nothing.

        A user arrives at its planned time: that is what the policy is told (so a window's boundary
        or an SLO counts from it), while `arrived_ns` records when the runner got to it, `now_ns`, so
        that a late wake-up shows as the runner's lateness. A poll the policy asked for before an
        arrival is made first, at its time, as the simulator orders them: a late wake-up must not let
        a user who came after a window's boundary go with the window before it."""
        released: list[RequestRecord] = []
        while self.next < len(self.recs) and self._planned(self.next) <= now_ns and self.fault is None:
            planned = self._planned(self.next)
            if self.wake_ns is not None and self.wake_ns < planned:
                released += self._poll(self.wake_ns)
                continue
            rec, arrival = self.recs[self.next], self.arrivals[self.next]
            self.next += 1
            rec.arrived_ns = now_ns
            self.held[rec.request_id] = rec
            self.on_arrival(rec)
            self._call(self.policy.arrived, self._at(planned), arrival)
        released += self._poll(now_ns)
        wake = self.wake_ns
        due = self._planned(self.next) if self.next < len(self.recs) else None
        if self.held and wake is None and due is None and not self.out and self.fault is None:
            self._fail(
                f"holds {len(self.held)} request(s) and asked for no poll, with none in flight to wake it"
            )
        return Step(released, min((t for t in (wake, due) if t is not None), default=None))

    def _poll(self, t_ns: int) -> list[RequestRecord]:
        """Poll at `t_ns` until the policy releases nothing; what it released. Keeps the wake-up the
        last answer asked for in `wake_ns`."""
        now = self._at(t_ns)
        released: list[RequestRecord] = []
        self.wake_ns = None
        while self.fault is None:
            answer = self._call(self.policy.poll, now)
            if answer is None:
                break
            self.wake_ns = answer.next_poll_ns
            for request_id in answer.ids:
                if request_id not in self.held:
                    self._fail(f"released request {request_id}, which it does not hold")
                    break
                rec = self.out[request_id] = self.held.pop(request_id)
                released.append(rec)
            if not answer.ids:
                break
        if self.wake_ns is not None and self.wake_ns <= now and self.fault is None:
            self._fail(f"asked to be polled at {self.wake_ns}, not after now ({now})")
        return released

    def sent(self, rec: RequestRecord) -> None:
        assert rec.sent_ns is not None
        self._call(self.policy.sent, self._at(rec.sent_ns), rec.request_id)

    def first_token(self, rec: RequestRecord, t_ns: int) -> None:
        if rec.request_id not in self.first_seen:
            self.first_seen.add(rec.request_id)
            self._call(self.policy.first_token, self._at(t_ns), rec.request_id)

    def finished(self, rec: RequestRecord) -> None:
        """A released request ended (ok or not); a whole response's first token is reported first."""
        rec.chunk_ns = list(rec.chunk_ns)  # a plain list again: the record outlives the arm
        if rec.request_id not in self.out:
            return  # reported already
        del self.out[rec.request_id]
        if rec.first_token_ns is not None:
            self.first_token(rec, rec.first_token_ns)
        assert rec.done_ns is not None
        self._call(
            self.policy.finished, self._at(rec.done_ns), rec.request_id, rec.status == "ok", rec.output_tokens
        )

    def end(self, now_ns: int) -> list[RequestRecord]:
        """Record every request still held as `cancelled` (never sent), returned for the log. After a
        fault, those whose users had not arrived (they stay `not_sent`) carry it as their error."""
        now = self._at(now_ns)
        error = HELD_CANCELLED if self.fault is None else f"{HELD_CANCELLED}: {self.fault}"
        cancelled = list(self.held.values())
        self.held.clear()
        for rec in cancelled:
            rec.finish("cancelled", now, error)
            self._call(self.policy.cancelled, now, rec.request_id)
        if self.fault is not None:
            for rec in self.recs[self.next :]:
                rec.error = f"never arrived: {self.fault}"
        return cancelled

    def watch_stream(self, rec: RequestRecord, wake: Callable[[], None]) -> None:
        """Report a streamed request's first token as the backend reads it (see `ChunkTimes`)."""

        def on_first(t_ns: int) -> None:
            self.first_token(rec, t_ns)
            wake()

        rec.chunk_ns = ChunkTimes(on_first)

    def _planned(self, i: int) -> int:
        planned = self.recs[i].planned_ns
        assert planned is not None
        return planned

    def _at(self, t_ns: int) -> int:
        self.now_ns = t_ns if self.now_ns is None else max(self.now_ns, t_ns)
        return self.now_ns

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call the policy; whatever it raises is recorded as the arm's fault (never lost in a task)."""
        if self.fault is not None:
            return None
        try:
            return method(*args)
        except Exception as exc:  # a user's class may raise anything: the arm ends, the run goes on
            kind = "" if isinstance(exc, ProtocolError) else f"{type(exc).__name__}: "
            self._fail(f"{kind}{' '.join(str(exc).split())}")
            return None

    def _fail(self, reason: str) -> None:
        if self.fault is None:
            self.fault = f"policy {self.name} failed: {reason}"


class Waker:
    """Wakes the loop at a deadline or at the first event set since it last woke, whichever is first."""

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, deadline_ns: int | None) -> None:
        if not self._set:
            loop = asyncio.get_running_loop()
            future = self._future = loop.create_future()

            def wake() -> None:
                if not future.done():
                    future.set_result(None)

            # The loop's clock is time.monotonic: the absolute deadline, in its seconds.
            timer = None if deadline_ns is None else loop.call_at(deadline_ns / 1e9, wake)
            try:
                await future
            finally:
                self._future = None
                if timer is not None:
                    timer.cancel()
        self._set = False


class ChunkTimes(list[int]):
    """`chunk_ns` of a shaped arm's streamed request: the backend appends each content chunk's time
    to it, so its first append is the first token, reported to the policy the moment it is read."""

    __slots__ = ("_on_first",)

    def __init__(self, on_first: Callable[[int], None]) -> None:
        super().__init__()
        self._on_first = on_first

    def append(self, t_ns: int) -> None:
        if not self:
            self._on_first(t_ns)
        super().append(t_ns)


async def play(
    arm: ShapedArm, start_ns: int, launch: Callable[[RequestRecord], object], waker: Waker
) -> None:
    """Run the arm from `start_ns` until it is done; a stop cancels this where it waits."""
    arm.start(start_ns)
    while not arm.done:
        step = arm.step(_now())
        for rec in step.release:
            launch(rec)
        if arm.done:
            return
        await waker.wait(step.wake_ns)


def arrivals_of(
    recs: Sequence[RequestRecord], prompt_tokens: Sequence[int | None], max_tokens: Sequence[int | None]
) -> list[Arrival]:
    """What the policy is told of each request: its id and, from its plan row, its token counts."""
    return [Arrival(r.request_id, prompt_tokens[r.request_id], max_tokens[r.request_id]) for r in recs]


def in_flight_bound(policy: str, offsets_s: np.ndarray, span_s: float) -> int:
    """The most requests of a shaped arm in flight at once, as `dispatcher.pool_size` bounds an
    unshaped arm's (those planned within one `span_s`): a policy that holds a request at most H seconds
    sends at most those arriving within `span_s + H`; a cap or a rate bounds it on its own; a policy of
    one's own may send them all together."""
    spec = parse_policy(policy)
    n = len(offsets_s)
    if isinstance(spec, ConcurrencyCapSpec):
        return min(n, spec.c)
    if isinstance(spec, TokenBucketSpec):
        return min(n, spec.burst + math.ceil(spec.rate * span_s))
    if isinstance(spec, PaceSpec):
        return min(n, 1 + math.ceil(spec.rate * span_s))
    if isinstance(spec, PassthroughSpec):
        hold = 0.0
    elif isinstance(spec, WindowSpec):
        hold = spec.period
    elif isinstance(spec, BatchSpec):
        hold = spec.max_wait
    elif isinstance(spec, SloSlackSpec):  # it releases by the SLO at the latest
        hold = max(spec.ttft or 0.0, spec.e2e or 0.0)
    else:
        return n
    return most_within(offsets_s, span_s + hold)


def most_within(offsets: np.ndarray, span_s: float) -> int:
    """The most offsets inside any window [t, t + span_s]."""
    if len(offsets) == 0:
        return 0
    ordered = np.sort(offsets)
    return int((np.searchsorted(ordered, ordered + span_s, side="right") - np.arange(len(ordered))).max())
