"""The arrival plan: the data contract between `traffic` (what and when) and `harness` (how).

A plan is written before anything is sent, so a run can be replayed exactly against another server.
It is a table of rows (one per request) plus a header. On disk it is one Parquet file with the header
JSON in the schema metadata, and a JSON file beside it for humans (`<name>.parquet.json`).

Arms run one after another in header order; `offset_s` counts from the start of the row's arm.
Closed-loop arms (`concurrency`) have no planned offsets: their `offset_s` is NaN and the runner
sends each request when one of the arm's users becomes free. A shaped arm (`ArmSpec.policy`) is an
offered schedule and a shaping policy: `offset_s` is when each user arrives, and the policy decides
when the runner releases the request to the server.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from foundation.atomic_write import atomic_text
from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, nullable_pandas, read_tagged, schema_of, write_tagged

PLAN_SCHEMA_VERSION = 1

# name -> (pyarrow type, nullable). The order is the on-disk column order and the hashing order.
PLAN_COLUMNS: dict[str, tuple[pa.DataType, bool]] = {
    "request_id": (pa.int64(), False),  # unique in the plan, 0..N-1 in execution order
    "arm": (pa.string(), False),  # ArmSpec.name
    "seq": (pa.int64(), False),  # position within the arm, 0..n-1
    "offset_s": (pa.float64(), True),  # seconds from the arm's start; NaN for closed-loop arms
    "prompt_id": (pa.string(), False),  # stable id of the prompt within its source
    "prompt": (pa.string(), True),  # completion-style text (None when only messages are given)
    "messages": (pa.string(), True),  # JSON list of {"role", "content"} for chat endpoints, or None
    "prompt_chars": (pa.int64(), False),
    "prompt_tokens": (pa.int64(), True),  # by the plan's tokenizer, or the trace's input length
    "max_tokens": (pa.int64(), True),
    "ignore_eos": (pa.bool_(), False),
    "temperature": (pa.float64(), True),
}
_PLAN_SCHEMA = schema_of(PLAN_COLUMNS)
PLAN_FORMAT = TaggedFormat("plan file", "joulebench.plan", PLAN_SCHEMA_VERSION, _PLAN_SCHEMA)


@dataclass(frozen=True)
class ArmSpec:
    """One arm: a schedule applied to the plan's prompt sequence."""

    name: str  # unique within the plan; the `arm` column's value
    kind: str  # fixed | uniform | bursty | poisson | gamma | concurrency | trace
    params: dict[str, Any]  # resolved parameters (after --rate scaling)
    spec: str  # the schedule as the user wrote it, e.g. "uniform:low=0.1,high=0.5"
    mean_rate: float | None = None  # target requests/s; None for closed-loop arms
    users: int | None = None  # closed-loop arms: number of concurrent users
    policy: str | None = None  # shaped arms: the policy's canonical spec (traffic.spec.policy_text)
    policy_name: str | None = None  # its canonical name, the part of the arm's name after '+'

    @property
    def closed_loop(self) -> bool:
        return self.kind == "concurrency"

    @property
    def user_count(self) -> int:
        """A closed-loop arm's concurrent users (1 for open-loop arms)."""
        return int(self.users or self.params.get("n") or 1)


@dataclass(frozen=True)
class PlanHeader:
    seed: int
    arms: tuple[ArmSpec, ...]
    prompt_source: dict[str, Any]  # {"spec": ..., "content_hash": ..., "options": {...}}
    n: int  # rows in the whole plan
    target_mean_rate: float | None = None
    plan_hash: str = ""
    schema_version: int = PLAN_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> PlanHeader:
        """The header from its JSON form (the schema version is checked by the reader)."""
        try:
            fields = dict(data)
            arms = tuple(ArmSpec(**arm) for arm in fields.pop("arms"))
            return cls(arms=arms, **fields)
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(f"{origin}: plan header is malformed ({exc})") from None


@dataclass
class Plan:
    header: PlanHeader
    rows: pd.DataFrame

    def arm(self, name: str) -> pd.DataFrame:
        # Annotated: pandas-stubs 3 types indexing with typing.Self, which a Python 3.10 target lacks.
        rows: pd.DataFrame = self.rows[self.rows["arm"] == name]
        return rows


def canonical_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with exactly the plan columns, in order, with their canonical dtypes."""
    missing = [c for c in PLAN_COLUMNS if c not in rows.columns]
    if missing:
        raise InputError(f"plan rows lack column(s) {', '.join(missing)}")
    table = pa.Table.from_pandas(rows[list(PLAN_COLUMNS)], schema=_PLAN_SCHEMA, preserve_index=False)
    return nullable_pandas(table)


def plan_hash(rows: pd.DataFrame, arms: tuple[ArmSpec, ...] = ()) -> str:
    """SHA-256 over the canonical rows: one JSON line per row, floats by their shortest repr; then, if
    any of `arms` is shaped, every arm's policy spec (so an unshaped plan hashes as it always has)."""
    digest = hashlib.sha256()
    canonical = canonical_rows(rows)
    columns = list(PLAN_COLUMNS)
    for record in canonical.itertuples(index=False, name=None):
        line = json.dumps([_canonical_value(v) for v in record], separators=(",", ":"), ensure_ascii=False)
        digest.update(line.encode())
        digest.update(b"\n")
    digest.update(json.dumps(columns).encode())
    if any(arm.policy is not None for arm in arms):
        digest.update(json.dumps([[arm.name, arm.policy] for arm in arms]).encode())
    return digest.hexdigest()


