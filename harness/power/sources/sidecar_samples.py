"""Power from the sidecar's own sample log: live over HTTP (`/samples`) or from a `--log` file.

This is the high-rate source (10-100 Hz power, counter anchors every ~0.5 s). Over HTTP, call
`poll()` every few seconds during a run: the sidecar's ring is bounded, and rows that wrap before they
are read are lost (reported). `sessions()` is what was collected; a run folder keeps it in the `--log`
file format (`harness.runfolder.power_file.save_raw_samples`), to be re-read later with
`SidecarSource(path)`.
"""

from __future__ import annotations

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
    FLAG_INTEGRATED,
    FLAG_RESET,
    POWER_ROW,
    SampleRows,
    Session,
    check_header,
    read_log_file,
)
from harness.power.series import PowerData
from harness.power.sources.assemble import build_series

_PAGE_ROWS = 200_000


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

    def poll(self) -> int:
        """Fetch the rows added since the last poll (HTTP only); returns how many arrived."""
        if not self.is_http:
            return 0
        got = 0
        while True:
            doc = self._get(f"/samples?since={self._cursor}&limit={_PAGE_ROWS}")
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
            session.dropped += int(doc.get("dropped", 0))
            rows = doc.get("rows") or []
            try:
                self._pending.append(SampleRows.from_lists(rows))
            except ValueError as exc:
                raise InputError(f"{self.location}: {exc}") from None
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
                    idx, {"at": [], "ae": [], "pt": [], "pw": [], "resets": 0, "gpu": gpu}
                )
                if acc["gpu"].get("uuid") != gpu.get("uuid"):
                    was, now = acc["gpu"].get("uuid"), gpu.get("uuid")
                    issues.append(f"GPU {idx}: UUID changed between sidecar sessions ({was} -> {now})")
                mine = rows.gpu == idx
                energy = mine & (rows.kind == ENERGY_ROW)
                power = mine & (rows.kind == POWER_ROW)
                acc["at"].append(t[energy])
                acc["ae"].append(rows.energy_j[energy])
                acc["pt"].append(t[power])
                acc["pw"].append(rows.power_w[power])
                acc["resets"] += int(np.count_nonzero(rows.flags[energy] & FLAG_RESET))
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
                known_resets=acc["resets"],
            )
            for idx, acc in sorted(per_gpu.items())
        ]
        if len(sessions) > 1:
            clock = {**clock, "sessions": len(sessions)}
        source = f"sidecar {redact_userinfo(self.location)}"
        return PowerData(series=series, source=source, clock=clock, issues=issues)
