"""`requests.parquet`: one row per planned request (columns: `harness.records.RECORD_COLUMNS`).

Header (Parquet metadata key `joulebench.records`): `{"schema_version": 1, "anchor": ClockAnchor}`,
the anchor that maps the file's monotonic times to epoch time. A file written before shaped arms
existed lacks `arrived_ns`, `hold_ns` and `arrived_epoch_ns`: it reads with them, as unshaped
(`harness.records.unshaped_columns`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa

from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, read_tagged, write_tagged
from harness.clock import ClockAnchor
from harness.records import (
    ADDED_COLUMNS,
    RECORD_COLUMNS,
    RECORDS_SCHEMA,
    RECORDS_SCHEMA_VERSION,
    records_pandas,
    unshaped_columns,
)

REQUESTS_FORMAT = TaggedFormat(
    "request records", "joulebench.records", RECORDS_SCHEMA_VERSION, RECORDS_SCHEMA
)
# What a readable file must have: every column but those an older file may lack.
_READABLE = TaggedFormat(
    REQUESTS_FORMAT.what,
    REQUESTS_FORMAT.key,
    RECORDS_SCHEMA_VERSION,
    pa.schema([f for f in RECORDS_SCHEMA if f.name not in ADDED_COLUMNS]),
)


def write_requests(frame: pd.DataFrame, path: str | os.PathLike[str], anchor: ClockAnchor) -> Path:
    """Write the frame atomically, with its clock anchor in the header."""
    table = pa.Table.from_pandas(frame[list(RECORD_COLUMNS)], schema=RECORDS_SCHEMA, preserve_index=False)
    return write_tagged(path, table, REQUESTS_FORMAT, {"anchor": anchor.as_dict()})


def read_requests(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, ClockAnchor]:
    table, header = read_tagged(path, _READABLE)
    try:
        anchor = ClockAnchor.from_dict(header["anchor"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: request records header has no usable clock anchor ({exc})") from None
    return records_pandas(unshaped_columns(table)), anchor
