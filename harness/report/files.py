"""The report files of a run folder: `summary.json`, `energy.parquet` and `report.html`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness import __version__
from harness.energy import Analysis
from traffic.atomicfile import atomic_text, atomic_write
from traffic.errors import InputError

SUMMARY_FILE = "summary.json"
ENERGY_FILE = "energy.parquet"
REPORT_FILE = "report.html"
ENERGY_SCHEMA_VERSION = 1
_ENERGY_KEY = b"joulebench.energy"
# Per-request columns of energy.parquet (the times stay in requests.parquet).
ENERGY_FILE_COLUMNS = (
    "request_id", "arm", "warmup", "status", "prompt_tokens", "output_tokens",
    "energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j", "coverage", "method",
)  # fmt: skip


@dataclass(frozen=True)
class ReportPaths:
    summary: Path
    energy: Path
    html: Path


def summary_document(analysis: Analysis, run_id: str) -> dict:
    """The summary.json document: the analysis summary plus where and when it was made."""
    return {
        "run_id": run_id,
        "generated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "joulebench": __version__,
        **analysis.summary,
    }


def write_run_reports(
    run_dir: str | os.PathLike, analysis: Analysis, run_id: str | None = None
) -> ReportPaths:
    """Write summary.json, energy.parquet and report.html into `run_dir` (atomically, each)."""
    from harness.measure.server_metrics import server_load

    from .html import render_html  # matplotlib is imported only when a report is drawn

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    doc = summary_document(analysis, run_id or run_dir.name)
    summary = atomic_text(run_dir / SUMMARY_FILE, json.dumps(doc, indent=2) + "\n")
    energy = atomic_write(run_dir / ENERGY_FILE, lambda p: _write_energy(p, analysis))
    load = server_load(run_dir)  # requests running/waiting from the server's metrics, if scraped
    html = atomic_write(run_dir / REPORT_FILE, lambda p: Path(p).write_text(render_html(doc, analysis, load)))
    return ReportPaths(summary=summary, energy=energy, html=html)


def read_summary(run_dir: str | os.PathLike) -> dict:
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


def read_energy(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, str]:
    """Per-request energies and the method that made them."""
    path = Path(run_dir) / ENERGY_FILE
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError(f"{path}: not found") from None
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{path}: not a readable Parquet file ({str(exc).strip().splitlines()[0]})"
        ) from None
    raw = (table.schema.metadata or {}).get(_ENERGY_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("schema_version") != ENERGY_SCHEMA_VERSION:
        raise InputError(f"{path}: not a joulebench energy file of schema version {ENERGY_SCHEMA_VERSION}")
    missing = [c for c in ENERGY_FILE_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    return table.to_pandas(), str(meta.get("method", ""))


def _write_energy(path: str, analysis: Analysis) -> None:
    frame = analysis.requests
    cols = {}
    for c in ENERGY_FILE_COLUMNS:
        cols[c] = frame[c] if c in frame.columns else pd.Series([None] * len(frame))
    table = pa.table(
        {
            "request_id": pa.array(np.asarray(cols["request_id"], dtype=np.int64)),
            "arm": pa.array(cols["arm"].astype(str).tolist(), type=pa.string()),
            "warmup": pa.array(cols["warmup"].fillna(False).astype(bool).tolist(), type=pa.bool_()),
            "status": pa.array(cols["status"].astype(str).tolist(), type=pa.string()),
            "prompt_tokens": pa.array(pd.to_numeric(cols["prompt_tokens"]).astype("Int64"), type=pa.int64()),
            "output_tokens": pa.array(pd.to_numeric(cols["output_tokens"]).astype("Int64"), type=pa.int64()),
            **{
                c: pa.array(np.asarray(cols[c], dtype=np.float64))
                for c in ("energy_j", "prefill_j", "decode_j", "idle_j", "dynamic_j", "coverage")
            },
            "method": pa.array([analysis.method] * len(frame), type=pa.string()),
        }
    )
    meta = {"schema_version": ENERGY_SCHEMA_VERSION, "method": analysis.method}
    pq.write_table(table.replace_schema_metadata({_ENERGY_KEY: json.dumps(meta).encode()}), path)
