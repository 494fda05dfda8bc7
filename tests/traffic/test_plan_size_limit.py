"""A plan too large to build is refused when its spec is parsed, not by an allocation failure later."""

from __future__ import annotations

import pytest

from foundation.errors import InputError
from traffic.spec import MAX_REQUESTS_PER_ARM, PlanSpec


@pytest.mark.parametrize("n", [10**9, 10**10, MAX_REQUESTS_PER_ARM + 1])
def test_n_above_the_limit_is_one_line(n):
    with pytest.raises(InputError, match=r"^--n: at most 10,000,000 requests per arm, got [\d,]+$"):
        PlanSpec.parse({"n": n, "schedules": ["poisson:rate=5"]}, lambda field: f"--{field}")


def test_n_at_the_limit_is_accepted():
    assert PlanSpec.parse({"n": MAX_REQUESTS_PER_ARM}).n == MAX_REQUESTS_PER_ARM


@pytest.mark.parametrize(
    ("schedule", "rate", "duration"),
    [
        ("poisson:rate=5", None, 1e10),
        ("fixed:interval=0.001", None, 1e9),
        ("uniform:low=1,high=3", 1000.0, 1e5),
    ],
)
def test_duration_that_would_give_too_many_requests_is_one_line(schedule, rate, duration):
    with pytest.raises(InputError, match=r"^duration: arm '\w+' .*requests; at most 10,000,000 per arm$"):
        PlanSpec.parse({"schedules": [schedule], "rate": rate, "duration": duration})


def test_duration_within_the_limit_and_closed_loop_arms_are_accepted():
    assert PlanSpec.parse({"schedules": ["poisson:rate=5"], "duration": 3600.0}).duration == 3600.0
    # n caps an arm whatever its duration; a closed-loop arm has no rate to estimate from.
    assert PlanSpec.parse({"schedules": ["poisson:rate=5"], "duration": 1e10, "n": 10}).n == 10
