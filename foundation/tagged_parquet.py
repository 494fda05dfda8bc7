"""Parquet files with a joulebench header: one JSON object under one schema-metadata key.

Every Parquet file joulebench writes (plan, requests, power, server metrics, energy) carries its own
header under `joulebench.<kind>`, with a `schema_version`. This is the one writer and the one reader
for them, so a missing, damaged or foreign file gets the same one-line message whatever it is:

    <path>: <what> not found
    <path>: cannot open the <what> (<why: a name too long, no permission, ...>)
    <path>: not a readable Parquet file (<first line of the reader's error>)
    <path>: no joulebench <what> header (Parquet metadata key 'joulebench.<kind>')
    <path>: <what> header is malformed (<why>)
    <path>: <what> schema version <v> is not supported (this joulebench reads <version>)
    <path>: <what> lacks column(s) <names>
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foundation.atomic_write import atomic_path, atomic_write
from foundation.errors import InputError

# Nullable pandas dtypes keep integer columns integral where they hold nulls.
_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(), pa.string(): pd.StringDtype()}


def schema_of(columns: Mapping[str, tuple[pa.DataType, bool]]) -> pa.Schema:
    """An Arrow schema from {column: (type, nullable)}, in the mapping's order."""
    return pa.schema([pa.field(name, kind, nullable=nullable) for name, (kind, nullable) in columns.items()])


@dataclass(frozen=True)
class TaggedFormat:
    """One kind of joulebench Parquet file, declared once: what messages call it, the metadata key of
    its header, the schema version this joulebench writes and reads, and its columns."""

    what: str  # "power file"
    key: str  # "joulebench.power"
    version: int
    schema: pa.Schema

    def with_header(self, header: dict[str, Any]) -> pa.Schema:
        """The schema carrying `header` (and the schema version) as JSON; NaN is refused: it is not JSON."""
        text = json.dumps({"schema_version": self.version, **header}, sort_keys=True, allow_nan=False)
        return self.schema.with_metadata({self.key.encode(): text.encode()})


def write_tagged(
    path: str | os.PathLike[str], table: pa.Table, kind: TaggedFormat, header: dict[str, Any]
) -> Path:
    """Write `table` (cast to the format's schema) with `header`, atomically: readers see the old file or
    the new one."""
    tagged = table.cast(kind.with_header(header))
    return atomic_write(path, lambda tmp: pq.write_table(tagged, tmp))


@contextmanager
def tagged_writer(
    path: str | os.PathLike[str], kind: TaggedFormat, header: dict[str, Any]
) -> Iterator[Callable[[pa.Table], None]]:
    """Write a file in row groups (bounded memory); it appears at `path` only when the block succeeds."""
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, kind.with_header(header)) as writer:
        yield writer.write_table


def read_tagged(
    path: str | os.PathLike[str], kind: TaggedFormat, *, filters: list[tuple[str, str, Any]] | None = None
) -> tuple[pa.Table, dict[str, Any]]:
    """The table and its header; one-line InputError (module docstring) for anything else."""
    path = Path(path)
    what = kind.what
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name too long, no permission, a loop of links
        raise InputError(f"{path}: cannot open the {what} ({exc.strerror})") from None
    if not is_file:
        raise InputError(f"{path}: {what} not found")
    try:
        # One open file: a writer that replaces the path meanwhile (atomically) cannot mix two files.
        # One thread: pyarrow's pool reading a Python file object could abort the process at exit
        # (`terminate called without an active exception`) after an error; the files are small.
        with path.open("rb") as source:
            table = pq.read_table(source, filters=filters, use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({first_line(exc)})") from None
    raw = (table.schema.metadata or {}).get(kind.key.encode())
    if raw is None:
        raise InputError(f"{path}: no joulebench {what} header (Parquet metadata key {kind.key!r})")
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{path}: {what} header is malformed ({exc})") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: {what} header is malformed (expected a JSON object)")
    found = header.get("schema_version")
    if found != kind.version:
        raise InputError(
            f"{path}: {what} schema version {found} is not supported (this joulebench reads {kind.version})"
        )
    missing = [c for c in kind.schema.names if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    return table, header


def nullable_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as pandas with nullable integer, boolean and string columns."""
    frame: pd.DataFrame = table.to_pandas(types_mapper=_NULLABLE.get)  # pyarrow ships no type information
    return frame


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
