"""The request record: one row per planned request, its append-only log, compaction and recovery.

During a run every request leaves lines in `requests.jsonl`, written with one unbuffered `os.write`
each (a SIGKILL loses nothing the kernel has accepted):

    {"k": "header", ...}               first line: schema version, clock anchor, what was planned
    {"k": "sent", "id": 7, "t": ...}   just before request 7 is handed to the HTTP client
    {"k": "row", ...record...}         when request 7 reaches a terminal status (exactly once)
    {"k": "arm", "arm": ..., "start_ns"|"end_ns": ...}   arm boundaries
    {"k": "tick", "t": ...}            a sign of life, about once a second
    {"k": "end", "t": ..., "reason": ...}                the runner finished normally

`compact_log` turns the log and the plan into the `requests.parquet` frame. It is the same code after
a normal run and after a crash: requests with a "sent" line but no row become `cancelled` (done at
the last sign of life), planned requests never sent become `not_sent`. Which requests were planned
is re-derived from the plan and the header (shard, warm-up count) by `expected_records`, the function
the runner itself uses, so the two can never disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from traffic.errors import InputError
from traffic.plan import Plan

from .clock import ClockAnchor

RECORDS_SCHEMA_VERSION = 1
METADATA_KEY = b"joulebench.records"

STATUSES = ("ok", "http_error", "timeout", "connect_error", "stream_error", "cancelled", "not_sent")
APIS = ("openai-chat", "openai-completions", "tgi-generate")

# Monotonic timestamps; each gets an `*_epoch_ns` twin in the Parquet file.
TIME_COLUMNS = ("planned_ns", "sent_ns", "first_byte_ns", "first_token_ns", "last_token_ns", "done_ns")

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
    "queued_ns": _I64,  # a duration: client-side wait for the concurrency cap / rate guard
    "sent_ns": _I64,
    "first_byte_ns": _I64,
    "first_token_ns": _I64,
    "last_token_ns": _I64,
    "done_ns": _I64,
    "lateness_ns": _I64,  # a duration: sent_ns - planned_ns
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

# The fields a "row" line carries (everything else in the Parquet file is derived).
_ROW_FIELDS = (
    "request_id", "arm", "seq", "prompt_id", "warmup", "api", "stream", "planned_ns", "queued_ns",
    "sent_ns", "first_byte_ns", "first_token_ns", "last_token_ns", "done_ns", "chunk_ns",
    "prompt_tokens", "output_tokens", "finish_reason", "status", "http_status", "error", "server_timing",
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
        self.queued_ns: int | None = None
        self.sent_ns: int | None = None
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
    def lateness_ns(self) -> int | None:
        if self.sent_ns is None or self.planned_ns is None:
            return None
        return self.sent_ns - self.planned_ns

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

    def mask(self, request_ids: np.ndarray) -> np.ndarray:
        return (request_ids % self.count) == self.index


def warmup_rows(plan: Plan, warmup: int) -> list[int]:
    """Plan row positions the warm-up requests reuse: the first rows, cycling if the plan is shorter."""
    n = len(plan.rows)
    return [j % n for j in range(warmup)] if n else []


def expected_records(plan: Plan, *, shard: Shard, warmup: int, api: str, stream: bool) -> list[RequestRecord]:
    """Every request a run of `plan` must account for: warm-ups (ids -1, -2, ...) then the shard's slice."""
    rows = plan.rows
    ids = rows["request_id"].to_numpy(dtype=np.int64)
    arms = rows["arm"].to_numpy(dtype=object)
    seqs = rows["seq"].to_numpy(dtype=np.int64)
    prompt_ids = rows["prompt_id"].to_numpy(dtype=object)
    out = [
        RequestRecord(
            -(j + 1), str(arms[i]), int(seqs[i]), str(prompt_ids[i]), warmup=True, api=api, stream=stream
        )
        for j, i in enumerate(warmup_rows(plan, warmup))
    ]
    for i in np.flatnonzero(shard.mask(ids)):
        out.append(
            RequestRecord(
                int(ids[i]),
                str(arms[i]),
                int(seqs[i]),
                str(prompt_ids[i]),
                warmup=False,
                api=api,
                stream=stream,
            )
        )
    return out


# --------------------------------------------------------------------------- the append-only log


