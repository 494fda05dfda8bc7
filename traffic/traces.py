"""Arrival traces to replay: Azure LLM inference CSV, Mooncake JSONL, and generic CSV.

A `Trace` holds arrival times in seconds after the trace's first request (sorted), and the input and
output token counts when the file has them. `replay_offsets` cuts a window out of it and scales it
into plan offsets. Any malformed row is an `InputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from foundation.errors import InputError

_TIME_COLUMNS = ("timestamp", "time", "arrival_time", "arrival", "t")
_INPUT_COLUMNS = ("input_tokens", "input_length", "prompt_tokens", "contexttokens", "context_tokens")
_OUTPUT_COLUMNS = (
    "output_tokens",
    "output_length",
    "completion_tokens",
    "generatedtokens",
    "generated_tokens",
)
_UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


@dataclass(frozen=True)
class Trace:
    path: str
    format: str  # azure | mooncake | csv
    sha256: str
    times_s: np.ndarray  # seconds after the first request, non-decreasing
    input_tokens: np.ndarray | None = None
    output_tokens: np.ndarray | None = None

    @property
    def has_lengths(self) -> bool:
        return self.input_tokens is not None and self.output_tokens is not None


def load_trace(
    path: str | Path,
    format: str = "auto",
    *,
    time_col: str | None = None,
    unit: str = "auto",
    input_col: str | None = None,
    output_col: str | None = None,
) -> Trace:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: trace file not found")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if format == "auto":
        format = _detect_format(path)
    inputs: np.ndarray | None
    outputs: np.ndarray | None
    if format == "mooncake":
        times, inputs, outputs = _read_mooncake(path)
    else:
        table = _read_csv(path)
        if format == "azure":
            time_col, unit, input_col, output_col = (
                "TIMESTAMP",
                "datetime",
                "ContextTokens",
                "GeneratedTokens",
            )
        times, inputs, outputs = _from_table(path, table, time_col, unit, input_col, output_col)
    if len(times) == 0:
        raise InputError(f"{path}: trace has no requests")
    order = np.argsort(times, kind="stable")  # arrival order is time order, whatever the file order
    times = times[order] - times[order[0]]
    inputs = None if inputs is None else inputs[order]
    outputs = None if outputs is None else outputs[order]
    return Trace(str(path), format, f"sha256:{digest}", times, inputs, outputs)


def window_indices(trace: Trace, start: float = 0.0, end: float | None = None) -> np.ndarray:
    """Rows with start <= t < end (trace seconds), in arrival order."""
    mask = trace.times_s >= start
    if end is not None:
        mask &= trace.times_s < end
    rows = np.flatnonzero(mask)
    if len(rows) == 0:
        bound = f"{end:g}" if end is not None else "end"
        raise InputError(f"{trace.path}: the window [{start:g}, {bound}) s holds no requests")
    return rows


def window_rate(trace: Trace, rows: np.ndarray) -> float:
    """Mean arrival rate of the rows (1 / mean gap), in trace time."""
    span = trace.times_s[rows[-1]] - trace.times_s[rows[0]]
    if len(rows) < 2 or span <= 0:
        raise InputError(f"{trace.path}: the window has too few distinct arrival times to set a rate")
    # Indexing an untyped-dtype array gives Any; the rate is a numpy float64, a float subclass.
    rate: float = (len(rows) - 1) / span
    return rate


def replay_offsets(
    trace: Trace,
    time_scale: float,
    start: float = 0.0,
    end: float | None = None,
    n: int | None = None,
    duration: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, trace row indices): offset = (t - start) * time_scale, cut to n and offset < duration."""
    rows = window_indices(trace, start, end)
    offsets = (trace.times_s[rows] - start) * time_scale
    keep = np.ones(len(rows), dtype=bool)
    if duration is not None:
        keep &= offsets < duration
    offsets, rows = offsets[keep], rows[keep]
    if n is not None:
        offsets, rows = offsets[:n], rows[:n]
    if len(rows) == 0:
        raise InputError(f"{trace.path}: no trace request falls within the first {duration:g} s of the plan")
    return offsets, rows


def _detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "mooncake"
    header = path.open(encoding="utf-8", errors="replace").readline().strip().split(",")
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= set(header):
        return "azure"
    return "csv"