def make_plan(header: PlanHeader, rows: pd.DataFrame) -> Plan:
    """Validate rows against the header and seal the plan with its hash."""
    rows = canonical_rows(rows)
    _validate(header, rows, origin="plan")
    sealed = PlanHeader(**{**_shallow(header), "plan_hash": plan_hash(rows, header.arms), "n": len(rows)})
    return Plan(header=sealed, rows=rows)


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write the plan atomically (a crash or an error never leaves a partial file)."""
    path = Path(path)
    table = pa.Table.from_pandas(canonical_rows(plan.rows), schema=_PLAN_SCHEMA, preserve_index=False)
    header = plan.header.to_dict()
    write_tagged(path, table, PLAN_FORMAT, header)
    atomic_text(Path(f"{path}.json"), json.dumps(header, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def load_plan(path: str | os.PathLike[str], verify: bool = True) -> Plan:
    """Read a plan; with `verify`, recompute its hash so an edited or damaged file is caught."""
    path = Path(path)
    table, raw = read_tagged(path, PLAN_FORMAT)
    header = PlanHeader.from_dict(raw, origin=str(path))
    rows = canonical_rows(nullable_pandas(table))
    _validate(header, rows, origin=str(path))
    if verify and plan_hash(rows, header.arms) != header.plan_hash:
        raise InputError(f"{path}: plan rows do not match the plan_hash in its header (edited or damaged)")
    return Plan(header=header, rows=rows)


def _validate(header: PlanHeader, rows: pd.DataFrame, origin: str) -> None:
    names = [arm.name for arm in header.arms]
    if not names:
        raise InputError(f"{origin}: plan has no arms")
    if len(set(names)) != len(names):
        raise InputError(f"{origin}: arm names are not unique: {names}")
    unknown = set(rows["arm"].unique()) - set(names)
    if unknown:
        raise InputError(f"{origin}: rows name unknown arm(s) {sorted(unknown)}")
    ids = rows["request_id"].to_numpy()
    if len(ids) and not np.array_equal(ids, np.arange(len(ids))):
        raise InputError(f"{origin}: request_id must be 0..N-1 in row order")
    order = {name: i for i, name in enumerate(names)}
    arm_pos = rows["arm"].map(order).to_numpy()
    if len(arm_pos) and np.any(np.diff(arm_pos) < 0):
        raise InputError(f"{origin}: rows must be grouped by arm in header order")
    for arm in header.arms:
        offsets = rows.loc[rows["arm"] == arm.name, "offset_s"].to_numpy(dtype=float)
        if (arm.policy is None) != (arm.policy_name is None) or (arm.policy and arm.closed_loop):
            raise InputError(f"{origin}: arm {arm.name!r}: a policy needs its name and an open-loop schedule")
        if arm.closed_loop:
            if not np.all(np.isnan(offsets)):
                raise InputError(f"{origin}: closed-loop arm {arm.name!r} must have NaN offsets")
            continue
        if np.any(np.isnan(offsets)) or np.any(offsets < 0):
            raise InputError(f"{origin}: arm {arm.name!r} has missing or negative offset_s")
        if np.any(np.diff(offsets) < 0):
            raise InputError(f"{origin}: arm {arm.name!r} offsets are not non-decreasing")
    both_missing = rows["prompt"].isna() & rows["messages"].isna()
    if both_missing.any():
        first = int(rows.loc[both_missing, "request_id"].iloc[0])
        raise InputError(f"{origin}: request {first} has neither prompt nor messages")


def _canonical_value(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else repr(float(value))
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _shallow(header: PlanHeader) -> dict[str, Any]:
    return {f: getattr(header, f) for f in header.__dataclass_fields__}


def select_arms(plan: Plan, names: list[str]) -> Plan:
    """The sub-plan of these arms (in this order), each with exactly its rows of `plan`: the same prompts
    and the same offsets, so an arm sent alone is the arm of the whole plan (an experiment's cells)."""
    known = {arm.name: arm for arm in plan.header.arms}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise InputError(f"plan {plan.header.plan_hash[:8]}: no arm named {unknown or names!r}")
    rows = pd.concat([plan.arm(name) for name in names], ignore_index=True)
    rows["request_id"] = np.arange(len(rows), dtype=np.int64)
    extra = {**plan.header.extra, "selected_from": plan.header.plan_hash}
    counts = extra.get("requests_per_arm")
    if isinstance(counts, dict):
        extra["requests_per_arm"] = {name: counts.get(name) for name in names}
    header = replace(plan.header, arms=tuple(known[name] for name in names), extra=extra)
    return make_plan(header, rows)
