"""The order cells run in: a pure, seeded function of the arms, the rates and the repeat number.

A repeat is a set of blocks, one per offered rate; a block runs every arm once. Drift on the host
(clocks, temperature, other tenants) and carry-over from the arm before (a warm cache, a hot GPU) both
bias a fixed order, so:

- `random`: every block gets a fresh permutation of the arms, from a stream of the experiment's seed
  keyed by (repeat, rate); the rates' block order is shuffled per repeat the same way.
- `latin`: a Williams design: across any full cycle of rows every arm runs once in every position and
  follows every other arm equally often (first-order carry-over balanced); n arms need n rows when n
  is even and 2n when odd. Repeat r takes row r (cycling); the rate blocks rotate by one per repeat.
- `fixed`: the arms as listed, the rates as listed (for comparisons with older, unrandomised runs).

A repeat's order depends on nothing but (seed, repeat), so an experiment that stops early, resumes, or
grows by sequential stopping runs the same cells in the same order as one that never stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Order = Literal["random", "latin", "fixed"]
ORDERS: tuple[Order, ...] = get_args(Order)

_ORDER_STREAM = 0x6F72  # keeps the order's random stream apart from the plan's, which uses the same seed


@dataclass(frozen=True)
class DesignCell:
    repeat: int  # 1-based
    block: int  # 0-based over the whole experiment: (repeat - 1) * len(rates) + position of the rate
    rate: float | None  # None: the arms' own rates
    position: int  # 0-based place of the arm in its block
    arm: str
    previous_arm: str | None  # the arm that ran just before in the same block


def repeat_cells(
    arms: list[str], rates: list[float | None], repeat: int, order: Order, seed: int
) -> list[DesignCell]:
    """The cells of one repeat, in the order they run."""
    if repeat < 1:
        raise ValueError("repeats count from 1")
    cells: list[DesignCell] = []
    for k, rate in enumerate(_rate_order(rates, repeat, order, seed)):
        arm_order = _arm_order(arms, repeat, rates.index(rate), order, seed)
        block = (repeat - 1) * len(rates) + k
        for position, arm in enumerate(arm_order):
            previous = arm_order[position - 1] if position else None
            cells.append(DesignCell(repeat, block, rate, position, arm, previous))
    return cells


def williams_rows(n: int) -> list[list[int]]:
    """Rows of a Williams design for n treatments (0..n-1)."""
    if n < 1:
        raise ValueError("a design needs at least one arm")
    first = [0]
    low, high = 1, n - 1
    while len(first) < n:
        first.append(low)
        low += 1
        if len(first) < n:
            first.append(high)
            high -= 1
    rows = [[(t + shift) % n for t in first] for shift in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return rows


def _rate_order(rates: list[float | None], repeat: int, order: Order, seed: int) -> list[float | None]:
    if order == "fixed" or len(rates) == 1:
        return list(rates)
    if order == "latin":
        shift = (repeat - 1) % len(rates)
        return rates[shift:] + rates[:shift]
    picks = np.random.default_rng([seed, _ORDER_STREAM, repeat]).permutation(len(rates))
    return [rates[int(i)] for i in picks]


def _arm_order(arms: list[str], repeat: int, rate_index: int, order: Order, seed: int) -> list[str]:
    if order == "fixed":
        return list(arms)
    if order == "latin":
        # Which arm plays which symbol of the square is seeded once, so the square stays balanced.
        symbols = np.random.default_rng([seed, _ORDER_STREAM, 0]).permutation(len(arms))
        rows = williams_rows(len(arms))
        return [arms[int(symbols[t])] for t in rows[(repeat - 1) % len(rows)]]
    picks = np.random.default_rng([seed, _ORDER_STREAM, repeat, rate_index + 1]).permutation(len(arms))
    return [arms[int(i)] for i in picks]