class RecordLog:
    """Append-only JSONL writer. Each line is one `os.write` on an O_APPEND descriptor: no user-space
    buffer that a SIGKILL could lose, and no partial interleaving of lines."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._write({"k": "header", "schema_version": RECORDS_SCHEMA_VERSION, **header})

    def sent(self, rec: RequestRecord) -> None:
        self._write({"k": "sent", "id": rec.request_id, "t": rec.sent_ns})

    def row(self, rec: RequestRecord) -> None:
        self._write({"k": "row", **rec.to_row()})

    def event(self, kind: str, **fields: Any) -> None:
        self._write({"k": kind, **fields})

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: log is closed")
        data = memoryview((json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode())
        while data:
            data = data[os.write(self._fd, data) :]


@dataclass
class LogContents:
    header: dict[str, Any]
    rows: dict[int, dict[str, Any]]  # request_id -> terminal row (first one wins)
    sent: dict[int, int]  # request_id -> sent_ns
    arms: dict[str, dict[str, int]]  # arm -> {"start_ns": ..., "end_ns": ...}
    last_ns: int | None  # the latest timestamp anywhere in the log: the runner's last sign of life
    end: dict[str, Any] | None  # the "end" line, None when the runner did not finish normally
    issues: list[str] = field(default_factory=list)


def read_log(path: Path) -> LogContents:
    """Read a log, tolerating what a crash leaves: a torn last line. Anything else malformed is an error."""
    path = Path(path)
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise InputError(f"{path}: cannot read request log ({exc.strerror})") from None
    header: dict[str, Any] | None = None
    contents = LogContents(header={}, rows={}, sent={}, arms={}, last_ns=None, end=None)
    last = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            if number >= len(lines) - 1:  # the torn final line of a killed writer
                contents.issues.append(f"line {number}: incomplete last line ignored")
                continue
            raise InputError(f"{path}: line {number} is not valid JSON (log damaged)") from None
        kind = obj.get("k")
        if header is None:
            if kind != "header":
                raise InputError(f"{path}: first line is not a request-log header")
            if obj.get("schema_version") != RECORDS_SCHEMA_VERSION:
                raise InputError(
                    f"{path}: request-log schema version {obj.get('schema_version')} is not supported"
                )
            header = obj
            continue
        if kind == "sent":
            contents.sent.setdefault(int(obj["id"]), int(obj["t"]))
            last = max(last, int(obj["t"]))
        elif kind == "row":
            rid = int(obj["request_id"])
            if rid in contents.rows:
                contents.issues.append(f"request {rid}: more than one terminal row, kept the first")
                continue
            contents.rows[rid] = obj
            last = max(last, *(int(obj[c]) for c in TIME_COLUMNS if obj.get(c) is not None), 0)
        elif kind == "arm":
            arm = contents.arms.setdefault(str(obj["arm"]), {})
            for key in ("start_ns", "end_ns"):
                if key in obj:
                    arm[key] = int(obj[key])
                    last = max(last, int(obj[key]))
        elif kind in ("tick", "end"):
            last = max(last, int(obj["t"]))
            if kind == "end":
                contents.end = obj
    if header is None:
        raise InputError(f"{path}: request log is empty")
    contents.header = header
    contents.last_ns = last or None
    return contents


def log_header(
    *, anchor: ClockAnchor, plan: Plan, shard: Shard, warmup: int, api: str, stream: bool
) -> dict[str, Any]:
    """What `compact_log` needs to rebuild the list of planned requests without the runner."""
    return {
        "anchor": anchor.as_dict(),
        "plan_hash": plan.header.plan_hash,
        "shard": [shard.index, shard.count],
        "warmup": warmup,
        "api": api,
        "stream": stream,
    }


# --------------------------------------------------------------------------- compaction and recovery


@dataclass
class Compacted:
    frame: pd.DataFrame
    anchor: ClockAnchor
    recovered: bool  # the log had no "end" line: the runner died, missing rows were reconstructed
    issues: list[str]


def compact_log(log_path: Path, plan: Plan) -> Compacted:
    """Rows for every planned request, from the log; missing ones reconstructed as described above."""
    log = read_log(log_path)
    header = log.header
    if header.get("plan_hash") != plan.header.plan_hash:
        raise InputError(f"{log_path}: log was written for another plan (plan_hash differs)")
    try:
        anchor = ClockAnchor.from_dict(header["anchor"])
        shard = Shard(*header["shard"])
        expected = expected_records(
            plan,
            shard=shard,
            warmup=int(header["warmup"]),
            api=str(header["api"]),
            stream=bool(header["stream"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{log_path}: request-log header is malformed ({exc})") from None
    issues = list(log.issues)
    known = {rec.request_id for rec in expected}
    strays = sorted(set(log.rows) - known)
    if strays:
        issues.append(
            f"{len(strays)} row(s) for requests this run did not plan were dropped (first: {strays[0]})"
        )
    offsets = _arm_offsets_ns(plan)
    final: list[RequestRecord] = []
    for rec in expected:
        row = log.rows.get(rec.request_id)
        if row is not None:
            final.append(RequestRecord.from_row(row))
            continue
        start = log.arms.get(rec.arm, {}).get("start_ns")
        if not rec.warmup and start is not None and rec.request_id in offsets:
            rec.planned_ns = start + offsets[rec.request_id]
        sent = log.sent.get(rec.request_id)
        if sent is not None:
            rec.sent_ns = sent
            rec.finish(
                "cancelled",
                max(sent, log.last_ns or sent),
                "runner stopped before the request finished "
                "(row rebuilt from the log; done_ns = its last sign of life)",
            )
        else:
            rec.status = "not_sent"
        final.append(rec)
    return Compacted(
        frame=records_frame(final, anchor), anchor=anchor, recovered=log.end is None, issues=issues
    )


def _arm_offsets_ns(plan: Plan) -> dict[int, int]:
    rows = plan.rows
    offsets = rows["offset_s"].to_numpy(dtype=float)
    ids = rows["request_id"].to_numpy(dtype=np.int64)
    keep = ~np.isnan(offsets)
    return {int(i): round(o * 1e9) for i, o in zip(ids[keep], offsets[keep], strict=True)}


def records_frame(records: Iterable[RequestRecord], anchor: ClockAnchor) -> pd.DataFrame:
    """The `requests.parquet` frame (contract in docs/contracts.md), epoch twins from `anchor`."""
    return _to_pandas(records_table(records, anchor))


def records_table(records: Iterable[RequestRecord], anchor: ClockAnchor) -> pa.Table:
    recs = sorted(records, key=lambda r: (not r.warmup, r.request_id if not r.warmup else -r.request_id))
    cols: dict[str, list[Any]] = {name: [] for name in RECORD_COLUMNS}
    offset = anchor.epoch_ns - anchor.mono_ns
    for rec in recs:
        for name in _ROW_FIELDS:
            cols[name].append(getattr(rec, name))
        cols["lateness_ns"].append(rec.lateness_ns)
        cols["chunks"].append(len(rec.chunk_ns))
        for c in TIME_COLUMNS:
            t = getattr(rec, c)
            cols[c.replace("_ns", "_epoch_ns")].append(None if t is None else t + offset)
    timing = cols["server_timing"]
    cols["server_timing"] = [None if t is None else json.dumps(t, sort_keys=True) for t in timing]
    return pa.Table.from_pydict(cols, schema=records_schema(anchor))


def records_schema(anchor: ClockAnchor) -> pa.Schema:
    fields = [pa.field(n, t, nullable=n not in _NOT_NULL) for n, t in RECORD_COLUMNS.items()]
    meta = {"schema_version": RECORDS_SCHEMA_VERSION, "anchor": anchor.as_dict()}
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps(meta).encode()})


def write_requests(frame: pd.DataFrame, path: Path, anchor: ClockAnchor) -> Path:
    """Write the frame atomically (temp file + rename), anchor and schema version in the metadata."""
    path = Path(path)
    table = pa.Table.from_pandas(
        frame[list(RECORD_COLUMNS)], schema=records_schema(anchor), preserve_index=False
    )
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_requests(path: Path) -> tuple[pd.DataFrame, ClockAnchor]:
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable requests Parquet file ({str(exc).strip()[:200]})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise InputError(f"{path}: Parquet file has no joulebench request-record metadata")
    meta = json.loads(raw)
    if meta.get("schema_version") != RECORDS_SCHEMA_VERSION:
        raise InputError(
            f"{path}: request-record schema version {meta.get('schema_version')} is not supported"
        )
    missing = [c for c in RECORD_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: request records lack column(s) {', '.join(missing)}")
    return _to_pandas(table), ClockAnchor.from_dict(meta["anchor"])


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    mapping = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}
    frame = table.to_pandas(types_mapper=mapping.get)
    # list<int64> comes back as numpy arrays (or None); keep them as plain int64 arrays, never None.
    frame["chunk_ns"] = [np.asarray(v if v is not None else [], dtype=np.int64) for v in frame["chunk_ns"]]
    return frame
