"""Drives one shaping policy on the running event loop: the proxy's executor of traffic.shaping's interface.

The policy decides; this reports what happens, at the monotonic time it happens, and does what the
policy answers (docs/shaping.md, "The interface"):

- `arrive` reports `arrived` and polls; the caller awaits the returned future, which resolves with
  the release time when a poll releases the request (or None when the proxy gives up on it: at
  shutdown, after `cancelled` was reported, or at a policy fault).
- `sent`, `first_token`, `finished` and `cancel` report their event and poll again: a release may
  depend on a completion (concurrency-cap) or on a new estimate (slo-slack).
- A poll's `next_poll_ns` becomes one `loop.call_at` at that absolute time (the loop's clock is
  time.monotonic; see harness.clock.new_event_loop), replaced by each later poll's answer: never a
  chain of sleeps.
- A policy that raises (a `custom:` class may) is a fault, not a crash: it is reported once on stderr,
  every held request resolves with None, no timer is armed again and the policy hears nothing more;
  `fault` says why, and the proxy answers what comes after 503.
- Events keep their order with the wake-ups: a wake-up that is due but has not fired yet (the loop
  was busy) is polled before a later event is reported, so a window's group, say, leaves without
  the request that arrived after its boundary, as it would have with a timer on time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from traffic.shaping import Arrival, Policy, ProtocolError

# What became of a request whose client left while it waited for its release (`cancel`).
Withdrawal = Literal[
    "withdrawn",  # it was still held: the policy heard `cancelled`
    "released",  # the policy had released it: it counts it in flight until told it `finished`
    "abandoned",  # shutdown's `abandon_held` or a policy fault gave up on it already: nothing to report
]


class PolicyExecutor:
    def __init__(self, policy: Policy, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.policy = policy
        self.name = name
        self.fault: str | None = None  # why the policy failed; from then on it hears nothing
        self._loop = loop
        self._held: dict[int, asyncio.Future[int | None]] = {}  # held id -> its release, in arrival order
        self._timer: asyncio.TimerHandle | None = None
        self._timer_ns: int | None = None
        self.start_ns = time.monotonic_ns()
        self._call(policy.start, self.start_ns)

    @property
    def held(self) -> int:
        """Requests held now (arrived, neither released nor cancelled)."""
        return len(self._held)

    def arrive(self, arrival: Arrival) -> tuple[int, asyncio.Future[int | None]]:
        """Report an arrival: (its time, a future resolving with its release time)."""
        now = self._now()
        release: asyncio.Future[int | None] = self._loop.create_future()
        if self.fault is not None:  # nothing left to hold it
            release.set_result(None)
            return now, release
        self._held[arrival.request_id] = release
        self._call(self.policy.arrived, now, arrival)
        self._poll(now)
        return now, release

    def sent(self, request_id: int) -> int:
        now = self._now()
        self._call(self.policy.sent, now, request_id)
        self._poll(now)
        return now

    def first_token(self, request_id: int) -> int:
        now = self._now()
        self._call(self.policy.first_token, now, request_id)
        self._poll(now)
        return now

    def finished(self, request_id: int, ok: bool, output_tokens: int | None) -> int:
        now = self._now()
        self._call(self.policy.finished, now, request_id, ok, output_tokens)
        self._poll(now)
        return now

    def cancel(self, request_id: int, release: asyncio.Future[int | None]) -> Withdrawal:
        """The client gave up while awaiting `release` (the future `arrive` returned): withdraw it from
        the policy if it is still held, and say what became of it."""
        if self._held.pop(request_id, None) is release:
            release.cancel()
            if self.fault is not None:
                return "abandoned"
            now = self._now()
            self._call(self.policy.cancelled, now, request_id)
            self._poll(now)
            return "withdrawn"
        # No longer held: resolved with None when given up on, else released (its time may be lost
        # with the cancelled future, when the release came between the cancel and this call).
        given_up = release.done() and not release.cancelled() and release.result() is None
        return "abandoned" if given_up or self.fault is not None else "released"

    def abandon_held(self) -> int:
        """Shutdown's end: every held request is cancelled and its future resolves with None."""
        now = time.monotonic_ns()
        # A future already cancelled is a client that left: its handler withdraws it with `cancel`.
        abandoned = [request_id for request_id, release in self._held.items() if not release.done()]
        for request_id in abandoned:
            self._call(self.policy.cancelled, now, request_id)
            self._held.pop(request_id).set_result(None)
        self._arm(None)
        return len(abandoned)

    def _now(self) -> int:
        """Now, for an event about to be reported: a wake-up already due is polled first."""
        now = time.monotonic_ns()
        if self._timer_ns is not None and self._timer_ns <= now:
            self._arm(None)
            self._poll(now)
        return now

    def _poll(self, now_ns: int) -> None:
        # A poll that released something is repeated at the same instant, as the simulator does, so a
        # policy that releases in steps has released all it will before anything else happens. Each
        # repeat took a held request (or failed), so this ends.
        while True:
            answer = self._call(self.policy.poll, now_ns)
            if answer is None:
                return
            for request_id in answer.ids:
                release = self._held.pop(request_id, None)
                if release is None:
                    self._fail(ProtocolError(f"the policy released request {request_id}, which is not held"))
                    return
                if not release.done():
                    release.set_result(now_ns)
            if not answer.ids:
                break
        self._arm(answer.next_poll_ns)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call the policy, unless it failed before; what it raises is the fault (None returned)."""
        if self.fault is not None:
            return None
        try:
            return method(*args)
        except Exception as exc:  # a user's class may raise anything: its requests are answered 503
            self._fail(exc)
            return None

    def _fail(self, exc: Exception) -> None:
        kind = "" if isinstance(exc, ProtocolError) else f"{type(exc).__name__}: "
        self.fault = f"policy {self.name} failed: {kind}{' '.join(str(exc).split())}"[:500]
        print(f"joulebench shape: {self.fault}; shaped requests are answered 503 from now on",
              file=sys.stderr, flush=True)  # fmt: skip
        self._arm(None)
        held, self._held = self._held, {}
        for release in held.values():
            if not release.done():
                release.set_result(None)

    def _arm(self, next_poll_ns: int | None) -> None:
        if next_poll_ns == self._timer_ns:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_ns = next_poll_ns
        self._timer = None if next_poll_ns is None else self._loop.call_at(next_poll_ns / 1e9, self._wake)

    def _wake(self) -> None:
        self._timer = self._timer_ns = None
        # A timer may fire a hair early (float seconds); the policy then asks for the same time again.
        self._poll(time.monotonic_ns())
