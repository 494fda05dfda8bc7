"""`power.parquet`: the power samples a join used, in the run folder.

Long format, one row per sample, sorted by (gpu, t_ns):

| column | type | meaning |
|---|---|---|
| `gpu` | string | GPU index as the source labels it |
| `t_ns` | int64 | harness monotonic clock |
| `energy_j` | float64 | cumulative joules (resets already stitched) |
| `power_w` | float64 | instant power, NaN where unknown |

Parquet metadata key `joulebench.power` holds `{"schema_version": 1, "source", "clock", "issues",
"gpus": [{"gpu", "uuid", "name", "integrated", "source", "issues"}]}` — GPUs without samples are
listed there too, so a GPU that produced nothing is not silently forgotten.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harness.power.series import EnergySeries, PowerData
from traffic.atomicfile import atomic_write
from traffic.errors import InputError

POWER_FILE = "power.parquet"
POWER_SCHEMA_VERSION = 1
_KEY = b"joulebench.power"
_SCHEMA = pa.schema(
    [
        pa.field("gpu", pa.string(), nullable=False),
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("energy_j", pa.float64(), nullable=False),
        pa.field("power_w", pa.float64()),
    ]
)


def save_power(run_dir: str | os.PathLike, power: PowerData) -> Path:
    """Write `run_dir/power.parquet` atomically."""
    path = Path(run_dir) / POWER_FILE
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
        schema=_SCHEMA,
    )
    meta = {
        "schema_version": POWER_SCHEMA_VERSION,
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
    table = table.replace_schema_metadata({_KEY: json.dumps(meta, allow_nan=False).encode()})
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def load_power(run_dir: str | os.PathLike) -> PowerData:
    """Read `run_dir/power.parquet` back into a `PowerData` (one-line InputError if unreadable)."""
    path = Path(run_dir) / POWER_FILE
    if not path.is_file():
        raise InputError(f"{path}: power file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    raw = (table.schema.metadata or {}).get(_KEY)
    if raw is None:
        raise InputError(f"{path}: no joulebench power metadata (key {_KEY.decode()!r})")
    try:
        meta = json.loads(raw)
        version = int(meta.get("schema_version", -1))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: power metadata is malformed ({exc})") from None
    if version != POWER_SCHEMA_VERSION:
        raise InputError(
            f"{path}: power schema version {version} is not supported (reads {POWER_SCHEMA_VERSION})"
        )
    missing = [f.name for f in _SCHEMA if f.name not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    gpu = table.column("gpu")
    t = table.column("t_ns").to_numpy()
    e = table.column("energy_j").to_numpy()
    p = table.column("power_w").to_numpy(zero_copy_only=False)
    series = []
    try:
        for info in meta.get("gpus", []):
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
        raise InputError(f"{path}: {exc}") from None
    return PowerData(
        series=series,
        source=str(meta.get("source", "")),
        clock=dict(meta.get("clock") or {}),
        issues=list(meta.get("issues", [])),
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
