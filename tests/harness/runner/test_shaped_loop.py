"""The shaped loop's bookkeeping (`ShapedArm`) on a fake clock: it follows the policy contract exactly as
`traffic.shaping.simulate` does, never reports time going back, ends on a stop or a broken policy with
every held request accounted for; and its waker wakes at the deadline or the first event."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Sequence

import numpy as np
import pytest

from harness.records import RequestRecord
from harness.runfolder.request_log import HELD_CANCELLED
from harness.runner.shaped_loop import ShapedArm, Waker, in_flight_bound
from traffic.shaping import Arrival, QueuePolicy, SimServer, parse_policy, simulate

MS = 1_000_000
S = 1_000 * MS


def records(offsets_ns: Sequence[int]) -> list[RequestRecord]:
    recs = []
    for i, offset in enumerate(offsets_ns):
        rec = RequestRecord(i, "arm", i, str(i), warmup=False, api="openai-chat", stream=True)
        rec.planned_ns = int(offset)
        recs.append(rec)
    return recs


def shaped(policy, recs: list[RequestRecord], max_tokens: int = 1) -> ShapedArm:
    arrivals = [Arrival(r.request_id, None, max_tokens) for r in recs]
    return ShapedArm("test", policy, recs, arrivals)


def play_on_fake_clock(arm: ShapedArm, server: SimServer, tokens: int) -> None:
    """Run the arm as the runner does, with a server of fixed service times and no delays anywhere: the
    loop wakes exactly when it asks to, or at the next event of a request in flight."""
    events: list[tuple[int, int, int]] = []  # (time, 0 first token | 1 finish, request id)
    recs = {rec.request_id: rec for rec in arm.recs}
    now = 0
    arm.start(now)
    while not arm.done:
        step = arm.step(now)
        for rec in step.release:
            rec.sent_ns = now
            arm.sent(rec)
            first = now + round(server.ttft * S)
            heapq.heappush(events, (first, 0, rec.request_id))
            heapq.heappush(events, (first + round((tokens - 1) * server.per_token * S), 1, rec.request_id))
        if arm.done:
            break
        candidates = [t for t in (step.wake_ns, events[0][0] if events else None) if t is not None]
        assert candidates, "the loop would sleep forever"
        now = min(candidates)
        while events and events[0][0] == now:  # first tokens, then finishes, as the simulator orders them
            _, kind, request_id = heapq.heappop(events)
            rec = recs[request_id]
            if kind == 0:
                rec.first_token_ns = now
                arm.first_token(rec, now)
            else:
                rec.output_tokens = tokens
                rec.finish("ok", now)
                arm.finished(rec)


POLICIES = [
    "passthrough",
    "pace:rate=4",
    "token-bucket:rate=4,burst=3",
    "window:period=0.5",
    "batch:k=4,max_wait=0.7",
    "concurrency-cap:c=2",
    "slo-slack:ttft=0.6",
    "slo-slack:e2e=1.5,margin=0.05",
]


@pytest.mark.parametrize("text", POLICIES)
@pytest.mark.parametrize("seed", [1, 2])
def test_it_releases_exactly_as_the_simulator(text: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    offsets = np.cumsum(np.round(rng.exponential(0.25, 40) * S).astype(np.int64))
    server, tokens = SimServer(ttft=0.08, per_token=0.01), 12
    expected = simulate(parse_policy(text).create(rng), offsets.tolist(), server, max_tokens=tokens)

    recs = records(offsets)
    arm = shaped(parse_policy(text).create(rng), recs, max_tokens=tokens)
    play_on_fake_clock(arm, server, tokens)
    assert arm.fault is None and arm.done
    assert [r.arrived_ns for r in recs] == offsets.tolist()  # woken exactly on time: no lateness
    assert [r.sent_ns for r in recs] == [o.released_ns for o in expected]
    assert [r.done_ns for r in recs] == [o.finished_ns for o in expected]


def test_an_arrival_processed_late_is_late_by_the_runner_not_the_policy() -> None:
    recs = records([0, 300 * MS, 1_200 * MS])
    arm = shaped(parse_policy("window:period=1").create(np.random.default_rng(0)), recs)
    arm.start(0)
    assert [r.request_id for r in arm.step(0).release] == [0]  # on the boundary: goes at once
    step = arm.step(303 * MS)  # the loop woke 3 ms after user 1 was due
    assert step.release == [] and step.wake_ns == S  # held until the next boundary, before user 2
    assert recs[1].arrived_ns == 303 * MS and recs[1].lateness_ns == 3 * MS
    assert [r.request_id for r in arm.step(S).release] == [1]
    recs[1].sent_ns = S + 50_000
    assert recs[1].lateness_ns == 3 * MS and recs[1].hold_ns == S + 50_000 - 303 * MS


def test_a_late_wake_up_polls_before_an_arrival_that_came_after_it() -> None:
    """The loop asked for a poll at 1 s (the window's boundary) but woke at 1.002 s, after user 1
    arrived at 1.001 s: the boundary's poll comes first, at its time, so user 1 waits for the next one
    as in the simulator, and is not released with user 0."""
    recs = records([300 * MS, 1_001 * MS])
    arm = shaped(parse_policy("window:period=1").create(np.random.default_rng(0)), recs)
    arm.start(0)
    step = arm.step(300 * MS)
    assert step.release == [] and step.wake_ns == S
    step = arm.step(1_002 * MS)
    assert [r.request_id for r in step.release] == [0] and step.wake_ns == 2 * S
    assert [r.arrived_ns for r in recs] == [300 * MS, 1_002 * MS]
    assert [r.request_id for r in arm.step(2 * S).release] == [1]
    expected = simulate(
        parse_policy("window:period=1").create(np.random.default_rng(0)),
        [300 * MS, 1_001 * MS],
        SimServer(ttft=0.01, per_token=0.0),
        max_tokens=1,
    )
    assert [o.released_ns for o in expected] == [S, 2 * S]


def test_time_reported_to_the_policy_never_goes_back() -> None:
    recs = records([0])
    arm = shaped(parse_policy("slo-slack:ttft=1").create(np.random.default_rng(0)), recs)
    arm.start(0)
    (rec,) = arm.step(10 * MS).release
    rec.sent_ns = 9 * MS  # stamped before the step that released it was reported: it is reported at 10 ms
    arm.sent(rec)
    arm.first_token(rec, 5 * MS)  # a chunk read earlier than the last report (the loop was busy)
    rec.finish("ok", 8 * MS)
    arm.finished(rec)
    assert arm.fault is None and arm.done and arm.now_ns == 10 * MS


def test_a_stop_cancels_what_the_policy_holds_and_leaves_the_rest_unsent() -> None:
    recs = records([0, 100 * MS, 5 * S])
    arm = shaped(parse_policy("window:period=10").create(np.random.default_rng(0)), recs)
    arm.start(0)
    assert [r.request_id for r in arm.step(0).release] == [0]
    assert arm.step(150 * MS).release == []
    cancelled = arm.end(2 * S)
    assert cancelled == [recs[1]]
    assert (recs[1].status, recs[1].error, recs[1].done_ns, recs[1].sent_ns) == (
        "cancelled",
        HELD_CANCELLED,
        2 * S,
        None,
    )
    assert recs[2].status == "not_sent" and recs[2].arrived_ns is None and recs[2].error is None
    assert arm.fault is None  # the policy was told of the cancellation (it would refuse one it did not hold)


class Raises(QueuePolicy):
    """Releases nothing, then breaks on its second poll."""

    polls = 0

    def decide(self, now_ns: int) -> tuple[list[int], int | None]:
        self.polls += 1
        if self.polls > 1:
            raise KeyError("bookkeeping lost")
        return [], now_ns + S


class Keeps(QueuePolicy):
    """Holds everything and never asks to be polled."""

    def decide(self, now_ns: int) -> tuple[list[int], int | None]:
        return [], None


def test_a_policy_that_raises_ends_its_arm_with_its_error_on_every_request() -> None:
    recs = records([0, 2 * S])
    arm = shaped(Raises(), recs)
    arm.start(0)
    arm.step(0)
    arm.step(S)
    assert arm.done and arm.fault == "policy test failed: KeyError: 'bookkeeping lost'"
    assert arm.end(S) == [recs[0]]
    assert recs[0].status == "cancelled" and recs[0].error == f"{HELD_CANCELLED}: {arm.fault}"
    assert recs[1].status == "not_sent" and recs[1].error == f"never arrived: {arm.fault}"


def test_a_policy_that_holds_with_nothing_to_wake_it_is_a_fault_not_a_hang() -> None:
    recs = records([0, 10 * MS])
    arm = shaped(Keeps(), recs)
    arm.start(0)
    assert arm.step(0).wake_ns == 10 * MS and arm.fault is None  # the next arrival will wake it
    assert arm.step(10 * MS).wake_ns is None
    assert arm.fault is not None and "holds 2 request(s) and asked for no poll" in arm.fault


def test_the_waker_wakes_at_the_deadline_or_at_the_first_event() -> None:
    async def scenario() -> list[float]:
        waker = Waker()
        t0 = time.monotonic_ns()
        await waker.wait(t0 + 50 * MS)  # nothing happens: the deadline
        t1 = time.monotonic_ns()
        asyncio.get_running_loop().call_later(0.02, waker.set)
        await waker.wait(t1 + 5 * S)  # an event after 20 ms
        t2 = time.monotonic_ns()
        waker.set()  # set before it waits: it does not sleep at all
        await waker.wait(None)
        t3 = time.monotonic_ns()
        return [(t1 - t0) / MS, (t2 - t1) / MS, (t3 - t2) / MS]

    deadline, event, already = asyncio.run(scenario())
    assert 50 <= deadline < 500 and 20 <= event < 1_000 and already < 20


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("passthrough", 2),  # the arrivals within the span: as an unshaped arm
        ("window:period=2", 4),  # ... within the span plus the longest hold
        ("batch:k=8,max_wait=1", 3),
        ("concurrency-cap:c=1", 1),
        ("pace:rate=0.5", 2),  # one at once, and one more per 2 s of the span
    ],
)
def test_connections_a_shaped_arm_can_need(policy: str, expected: int) -> None:
    offsets = np.array([0.0, 0.5, 2.0, 2.9, 6.0, 9.0])
    assert in_flight_bound(policy, offsets, span_s=1.0) == expected


class Records(QueuePolicy):
    """Passthrough that remembers the first tokens and finishes it was told of."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[str, int, int]] = []

    def first_token(self, now_ns: int, request_id: int) -> None:
        super().first_token(now_ns, request_id)
        self.told.append(("first_token", now_ns, request_id))

    def finished(self, now_ns: int, request_id: int, ok: bool, output_tokens: int | None) -> None:
        super().finished(now_ns, request_id, ok, output_tokens)
        self.told.append(("finished", now_ns, request_id))

    def decide(self, now_ns: int) -> tuple[list[int], int | None]:
        return list(self.held), None


def test_a_streams_first_token_is_reported_the_moment_it_is_read() -> None:
    policy = Records()
    arm = shaped(policy, records([0]))
    arm.start(0)
    (rec,) = arm.step(0).release
    rec.sent_ns = MS
    arm.sent(rec)
    woken: list[bool] = []
    arm.watch_stream(rec, lambda: woken.append(True))
    rec.chunk_ns.append(5 * MS)  # as the backend appends each content chunk's time
    assert policy.told == [("first_token", 5 * MS, 0)] and woken == [True]
    rec.chunk_ns.append(6 * MS)
    rec.first_token_ns, rec.output_tokens = 5 * MS, 2
    rec.finish("ok", 9 * MS)
    arm.finished(rec)
    assert policy.told == [("first_token", 5 * MS, 0), ("finished", 9 * MS, 0)]  # the first token once
    assert type(rec.chunk_ns) is list and rec.chunk_ns == [5 * MS, 6 * MS]
