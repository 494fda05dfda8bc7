"""The Pareto front of energy against latency: dominance, ties, NaN, order."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from harness.report.frontier import FrontierPoint, dominates, pareto_front


def test_front_keeps_the_trade_offs_and_drops_the_dominated() -> None:
    points = [
        FrontierPoint("passthrough", 40.0, 0.05),  # fastest
        FrontierPoint("window-1s", 30.0, 1.0),
        FrontierPoint("window-2s", 25.0, 2.0),  # cheapest
        FrontierPoint("cap-1", 45.0, 0.5),  # costlier and slower than passthrough
        FrontierPoint("batch", 31.0, 1.5),  # worse on both than window-1s
    ]
    assert pareto_front(points) == ["passthrough", "window-1s", "window-2s"]


def test_equal_points_are_both_on_the_front_and_a_tie_on_one_figure_is_decided_by_the_other() -> None:
    same = [FrontierPoint("a", 1.0, 1.0), FrontierPoint("b", 1.0, 1.0)]
    assert pareto_front(same) == ["a", "b"]
    assert pareto_front([FrontierPoint("a", 1.0, 1.0), FrontierPoint("b", 1.0, 2.0)]) == ["a"]


def test_a_point_without_figures_is_neither_on_the_front_nor_dominating() -> None:
    points = [FrontierPoint("no-energy", math.nan, 0.0), FrontierPoint("a", 5.0, 1.0)]
    assert pareto_front(points) == ["a"]
    assert pareto_front([FrontierPoint("x", 1.0, math.inf)]) == []


finite = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=12))
def test_front_is_exactly_the_undominated_points(pairs: list[tuple[float, float]]) -> None:
    points = [FrontierPoint(str(i), e, lat) for i, (e, lat) in enumerate(pairs)]
    front = set(pareto_front(points))
    assert front  # a finite, non-empty set always has an undominated point
    for p in points:
        assert (p.name in front) == (not any(dominates(q, p) for q in points))
    cheapest = min(points, key=lambda p: (p.energy, p.latency))
    assert cheapest.name in front
