"""The request record: one row per planned request, the columns of `requests.parquet`, and the shards
a plan's requests are split into.

The runner fills in one `RequestRecord` per request as it happens; the run folder's request log
(harness/runfolder/request_log.py) writes each one exactly once, and `requests.parquet`
(harness/runfolder/requests_file.py) holds them as `records_table` lays them out. The columns are
documented in docs/contracts.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from foundation.errors import InputError
from foundation.tagged_parquet import nullable_pandas
from harness.clock import ClockAnchor

RECORDS_SCHEMA_VERSION = 1

# `client_error`: the runner's own stack failed (out of descriptors, ports, buffers or memory; a bug),
# so the request says nothing about the server. docs/runner.md defines each status.
STATUSES = (
    "ok", "http_error", "timeout", "connect_error", "stream_error", "client_error", "cancelled", "not_sent",
)  # fmt: skip
# A warm-up request that ended so did not fail: a stop (Ctrl-C) cancels or leaves it unsent, and that is
# said already; every other status but ok is a failure the runner and the summary report.
WARMUP_NOT_FAILED = ("ok", "cancelled", "not_sent")

# Monotonic timestamps; each gets an `*_epoch_ns` twin in the Parquet file.
TIME_COLUMNS = (
    "planned_ns", "arrived_ns", "sent_ns", "wire_ns", "first_byte_ns", "first_token_ns", "last_token_ns",
    "done_ns",
)  # fmt: skip
# Columns added after the first files were written: a file without them reads as unshaped (arrived
# when sent, no hold), with no wire times (lateness falls back to the send) and nothing held at an
# in-flight cap, see `unshaped_columns`.
ADDED_COLUMNS = ("arrived_ns", "hold_ns", "arrived_epoch_ns", "wire_ns", "wire_epoch_ns", "capped_ns")

_I64 = pa.int64()
RECORD_COLUMNS: dict[str, pa.DataType] = {
    "request_id": _I64,
    "arm": pa.string(),
    "seq": _I64,
    "prompt_id": pa.string(),
    "warmup": pa.bool_(),
    "api": pa.string(),
    "stream": pa.bool_(),
    "planned_ns": _I64,
    "arrived_ns": _I64,  # the user's arrival as the runner played it (unshaped arms: = sent_ns)
    "queued_ns": _I64,  # a duration: client-side wait for the concurrency cap / rate guard
    "sent_ns": _I64,
    # the request's last byte handed to the socket (the HTTP stack's trace hook); null when it never
    # got there, or the transport gives no such hook
    "wire_ns": _I64,
    "first_byte_ns": _I64,
    "first_token_ns": _I64,
    "last_token_ns": _I64,
    "done_ns": _I64,
    "lateness_ns": _I64,  # a duration: arrived_ns - planned_ns (the runner's timing error)
    "hold_ns": _I64,  # a duration: sent_ns - arrived_ns (the shaping policy's hold; 0 unshaped)
    "capped_ns": _I64,  # a duration: the wait at --max-in-flight (null: no such cap; 0: not held)
    "chunk_ns": pa.list_(_I64),
    "chunks": _I64,
    "prompt_tokens": _I64,
    "output_tokens": _I64,
    "finish_reason": pa.string(),
    "status": pa.string(),
    "http_status": _I64,
    "error": pa.string(),
    "server_timing": pa.string(),
    **{c.replace("_ns", "_epoch_ns"): _I64 for c in TIME_COLUMNS},
}
_NOT_NULL = {
    "request_id",
    "arm",
    "seq",
    "prompt_id",
    "warmup",
    "api",
    "stream",
    "chunk_ns",
    "chunks",
    "status",
}

RECORDS_SCHEMA = pa.schema([pa.field(n, t, nullable=n not in _NOT_NULL) for n, t in RECORD_COLUMNS.items()])

# The fields a "row" line carries (everything else in the Parquet file is derived).
_ROW_FIELDS = (
    "request_id", "arm", "seq", "prompt_id", "warmup", "api", "stream", "planned_ns", "arrived_ns",
    "queued_ns", "sent_ns", "first_byte_ns", "first_token_ns", "last_token_ns", "done_ns", "chunk_ns",
    "prompt_tokens", "output_tokens", "finish_reason", "status", "http_status", "error", "server_timing",
    "wire_ns", "capped_ns",
)  # fmt: skip


class RequestRecord:
    """One request's measurements, filled in by the runner and the backend as it happens."""

    __slots__ = _ROW_FIELDS

    def __init__(
        self, request_id: int, arm: str, seq: int, prompt_id: str, *, warmup: bool, api: str, stream: bool
    ) -> None:
        self.request_id = request_id
        self.arm = arm
        self.seq = seq
        self.prompt_id = prompt_id
        self.warmup = warmup
        self.api = api
        self.stream = stream
        self.planned_ns: int | None = None
        # Only shaped arms record an arrival apart from the send; an unshaped request arrives when sent.
        self.arrived_ns: int | None = None
        self.queued_ns: int | None = None
        self.sent_ns: int | None = None
        self.wire_ns: int | None = None  # set by the HTTP stack as the request's last byte goes out
        self.capped_ns: int | None = None
        self.first_byte_ns: int | None = None
        self.first_token_ns: int | None = None
        self.last_token_ns: int | None = None
        self.done_ns: int | None = None
        self.chunk_ns: list[int] = []
        self.prompt_tokens: int | None = None
        self.output_tokens: int | None = None
        self.finish_reason: str | None = None
        self.status = "not_sent"
        self.http_status: int | None = None
        self.error: str | None = None
        self.server_timing: dict[str, Any] | None = None

    @property
    def arrival_ns(self) -> int | None:
        """When the user's request arrived: `arrived_ns` in a shaped arm, else when it was sent."""
        return self.sent_ns if self.arrived_ns is None else self.arrived_ns

    @property
    def lateness_ns(self) -> int | None:
        """The runner's timing error, arrival - due: a policy's hold is not lateness."""
        arrival = self.arrival_ns
        if arrival is None or self.planned_ns is None:
            return None
        return arrival - self.planned_ns

    @property
    def hold_ns(self) -> int | None:
        """How long the policy held it: sent - arrival (0 unshaped; None if never sent)."""
        arrival = self.arrival_ns
        if self.sent_ns is None or arrival is None:
            return None
        return self.sent_ns - arrival

    @property
    def terminal(self) -> bool:
        """True once the request has an outcome (`not_sent` is only final when the run ends)."""
        return self.done_ns is not None

    def finish(self, status: str, now_ns: int, error: str | None = None) -> None:
        """Set the terminal status once; later calls (e.g. a cancel racing a timeout) are ignored."""
        if self.done_ns is not None:
            return
        self.status = status
        self.done_ns = now_ns
        if error is not None and self.error is None:
            self.error = error

    def to_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _ROW_FIELDS}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> RequestRecord:
        rec = cls(
            int(row["request_id"]), str(row["arm"]), int(row["seq"]), str(row["prompt_id"]),
            warmup=bool(row["warmup"]), api=str(row["api"]), stream=bool(row["stream"]),
        )  # fmt: skip
        for name in _ROW_FIELDS[7:]:
            if name in row:
                setattr(rec, name, row[name])
        rec.chunk_ns = list(rec.chunk_ns or [])
        return rec


