"""The order cells run in (harness/experiment/design.py): pure and seeded, no server, no clock.

- Williams rows: across a full cycle every arm runs once in every position (twice for an odd number
  of arms, whose cycle is 2n rows) and every ordered pair (a right before b) occurs equally often;
- random: a repeat's order is a function of (seed, repeat) alone, so an experiment that stops early,
  resumes or grows runs the same cells; different repeats and rates get different orders;
- latin: repeat r takes row r of the square (cycling) and the rate blocks rotate by one per repeat;
- fixed: the arms and rates as listed.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from harness.experiment.design import ORDERS, DesignCell, repeat_cells, williams_rows

ARMS = ["fixed", "bursty", "poisson", "gamma", "uniform"]
RATES: list[float | None] = [2.0, 4.0, 8.0]


def _blocks(cells: list[DesignCell]) -> list[list[DesignCell]]:
    """The cells grouped by block, in run order."""
    return [list(group) for _, group in itertools.groupby(cells, key=lambda c: c.block)]


def _arm_orders(arms: list[str], repeat: int, order: str, seed: int = 0, rates=None) -> list[list[str]]:
    return [[c.arm for c in b] for b in _blocks(repeat_cells(arms, rates or [None], repeat, order, seed))]


def _rate_order(repeat: int, order: str, seed: int = 0, rates=RATES) -> list[float | None]:
    return [b[0].rate for b in _blocks(repeat_cells(ARMS[:3], rates, repeat, order, seed))]


# --- Williams rows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", range(2, 8))
def test_williams_rows_balance_positions_and_first_order_carry_over(n: int) -> None:
    rows = williams_rows(n)
    assert len(rows) == (n if n % 2 == 0 else 2 * n)
    per_cycle = len(rows) // n  # times each arm meets each position: 1 (even n) or 2 (odd n)
    for row in rows:
        assert sorted(row) == list(range(n)), "every row runs every arm once"
    for position in range(n):
        assert Counter(row[position] for row in rows) == dict.fromkeys(range(n), per_cycle)
    pairs = Counter((row[i], row[i + 1]) for row in rows for i in range(n - 1))
    assert set(pairs) == {(a, b) for a in range(n) for b in range(n) if a != b}, "every ordered pair"
    assert set(pairs.values()) == {per_cycle}, f"ordered pairs not equally often: {pairs}"


def test_williams_rows_edge_cases() -> None:
    assert williams_rows(1) == [[0], [0]]  # one arm: nothing to balance, and nothing breaks
    with pytest.raises(ValueError):
        williams_rows(0)


@pytest.mark.parametrize("n", range(2, 8))
def test_latin_order_over_a_full_cycle_is_balanced_on_the_arm_names(n: int) -> None:
    arms = ARMS[:n] if n <= len(ARMS) else [f"arm{i}" for i in range(n)]
    cycle = n if n % 2 == 0 else 2 * n
    orders = [_arm_orders(arms, repeat, "latin", seed=7)[0] for repeat in range(1, cycle + 1)]
    for position in range(n):
        assert Counter(o[position] for o in orders) == dict.fromkeys(arms, cycle // n)
    pairs = Counter((o[i], o[i + 1]) for o in orders for i in range(n - 1))
    assert len(pairs) == n * (n - 1) and set(pairs.values()) == {cycle // n}
    # The square cycles: repeat cycle + 1 is repeat 1 again.
    assert _arm_orders(arms, cycle + 1, "latin", seed=7) == _arm_orders(arms, 1, "latin", seed=7)


# --- random -----------------------------------------------------------------------------------------


def test_random_order_is_a_function_of_seed_and_repeat() -> None:
    for repeat in range(1, 6):
        first = repeat_cells(ARMS, RATES, repeat, "random", seed=3)
        assert repeat_cells(ARMS, RATES, repeat, "random", seed=3) == first
    # Different repeats (and seeds) give different orders, at least sometimes.
    orders = {tuple(map(tuple, _arm_orders(ARMS, r, "random", seed=3, rates=RATES))) for r in range(1, 9)}
    assert len(orders) > 1
    assert any(
        _arm_orders(ARMS, r, "random", seed=3, rates=RATES)
        != _arm_orders(ARMS, r, "random", seed=4, rates=RATES)
        for r in range(1, 6)
    )
    # Each rate's block of one repeat draws its own permutation.
    assert any(len({tuple(o) for o in _arm_orders(ARMS, r, "random", rates=RATES)}) > 1 for r in range(1, 6))


def test_a_repeats_order_does_not_depend_on_how_many_repeats_there_are() -> None:
    def experiment(repeats: int, order: str) -> list[DesignCell]:
        return [c for r in range(1, repeats + 1) for c in repeat_cells(ARMS, RATES, r, order, seed=11)]

    for order in ORDERS:
        short, long = experiment(3, order), experiment(8, order)
        assert long[: len(short)] == short, order


def test_random_rate_blocks_are_shuffled_per_repeat() -> None:
    orders = [_rate_order(r, "random", seed=5) for r in range(1, 11)]
    assert all(sorted(o) == sorted(RATES) for o in orders)
    assert len({tuple(o) for o in orders}) > 1, "the rate blocks should not always run in one order"


# --- latin and fixed rate order, cell fields ------------------------------------------------------


def test_latin_rate_blocks_rotate_by_one_per_repeat() -> None:
    assert _rate_order(1, "latin") == [2.0, 4.0, 8.0]
    assert _rate_order(2, "latin") == [4.0, 8.0, 2.0]
    assert _rate_order(3, "latin") == [8.0, 2.0, 4.0]
    assert _rate_order(4, "latin") == [2.0, 4.0, 8.0]


def test_fixed_is_the_listed_order() -> None:
    for repeat in range(1, 5):
        assert _rate_order(repeat, "fixed") == RATES
        assert _arm_orders(ARMS, repeat, "fixed", rates=RATES) == [ARMS] * len(RATES)


@pytest.mark.parametrize("order", ORDERS)
def test_cell_fields_number_blocks_positions_and_previous_arms(order: str) -> None:
    for repeat in (1, 2, 5):
        cells = repeat_cells(ARMS, RATES, repeat, order, seed=2)
        assert len(cells) == len(ARMS) * len(RATES)
        blocks = _blocks(cells)
        assert [b[0].block for b in blocks] == [(repeat - 1) * len(RATES) + k for k in range(len(RATES))]
        for block in blocks:
            assert {c.rate for c in block} == {block[0].rate} and {c.repeat for c in block} == {repeat}
            assert [c.position for c in block] == list(range(len(ARMS)))
            assert sorted(c.arm for c in block) == sorted(ARMS)
            assert [c.previous_arm for c in block] == [None, *(c.arm for c in block[:-1])]


def test_the_arms_own_rates_are_one_block() -> None:
    cells = repeat_cells(ARMS, [None], 2, "random", seed=0)
    assert {c.rate for c in cells} == {None} and {c.block for c in cells} == {1}


def test_repeats_count_from_one() -> None:
    with pytest.raises(ValueError):
        repeat_cells(ARMS, RATES, 0, "random", seed=0)
