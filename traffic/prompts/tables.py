"""Reading prompt files into a column-oriented `Table`: JSONL, JSON (a list of objects), CSV, Parquet.

A JSONL file may open with a provenance header: a first record whose keys all start with `_`
(the AI Energy Score set does this). It is not a prompt: it is kept in the plan's prompt_source.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from foundation.errors import InputError


@dataclass
class Table:
    origin: str  # file path or hf:NAME, for messages
    names: list[str]  # column names
    rows: int
    column: Callable[[str], list[Any]]  # the values of one column (None where a record lacks it)
    where: Callable[[int], str]  # "line 12" / "row 12": where row i came from
    provenance: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def files_sha256(paths: Iterable[Path]) -> str:
    """`sha256:<hex>` of the files' bytes, in order (streamed: prompt files can be large)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def read_table(path: Path, kind: str) -> Table:
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "json":
        return _read_json(path)
    if kind == "csv":
        return _read_csv(path)
    if kind == "parquet":
        return _read_parquet(path)
    raise ValueError(f"unknown table kind {kind!r}")


def _records_table(origin: str, records: list[dict[str, Any]], where: Callable[[int], str]) -> Table:
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return Table(
        origin=origin,
        names=list(names),
        rows=len(records),
        column=lambda name: [record.get(name) for record in records],
        where=where,
    )


def _read_jsonl(path: Path) -> Table:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    provenance = None
    with _open_text(path) as handle:
        for number, line in _numbered_lines(path, handle):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}: line {number}: not valid JSON") from None
            if not isinstance(record, dict):
                raise InputError(f"{path}: line {number}: expected a JSON object")
            if "\\u" in line:  # only a \uXXXX escape can smuggle in a lone surrogate
                _check_unicode(f"{path}: line {number}", record)
            if not records and provenance is None and record and all(k.startswith("_") for k in record):
                provenance = record
                continue
            records.append(record)
            lines.append(number)
    table = _records_table(str(path), records, lambda i: f"line {lines[i]}")
    table.provenance = provenance
    return table


def _read_json(path: Path) -> Table:
    try:
        with _open_text(path) as handle:
            data = json.load(handle)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise InputError(f"{path}: expected a JSON list of objects")
    for i, record in enumerate(data):
        _check_unicode(f"{path}: item {i}", record)
    return _records_table(str(path), data, lambda i: f"item {i}")


def _read_csv(path: Path) -> Table:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from None
    return Table(
        origin=str(path),
        names=[str(c) for c in frame.columns],
        rows=len(frame),
        column=lambda name: frame[name].tolist(),
        where=lambda i: f"row {i + 1}",
    )


def _read_parquet(path: Path) -> Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    return Table(
        origin=str(path),
        names=table.column_names,
        rows=table.num_rows,
        column=lambda name: table.column(name).to_pylist(),
        where=lambda i: f"row {i}",
    )


def _check_unicode(where: str, record: dict[str, Any]) -> None:
    """Refuse text that cannot be written as UTF-8: a lone surrogate from an escape such as \\ud800."""
    bad = _lone_surrogate(record)
    if bad is not None:
        key, char = bad
        key = key.encode("utf-8", "backslashreplace").decode("utf-8")  # a key may hold one too
        raise InputError(
            f"{where}: {key}: holds a lone surrogate (\\u{ord(char):04x}), which is not valid Unicode text"
        )


def _lone_surrogate(value: Any, key: str = "") -> tuple[str, str] | None:
    """The first (key path, character) where `value` holds a surrogate code point; None if it has none."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return key or "value", value[exc.start]
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{key}.{k}" if key else str(k)
            found = _lone_surrogate(k, f"{path} (the key)") or _lone_surrogate(v, path)
            if found is not None:
                return found
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{key}[{i}]")
            if found is not None:
                return found
    return None


def _numbered_lines(path: Path, handle: Iterable[str]) -> Iterator[tuple[int, str]]:
    try:
        yield from enumerate(handle, start=1)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def _open_text(path: Path) -> TextIO:
    try:
        return path.open(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
