"""The run folder `runs/<run_id>/` and its `manifest.json`.

    plan.parquet (+ .json)   the plan, exactly as executed (hash-verified on read)
    requests.jsonl           the append-only request log, written during the run
    requests.parquet         one row per planned request, compacted from the log and the plan
    manifest.json            what produced the run: versions, command line (no secrets), host, target,
                             clock anchors, plan hash, shard, arm windows, outcome counts

Later stages add their own files (power.parquet, summary.json, report.html) and manifest sections.
Reading a folder whose runner died (no requests.parquet yet) recovers it from the log automatically.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from foundation.atomic_write import atomic_text
from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.runfolder.request_log import Compacted, compact_log
from harness.runfolder.requests_file import read_requests, write_requests
from traffic.plan import Plan, load_plan, save_plan

MANIFEST_SCHEMA_VERSION = 1


class RunFolder:
    PLAN = "plan.parquet"
    LOG = "requests.jsonl"
    REQUESTS = "requests.parquet"
    MANIFEST = "manifest.json"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.run_id = self.path.name
        self.log_path = self.path / self.LOG
        self.requests_path = self.path / self.REQUESTS

    @classmethod
    def create(
        cls, out_dir: str | os.PathLike[str], plan: Plan, now: datetime | None = None, name: str | None = None
    ) -> RunFolder:
        """A new folder `<out_dir>/<YYYYmmddTHHMMSS>-<plan hash[:8]>[-N]` (UTC), or `<out_dir>/<name>[-N]`,
        holding the plan."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
        stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S")
        base = name or f"{stamp}-{plan.header.plan_hash[:8]}"
        for n in range(1, 10_000):
            path = out / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()  # exclusive: shards starting in the same second get distinct folders
            except FileExistsError:
                continue
            folder = cls(path)
            save_plan(plan, path / cls.PLAN)
            folder.write_manifest({"schema_version": MANIFEST_SCHEMA_VERSION, "run_id": path.name})
            return folder
        raise InputError(f"--out {out}: too many runs named {base}-*")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        path = Path(path)
        if not (path / cls.MANIFEST).is_file() or not (path / cls.PLAN).is_file():
            raise InputError(f"{path}: not a joulebench run folder (no {cls.MANIFEST} and {cls.PLAN})")
        return cls(path)

    # --- manifest ---------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        path = self.path / self.MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            raise InputError(f"{path}: not valid JSON") from None
        if not isinstance(manifest, dict):
            raise InputError(f"{path}: expected a JSON object")
        version = manifest.get("schema_version")
        if type(version) is not int or version != MANIFEST_SCHEMA_VERSION:  # not True, not 1.0, not "1"
            found = "no schema_version" if version is None else f"schema_version {version!r}"
            raise InputError(
                f"{path}: {found}; this joulebench reads manifest schema version {MANIFEST_SCHEMA_VERSION}"
            )
        return manifest

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_text(
            self.path / self.MANIFEST, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
        )

    def update_manifest(self, **sections: Any) -> dict[str, Any]:
        """Set top-level sections (a later stage adds its own without touching the others)."""
        manifest = self.manifest()
        manifest.update(sections)
        self.write_manifest(manifest)
        return manifest

    # --- plan and requests ------------------------------------------------------------------------

    def plan(self) -> Plan:
        return load_plan(self.path / self.PLAN)

    def compact(self, plan: Plan | None = None) -> Compacted:
        """Build requests.parquet from the log and the plan (after a run, or to recover a crashed one)."""
        if not self.log_path.is_file():
            raise InputError(f"{self.path}: no request log ({self.LOG}) to compact")
        result = compact_log(self.log_path, plan or self.plan())
        write_requests(result.frame, self.requests_path, result.anchor)
        counts = result.frame.loc[~result.frame["warmup"], "status"].value_counts()
        self.update_manifest(
            records={
                "rows": int((~result.frame["warmup"]).sum()),
                "warmup_rows": int(result.frame["warmup"].sum()),
                "status_counts": {str(k): int(v) for k, v in counts.items()},
                "recovered": result.recovered,
                "issues": result.issues,
            }
        )
        return result

    def requests(self) -> pd.DataFrame:
        """The request records; a folder left by a killed runner is recovered from its log first."""
        return self.read_requests()[0]

    def read_requests(self) -> tuple[pd.DataFrame, ClockAnchor]:
        if not self.requests_path.is_file():
            compacted = self.compact()
            return compacted.frame, compacted.anchor
        return read_requests(self.requests_path)


def utc_iso(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, timezone.utc).isoformat(timespec="microseconds")
