"""Every built-in policy's contract, on the simulated clock, over random arrival sequences."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from itertools import pairwise

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from traffic.shaping import POLICIES, Outcome, SimServer, parse_policy, simulate

S = 1_000_000_000
MS = 1_000_000


@st.composite
def arrivals(draw, max_size=40):
    """Arrival times in ns: gaps from 0 (simultaneous) to 2 s, sometimes bunched."""
    gaps = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(1, 2 * S), st.integers(1, 50 * MS)),
            min_size=1,
            max_size=max_size,
        )
    )
    return list(np.cumsum(gaps).tolist())


@st.composite
def servers(draw):
    return SimServer(
        ttft=draw(st.integers(1, 500)) / 1000,
        per_token=draw(st.integers(0, 20)) / 1000,
        slots=draw(st.one_of(st.none(), st.integers(1, 8))),
    )


SPECS = [
    "passthrough",
    "pace:rate=3",
    "token-bucket:rate=2.5,burst=4",
    "window:period=0.7",
    "batch:k=5,max_wait=0.4",
    "concurrency-cap:c=3",
    "slo-slack:ttft=2",
    "slo-slack:ttft=1.5,e2e=3",
]


def run(spec: str, times: list[int], server: SimServer, **kwargs) -> list[Outcome]:
    return simulate(parse_policy(spec).create(np.random.default_rng(0)), times, server, **kwargs)


def released_once_in_time(outcomes: list[Outcome], times: list[int]) -> None:
    assert [o.arrived_ns for o in outcomes] == times
    for o in outcomes:
        assert o.released_ns is not None and o.released_ns >= o.arrived_ns
        assert o.first_token_ns is not None and o.first_token_ns >= o.released_ns
        assert o.finished_ns is not None and o.finished_ns >= o.first_token_ns


def release_order(outcomes: list[Outcome]) -> list[int]:
    return [o.request_id for o in sorted(outcomes, key=lambda o: (o.released_ns, o.request_id))]


def test_every_builtin_policy_is_covered():
    assert {spec.split(":")[0] for spec in SPECS} == set(POLICIES) - {"custom"}


@settings(max_examples=40, deadline=None)
@given(times=arrivals(), server=servers(), tokens=st.integers(1, 16))
def test_every_policy_releases_every_request_once_and_deterministically(times, server, tokens):
    for spec in SPECS:
        first = run(spec, times, server, max_tokens=tokens)
        released_once_in_time(first, times)
        assert run(spec, times, server, max_tokens=tokens) == first, spec


@settings(max_examples=40, deadline=None)
@given(times=arrivals(), server=servers(), data=st.data())
def test_a_request_cancelled_while_held_is_never_released_and_the_rest_still_are(times, server, data):
    cancels = {
        i: t + data.draw(st.integers(0, S))
        for i, t in enumerate(times)
        if data.draw(st.booleans(), label=f"cancel {i}")
    }
    for spec in SPECS:
        for o in run(spec, times, server, cancels_ns=cancels):
            if o.cancelled:
                assert o.request_id in cancels and o.first_token_ns is None, spec
            else:  # a cancel at the instant of release comes first: a released one beat its cancel
                assert o.request_id not in cancels or o.released_ns < cancels[o.request_id], spec
                assert o.finished_ns is not None


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers())
def test_passthrough_holds_nothing(times, server):
    assert [o.hold_ns for o in run("passthrough", times, server)] == [0] * len(times)


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers(), rate=st.floats(0.2, 50))
def test_pace_keeps_releases_1_over_rate_apart_in_arrival_order_and_no_later(times, server, rate):
    outcomes = run(f"pace:rate={rate!r}", times, server)
    assert release_order(outcomes) == list(range(len(times)))
    released = [o.released_ns for o in outcomes]
    gap = Fraction(10**9) / Fraction(rate)  # exact: floats may round 1e9 / rate either way
    assert all(b - a >= gap for a, b in pairwise(released))
    # Smoothing, not slowing: each goes at its arrival or one interval after the one before.
    for i in range(1, len(times)):
        assert released[i] <= max(times[i], released[i - 1] + math.ceil(gap))


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers(), rate=st.floats(0.2, 20), burst=st.integers(1, 6))
def test_token_bucket_never_exceeds_burst_plus_rate_times_t_and_never_drops(times, server, rate, burst):
    outcomes = run(f"token-bucket:rate={rate!r},burst={burst}", times, server)
    assert release_order(outcomes) == list(range(len(times)))
    released = sorted(o.released_ns for o in outcomes)
    for i in range(len(released)):
        for j in range(i, len(released)):
            assert j - i + 1 <= burst + Fraction(rate) * (released[j] - released[i]) / 10**9


def test_token_bucket_spends_its_burst_at_once_then_one_per_interval_and_refills_only_to_burst():
    times = [0] * 6 + [100 * S] * 6
    released = [o.released_ns for o in run("token-bucket:rate=2,burst=3", times, SimServer(0.01))]
    assert released == [0, 0, 0, S // 2, S, 3 * S // 2] + [100 * S] * 3 + [
        100 * S + k * S // 2 for k in (1, 2, 3)
    ]


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers(), period_ms=st.integers(1, 3000), start=st.integers(0, S))
def test_window_releases_everything_held_at_each_multiple_of_its_period(times, server, period_ms, start):
    period = period_ms * MS
    times = [start + t for t in times]
    outcomes = run(f"window:period={period_ms / 1000!r}", times, server, start_ns=start)
    for o in outcomes:
        assert o.released_ns == start + math.ceil((o.arrived_ns - start) / period) * period


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers(), k=st.integers(1, 8), wait_ms=st.integers(1, 2000))
def test_batch_releases_when_k_wait_or_the_oldest_waited_max_wait_and_never_later(times, server, k, wait_ms):
    max_wait = wait_ms * MS
    outcomes = run(f"batch:k={k},max_wait={wait_ms / 1000!r}", times, server)
    assert max(o.hold_ns for o in outcomes) <= max_wait
    groups = Counter(o.released_ns for o in outcomes)
    for t, size in groups.items():
        group = [o for o in outcomes if o.released_ns == t]
        # Everything held goes: nothing that had arrived by t is released after t.
        assert not [o for o in outcomes if o.arrived_ns <= t < o.released_ns]
        assert len(group) == size
        oldest = min(o.arrived_ns for o in group)
        before = sum(o.arrived_ns < t for o in group)
        if t < oldest + max_wait:
            assert size >= k and before < k  # at the arrival of the k-th, not later
        else:
            assert t == oldest + max_wait and before < k


def in_flight(outcomes: list[Outcome], t: int) -> int:
    return sum(o.released_ns <= t < o.finished_ns for o in outcomes)


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), server=servers(), c=st.integers(1, 6), tokens=st.integers(1, 16))
def test_concurrency_cap_never_has_more_than_c_in_flight_and_holds_only_when_full(times, server, c, tokens):
    outcomes = run(f"concurrency-cap:c={c}", times, server, max_tokens=tokens)
    assert release_order(outcomes) == list(range(len(times)))
    assert max(in_flight(outcomes, o.released_ns) for o in outcomes) <= c
    finishes = {o.finished_ns for o in outcomes}
    for o in outcomes:
        if o.hold_ns:
            assert in_flight(outcomes, o.arrived_ns) == c
            assert o.released_ns in finishes  # it went the moment a place was freed


@settings(max_examples=60, deadline=None)
@given(
    times=arrivals(),
    ttft_ms=st.integers(1, 500),
    slo_ms=st.integers(800, 3000),
    tokens=st.integers(1, 16),
)
def test_slo_slack_keeps_ttft_within_the_slo_when_the_estimate_is_right(times, ttft_ms, slo_ms, tokens):
    server = SimServer(ttft=ttft_ms / 1000, per_token=0.01)  # no slots limit: service time is fixed
    outcomes = run(f"slo-slack:ttft={slo_ms / 1000!r}", times, server, max_tokens=tokens)
    assert max(o.user_ttft_ns for o in outcomes) <= slo_ms * MS
    first_token = min(o.first_token_ns for o in outcomes)
    # No estimate before the first token: released at once, like passthrough.
    assert all(o.hold_ns == 0 for o in outcomes if o.arrived_ns < first_token)


@settings(max_examples=60, deadline=None)
@given(times=arrivals(), tokens=st.integers(2, 40), slack_ms=st.integers(300, 2000))
def test_slo_slack_keeps_e2e_within_the_slo_when_the_estimate_is_right(times, tokens, slack_ms):
    server = SimServer(ttft=0.2, per_token=0.02)
    e2e = 0.2 + (tokens - 1) * 0.02 + 0.1 + slack_ms / 1000  # the service, the margin, some slack
    outcomes = run(f"slo-slack:e2e={e2e!r}", times, server, max_tokens=tokens)
    assert max(o.finished_ns - o.arrived_ns for o in outcomes) <= e2e * S


def test_slo_slack_holds_requests_into_groups_once_it_has_an_estimate():
    times = [0] + [S + 100 * MS * i for i in range(10)]
    outcomes = run("slo-slack:ttft=2,margin=0.1", times, SimServer(ttft=0.3))
    assert outcomes[0].hold_ns == 0
    # First estimate 0.3 s (mean) + 2 x 0.15 s (deviation): the group goes at 1 + 2 - 0.1 - 0.6 s.
    assert {o.released_ns for o in outcomes[1:]} == {S + 1300 * MS}
    assert max(o.user_ttft_ns for o in outcomes) <= 2 * S
