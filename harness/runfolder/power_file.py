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
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from foundation.atomic_write import atomic_write
from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, read_tagged, schema_of, write_tagged
from harness.power.samplelog import Session
from harness.power.series import EnergySeries, PowerData

POWER_FILE = "power.parquet"
RAW_SAMPLES_FILE = "power_samples.jsonl"  # the sidecar's samples as polled during the run
POWER_FORMAT = TaggedFormat(
    "power file", "joulebench.power", version=1,
    schema=schema_of({"gpu": (pa.string(), False), "t_ns": (pa.int64(), False),
                      "energy_j": (pa.float64(), False), "power_w": (pa.float64(), True)}),
)  # fmt: skip


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


def save_raw_samples(run_dir: str | os.PathLike[str], sessions: list[Session]) -> Path:
    """Write the sidecar sessions polled during the run as `power_samples.jsonl` (the sidecar's `--log`
    format, so `--sidecar FILE` reads it back)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as out:
            for session in sessions:
                out.writelines(session.lines())

    return atomic_write(Path(run_dir) / RAW_SAMPLES_FILE, write)
