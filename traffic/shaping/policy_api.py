"""The shaping interface: an executor reports what happens to requests, a policy says when to release them.

An executor (the runner in-process, later the `joulebench shape` proxy, and `shaping_sim` on a
simulated clock) drives every policy the same way, with monotonic nanoseconds that never go back:

1. `start(now_ns)` once, before anything else: the policy's time origin (window boundaries count
   from it; a token bucket starts full at it).
2. Events as they happen: `arrived` (a user's request reached the policy and is held by it),
   `sent` (a released request went to the server), `first_token`, `finished` (ok or not, with the
   output tokens when known) and `cancelled` (its user gave up while it was still held).
3. `poll(now_ns)` after the events of an instant, and again at the `next_poll_ns` the last poll
   asked for: it returns the ids to release now, in order, and when it wants to be polled next
   (None: only on the next event). An extra poll is harmless; a missed one is the executor's bug.

No policy drops a request: every request that arrived is eventually released, or cancelled by the
executor while held. Policies are deterministic: the same events at the same times (and the same
seed, for one that draws random numbers from the Generator it was created with) give the same
releases. A policy never reads a clock: every time is an argument.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# The methods an executor calls; a user-written policy must have every one (custom_hook checks).
INTERFACE = ("start", "arrived", "sent", "first_token", "finished", "cancelled", "poll")


class ProtocolError(RuntimeError):
    """An executor or a policy broke the event protocol above (a bug, not bad user input)."""


@dataclass(frozen=True)
class Arrival:
    """A request as it reaches the policy: everything a policy may use to decide."""

    request_id: int
    prompt_tokens: int | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Release:
    """A poll's answer: the ids to release now (in order) and the absolute time to poll next."""

    ids: tuple[int, ...] = ()
    next_poll_ns: int | None = None


@runtime_checkable
class Policy(Protocol):
    """What every policy implements, built-in or user-written (see docs/shaping.md)."""

    def start(self, now_ns: int) -> None: ...

    def arrived(self, now_ns: int, request: Arrival) -> None: ...

    def sent(self, now_ns: int, request_id: int) -> None: ...

    def first_token(self, now_ns: int, request_id: int) -> None: ...

    def finished(self, now_ns: int, request_id: int, ok: bool, output_tokens: int | None) -> None: ...

    def cancelled(self, now_ns: int, request_id: int) -> None: ...

    def poll(self, now_ns: int) -> Release: ...


@dataclass(frozen=True)
class Held:
    """A request the policy holds, with the time it arrived."""

    request: Arrival
    arrived_ns: int


class QueuePolicy(ABC):
    """A policy over one queue of held requests, in arrival order: subclasses only `decide`.

    It keeps the bookkeeping every built-in policy needs (what is held, what is in flight and since
    when) and refuses events that break the protocol, so an executor's bug surfaces where it happens
    instead of as a request silently never released.
    """

    def __init__(self) -> None:
        self.start_ns: int | None = None
        self.held: dict[int, Held] = {}  # insertion order is arrival order
        self.in_flight: dict[int, int] = {}  # released and not finished: id -> release time
        self.sent_ns: dict[int, int] = {}  # in flight and sent: id -> send time
        self._seen: set[int] = set()
        self._now_ns: int | None = None

    @abstractmethod
    def decide(self, now_ns: int) -> tuple[Sequence[int], int | None]:
        """The held ids to release now, in order, and the next time to be polled (None: on events)."""

    def start(self, now_ns: int) -> None:
        if self.start_ns is not None:
            raise ProtocolError("start reported twice")
        self.start_ns = self._now_ns = now_ns

    def arrived(self, now_ns: int, request: Arrival) -> None:
        self._tick(now_ns)
        if request.request_id in self._seen:
            raise ProtocolError(f"request {request.request_id} arrived twice")
        self._seen.add(request.request_id)
        self.held[request.request_id] = Held(request, now_ns)

    def sent(self, now_ns: int, request_id: int) -> None:
        self._tick(now_ns)
        if request_id not in self.in_flight or request_id in self.sent_ns:
            raise ProtocolError(f"request {request_id} sent without being released, or twice")
        self.sent_ns[request_id] = now_ns

    def first_token(self, now_ns: int, request_id: int) -> None:
        self._tick(now_ns)
        if request_id not in self.sent_ns:
            raise ProtocolError(f"first token of request {request_id}, which is not in flight")

    def finished(self, now_ns: int, request_id: int, ok: bool, output_tokens: int | None) -> None:
        self._tick(now_ns)
        if request_id not in self.in_flight:
            raise ProtocolError(f"request {request_id} finished but is not in flight")
        del self.in_flight[request_id]
        self.sent_ns.pop(request_id, None)

    def cancelled(self, now_ns: int, request_id: int) -> None:
        self._tick(now_ns)
        if self.held.pop(request_id, None) is None:
            raise ProtocolError(f"request {request_id} cancelled but not held")

    def poll(self, now_ns: int) -> Release:
        self._tick(now_ns)
        ids, next_poll_ns = self.decide(now_ns)
        for request_id in ids:
            if self.held.pop(request_id, None) is None:
                raise ProtocolError(
                    f"{type(self).__name__} released request {request_id}, which it does not hold"
                )
            self.in_flight[request_id] = now_ns
        if next_poll_ns is not None and next_poll_ns <= now_ns:
            raise ProtocolError(f"{type(self).__name__} asked to be polled at {next_poll_ns}, not after now")
        return Release(tuple(ids), next_poll_ns)

    def _tick(self, now_ns: int) -> None:
        if self._now_ns is None:
            raise ProtocolError("an event before start")
        if now_ns < self._now_ns:
            raise ProtocolError(f"time went back from {self._now_ns} to {now_ns}")
        self._now_ns = now_ns
