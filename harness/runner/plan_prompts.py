"""The plan's rows as what goes on the wire: one `Prompt` per row, for the protocol clients.

The backends only speak a protocol; reading the plan is the runner's job, so the conversion lives here.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from foundation.errors import InputError
from harness.backends import Prompt
from traffic.plan import Plan


def prompts_from_plan(plan: Plan) -> list[Prompt]:
    """One `Prompt` per plan row, in row order."""
    rows = plan.rows
    columns = (
        _values(rows["prompt"]),
        _values(rows["messages"]),
        _values(rows["max_tokens"]),
        rows["ignore_eos"].to_numpy(dtype=bool).tolist(),
        _values(rows["temperature"]),
    )
    out = []
    for i, (prompt, messages, max_tokens, ignore_eos, temperature) in enumerate(zip(*columns, strict=True)):
        try:
            parsed = json.loads(messages) if messages is not None else None
        except ValueError:
            raise InputError(f"plan request {i}: `messages` is not valid JSON") from None
        max_tokens = None if max_tokens is None else int(max_tokens)
        out.append(Prompt(prompt, parsed, max_tokens, ignore_eos, temperature))
    return out


def _values(column: pd.Series) -> list[Any]:
    """The column as Python values, None where missing (pandas says NA, NaN or None for that)."""
    return [None if pd.isna(value) else value for value in column.tolist()]
