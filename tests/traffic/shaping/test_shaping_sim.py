"""The simulated executor drives policies by the contract, and both sides refuse what breaks it."""

from __future__ import annotations

import numpy as np
import pytest

from traffic.shaping import Arrival, ProtocolError, QueuePolicy, Release, SimServer, parse_policy, simulate

S = 1_000_000_000
MS = 1_000_000


class Recorder:
    """A policy written against the Protocol alone: releases each request `hold_ns` after it arrived."""

    def __init__(self, hold_ns: int = 0) -> None:
        self.hold_ns = hold_ns
        self.calls: list[tuple] = []
        self.held: dict[int, int] = {}

    def start(self, now_ns):
        self.calls.append(("start", now_ns))

    def arrived(self, now_ns, request):
        self.calls.append(("arrived", now_ns, request))
        self.held[request.request_id] = now_ns

    def sent(self, now_ns, request_id):
        self.calls.append(("sent", now_ns, request_id))

    def first_token(self, now_ns, request_id):
        self.calls.append(("first_token", now_ns, request_id))

    def finished(self, now_ns, request_id, ok, output_tokens):
        self.calls.append(("finished", now_ns, request_id, ok, output_tokens))

    def cancelled(self, now_ns, request_id):
        self.calls.append(("cancelled", now_ns, request_id))
        del self.held[request_id]

    def poll(self, now_ns):
        self.calls.append(("poll", now_ns))
        due = tuple(i for i, t in self.held.items() if t + self.hold_ns <= now_ns)
        for i in due:
            del self.held[i]
        waiting = [t + self.hold_ns for t in self.held.values()]
        return Release(due, min(waiting, default=None))


def test_the_executor_reports_events_polls_after_them_and_at_the_time_asked():
    policy = Recorder(hold_ns=200 * MS)
    outcomes = simulate(policy, [100], SimServer(ttft=0.05, per_token=0.01), max_tokens=3, prompt_tokens=7)
    assert policy.calls == [
        ("start", 0),
        ("arrived", 100, Arrival(0, 7, 3)),
        ("poll", 100),
        ("poll", 100 + 200 * MS),  # the wake it asked for
        ("sent", 100 + 200 * MS, 0),  # sent at the instant of release
        ("poll", 100 + 200 * MS),  # polled again after a release, until it releases nothing
        ("first_token", 100 + 250 * MS, 0),
        ("poll", 100 + 250 * MS),
        ("finished", 100 + 270 * MS, 0, True, 3),
        ("poll", 100 + 270 * MS),
    ]
    (o,) = outcomes
    assert (o.hold_ns, o.user_ttft_ns, o.finished_ns) == (200 * MS, 250 * MS, 100 + 270 * MS)


def test_the_server_serves_at_most_its_slots_and_queues_the_rest_in_send_order():
    outcomes = simulate(Recorder(), [0, 0, 0], SimServer(ttft=0.1, per_token=0.01, slots=2), max_tokens=11)
    assert [o.released_ns for o in outcomes] == [0, 0, 0]
    assert [o.first_token_ns for o in outcomes] == [100 * MS, 100 * MS, 300 * MS]
    assert [o.finished_ns for o in outcomes] == [200 * MS, 200 * MS, 400 * MS]


def test_a_cancel_reaches_the_policy_only_while_the_request_is_held():
    policy = Recorder(hold_ns=S)
    outcomes = simulate(policy, [0, 0], SimServer(0.01), cancels_ns={0: S // 2, 1: 2 * S})
    assert [o.cancelled for o in outcomes] == [True, False]
    assert [c for c in policy.calls if c[0] == "cancelled"] == [("cancelled", S // 2, 0)]


class ReleasesAStranger(Recorder):
    def poll(self, now_ns):
        return Release((99,), None)


class PollsInThePast(Recorder):
    def poll(self, now_ns):
        return Release((), now_ns)


class HoldsForever(Recorder):
    def poll(self, now_ns):
        return Release((), None)


class KeepsAsking(Recorder):
    def poll(self, now_ns):
        return Release((), now_ns + 1)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ReleasesAStranger(), "released request 99, which it does not hold"),
        (PollsInThePast(), "asked for a poll at 0, not after 0"),
        (HoldsForever(), "still holds 1 request(s) and asked for no poll"),
        (KeepsAsking(), "polled 10000 times without releasing"),
    ],
)
def test_a_policy_that_breaks_the_contract_stops_the_simulation(policy, expected):
    with pytest.raises(ProtocolError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        simulate(policy, [0], SimServer(0.01))


def test_arrivals_before_the_start_are_refused():
    with pytest.raises(ValueError, match="at or after start_ns"):
        simulate(Recorder(), [5], SimServer(0.01), start_ns=10)


@pytest.mark.parametrize("cancels", [{1: 10}, {-1: 10}, {0: 4}])
def test_cancels_of_unknown_requests_or_before_arrival_are_refused(cancels):
    with pytest.raises(ValueError, match="does not exist or gives up before it arrives"):
        simulate(Recorder(), [5], SimServer(0.01), cancels_ns=cancels)


def fresh():
    policy = parse_policy("concurrency-cap:c=1").create(np.random.default_rng(0))
    policy.start(0)
    return policy


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        (lambda p: p.start(0), "start reported twice"),
        (lambda p: (p.arrived(1, Arrival(1)), p.arrived(2, Arrival(1))), "request 1 arrived twice"),
        (lambda p: (p.arrived(5, Arrival(1)), p.poll(4)), "time went back from 5 to 4"),
        (lambda p: p.sent(1, 3), "request 3 sent without being released, or twice"),
        (lambda p: (p.arrived(1, Arrival(3)), p.poll(1), p.sent(1, 3), p.sent(1, 3)), "or twice"),
        (lambda p: (p.arrived(1, Arrival(3)), p.poll(1), p.first_token(2, 3)), "which is not in flight"),
        (lambda p: p.finished(1, 3, True, 1), "request 3 finished but is not in flight"),
        (lambda p: (p.arrived(1, Arrival(3)), p.poll(1), p.cancelled(2, 3)), "cancelled but not held"),
    ],
)
def test_builtin_policies_refuse_events_that_break_the_protocol(calls, expected):
    with pytest.raises(ProtocolError, match=expected):
        calls(fresh())


class ReleasesWhatItDoesNotHold(QueuePolicy):
    def decide(self, now_ns):
        return [7], None


def test_a_queue_policy_that_releases_what_it_does_not_hold_is_refused():
    policy = ReleasesWhatItDoesNotHold()
    policy.start(0)
    with pytest.raises(
        ProtocolError, match="ReleasesWhatItDoesNotHold released request 7, which it does not"
    ):
        policy.poll(0)


def test_an_event_before_start_is_refused():
    with pytest.raises(ProtocolError, match="an event before start"):
        parse_policy("passthrough").create(np.random.default_rng(0)).arrived(0, Arrival(0))
