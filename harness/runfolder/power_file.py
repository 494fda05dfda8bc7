"""`power.parquet`: the power samples a join used, in the run folder.

Long format, one row per sample, sorted by (gpu, t_ns):

| column | type | meaning |
|---|---|---|
| `gpu` | string | GPU index as the source labels it |
| `t_ns` | int64 | harness monotonic clock |
| `energy_j` | float64 | cumulative joules (resets already stitched) |
| `power_w` | float64 | instant power, NaN where unknown |

Header (Parquet metadata key `joulebench.power`): `{"schema_version": 1, "source", "clock", "issues",
"gpus": [{"gpu", "uuid", "name", "integrated", "source", "issues"}]}` — GPUs without samples are
listed there too, so a GPU that produced nothing is not silently forgotten.

`power_samples.jsonl`: the sidecar's rows as the run polled them, in its `--log` format, appended as
each page arrives (`RawSampleLog`) so that a killed run keeps them; `rebuild_power` makes
`power.parquet` from it afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, read_tagged, schema_of, write_tagged
from harness.clock import ClockAnchor
from harness.power.samplelog import SampleRows
from harness.power.series import EnergySeries, PowerData
from harness.power.sources import SidecarSource

POWER_FILE = "power.parquet"
RAW_SAMPLES_FILE = "power_samples.jsonl"  # the sidecar's samples as polled during the run
POWER_FORMAT = TaggedFormat(
    "power file", "joulebench.power", version=1,
    schema=schema_of({"gpu": (pa.string(), False), "t_ns": (pa.int64(), False),
                      "energy_j": (pa.float64(), False), "power_w": (pa.float64(), True)}),
)  # fmt: skip


def absent_samples_note(manifest: dict[str, Any]) -> str:
    """Why a run folder has no raw samples: a run whose source was not a sidecar never had them, while
    a sidecar run writes them as it polls (its manifest lists the sidecar from the start), so they
    were removed or left behind when the folder was copied (a committed result that keeps only its
    parquet files): the report must not pass that off as another power source."""
    if manifest.get("merged_from"):  # `joulebench merge` reads the shards' power, keeps no log of its own
        return f"no {RAW_SAMPLES_FILE}: a run merged from shards (each shard's folder has its own)"
    sources = (manifest.get("power") or {}).get("sources") or []
    if any(isinstance(s, dict) and s.get("kind") == "sidecar" for s in sources):
        return f"{RAW_SAMPLES_FILE} is missing from the run folder (a sidecar run writes one)"
    return f"no {RAW_SAMPLES_FILE}: the power source was not a sidecar"


def save_power(run_dir: str | os.PathLike[str], power: PowerData) -> Path:
    """Write `run_dir/power.parquet` atomically."""
    gpus, t, e, p = [], [], [], []
    for s in power.series:
        n = len(s.t_ns)
        gpus.append(np.full(n, s.gpu, dtype=object))
        t.append(s.t_ns)
        e.append(s.energy_j)
        p.append(s.power_w if s.power_w is not None else np.full(n, np.nan))
    table = pa.table(
        {
            "gpu": pa.array(np.concatenate(gpus) if gpus else [], type=pa.string()),
            "t_ns": pa.array(np.concatenate(t) if t else [], type=pa.int64()),
            "energy_j": pa.array(np.concatenate(e) if e else [], type=pa.float64()),
            "power_w": pa.array(np.concatenate(p) if p else [], type=pa.float64()),
        },
        schema=POWER_FORMAT.schema,
    )
    header = {
        "source": power.source,
        "clock": power.clock,
        "issues": list(power.issues),
        "gpus": [
            {
                "gpu": s.gpu,
                "uuid": s.uuid,
                "name": s.name,
                "integrated": s.integrated,
                "source": s.source,
                "issues": list(s.issues),
                "has_power": s.power_w is not None,
            }
            for s in power.series
        ],
    }
    return write_tagged(Path(run_dir) / POWER_FILE, table, POWER_FORMAT, header)


def load_power(run_dir: str | os.PathLike[str]) -> PowerData:
    """Read `run_dir/power.parquet` back into a `PowerData` (one-line InputError if unreadable)."""
    path = Path(run_dir) / POWER_FILE
    table, header = read_tagged(path, POWER_FORMAT)
    gpu = table.column("gpu")
    t = table.column("t_ns").to_numpy()
    e = table.column("energy_j").to_numpy()
    p = table.column("power_w").to_numpy(zero_copy_only=False)
    series = []
    try:
        for info in header.get("gpus", []):
            rows = np.asarray(pc.equal(gpu, str(info["gpu"])).fill_null(False), dtype=bool)
            order = np.argsort(t[rows], kind="stable")
            series.append(
                EnergySeries(
                    gpu=str(info["gpu"]),
                    t_ns=t[rows][order],
                    energy_j=e[rows][order],
                    power_w=p[rows][order] if info.get("has_power", True) else None,
                    uuid=info.get("uuid"),
                    name=info.get("name"),
                    integrated=bool(info.get("integrated", False)),
                    source=str(info.get("source", "")),
                    issues=list(info.get("issues", [])),
                )
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: power file header is malformed ({exc})") from None
    return PowerData(
        series=series,
        source=str(header.get("source", "")),
        clock=dict(header.get("clock") or {}),
        issues=list(header.get("issues", [])),
    )


class RawSampleLog:
    """`power_samples.jsonl`, written as the run polls the sidecar (a `SidecarSource.record` sink).

    Each page is one unbuffered `os.write` on an O_APPEND descriptor, the way requests.jsonl is
    written: a SIGKILL loses only what had not been polled yet (at most one poll period), and a torn
    last line is what a reader of the `--log` format skips. A session's header goes in once, before
    its first rows; `{"dropped": N}` where the sidecar's ring lost rows before they were polled. A
    write that fails stops the recording and keeps the reason (`error`): the rows stay in memory for
    power.parquet, and the manifest says the file is incomplete.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / RAW_SAMPLES_FILE
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
            self._fd: int | None = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot create the sample log ({exc.strerror})") from None
        self._header: dict[str, Any] | None = None
        self.error: str | None = None

    def __call__(self, header: dict[str, Any], rows: SampleRows, dropped: int) -> None:
        if self._fd is None:
            return
        lines = []
        if header != self._header:
            lines.append(json.dumps(header, separators=(",", ":")))
            self._header = header
        if dropped:
            lines.append(json.dumps({"dropped": dropped}))
        lines += (json.dumps(row, separators=(",", ":")) for row in rows.to_lists())
        data = memoryview(("\n".join(lines) + "\n").encode())
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            self.error = f"{self.path}: writing stopped ({exc.strerror}); the file is incomplete"
            with contextlib.suppress(OSError):
                self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def last_sample_ns(run_dir: str | os.PathLike[str], anchor: ClockAnchor) -> int | None:
    """The time of the latest reading in `power_samples.jsonl` on our clock (None: it holds none): where
    a run killed before its request log shows any time got to."""
    raw = SidecarSource(Path(run_dir) / RAW_SAMPLES_FILE, anchor=anchor).read()
    return max((int(s.t_ns[-1]) for s in raw.series if len(s.t_ns)), default=None)


def rebuild_power(
    run_dir: str | os.PathLike[str], anchor: ClockAnchor, start_ns: int, end_ns: int, gpus: list[str] | None
) -> PowerData:
    """`power.parquet` from `power_samples.jsonl` over [start_ns, end_ns] (a run killed before saving
    it): the sidecar's rows as far as the run polled them, of the run's `--gpus`, read as the power
    stage reads them."""
    raw = SidecarSource(Path(run_dir) / RAW_SAMPLES_FILE, anchor=anchor).read(start_ns, end_ns)
    data = raw.select_gpus(gpus, "sidecar")
    data.issues.insert(
        0,
        f"power rebuilt from {RAW_SAMPLES_FILE} after the run was killed: it holds the rows polled "
        "until then (about once a second)",
    )
    save_power(run_dir, data)
    return data
