"""The proxy's executor drives real policies on a real event loop and the real monotonic clock.

Timing bounds are loose on purpose (2 shared cores): the release-time precision is measured by
benchmarks/shape_proxy.py. What must hold exactly: nothing is released before the policy says, a
release that depends on an event happens at that event, and a cancelled request is never released.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from harness.clock import new_event_loop
from harness.shaping_proxy.proxy_executor import PolicyExecutor
from traffic.shaping import Arrival, Policy, QueuePolicy, parse_policy

LOOSE_NS = 50_000_000  # how late a release may be on a busy test machine


class FailsOnItsThirdPoll(QueuePolicy):
    """Holds everything and asks to be polled 20 ms later; the third poll raises."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def decide(self, now_ns: int) -> tuple[list[int], int | None]:
        self.polls += 1
        if self.polls == 3:
            raise RuntimeError("poll\nthree")
        return [], now_ns + 20_000_000


def run(body: Callable[[PolicyExecutor], Awaitable[None]], spec: str | Policy) -> None:
    loop = new_event_loop()

    async def main() -> None:
        policy = parse_policy(spec).create(np.random.default_rng(0)) if isinstance(spec, str) else spec
        await body(PolicyExecutor(policy, loop, "test-policy"))

    try:
        loop.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        loop.close()


async def sleep_until(deadline_ns: int) -> None:
    await asyncio.sleep(max(0.0, (deadline_ns - time.monotonic_ns()) / 1e9))


def test_window_releases_at_its_boundaries_by_itself() -> None:
    period = 100_000_000

    async def body(ex: PolicyExecutor) -> None:
        start = ex.start_ns
        await sleep_until(start + 30_000_000)
        arrived_a, a = ex.arrive(Arrival(0))
        assert ex.held == 1 and not a.done()
        released_a = await a
        assert released_a is not None and start + period <= released_a < start + period + LOOSE_NS
        await sleep_until(start + 120_000_000)
        arrived_b, b = ex.arrive(Arrival(1))
        assert ex.held == 1 and not b.done()
        released_b = await b
        assert released_b is not None and start + 2 * period <= released_b < start + 2 * period + LOOSE_NS
        assert arrived_a < arrived_b and ex.held == 0

    run(body, "window:period=0.1")


def test_a_late_wake_up_is_served_before_a_later_arrival() -> None:
    period = 100_000_000

    async def body(ex: PolicyExecutor) -> None:
        start = ex.start_ns
        _, a = ex.arrive(Arrival(0))
        # The loop is busy past the boundary, so its timer cannot fire; then request 1 arrives.
        while time.monotonic_ns() < start + period + 20_000_000:
            time.sleep(0.001)
        _, b = ex.arrive(Arrival(1))
        assert a.done() and not b.done()  # 0 left with its boundary's group, 1 waits for the next
        released_b = await b
        assert released_b is not None and released_b >= start + 2 * period

    run(body, "window:period=0.1")


def test_a_release_that_waits_for_a_completion_comes_with_it() -> None:
    async def body(ex: PolicyExecutor) -> None:
        _, a = ex.arrive(Arrival(0))
        _, b = ex.arrive(Arrival(1))
        assert a.done() and not b.done()  # c=1: the second waits for the first to end
        ex.sent(0)
        ex.first_token(0)
        await asyncio.sleep(0.02)
        assert not b.done()
        finished_ns = ex.finished(0, ok=True, output_tokens=3)
        assert b.done() and b.result() == finished_ns

    run(body, "concurrency-cap:c=1")


def test_a_cancelled_request_is_withdrawn_and_never_released() -> None:
    async def body(ex: PolicyExecutor) -> None:
        _, a = ex.arrive(Arrival(0))
        _, b = ex.arrive(Arrival(1))
        assert ex.cancel(0, a) == "withdrawn" and ex.held == 1 and a.cancelled()
        released_b = await b  # the boundary comes and releases only what is still held
        assert released_b is not None and ex.held == 0
        assert ex.cancel(1, b) == "released"  # the caller reports it finished instead
        assert ex.policy.held == {}  # type: ignore[attr-defined]

    run(body, "window:period=0.05")


def test_abandoning_the_held_cancels_them_at_the_policy() -> None:
    async def body(ex: PolicyExecutor) -> None:
        releases = [ex.arrive(Arrival(i))[1] for i in range(3)]
        assert ex.abandon_held() == 3 and ex.held == 0
        assert [await r for r in releases] == [None, None, None]
        assert ex.policy.held == {}  # type: ignore[attr-defined]
        _, late = ex.arrive(Arrival(3))  # the executor and its timer still work afterwards
        assert await late is not None

    run(body, "window:period=0.05")


def test_a_client_leaving_after_its_request_was_abandoned_is_not_reported_again() -> None:
    async def body(ex: PolicyExecutor) -> None:
        _, a = ex.arrive(Arrival(0))
        assert ex.abandon_held() == 1
        # Its handler is cancelled before it resumes: the policy heard `cancelled` once, and the
        # request is in flight nowhere, so the handler must not report it `finished` either.
        assert ex.cancel(0, a) == "abandoned"
        assert ex.policy.in_flight == {} and ex.fault is None  # type: ignore[attr-defined]

    run(body, "window:period=0.05")


def test_a_policy_that_raises_is_a_fault_that_answers_every_held_request(capfd) -> None:
    policy = FailsOnItsThirdPoll()

    async def body(ex: PolicyExecutor) -> None:
        releases = [ex.arrive(Arrival(i))[1] for i in range(2)]  # polls 1 and 2; the timer makes 3
        assert [await r for r in releases] == [None, None]
        assert ex.fault == "policy test-policy failed: RuntimeError: poll three" and ex.held == 0
        await asyncio.sleep(0.1)  # no timer is armed again: the policy is never polled after its fault
        assert policy.polls == 3
        _, late = ex.arrive(Arrival(2))
        assert late.done() and late.result() is None and ex.held == 0 and policy.held.keys() == {0, 1}
        assert ex.finished(5, ok=True, output_tokens=1) > 0  # an event the broken policy cannot take

    run(body, policy)
    assert capfd.readouterr().err.count("policy test-policy failed") == 1


def test_pace_releases_one_interval_apart_with_no_event_in_between() -> None:
    interval = 40_000_000

    async def body(ex: PolicyExecutor) -> None:
        releases = [ex.arrive(Arrival(i))[1] for i in range(4)]
        times = [await r for r in releases]
        assert all(t is not None for t in times)
        gaps = np.diff(np.array(times, dtype=np.int64))
        assert (gaps >= interval).all() and (gaps < interval + LOOSE_NS).all(), gaps

    run(body, "pace:rate=25")