def _read_csv(path: Path) -> pd.DataFrame:
    """The trace's rows as text, indexed by their line in the file (the header is line 1)."""
    try:
        table = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable CSV trace ({str(exc).splitlines()[0]})") from None
    # Blank lines are read as rows, so that the index counts them, and dropped here, keeping the index.
    table.index = table.index + 2
    blank = table.fillna("").apply(lambda column: column.str.strip().eq("")).all(axis=1)
    kept: pd.DataFrame = table[~blank]
    return kept


def _from_table(
    path: Path,
    table: pd.DataFrame,
    time_col: str | None,
    unit: str,
    input_col: str | None,
    output_col: str | None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    time_col = _column(path, table, time_col, _TIME_COLUMNS, "time")
    assert time_col is not None
    input_col = _column(path, table, input_col, _INPUT_COLUMNS, None)
    output_col = _column(path, table, output_col, _OUTPUT_COLUMNS, None)
    times = _parse_times(path, table[time_col], unit, time_col)
    inputs = _parse_tokens(path, table[input_col], input_col) if input_col else None
    outputs = _parse_tokens(path, table[output_col], output_col) if output_col else None
    return times, inputs, outputs


def _column(
    path: Path, table: pd.DataFrame, given: str | None, candidates: tuple[str, ...], required: str | None
) -> str | None:
    if given is not None:
        if given not in table.columns:
            raise InputError(f"{path}: column {given!r} not found (columns: {', '.join(table.columns)})")
        return given
    lowered = {c.lower(): c for c in table.columns}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise InputError(
            f"{path}: no {required} column (columns: {', '.join(table.columns)}); set time_col=COLUMN"
        )
    return None


def _parse_times(path: Path, values: pd.Series, unit: str, column: str) -> NDArray[np.float64]:
    numbers = pd.to_numeric(values, errors="coerce")
    if unit == "auto":
        # Dates if any value that is not a number is a date: a blank or a "nan" among numbers does not
        # decide the unit, it is reported as what it is, on its own line.
        others = values[numbers.isna()]
        dates = pd.to_datetime(others, format="ISO8601", errors="coerce").notna().any()
        unit = "datetime" if dates else "s"
    if unit == "datetime":
        stamps = pd.to_datetime(values, format="ISO8601", errors="coerce")
        _fail_on(path, stamps.isna().to_numpy(), values, column, "not a timestamp")
        # Integer nanoseconds keep every digit (Azure writes 7 fractional digits).
        ns = stamps.astype("datetime64[ns]").astype("int64").to_numpy()
        # int64 / float is float64; the stubs lose the dtype of an integer array's arithmetic.
        seconds: NDArray[np.float64] = (ns - ns.min()) / 1e9
        return seconds
    _fail_on(path, ~np.isfinite(numbers.to_numpy(dtype=float)), values, column, "not a number")
    return numbers.to_numpy(dtype=float) * _UNIT_SECONDS[unit]


def _parse_tokens(path: Path, values: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(numbers) | (numbers < 0) | (np.round(numbers) != numbers)
    _fail_on(path, bad, values, column, "not a non-negative integer")
    return numbers.astype(np.int64)


def _fail_on(path: Path, bad: np.ndarray, values: pd.Series, column: str, what: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        line, value = values.index[row], values.iloc[row]  # the index is the line number (_read_csv)
        if not str(value).strip():
            raise InputError(f"{path}: line {line}: {column} is empty (expected {what.removeprefix('not ')})")
        raise InputError(f"{path}: line {line}: {column} {value!r} is {what}")


def _read_mooncake(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    times: list[float] = []
    inputs: list[int] = []
    outputs: list[int] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                t, i, o = record["timestamp"], record["input_length"], record["output_length"]
            except json.JSONDecodeError:
                raise InputError(f"{path}: line {number}: not valid JSON") from None
            except (KeyError, TypeError) as exc:
                raise InputError(
                    f"{path}: line {number}: Mooncake record needs timestamp, input_length, output_length "
                    f"(missing {exc})"
                ) from None
            for name, value in (("timestamp", t), ("input_length", i), ("output_length", o)):
                integral = name != "timestamp"
                if not _non_negative_number(value, integral):
                    what = "a non-negative integer" if integral else "a non-negative number"
                    raise InputError(f"{path}: line {number}: {name} {value!r} is not {what}")
            times.append(t / 1000.0)  # Mooncake timestamps are milliseconds
            inputs.append(int(i))
            outputs.append(int(o))
    return np.asarray(times, dtype=float), np.asarray(inputs, np.int64), np.asarray(outputs, np.int64)


def _non_negative_number(value: object, integral: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if not np.isfinite(value) or value < 0:
        return False
    return not integral or float(value).is_integer()
