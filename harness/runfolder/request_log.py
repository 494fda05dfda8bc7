"""`requests.jsonl`: the append-only request log a run writes as it goes, and its compaction.

During a run every request leaves lines in the log, written with one unbuffered `os.write` each (a
SIGKILL loses nothing the kernel has accepted):

    {"k": "header", ...}               first line: schema version, clock anchor, what was planned
                                       (a measured run writes it as it makes the folder, before idle)
    {"k": "arrived", "id": 7, "t": ...}  shaped arms: request 7's user arrived (the policy holds it)
    {"k": "sent", "id": 7, "t": ...}   just before request 7 is handed to the HTTP client
    {"k": "row", ...record...}         when request 7 reaches a terminal status (exactly once)
    {"k": "arm", "arm": ..., "start_ns"|"end_ns": ...}   arm boundaries
    {"k": "tick", "t": ...}            a sign of life, about once a second
    {"k": "end", "t": ..., "reason": ...}                the runner finished normally

`compact_log` turns the log and the plan into the `requests.parquet` frame. It is the same code after
a normal run and after a crash: requests with a "sent" line but no row become `cancelled` (done at
the last sign of life), as do requests of a shaped arm that arrived but were still held by the policy
(never sent), and planned requests never sent become `not_sent`. Which requests were planned
is re-derived from the plan and the header (shard, warm-up count) by `expected_records`, the function
the runner itself uses, so the two can never disagree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.records import RECORDS_SCHEMA_VERSION, TIME_COLUMNS, RequestRecord, Shard, records_frame
from traffic.plan import Plan

# The error of a request a stop found held by its arm's policy: recorded, never sent.
HELD_CANCELLED = "cancelled while held by the policy"


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


class RecordLog:
    """Append-only JSONL writer. Each line is one `os.write` on an O_APPEND descriptor: no user-space
    buffer that a SIGKILL could lose, and no partial interleaving of lines."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = Path(path)
        line = self._line({"k": "header", "schema_version": RECORDS_SCHEMA_VERSION, **header})
        try:
            self._fd: int | None = os.open(
                self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
            )
        except FileExistsError:
            # The run wrote this very header when it made its folder (harness/session/measured_run.py),
            # so that a run killed before its requests still accounts for them: carry on after it.
            if self.path.read_bytes() != line:
                raise
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            return
        self._send(line)

    def arrived(self, rec: RequestRecord) -> None:
        self._write({"k": "arrived", "id": rec.request_id, "t": rec.arrived_ns})

    def sent(self, rec: RequestRecord) -> None:
        self._write({"k": "sent", "id": rec.request_id, "t": rec.sent_ns})

    def sent_line(self, rec: RequestRecord) -> tuple[int, bytes, bytes]:
        """The `sent` line for another writer (the sender process) to complete with its time, on this
        log's descriptor: (descriptor, what comes before the time, what comes after it)."""
        if self._fd is None:
            raise ValueError(f"{self.path}: log is closed")
        line = self._line({"k": "sent", "id": rec.request_id, "t": 0})
        return self._fd, line[: -len(b"0}\n")], b"}\n"

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
        self._send(self._line(obj))

    @staticmethod
    def _line(obj: dict[str, Any]) -> bytes:
        return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    def _send(self, line: bytes) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path}: log is closed")
        data = memoryview(line)
        while data:
            data = data[os.write(self._fd, data) :]


@dataclass
class LogContents:
    header: dict[str, Any]
    rows: dict[int, dict[str, Any]]  # request_id -> terminal row (first one wins)
    sent: dict[int, int]  # request_id -> sent_ns
    arrived: dict[int, int]  # request_id -> arrived_ns (shaped arms only)
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
    contents = LogContents(header={}, rows={}, sent={}, arrived={}, arms={}, last_ns=None, end=None)
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
        if kind in ("sent", "arrived"):
            times = contents.sent if kind == "sent" else contents.arrived
            times.setdefault(int(obj["id"]), int(obj["t"]))
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
        rec.arrived_ns = log.arrived.get(rec.request_id)
        if sent is not None:
            rec.sent_ns = sent
            rec.finish(
                "cancelled",
                max(sent, log.last_ns or sent),
                "runner stopped before the request finished "
                "(row rebuilt from the log; done_ns = its last sign of life)",
            )
        elif rec.arrived_ns is not None:
            rec.finish(
                "cancelled",
                max(rec.arrived_ns, log.last_ns or rec.arrived_ns),
                f"{HELD_CANCELLED}: the runner stopped (row rebuilt from the log; done_ns = its last "
                "sign of life)",
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
