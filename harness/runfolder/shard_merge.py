"""Merge the run folders of a sharded run (`--shard I/N`, one per pod) into one run folder.

All shards must come from one plan (same plan hash) and together cover shards 0..N-1 exactly once;
the merged `requests.parquet` then has exactly one row per planned request.

Times: the merged folder keeps shard 0's clock anchor. A shard on the same kernel (same boot_id)
shares its monotonic clock and needs no mapping; a shard on another host is mapped through epoch
time (each shard's own anchor), so its accuracy is that of the hosts' clock synchronisation (NTP),
which the manifest records. Warm-up rows are renumbered so ids stay unique and still name their
shard: warm-up j of shard s gets id -(j*N + s) - 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.records import TIME_COLUMNS, Shard
from harness.runfolder import RunFolder, utc_iso
from harness.runfolder.requests_file import write_requests
from harness.runfolder.run_paths import distinct_run_paths
from traffic.plan import Plan


@dataclass
class _Shard:
    folder: RunFolder
    manifest: dict[str, Any]
    shard: Shard
    frame: pd.DataFrame
    anchor: ClockAnchor


@dataclass
class MergedShards:
    """The shards of one plan checked and merged in memory; nothing is written until `write`."""

    plan: Plan
    frame: pd.DataFrame  # requests.parquet's rows, on the reference's clock
    reference: ClockAnchor  # shard 0's clock anchor: the merged folder's clock
    manifest: dict[str, Any]

    @property
    def epoch_mapped(self) -> list[str]:
        """The shards whose times came onto shard 0's clock through epoch time (another host: NTP)."""
        return [s["shard"] for s in self.manifest["merged_from"] if s["clock_mapping"] == "epoch"]

    def write(self, out_dir: str | os.PathLike[str]) -> RunFolder:
        merged = RunFolder.create(out_dir, self.plan)
        write_requests(self.frame, merged.requests_path, self.reference)
        merged.update_manifest(**self.manifest)
        return merged


def merge_shards(paths: Sequence[str | os.PathLike[str]]) -> MergedShards:
    """Check that `paths` are shards 0..N-1 of one plan and merge them (InputError otherwise)."""
    if not paths:
        raise InputError("merge: give the run folders of the shards")
    folders = [RunFolder.open(p) for p in distinct_run_paths(paths)]
    plan = folders[0].plan()
    manifests = [f.manifest() for f in folders]
    shard_of = [_shard(m) for m in manifests]
    count = shard_of[0].count
    seen: dict[int, Path] = {}
    for folder, shard in zip(folders, shard_of, strict=True):
        if folder.plan().header.plan_hash != plan.header.plan_hash:
            raise InputError(f"{folder.path}: ran another plan than {folders[0].path} (plan hash differs)")
        if shard.count != count:
            raise InputError(f"{folder.path}: is shard {shard} but {folders[0].path} is one of {count}")
        if shard.index in seen:
            raise InputError(f"shard {shard} given twice: {seen[shard.index]} and {folder.path}")
        seen[shard.index] = folder.path
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise InputError(f"merge: shard(s) {', '.join(f'{i}/{count}' for i in missing)} missing")
    shards = [
        _Shard(folder, manifest, shard, *folder.read_requests())
        for folder, manifest, shard in zip(folders, manifests, shard_of, strict=True)
    ]

    shards.sort(key=lambda s: s.shard.index)
    reference = shards[0].anchor
    parts, sources = [], []
    for s in shards:
        shift = _clock_shift(s.anchor, reference)
        parts.append(_shifted(s, shift, count))
        sources.append(
            {
                "run_id": s.folder.run_id,
                "path": str(s.folder.path),
                "shard": str(s.shard),
                "host": s.manifest.get("host", {}).get("hostname"),
                "anchor": s.anchor.as_dict(),
                "clock_shift_ns": shift,
                "clock_mapping": "same kernel"
                if shift == 0 and s.anchor.boot_id == reference.boot_id
                else "epoch",
            }
        )
    frame = pd.concat(parts, ignore_index=True)
    warm = frame["warmup"].to_numpy(dtype=bool)
    ids = frame["request_id"].to_numpy(dtype=np.int64)
    frame = frame.iloc[np.lexsort((np.where(warm, -ids, ids), ~warm))].reset_index(
        drop=True
    )  # as a run writes
    measured = frame.loc[~frame["warmup"], "request_id"].to_numpy(dtype=np.int64)
    if not np.array_equal(np.sort(measured), plan.rows["request_id"].to_numpy(dtype=np.int64)):
        raise InputError(
            "merge: the shards' rows are not exactly one per planned request (a shard folder is damaged)"
        )

    return MergedShards(plan, frame, reference, _manifest(shards, sources, frame, reference))


def _shard(manifest: dict[str, Any]) -> Shard:
    info = manifest.get("shard") or {}
    return Shard(int(info.get("index", 0)), int(info.get("count", 1)))


