"""The report files of a run folder: `summary.json`, `energy.parquet` and `report.html`.

`energy.parquet` has one row per request (`ENERGY_FORMAT`; the times stay in
requests.parquet) and the header (Parquet metadata key `joulebench.energy`) `{"schema_version": 1,
"method"}`. `summary.json` is documented in docs/energy.md; `report.html` is a finished page.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from foundation.atomic_write import atomic_text
from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, read_tagged, schema_of, write_tagged

SUMMARY_FILE = "summary.json"
ENERGY_FILE = "energy.parquet"
REPORT_FILE = "report.html"
_ENERGY_VALUES = ("energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j", "coverage")
ENERGY_FORMAT = TaggedFormat(
    "energy file",
    "joulebench.energy",
    version=1,
    schema=schema_of(
        {
            "request_id": (pa.int64(), True),
            "arm": (pa.string(), True),
            "warmup": (pa.bool_(), True),
            "status": (pa.string(), True),
            "prompt_tokens": (pa.int64(), True),
            "output_tokens": (pa.int64(), True),
            **{name: (pa.float64(), True) for name in _ENERGY_VALUES},
            "method": (pa.string(), True),
        }
    ),
)


def write_summary(run_dir: str | os.PathLike[str], doc: dict[str, Any]) -> Path:
    return atomic_text(Path(run_dir) / SUMMARY_FILE, json.dumps(doc, indent=2) + "\n")


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: not found (run `joulebench report {run_dir}` first)") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or "schema_version" not in doc:
        raise InputError(f"{path}: not a joulebench summary")
    return doc


def write_energy(run_dir: str | os.PathLike[str], frame: pd.DataFrame, method: str) -> Path:
    """Per-request energies (`frame` holds the columns the join made) and the method that made them."""

    def col(name: str) -> pd.Series:
        return frame[name] if name in frame.columns else pd.Series([None] * len(frame))

    table = pa.table(
        {
            "request_id": pa.array(np.asarray(col("request_id"), dtype=np.int64)),
            "arm": pa.array(col("arm").astype(str).tolist(), type=pa.string()),
            "warmup": pa.array(col("warmup").fillna(False).astype(bool).tolist(), type=pa.bool_()),
            "status": pa.array(col("status").astype(str).tolist(), type=pa.string()),
            "prompt_tokens": pa.array(pd.to_numeric(col("prompt_tokens")).astype("Int64"), type=pa.int64()),
            "output_tokens": pa.array(pd.to_numeric(col("output_tokens")).astype("Int64"), type=pa.int64()),
            **{c: pa.array(np.asarray(col(c), dtype=np.float64)) for c in _ENERGY_VALUES},
            "method": pa.array([method] * len(frame), type=pa.string()),
        }
    )
    return write_tagged(Path(run_dir) / ENERGY_FILE, table, ENERGY_FORMAT, {"method": method})


def read_energy(run_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, str]:
    """Per-request energies and the method that made them."""
    table, header = read_tagged(Path(run_dir) / ENERGY_FILE, ENERGY_FORMAT)
    return table.to_pandas(), str(header.get("method", ""))


def write_report_html(run_dir: str | os.PathLike[str], html: str) -> Path:
    return atomic_text(Path(run_dir) / REPORT_FILE, html)
