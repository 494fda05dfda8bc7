"""The run folder `runs/<run_id>/` and its `manifest.json`.

    plan.parquet (+ .json)   the plan, exactly as executed (hash-verified on read)
    requests.jsonl           the append-only request log, written during the run
    requests.parquet         one row per planned request, compacted from the log and the plan
    manifest.json            what produced the run: versions, command line (no secrets), host, target,
                             clock anchors, plan hash, shard, arm windows, outcome counts

Later stages add their own files (power.parquet, summary.json, report.html) and manifest sections.
Reading a folder whose run died recovers it automatically: requests.parquet from the request log, and
power.parquet from the sidecar's samples the run appended to power_samples.jsonl as it polled them.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from foundation.atomic_write import atomic_text
from foundation.errors import InputError
from harness.clock import ClockAnchor
from harness.power.gpu_backend import counter_period_s, sensor_delay_s
from harness.power.series import PowerData
from harness.runfolder.power_file import POWER_FILE, RAW_SAMPLES_FILE, last_sample_ns, rebuild_power
from harness.runfolder.request_log import Compacted, LogContents, compact_log, read_log
from harness.runfolder.requests_file import read_requests, write_requests
from traffic.plan import Plan, load_plan, save_plan

MANIFEST_SCHEMA_VERSION = 1


@dataclass
class PowerRecovery:
    """What recovering the power of a run that died before saving it found."""

    start_ns: int  # the window the run's log (and idle windows) show, harness monotonic clock
    end_ns: int
    data: PowerData | None = None  # rebuilt from power_samples.jsonl; None when nothing was saved
    notes: list[str] = field(default_factory=list)  # what the user must know (sources not saved, ...)
    why: str = "none of its power sources was saved during the run"  # why `data` is None


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

    @staticmethod
    def check_out(out_dir: str | os.PathLike[str]) -> None:
        """Refuse an `--out` that cannot be (or become) a folder to create runs in, without creating
        anything: checked before a run starts its servers, so bad input costs nothing."""
        out = Path(out_dir)
        for candidate in (out, *out.absolute().parents):
            try:
                found = candidate.stat()
            except FileNotFoundError:
                continue  # made by `create`, as are its missing parents
            except OSError as exc:  # under a file, a name too long, a loop of links, no permission
                raise InputError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
            if not stat.S_ISDIR(found.st_mode):
                raise InputError(f"--out {out}: cannot create the folder ({candidate} is not a folder)")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise InputError(
                    f"--out {out}: cannot create the folder (no permission to write in {candidate})"
                )
            return

    @staticmethod
    def is_folder(path: Path) -> bool:
        """Whether `path` is a folder; one line (InputError) where the name cannot even be looked up."""
        try:
            return path.is_dir()
        except OSError as exc:  # a name too long, no permission, a loop of links
            raise InputError(f"{path}: cannot open the run folder ({exc.strerror})") from None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        path = Path(path)
        try:
            found = (path / cls.MANIFEST).is_file() and (path / cls.PLAN).is_file()
        except OSError as exc:  # a name too long, no permission, a loop of links: no folder to read
            raise InputError(f"{path}: cannot open the run folder ({exc.strerror})") from None
        if not found:
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
        """The request records and their anchor; a killed run's requests and power are recovered first."""
        if not self.requests_path.is_file():
            compacted = self.compact()
            self.recover_power()
            return compacted.frame, compacted.anchor
        self.recover_power()
        return read_requests(self.requests_path)

    # --- power of a run that died before saving it ------------------------------------------------

    def recover_power(self) -> PowerRecovery | None:
        """Rebuild power.parquet after a run that died before its power stage saved it (None: nothing to
        do: it is there, or the run read no power). From the sidecar's samples appended during the run,
        over the window the request log shows; Prometheus and dcgm sources were only read at the end, so
        for them there is nothing to rebuild, and the notes say which to re-read and over which window."""
        if (self.path / POWER_FILE).is_file() or not self.log_path.is_file():
            return None
        manifest = self.manifest()
        power = _section(manifest, "power")
        sources = [s for s in power.get("sources") or [] if isinstance(s, dict)]
        raw = self.path / RAW_SAMPLES_FILE
        if not sources and not raw.is_file():
            return None
        log = read_log(self.log_path)
        try:
            anchor = ClockAnchor.from_dict(log.header["anchor"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{self.log_path}: request-log header is malformed ({exc})") from None
        window = _run_window(manifest, log, self.path / self.MANIFEST, anchor.mono_ns)
        if window is None:  # killed before anything was measured: no window to rebuild
            return None
        start, end = window
        polled = raw.is_file() and raw.stat().st_size > 0  # the power stage makes it, then polls into it
        if end is None and polled:  # killed in the idle capture before the run: up to its last sample
            end = last_sample_ns(self.path, anchor)
        if end is None or end <= start or (raw.is_file() and not polled):
            why = (
                "before it polled an energy reading taken after its start"
                if raw.is_file()
                else "in its idle capture, before the plan"
            )
            return PowerRecovery(start, start, why=f"the run was killed {why}: there is nothing to rebuild")
        found = PowerRecovery(start, end)
        span = f"{utc_iso(anchor.to_epoch_ns(start))} to {utc_iso(anchor.to_epoch_ns(end))}"
        for source in sources:
            if source.get("kind") != "sidecar":
                found.notes.append(
                    f"power from {source.get('kind')} {source.get('location')} was not saved during the run "
                    f"(it is read at the end): re-read it over {span} while it still holds that data"
                )
        if not raw.is_file():
            return found
        gpus = power.get("gpus")
        found.data = rebuild_power(self.path, anchor, start, end, [str(g) for g in gpus] if gpus else None)
        primary = power.get("primary") or "sidecar"
        if primary != "sidecar":
            found.notes.append(f"the run's primary power source was {primary}; this power is the sidecar's")
        backend = str(next((s.get("backend") for s in sources if s.get("kind") == "sidecar"), "") or "")
        energy = _section(manifest, "energy")
        delay = sensor_delay_s(backend)
        declared = {} if delay is None else {"sensor_delay_s": delay}
        self.update_manifest(
            power={
                **power,
                "primary": "sidecar",
                "window": {"start_ns": start, "end_ns": end},
                "recovered": {"from": RAW_SAMPLES_FILE, "primary_was": primary},
            },
            energy={"counter_period_s": counter_period_s(backend), **declared, **energy},
        )
        return found


def _section(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    section = manifest.get(key)
    return section if isinstance(section, dict) else {}


def _run_window(
    manifest: dict[str, Any], log: LogContents, where: Path, anchor_ns: int
) -> tuple[int, int | None] | None:
    """The span the power stage would have read: the idle windows and the run between them, from the
    manifest where the run got to write them, else from what the request log shows. A run killed before
    either shows a time (in its idle capture before the plan) starts at its clock anchor (`anchor_ns`,
    taken before the capture) and has no end here (None)."""

    def ns(section: Any, key: str) -> list[int]:
        value = section.get(key) if isinstance(section, dict) else None
        if value is None:
            return []
        if not isinstance(value, int):
            raise InputError(f"{where}: {key}: expected nanoseconds, got {value!r}")
        return [value]

    idle, run = _section(manifest, "idle"), _section(manifest, "run")
    pre, post = idle.get("pre"), idle.get("post")
    arms = [t for arm in log.arms.values() for t in arm.values()]
    starts = [*ns(pre, "start_ns"), *ns(run, "start_ns"), *arms, *log.sent.values()]
    # The idle window before the run ends where the run's own times begin: a run killed in its warm-up,
    # before the log showed a time, still has that window's power.
    ends = [
        *ns(pre, "end_ns"),
        *ns(post, "end_ns"),
        *ns(run, "end_ns"),
        *arms,
        *([log.last_ns] if log.last_ns else []),
    ]
    if not starts and not ends:
        return anchor_ns, None
    if not starts or not ends or max(ends) <= min(starts):
        return None
    return min(starts), max(ends)


def utc_iso(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns / 1e9, timezone.utc).isoformat(timespec="microseconds")