def _clock_shift(anchor: ClockAnchor, reference: ClockAnchor) -> int:
    """Add this to a shard's monotonic times to put them on the reference's monotonic clock."""
    if anchor.boot_id and anchor.boot_id == reference.boot_id:
        return 0
    return (anchor.epoch_ns - anchor.mono_ns) - (reference.epoch_ns - reference.mono_ns)


def _shifted(s: _Shard, shift: int, count: int) -> pd.DataFrame:
    # Annotated: pandas-stubs 3 types copy() with typing.Self, which a Python 3.10 target lacks.
    frame: pd.DataFrame = s.frame.copy()
    if shift:
        for column in TIME_COLUMNS:
            frame[column] = frame[column] + shift
        frame["chunk_ns"] = [values + shift for values in frame["chunk_ns"]]
    warm = frame["warmup"].to_numpy(dtype=bool)
    j = -frame.loc[warm, "request_id"] - 1
    frame.loc[warm, "request_id"] = -(j * count + s.shard.index) - 1
    return frame


def _manifest(
    shards: list[_Shard], sources: list[dict[str, Any]], frame: pd.DataFrame, reference: ClockAnchor
) -> dict[str, Any]:
    base = shards[0].manifest
    windows: dict[str, dict[str, Any]] = {}
    for s, source in zip(shards, sources, strict=True):
        for arm in s.manifest.get("arms", []):
            w = windows.setdefault(
                arm["name"], {**arm, "start_ns": None, "end_ns": None, "planned": 0, "sent": 0}
            )
            start, end = arm["start_ns"] + source["clock_shift_ns"], arm["end_ns"] + source["clock_shift_ns"]
            w["start_ns"] = start if w["start_ns"] is None else min(w["start_ns"], start)
            w["end_ns"] = end if w["end_ns"] is None else max(w["end_ns"], end)
            w["planned"] += arm["planned"]
            w["sent"] += arm["sent"]
    for w in windows.values():
        w["start_epoch_ns"] = reference.to_epoch_ns(w["start_ns"])
        w["end_epoch_ns"] = reference.to_epoch_ns(w["end_ns"])
    runs = [
        (s.manifest.get("run") or {}, src["clock_shift_ns"]) for s, src in zip(shards, sources, strict=True)
    ]
    start = min((r["start_ns"] + shift for r, shift in runs if "start_ns" in r), default=None)
    end = max((r["end_ns"] + shift for r, shift in runs if "end_ns" in r), default=None)
    reasons = sorted({r.get("stop_reason", "unknown") for r, _ in runs})
    counts = frame.loc[~frame["warmup"], "status"].value_counts()
    return {
        "command_line": base.get("command_line"),
        "versions": base.get("versions"),
        "host": base.get("host"),
        "target": base.get("target"),
        "plan": base.get("plan"),
        "options": _merged_options(shards),
        "shard": {
            "index": 0,
            "count": 1,
            "merged_from": len(shards),
            "start_at_epoch_ns": base.get("shard", {}).get("start_at_epoch_ns"),
        },
        "merged_from": sources,
        "clock": {
            "anchor": reference.as_dict(),
            "start_utc": utc_iso(reference.epoch_ns),
            "mapping": sorted({src["clock_mapping"] for src in sources}),
        },
        "arms": list(windows.values()),
        "run": {
            "start_ns": start,
            "end_ns": end,
            "start_epoch_ns": None if start is None else reference.to_epoch_ns(start),
            "end_epoch_ns": None if end is None else reference.to_epoch_ns(end),
            "duration_s": None if start is None or end is None else (end - start) / 1e9,
            "stop_reason": reasons[0] if len(reasons) == 1 else ",".join(reasons),
        },
        "records": {
            "rows": int((~frame["warmup"]).sum()),
            "warmup_rows": int(frame["warmup"].sum()),
            "status_counts": {str(k): int(v) for k, v in counts.items()},
            "recovered": any((s.manifest.get("records") or {}).get("recovered") for s in shards),
            "issues": [i for s in shards for i in (s.manifest.get("records") or {}).get("issues", [])],
        },
    }


def _merged_options(shards: list[_Shard]) -> dict[str, Any] | None:
    """Shard 0's options, but not its transport where the shards differ: with `--transport auto` each
    shard decides for itself (one with no open-loop request of its own takes aiohttp), and the
    sender's stamps (its `sent_ns` is the thread's) are not aiohttp's."""
    options = shards[0].manifest.get("options")
    used = [(s.manifest.get("options") or {}).get("transport") for s in shards]
    if options is None or len(set(used)) == 1:
        return options
    by_shard = ", ".join(f"shard {i}: {t}" for i, t in enumerate(used))
    return {**options, "transport": "mixed", "transport_reason": f"the shards differ ({by_shard})"}
