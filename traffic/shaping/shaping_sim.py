"""A policy on a simulated clock: offered arrivals in; arrival, release, hold, first token, finish out.

For tests and for explaining what a policy does to latency, not for energy. Pure and deterministic:
the executor here is the contract of `policy_api` followed to the letter, with no poll latency.

The server (`SimServer`) is deliberately small: each request, once the server takes it, gets its
first token `ttft` seconds later and its other tokens `per_token` seconds apart (it always produces
its max_tokens, as with ignore_eos); it serves at most `slots` requests at once, and the rest wait
in send order (time that counts in the TTFT the policy observes, as it would on a real server).

At each instant the events are reported in a fixed order (first tokens, finishes, arrivals,
cancellations), then the policy is polled; what it releases is sent at once (`sent` at the same
time), and it is polled again until it releases nothing. It is woken at the `next_poll_ns` it asks.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from traffic.shaping.policy_api import Arrival, Policy, ProtocolError

_FIRST, _FINISH, _ARRIVE, _CANCEL, _WAKE = range(5)  # the order of events within one instant
# Polls in a row with no event and no release: a policy that keeps asking yet never releases.
_MAX_IDLE_POLLS = 10_000


@dataclass(frozen=True)
class SimServer:
    """The simulated server: fixed service times, at most `slots` requests at once (None: no limit)."""

    ttft: float
    per_token: float = 0.0
    slots: int | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one request, in simulated monotonic ns; a cancelled one has no release."""

    request_id: int
    arrived_ns: int
    released_ns: int | None
    first_token_ns: int | None
    finished_ns: int | None

    @property
    def cancelled(self) -> bool:
        return self.released_ns is None

    @property
    def hold_ns(self) -> int | None:
        return None if self.released_ns is None else self.released_ns - self.arrived_ns

    @property
    def user_ttft_ns(self) -> int | None:
        """Time to first token as the user sees it: from arrival, hold included."""
        return None if self.first_token_ns is None else self.first_token_ns - self.arrived_ns


def simulate(
    policy: Policy,
    arrivals_ns: Sequence[int],
    server: SimServer,
    *,
    max_tokens: int | Sequence[int] = 1,
    prompt_tokens: int | None = None,
    cancels_ns: Mapping[int, int] | None = None,
    start_ns: int = 0,
) -> list[Outcome]:
    """Run `policy` (fresh) over requests 0..n-1 arriving at `arrivals_ns`; one Outcome per request.

    `cancels_ns` maps a request id to when its user gives up: if still held then, it is cancelled.
    Raises ProtocolError when the policy breaks the contract (releases what it does not hold, asks
    to be polled in the past, or still holds requests when nothing more can happen).
    """
    if any(t < start_ns for t in arrivals_ns):
        raise ValueError("every arrival must be at or after start_ns")
    for request_id, t in (cancels_ns or {}).items():
        if not 0 <= request_id < len(arrivals_ns) or t < arrivals_ns[request_id]:
            raise ValueError(f"cancels_ns: request {request_id} does not exist or gives up before it arrives")
    tokens = [max_tokens] * len(arrivals_ns) if isinstance(max_tokens, int) else list(max_tokens)
    run = _Run(policy, server, tokens, prompt_tokens)
    policy.start(start_ns)
    for request_id, t in enumerate(arrivals_ns):
        run.push(t, _ARRIVE, request_id)
    for request_id, t in (cancels_ns or {}).items():
        run.push(t, _CANCEL, request_id)
    run.play()
    return [
        Outcome(i, t, run.released.get(i), run.first_token.get(i), run.finished.get(i))
        for i, t in enumerate(arrivals_ns)
    ]


class _Run:
    def __init__(
        self, policy: Policy, server: SimServer, tokens: list[int], prompt_tokens: int | None
    ) -> None:
        self.policy, self.server, self.tokens, self.prompt_tokens = policy, server, tokens, prompt_tokens
        self.events: list[tuple[int, int, int, int]] = []  # (time, order, sequence, request id)
        self.sequence = itertools.count()  # ties within an order keep the order they were pushed in
        self.held: set[int] = set()
        self.queue: deque[int] = deque()  # sent, waiting for a slot at the server
        self.busy = 0
        self.released: dict[int, int] = {}
        self.first_token: dict[int, int] = {}
        self.finished: dict[int, int] = {}
        self.wake_ns: int | None = None

    def push(self, t: int, order: int, request_id: int) -> None:
        heapq.heappush(self.events, (t, order, next(self.sequence), request_id))

    def play(self) -> None:
        idle_polls = 0
        while self.events:
            now = self.events[0][0]
            happened = False
            while self.events and self.events[0][0] == now:
                _, order, _, request_id = heapq.heappop(self.events)
                happened |= order != _WAKE
                self._report(now, order, request_id)
            released = self._poll(now)
            idle_polls = 0 if happened or released else idle_polls + 1
            if idle_polls > _MAX_IDLE_POLLS:
                raise ProtocolError(f"the policy was polled {_MAX_IDLE_POLLS} times without releasing")
        if self.held:
            raise ProtocolError(f"the policy still holds {len(self.held)} request(s) and asked for no poll")

    def _report(self, now: int, order: int, request_id: int) -> None:
        if order == _ARRIVE:
            self.held.add(request_id)
            self.policy.arrived(now, Arrival(request_id, self.prompt_tokens, self.tokens[request_id]))
        elif order == _CANCEL and request_id in self.held:  # a user who already got in just waits
            self.held.remove(request_id)
            self.policy.cancelled(now, request_id)
        elif order == _FIRST:
            self.first_token[request_id] = now
            self.policy.first_token(now, request_id)
        elif order == _FINISH:
            self.finished[request_id] = now
            self.busy -= 1
            self.policy.finished(now, request_id, True, self.tokens[request_id])
            self._serve(now)

    def _poll(self, now: int) -> bool:
        """Poll until the policy releases nothing; whether it released anything."""
        any_released = False
        while True:
            release = self.policy.poll(now)
            if release.next_poll_ns is not None:
                if release.next_poll_ns <= now:
                    raise ProtocolError(
                        f"the policy asked for a poll at {release.next_poll_ns}, not after {now}"
                    )
                if release.next_poll_ns != self.wake_ns:
                    self.wake_ns = release.next_poll_ns
                    self.push(release.next_poll_ns, _WAKE, -1)
            if not release.ids:
                return any_released
            any_released = True
            for request_id in release.ids:
                if request_id not in self.held:
                    raise ProtocolError(f"the policy released request {request_id}, which it does not hold")
                self.held.remove(request_id)
                self.released[request_id] = now
                self.policy.sent(now, request_id)
                self.queue.append(request_id)
            self._serve(now)

    def _serve(self, now: int) -> None:
        while self.queue and (self.server.slots is None or self.busy < self.server.slots):
            request_id = self.queue.popleft()
            self.busy += 1
            first_ns = now + round(self.server.ttft * 1e9)
            decode_ns = round((self.tokens[request_id] - 1) * self.server.per_token * 1e9)
            self.push(first_ns, _FIRST, request_id)
            self.push(first_ns + decode_ns, _FINISH, request_id)
