"""Power from the sidecar's own sample log: live over HTTP (`/samples`) or from a `--log` file.

This is the high-rate source (10-100 Hz power, counter anchors every ~0.5 s). Over HTTP, call
`poll()` every few seconds during a run: the sidecar's ring is bounded, and rows that wrap before they
are read are lost (reported). `sessions()` is what was collected; `record(sink)` hands every polled
page to a sink as it arrives, which is how a run folder keeps them in the `--log` file format while
the run goes on (`harness.runfolder.power_file.RawSampleLog`), to be re-read with `SidecarSource(path)`.

What the sidecar did to its readings is reported in the series' issues where it touches the window:
resets and jumps it stitched (row flags), and readings it refused (value-less rows, samplelog.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from foundation.errors import InputError
from foundation.redact import redact_userinfo
from harness.clock import ClockAnchor
from harness.power.clocksync import ClockOffset, estimate_clock_offset
from harness.power.http_problem import http_problem, is_not_found
from harness.power.samplelog import (
    ENERGY_ROW,
    FLAG_FAILED,
    FLAG_INTEGRATED,
    FLAG_JUMP,
    FLAG_REJECTED,
    FLAG_RESET,
    POWER_ROW,
    REJECTED_FLAGS,
    SampleRows,
    Session,
    check_header,
    read_log_file,
)
from harness.power.series import PowerData
from harness.power.sources.assemble import build_series, dropped_issues, fmt_t

_PAGE_ROWS = 200_000
# A page of rows as it arrives: the session's header, the rows, how many rows the ring lost before them.
PageSink = Callable[[dict[str, Any], SampleRows, int], None]
_FAILED = "the read failed at the sidecar (an NVML error: the GPU may be lost); nothing was measured"
_REFUSED = {
    "energy counter": {
        "invalid": "refused by the sidecar: not a number, infinite or negative",
        "implausible": "refused by the sidecar: more than the GPU could have counted",
        "glitch": "dropped by the sidecar: a lone drop below the readings around it, a bad read and not a "
        "reset, or a drop still unconfirmed when the sidecar stopped",
        "failed": _FAILED,
    },
    "power": {
        "invalid": "refused by the sidecar: not a number, infinite or negative",
        "implausible": "refused by the sidecar: above three times the GPU's power limit",
        "failed": _FAILED,
    },
}


class SidecarSource:
    """`location`: the sidecar's base URL (http://host:9400) or the path of a sample-log file."""

    def __init__(
        self,
        location: str | Path,
        *,
        anchor: ClockAnchor | None = None,
        offset: ClockOffset | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.location = str(location)
        self.is_http = self.location.startswith(("http://", "https://"))
        if self.is_http:
            try:
                httpx.URL(self.location)  # a bad port or host: one line now, not an httpx exception mid-run
            except httpx.InvalidURL as exc:
                raise InputError(f"sidecar: {self.location!r} is not a valid URL ({exc})") from None
        self.name = "sidecar"
        self.anchor = anchor or ClockAnchor.now()
        self.offset = offset
        self._client = client
        self._sessions: list[Session] = []
        # Pages of the current session, decoded at once (numpy: ~50 bytes a row, not a Python list's ~200).
        self._pending: list[SampleRows] = []
        self._cursor = 0
        self._issues: list[str] = []
        self._sink: PageSink | None = None

    # -- collection --------------------------------------------------------------------------------

    def _get(self, path: str) -> dict[str, Any]:
        client = self._client or httpx.Client(timeout=30.0)
        url = self.location.rstrip("/") + path
        try:
            response = client.get(url)
            response.raise_for_status()
            doc = response.json()
        except httpx.HTTPError as exc:
            hint = "; is it a joulebench sidecar?" if is_not_found(exc) else ""
            raise InputError(f"{url}: cannot read the sidecar ({http_problem(exc)}{hint})") from None
        except ValueError as exc:
            raise InputError(f"{url}: not a joulebench sidecar (not JSON: {http_problem(exc)})") from None
        finally:
            if self._client is None:
                client.close()
        if not isinstance(doc, dict):
            raise InputError(f"{url}: not a joulebench sidecar (expected a JSON object)")
        return doc

    def record(self, sink: PageSink) -> None:
        """Hand every page polled from now on to `sink`, after what was collected so far."""
        for session in self._sessions:
            pending = self._pending if session is self._sessions[-1] else []
            sink(session.header, SampleRows.concat([session.rows, *pending]), session.dropped)
        self._sink = sink

    def poll(self) -> int:
        """Fetch the rows added since the last poll (HTTP only); returns how many arrived."""
        if not self.is_http:
            return 0
        got = 0
        while True:
            # state=1: the GPUs' state and the host's energy rows too (a sidecar before them ignores it)
            doc = self._get(f"/samples?since={self._cursor}&limit={_PAGE_ROWS}&state=1")
            header = check_header(
                {k: v for k, v in doc.items() if k not in ("rows", "next", "dropped")}, self.location
            )
            if not self._sessions or self._sessions[-1].header["clock"] != header["clock"]:
                restarted = bool(self._sessions)
                self._finish_session()
                self._sessions.append(Session(header=header, rows=SampleRows.empty()))
                if restarted:
                    self._issues.append(f"{self.location}: the sidecar restarted between polls")
                    if self._cursor:  # the new process numbers its rows from 0 again
                        self._cursor = 0
                        continue
            session = self._sessions[-1]
            dropped = int(doc.get("dropped", 0))
            session.dropped += dropped
            rows = doc.get("rows") or []
            try:
                page = SampleRows.from_lists(rows)
            except ValueError as exc:
                raise InputError(f"{self.location}: {exc}") from None
            self._pending.append(page)
            if self._sink is not None and (len(page) or dropped):
                self._sink(session.header, page, dropped)
            got += len(rows)
            self._cursor = int(doc["next"])
            if len(rows) < _PAGE_ROWS:
                return got

    def _finish_session(self) -> None:
        if self._sessions and self._pending:
            self._sessions[-1].rows = SampleRows.concat([self._sessions[-1].rows, *self._pending])
        self._pending.clear()

    def sessions(self) -> list[Session]:
        if self.is_http:
            self._finish_session()
            return self._sessions
        return read_log_file(Path(self.location))

    # -- clock mapping -----------------------------------------------------------------------------

    def _mapping(self, header: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """How this session's sidecar times map to ours: (description, function on int64 arrays)."""
        remote = ClockAnchor.from_dict(header["clock"])
        if remote.boot_id and remote.boot_id == self.anchor.boot_id:
            return {"mode": "same-host", "boot_id": remote.boot_id}, lambda t: t
        offset = self.offset
        if offset is None and self.is_http:
            offset = self.offset = estimate_clock_offset(self.location, self.anchor, client=self._client)
        if offset is not None and offset.remote_boot_id == remote.boot_id:
            desc = {"mode": "offset", **offset.as_dict()}
            return desc, lambda t: t + offset.mono_offset_ns
        # A file from another host with no measured offset: go through epoch time and trust NTP.
        desc = {"mode": "epoch", "sidecar_boot_id": remote.boot_id, "note": "assumes the hosts' clocks agree"}
        return (
            desc,
            lambda t: t + (remote.epoch_ns - remote.mono_ns) - (self.anchor.epoch_ns - self.anchor.mono_ns),
        )

    # -- the series --------------------------------------------------------------------------------

    def read(self, start_ns: int | None = None, end_ns: int | None = None) -> PowerData:
        """Per-GPU energy series on our monotonic clock, cut to bracket [start_ns, end_ns]."""
        issues: list[str] = []
        if self.is_http:
            try:
                self.poll()
            except InputError as exc:
                if not self._sessions:
                    raise
                issues.append(f"sidecar unreachable at read time, using the rows polled before: {exc}")
        issues[:0] = self._issues
        sessions = self.sessions()
        per_gpu: dict[int, dict[str, list[Any]]] = {}
        clock: dict[str, Any] = {}
        counter_period = None
        for session in sessions:
            header, rows = session.header, session.rows
            clock, to_ours = self._mapping(header)
            counter_period = float(header.get("counter_interval_s") or 0.5)
            if session.dropped:
                issues.append(
                    f"{session.dropped} sample rows were lost before they were read (the ring wrapped)"
                )
            issues.extend(session.issues)
            t = to_ours(rows.t_ns)
            for gpu in header["gpus"]:
                idx = int(gpu["index"])
                acc = per_gpu.setdefault(
                    idx, {"at": [], "ae": [], "af": [], "pt": [], "pw": [], "refused": [], "gpu": gpu}
                )
                if acc["gpu"].get("uuid") != gpu.get("uuid"):
                    was, now = acc["gpu"].get("uuid"), gpu.get("uuid")
                    issues.append(f"GPU {idx}: UUID changed between sidecar sessions ({was} -> {now})")
                mine = rows.gpu == idx
                refused = mine & (rows.flags & FLAG_REJECTED != 0)
                energy = mine & (rows.kind == ENERGY_ROW) & ~refused
                power = mine & (rows.kind == POWER_ROW) & ~refused
                acc["at"].append(t[energy])
                acc["ae"].append(rows.energy_j[energy])
                acc["af"].append(rows.flags[energy])
                acc["pt"].append(t[power])
                acc["pw"].append(rows.power_w[power])
                kinds, flags = rows.kind[refused].tolist(), rows.flags[refused].tolist()
                acc["refused"] += zip(t[refused].tolist(), kinds, flags, strict=True)
                acc["integrated"] = bool(np.any(rows.flags[energy] & FLAG_INTEGRATED)) or (
                    gpu.get("energy_method") == "integrated"
                )
        series = [
            build_series(
                str(idx),
                np.concatenate(acc["at"]),
                np.concatenate(acc["ae"]),
                np.concatenate(acc["pt"]),
                np.concatenate(acc["pw"]),
                source="sidecar",
                uuid=acc["gpu"].get("uuid") or None,
                name=acc["gpu"].get("name") or None,
                integrated=acc["integrated"],
                expected_period_s=counter_period,
                start_ns=start_ns,
                end_ns=end_ns,
            )
            for idx, acc in sorted(per_gpu.items())
        ]
        for s, acc in zip(series, (acc for _, acc in sorted(per_gpu.items())), strict=True):
            at, af = np.concatenate(acc["at"]), np.concatenate(acc["af"])
            order = np.argsort(at, kind="stable")
            s.issues += _sidecar_notes(s.gpu, at[order], af[order], acc["refused"], start_ns, end_ns)
            s.failed_reads = _failed_reads(acc["refused"], start_ns, end_ns)
        if len(sessions) > 1:
            clock = {**clock, "sessions": len(sessions)}
        source = f"sidecar {redact_userinfo(self.location)}"
        return PowerData(series=series, source=source, clock=clock, issues=issues)


def _failed_reads(refused: list[tuple[int, int, int]], start_ns: int | None, end_ns: int | None) -> int:
    """How many reads (power and counter) failed at the sidecar inside the window."""
    lo = -(2**63) if start_ns is None else start_ns
    hi = 2**63 - 1 if end_ns is None else end_ns
    return sum(1 for t, _, f in refused if f & FLAG_FAILED and lo <= t <= hi)


def _sidecar_notes(
    gpu: str,
    at: np.ndarray,
    flags: np.ndarray,
    refused: list[tuple[int, int, int]],
    start_ns: int | None,
    end_ns: int | None,
) -> list[str]:
    """What the sidecar did to this GPU's readings, where it touches the window: resets and jumps it
    stitched (each costs the span since the reading before it), readings it refused (t, kind, flags)."""
    lo = -(2**63) if start_ns is None else start_ns
    hi = 2**63 - 1 if end_ns is None else end_ns
    origin = start_ns if start_ns is not None else (int(at[0]) if len(at) else 0)
    before = np.concatenate([[lo], at[:-1]])  # a first row's restart happened before anything we hold
    touches = (at > lo) & (before < hi)
    notes = []
    for flag, what in ((FLAG_RESET, "reset(s)"), (FLAG_JUMP, "jump(s) to another level")):
        hit = at[touches & (flags & flag != 0)]
        if len(hit):
            when = ", ".join(fmt_t(int(t), origin) for t in hit[:5]) + (", ..." if len(hit) > 5 else "")
            notes.append(
                f"GPU {gpu}: {len(hit)} energy counter {what} stitched by the sidecar, at {when} (the "
                "energy between the reading before each and the change is missing)"
            )
    for kind, what in ((ENERGY_ROW, "energy counter"), (POWER_ROW, "power")):
        dropped = [
            (t, why)
            for t, k, f in refused
            if k == kind and lo <= t <= hi
            for why, bit in REJECTED_FLAGS.items()
            if f & bit
        ]
        notes += dropped_issues(gpu, what, dropped, _REFUSED[what], origin)
    return notes
