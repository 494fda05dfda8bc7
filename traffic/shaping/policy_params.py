"""What every policy's parameter model shares: validation, its canonical name, seconds to nanoseconds.

Each policy is a pydantic model whose fields are its parameters; their descriptions are the one
source of docs/shaping.md's tables (and of the CLI's help, once there is a command). A field's
`json_schema_extra` may give `label` and `unit`, which spell the field in the canonical name.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from traffic.shaping.policy_api import Policy

# Longest time a parameter may state: whole nanoseconds of it still fit a float exactly enough, and
# nothing a run does lasts 31 years.
MAX_SECONDS = 1e9
_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.-]")  # arm names take letters, digits, '_', '.', '-'


def seconds_ns(seconds: float) -> int:
    """Whole nanoseconds, at least 1: a positive time never rounds to 'now'."""
    return max(1, round(seconds * 1e9))


def interval_ns(rate: float) -> int:
    """Nanoseconds between releases at `rate` per second, rounded up so the rate is never exceeded.

    Exact (a float's Fraction is its exact value): 1e9 / rate in floats may round down onto an integer.
    """
    return max(1, math.ceil(Fraction(10**9) / Fraction(rate)))


def name_part(value: object) -> str:
    """A parameter's value as an arm name shows it: 1.0 as 1, 0.25 as 0.25, no '+' in exponents."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return _NOT_IN_NAMES.sub("_", str(value).replace("+", ""))


class PolicySpec(BaseModel, ABC):
    """A policy's validated parameters; `create` makes a fresh policy with its own state."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: ClassVar[str]
    summary: ClassVar[str]

    @abstractmethod
    def create(self, rng: np.random.Generator) -> Policy:
        """A new policy in its initial state; randomness, if any, comes from `rng` only."""

    @property
    def name(self) -> str:
        """The canonical name, an arm-name part: the kind, then every required or non-default value."""
        parts = [self.kind]
        for field, info in type(self).model_fields.items():
            value = getattr(self, field)
            if value is None or (not info.is_required() and value == info.default):
                continue
            extra: dict[str, Any] = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            parts.append(f"{extra.get('label', '')}{name_part(value)}{extra.get('unit', '')}")
        return "-".join(parts)
