"""The GPUs' telemetry and the host's RAPL energy from a run's raw sidecar samples (`power_samples.jsonl`).

The sidecar's state rows (clocks, temperature, power limit, throttle reasons) and host energy rows
(CPU package and DRAM) travel in the same sample log as its power (samplelog.py); the join keeps only
power, so the report reads them from here. Times go onto the run's clock as the sidecar's power does
on the same host; from another host through epoch time (the readings are a second apart, so the
hosts' clock agreement is far finer than they need).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.samplelog import HOST_ROW, STATE_ROW, read_log_file
from harness.power.series import HostEnergySeries, StateSeries, Telemetry
from harness.runfolder.power_file import RAW_SAMPLES_FILE, absent_samples_note

OLD_SIDECAR = "the sidecar predates host energy sampling"


def _to_ours(header: dict[str, Any], anchor: ClockAnchor) -> int:
    """What to add to the sidecar's monotonic times to place them on ours."""
    remote = ClockAnchor.from_dict(header["clock"])
    if remote.boot_id and remote.boot_id == anchor.boot_id:
        return 0
    return (remote.epoch_ns - remote.mono_ns) - (anchor.epoch_ns - anchor.mono_ns)


def read_telemetry(run_dir: str | os.PathLike[str], manifest: dict[str, Any]) -> Telemetry:
    """Every GPU's state rows and every RAPL domain's energy in the run's raw samples (the last
    session's host note where none had host energy)."""
    path = Path(run_dir) / RAW_SAMPLES_FILE
    if not path.is_file():
        why = absent_samples_note(manifest)
        return Telemetry([], [], why, why)
    try:
        anchor = ClockAnchor.from_dict((manifest.get("clock") or {})["anchor"])
        sessions = read_log_file(path)
        shifts = [_to_ours(s.header, anchor) for s in sessions]
    except (KeyError, TypeError, ValueError) as exc:
        why = f"manifest.json or {RAW_SAMPLES_FILE}: clock unusable ({exc})"
        return Telemetry([], [], why, why)
    except InputError as exc:
        return Telemetry([], [], str(exc), str(exc))
    state: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    host: dict[str, tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray]]]] = {}
    notes: list[str] = []
    for session, shift in zip(sessions, shifts, strict=True):
        rows = session.rows
        for g in sorted({int(i) for i in rows.gpu[rows.kind == STATE_ROW]}):
            mine = (rows.kind == STATE_ROW) & (rows.gpu == g)
            state.setdefault(str(g), []).append((rows.t_ns[mine] + shift, rows.state[mine]))
        info = session.header.get("host_energy")
        if not isinstance(info, dict):
            notes.append(OLD_SIDECAR)
            continue
        if info.get("note"):
            notes.append(str(info["note"]))
        for d in info.get("domains") or []:
            mine = (rows.kind == HOST_ROW) & (rows.gpu == int(d["index"]))
            # Each session's counter starts afresh: only differences within a session are energy.
            # Keyed by zone: a two-socket host has two zones named "dram".
            host.setdefault(str(d["zone"]), (d, []))[1].append((rows.t_ns[mine] + shift, rows.energy_j[mine]))
    gpus = [StateSeries(g, *_joined(parts)) for g, parts in sorted(state.items())]
    host_series = [
        HostEnergySeries(str(d["name"]), str(d["kind"]), str(d["zone"]), *_stitched(parts))
        for d, parts in host.values()
    ]
    note = None if host_series else (notes[-1] if notes else "no host energy rows")
    return Telemetry(gpus, host_series, note)


def _joined(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    t = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def _stitched(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Sessions one after another, each continuing from the last total (a restart counts nothing twice)."""
    ts, es, carry = [], [], 0.0
    for t, e in parts:
        if len(t):
            ts.append(t)
            es.append(e - e[0] + carry)
            carry = float(es[-1][-1])
    if not ts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    return np.concatenate(ts), np.concatenate(es)