# --------------------------------------------------------------------------- what a run plans to send


@dataclass(frozen=True)
class Shard:
    """A disjoint slice of a plan: the requests with `request_id % count == index`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise InputError(f"--shard {self.index}/{self.count}: need 0 <= I < N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def mask(self, request_ids: NDArray[np.int64]) -> NDArray[np.bool_]:
        # numpy's stubs type an array's `==` as Any (object.__eq__ must stay compatible).
        mine: NDArray[np.bool_] = (request_ids % self.count) == self.index
        return mine

    def users(self, total: int) -> int:
        """This shard's share of `total` closed-loop users, split as evenly as possible."""
        return total // self.count + (1 if self.index < total % self.count else 0)


def records_frame(records: Iterable[RequestRecord], anchor: ClockAnchor) -> pd.DataFrame:
    """The `requests.parquet` frame (contract in docs/contracts.md), epoch twins from `anchor`."""
    return records_pandas(records_table(records, anchor))


def records_table(records: Iterable[RequestRecord], anchor: ClockAnchor) -> pa.Table:
    recs = sorted(records, key=lambda r: (not r.warmup, r.request_id if not r.warmup else -r.request_id))
    cols: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
    offset = anchor.epoch_ns - anchor.mono_ns
    for rec in recs:
        for name in _ROW_FIELDS:
            cols[name].append(getattr(rec, name))
        cols["lateness_ns"].append(rec.lateness_ns)
        cols["hold_ns"].append(rec.hold_ns)
        cols["chunks"].append(len(rec.chunk_ns))
    cols["arrived_ns"] = [rec.arrival_ns for rec in recs]  # an unshaped request arrived when sent
    for c in TIME_COLUMNS:
        cols[c.replace("_ns", "_epoch_ns")] = [None if t is None else t + offset for t in cols[c]]
    timing = cols["server_timing"]
    cols["server_timing"] = [None if t is None else json.dumps(t, sort_keys=True) for t in timing]
    return pa.Table.from_pydict(cols, schema=RECORDS_SCHEMA)


def unshaped_columns(table: pa.Table) -> pa.Table:
    """A requests table from before `ADDED_COLUMNS` with them: every request arrived when it was sent
    and was held for no time (no arm was shaped then); no wire times (null: the figures fall back to the
    send and say so) and no in-flight cap (null); the columns in `RECORDS_SCHEMA` order."""
    if all(name in table.column_names for name in ADDED_COLUMNS):
        return table
    sent = table.column("sent_ns")
    none = pa.nulls(table.num_rows, _I64)
    derived = {
        "arrived_ns": sent,
        "arrived_epoch_ns": table.column("sent_epoch_ns"),
        "hold_ns": pc.if_else(pc.is_null(sent), pa.scalar(None, _I64), pa.scalar(0, _I64)),
        "wire_ns": none,
        "wire_epoch_ns": none,
        "capped_ns": none,
    }
    for name, values in derived.items():
        if name not in table.column_names:
            table = table.append_column(RECORDS_SCHEMA.field(name), values)
    return table.select(RECORDS_SCHEMA.names)


def records_pandas(table: pa.Table) -> pd.DataFrame:
    """A requests table as pandas: nullable columns, `chunk_ns` as int64 arrays (never None)."""
    frame = nullable_pandas(table)
    # list<int64> comes back as numpy arrays (or None); keep them as plain int64 arrays, never None.
    chunks = [np.asarray(v if v is not None else [], dtype=np.int64) for v in frame["chunk_ns"]]
    # pandas-stubs lists no sequence of arrays among column values; pandas stores one as an object column.
    frame["chunk_ns"] = chunks  # type: ignore[assignment]
    return frame
