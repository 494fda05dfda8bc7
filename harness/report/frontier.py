"""The energy-latency frontier: which arms no other arm beats on both energy per request and latency.

An arm *dominates* another when it costs no more energy and no more latency, and strictly less of one.
The front is the arms no arm dominates: the choices worth making, each buying lower latency with more
energy or the reverse. Pure: numbers in, names out (the reports draw and print it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from traffic.spec import POLICY_SEPARATOR


@dataclass(frozen=True)
class FrontierPoint:
    """One arm's figures: energy per request (J) and the latency users pay (any one unit for all)."""

    name: str
    energy: float
    latency: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.energy) and math.isfinite(self.latency)


def dominates(a: FrontierPoint, b: FrontierPoint) -> bool:
    """a is no worse than b on both figures and better on one."""
    return a.energy <= b.energy and a.latency <= b.latency and (a.energy < b.energy or a.latency < b.latency)


def pareto_front(points: Sequence[FrontierPoint]) -> list[str]:
    """The names of the points no other point dominates, in the order given. A point without both
    figures (NaN: no energy, no successful request) is neither on the front nor dominating."""
    known = [p for p in points if p.finite]
    return [p.name for p in known if not any(dominates(q, p) for q in known)]


def policy_labels(arms: Sequence[str]) -> dict[str, str]:
    """Each arm's policy part (`window-1s` of `poisson+window-1s`): the name its point carries; the whole
    name where two schedules share a policy (the parts would not tell them apart)."""
    parts = {arm: arm.split(POLICY_SEPARATOR, 1)[-1] for arm in arms}
    shared = {p for p in parts.values() if list(parts.values()).count(p) > 1}
    return {arm: arm if part in shared else part for arm, part in parts.items()}


def front_mark(on_front: bool | None, short: bool = False) -> str:
    """How a table marks an arm: on the front, off it, or '-' without both figures (no point to place);
    `short` for a terminal column headed 'front'."""
    if on_front is None:
        return "-"
    if short:
        return "●" if on_front else ""
    return "● on the front" if on_front else "no"
