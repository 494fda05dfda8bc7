"""The high-rate sample log: a bounded in-memory ring, its compact JSON form, and its file form.

Prometheus scrapes are coarse (1 s), so the sidecar keeps every sample in a ring buffer that the
harness reads over HTTP (`/samples?since=SEQ`) and, with `--log FILE`, appends it to a file. Both
forms carry the same rows:

    columns: seq, t_ns, gpu, kind, power_w, power_avg_w, energy_j, flags

- `seq`: row number since the sidecar started (a cursor: ask for `since=<next>` to continue);
- `t_ns`: the sidecar's `time.monotonic_ns()` when the value was read; map it with the `clock`
  anchor (epoch ns, monotonic ns, boot_id) sent with every response and file session;
- `kind`: "p" = power row (`power_w` instant, `power_avg_w` NVML's 1 s average or null),
  "e" = energy row (`energy_j` cumulative joules, counter resets already stitched by the sidecar),
  "s" = state row (the GPU's telemetry, read with the state loop about once a second: five more
  values after `flags`, named by the header's `state_columns`: SM clock Hz, memory clock Hz,
  temperature °C, enforced power limit W, NVML clock-event (throttle) reason bitmask; null where the
  GPU does not report one), "h" = host energy row (`gpu` is the index of a RAPL domain of the
  header's `host_energy` list, `energy_j` its cumulative joules with wraparound stitched; see
  rapl.py). Only schema version 2 may hold "s" and "h" rows (below).
- `flags`: bit 1 = a counter reset was stitched just before this energy row, bit 2 = `power_w` comes
  from `nvmlDeviceGetPowerUsage` (a lagging 1 s average), bit 4 = `energy_j` integrates power (the
  GPU has no hardware counter), bit 64 = the counter jumped to another level just before this energy
  row (not a restart from zero): the series continues from its last value, the energy between the
  two readings is missing.
- A row with bit 8, 16 or 32 is a *rejected reading*: it holds no value (nulls), only when and why a
  reading of that GPU and kind was refused, so that a reader learns of it: 8 = not a number, infinite
  or negative; 16 = implausible (power above three times the GPU's limit, a counter that rose faster
  than that); 32 = a lone counter drop (a bad read such as one 0 between two consistent readings, or
  a drop still unconfirmed when the sidecar stopped); 128 = the read itself failed (an NVML error such
  as a lost GPU; the simulated GPU's `error`). Readers of schema version 1 that predate these bits skip
  such rows as they skip any null value.

The file is JSON lines: a header object (with "columns") opens each sidecar session, then one JSON
array per row; `{"dropped": N, "since": SEQ}` marks rows the writer lost because the ring wrapped.

Schema versions: 1 = power and energy rows only; 2 = also state and host energy rows (their header
adds `state_columns`, `state_interval_s`, `host_energy`). A version-1 reader checks the version before
any row, so it refuses a version-2 file or page on its header line rather than deep inside with a row
it cannot place; `/samples` sends version 1 (no "s", "h" rows) unless the client asks (`state=1`).
Readers here read both.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from foundation.errors import InputError
from harness.power.series import STATE_COLUMNS

SAMPLES_SCHEMA_VERSION = 2  # what a writer of every row kind writes (the --log file, `/samples?state=1`)
BASE_SCHEMA_VERSION = 1  # power and energy rows only: what older readers understand
READABLE_SCHEMA_VERSIONS = (BASE_SCHEMA_VERSION, SAMPLES_SCHEMA_VERSION)
# Header keys that describe the rows only version 2 holds.
TELEMETRY_HEADER_KEYS = ("state_columns", "state_interval_s", "host_energy")
FORMAT = "joulebench-samples"
COLUMNS = ("seq", "t_ns", "gpu", "kind", "power_w", "power_avg_w", "energy_j", "flags")
KIND_POWER = "p"
KIND_ENERGY = "e"
KIND_STATE = "s"
KIND_HOST = "h"
FLAG_RESET = 1
FLAG_POWER_USAGE = 2
FLAG_INTEGRATED = 4
FLAG_INVALID = 8
FLAG_IMPLAUSIBLE = 16
FLAG_GLITCH = 32
FLAG_JUMP = 64
FLAG_FAILED = 128
# A row with any of these holds no value.
FLAG_REJECTED = FLAG_INVALID | FLAG_IMPLAUSIBLE | FLAG_GLITCH | FLAG_FAILED
REJECTED_FLAGS = {
    "invalid": FLAG_INVALID,
    "implausible": FLAG_IMPLAUSIBLE,
    "glitch": FLAG_GLITCH,
    "failed": FLAG_FAILED,
}

POWER_ROW = 0  # SampleRows.kind codes
ENERGY_ROW = 1
STATE_ROW = 2
HOST_ROW = 3
_KIND_CODES = {KIND_POWER: POWER_ROW, KIND_ENERGY: ENERGY_ROW, KIND_STATE: STATE_ROW, KIND_HOST: HOST_ROW}
_KIND_NAMES = {code: name for name, code in _KIND_CODES.items()}


@dataclass
class SampleRows:
    """Columnar rows (numpy arrays of equal length); NaN where a column does not apply."""

    seq: np.ndarray
    t_ns: np.ndarray
    gpu: np.ndarray
    kind: np.ndarray  # POWER_ROW or ENERGY_ROW
    power_w: np.ndarray
    power_avg_w: np.ndarray
    energy_j: np.ndarray
    flags: np.ndarray
    # (rows, len(STATE_COLUMNS)) float64: a state row's values, NaN elsewhere (None: all NaN)
    state: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = np.full((len(self.seq), len(STATE_COLUMNS)), np.nan)

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def empty(cls) -> SampleRows:
        return cls.from_lists([])

    @classmethod
    def from_lists(cls, rows: list[list[Any]]) -> SampleRows:
        """Decode JSON rows (validated: a malformed row raises ValueError naming it)."""
        n = len(rows)
        out = cls(
            seq=np.empty(n, np.int64),
            t_ns=np.empty(n, np.int64),
            gpu=np.empty(n, np.int64),
            kind=np.empty(n, np.int8),
            power_w=np.empty(n, np.float64),
            power_avg_w=np.empty(n, np.float64),
            energy_j=np.empty(n, np.float64),
            flags=np.empty(n, np.int64),
        )
        for i, row in enumerate(rows):
            ok = isinstance(row, list) and len(row) >= len(COLUMNS) and row[3] in _KIND_CODES
            if not ok or len(row) != len(COLUMNS) + (len(STATE_COLUMNS) if row[3] == KIND_STATE else 0):
                raise ValueError(f"row {i}: expected [{', '.join(COLUMNS)}], got {row!r}"[:200])
            out.seq[i], out.t_ns[i], out.gpu[i], out.flags[i] = row[0], row[1], row[2], row[7]
            if row[3] == KIND_STATE:
                out.state[i] = [math.nan if v is None else v for v in row[len(COLUMNS) :]]
            out.kind[i] = _KIND_CODES[row[3]]
            out.power_w[i] = math.nan if row[4] is None else row[4]
            out.power_avg_w[i] = math.nan if row[5] is None else row[5]
            out.energy_j[i] = math.nan if row[6] is None else row[6]
        return out

    def to_lists(self) -> list[list[Any]]:
        def opt(x: float) -> float | None:
            # Three decimals = NVML's resolution (mW, mJ); keeps the JSON compact.
            return None if math.isnan(x) else round(x, 3)

        def state(values: list[float]) -> list[float | int | None]:
            *measures, reasons = values
            return [*map(opt, measures), None if math.isnan(reasons) else int(reasons)]

        return [
            [int(s), int(t), int(g), _KIND_NAMES[int(k)], opt(p), opt(a), opt(e), int(f)]
            + (state(v) if k == STATE_ROW else [])
            for s, t, g, k, p, a, e, f, v in zip(
                self.seq.tolist(),
                self.t_ns.tolist(),
                self.gpu.tolist(),
                self.kind.tolist(),
                self.power_w.tolist(),
                self.power_avg_w.tolist(),
                self.energy_j.tolist(),
                self.flags.tolist(),
                self.state.tolist(),
                strict=True,
            )
        ]

    def select(self, mask: np.ndarray) -> SampleRows:
        return SampleRows(**{name: getattr(self, name)[mask] for name in _FIELDS})

    @classmethod
    def concat(cls, parts: list[SampleRows]) -> SampleRows:
        if not parts:
            return cls.empty()
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS})


_FIELDS = ("seq", "t_ns", "gpu", "kind", "power_w", "power_avg_w", "energy_j", "flags", "state")


class SampleRing:
    """A bounded ring of samples, appended by the sampler threads and read by HTTP and the log writer.

    Fixed numpy columns (76 bytes a row, 40 of them the state values): 2**19 rows hold ~15 min of 8
    GPUs at 100 Hz, ~2 h at 10 Hz.
    """

    def __init__(self, capacity: int = 2**19) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._next = 0  # seq of the next row
        self._t = np.zeros(capacity, np.int64)
        self._gpu = np.zeros(capacity, np.int64)
        self._kind = np.zeros(capacity, np.int8)
        self._p = np.zeros(capacity, np.float64)
        self._a = np.zeros(capacity, np.float64)
        self._e = np.zeros(capacity, np.float64)
        self._f = np.zeros(capacity, np.int64)
        self._s = np.full((capacity, len(STATE_COLUMNS)), np.nan)

    def _append(
        self, t_ns: int, gpu: int, kind: int, p: float, a: float, e: float, flags: int, s: Any = math.nan
    ) -> None:
        with self._lock:
            i = self._next % self.capacity
            self._t[i], self._gpu[i], self._kind[i] = t_ns, gpu, kind
            self._p[i], self._a[i], self._e[i], self._f[i] = p, a, e, flags
            self._s[i] = s
            self._next += 1

    def append_power(self, t_ns: int, gpu: int, power_w: float, avg_w: float | None, flags: int = 0) -> None:
        self._append(t_ns, gpu, POWER_ROW, power_w, math.nan if avg_w is None else avg_w, math.nan, flags)

    def append_energy(self, t_ns: int, gpu: int, energy_j: float, flags: int = 0) -> None:
        self._append(t_ns, gpu, ENERGY_ROW, math.nan, math.nan, energy_j, flags)

    def append_state(self, t_ns: int, gpu: int, values: Sequence[float | int | None]) -> None:
        """A GPU's telemetry (`STATE_COLUMNS` order; None where the GPU does not report it)."""
        state = [math.nan if v is None else float(v) for v in values]
        self._append(t_ns, gpu, STATE_ROW, math.nan, math.nan, math.nan, 0, state)

    def append_host_energy(self, t_ns: int, domain: int, energy_j: float) -> None:
        """A RAPL domain's cumulative joules (wraparound stitched by the reader)."""
        self._append(t_ns, domain, HOST_ROW, math.nan, math.nan, energy_j, 0)

    def append_rejected(self, t_ns: int, gpu: int, kind: int, why: str) -> None:
        """A reading refused at the source (`why`: a key of REJECTED_FLAGS): a row with no value."""
        self._append(t_ns, gpu, kind, math.nan, math.nan, math.nan, REJECTED_FLAGS[why])

    @property
    def next_seq(self) -> int:
        with self._lock:
            return self._next

    def since(self, seq: int, limit: int | None = None) -> tuple[SampleRows, int, int]:
        """Rows with seq >= `seq` (at most `limit`), how many of those were already overwritten, and the
        cursor to continue from (taken under the same lock, so no row can slip between two calls)."""
        with self._lock:
            first = max(0, self._next - self.capacity)
            start = min(max(seq, first), self._next)
            dropped = max(0, first - seq)
            stop = self._next if limit is None else min(self._next, start + limit)
            idx = np.arange(start, stop, dtype=np.int64) % self.capacity
            rows = SampleRows(
                seq=np.arange(start, stop, dtype=np.int64),
                t_ns=self._t[idx],
                gpu=self._gpu[idx],
                kind=self._kind[idx],
                power_w=self._p[idx],
                power_avg_w=self._a[idx],
                energy_j=self._e[idx],
                flags=self._f[idx],
                state=self._s[idx],
            )
        return rows, dropped, stop


def samples_document(header: dict[str, Any], rows: SampleRows, dropped: int, next_seq: int) -> dict[str, Any]:
    """The `/samples` response: the session header plus a page of rows."""
    return {**header, "dropped": dropped, "next": next_seq, "rows": rows.to_lists()}


def base_header(header: dict[str, Any]) -> dict[str, Any]:
    """A version-2 header as version 1: without the keys of the rows version 1 does not hold."""
    kept = {k: v for k, v in header.items() if k not in TELEMETRY_HEADER_KEYS}
    return {**kept, "schema_version": BASE_SCHEMA_VERSION}


def base_page(ring: SampleRing, since: int, limit: int) -> tuple[SampleRows, int, int]:
    """`ring.since` for a version-1 reader: power and energy rows only. It fills the page to `limit`
    rows where the ring holds that many, because such a reader takes a short page for the end."""
    parts: list[SampleRows] = []
    dropped = kept = 0
    cursor = since
    while True:
        want = limit - kept
        rows, lost, cursor = ring.since(cursor, want)
        dropped += lost
        part = rows.select((rows.kind == POWER_ROW) | (rows.kind == ENERGY_ROW))
        parts.append(part)
        kept += len(part)
        if len(rows) < want or kept == limit:
            return SampleRows.concat(parts), dropped, cursor


@dataclass
class Session:
    """One sidecar session's samples: its header (clock anchor, GPUs, cadence) and rows."""

    header: dict[str, Any]
    rows: SampleRows
    dropped: int = 0
    issues: list[str] = field(default_factory=list)

    def lines(self) -> Iterator[str]:
        """The session in the `--log` file format: its header, what was dropped, then its rows."""
        yield json.dumps(self.header, separators=(",", ":")) + "\n"
        if self.dropped:
            yield json.dumps({"dropped": self.dropped}) + "\n"
        for row in self.rows.to_lists():
            yield json.dumps(row, separators=(",", ":")) + "\n"


def check_header(header: Any, where: str) -> dict[str, Any]:
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{where}: not a joulebench sample log (no '{FORMAT}' header)")
    if header.get("schema_version") not in READABLE_SCHEMA_VERSIONS:
        readable = " and ".join(map(str, READABLE_SCHEMA_VERSIONS))
        raise InputError(
            f"{where}: unsupported schema_version {header.get('schema_version')!r} (this joulebench reads "
            f"{readable})"
        )
    if tuple(header.get("columns", ())) != COLUMNS:
        raise InputError(f"{where}: unexpected columns {header.get('columns')!r}")
    return header


def read_log_file(path: Path) -> list[Session]:
    """Parse a `--log` file into its sessions (one per sidecar start)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the sample log ({exc.strerror})") from None
    sessions: list[Session] = []
    rows: list[list[Any]] = []

    def close_session() -> None:
        if sessions:
            try:
                sessions[-1].rows = SampleRows.from_lists(rows)
            except ValueError as exc:
                raise InputError(f"{path}: {exc}") from None
        rows.clear()

    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            # A crash can cut the last line short; anything else is a broken file.
            if lineno == len(text.splitlines()):
                if sessions:
                    sessions[-1].issues.append(f"{path}: last line cut short (ignored)")
                continue
            raise InputError(f"{path}:{lineno}: not JSON") from None
        if isinstance(item, list):
            if not sessions:
                raise InputError(f"{path}:{lineno}: a row before the first header")
            rows.append(item)
        elif isinstance(item, dict) and "columns" in item:
            close_session()
            sessions.append(Session(header=check_header(item, f"{path}:{lineno}"), rows=SampleRows.empty()))
        elif isinstance(item, dict) and "dropped" in item and sessions:
            sessions[-1].dropped += int(item["dropped"])
        else:
            raise InputError(f"{path}:{lineno}: unexpected line")
    close_session()
    if not sessions:
        raise InputError(f"{path}: empty sample log")
    return sessions


class SampleLogWriter:
    """Appends the ring's rows to a file from its own thread, so file I/O never delays a sample."""

    def __init__(
        self, path: Path, ring: SampleRing, header: Callable[[], dict[str, Any]], period_s: float = 0.5
    ):
        self.path = path
        self._ring = ring
        self._header = header
        self._period = period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sample-log", daemon=True)
        self._cursor = ring.next_seq
        try:
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"--log {path}: cannot open for appending ({exc.strerror})") from None

    def start(self) -> None:
        self._file.write(json.dumps(self._header(), separators=(",", ":")) + "\n")
        self._file.flush()
        self._thread.start()

    def _flush(self) -> None:
        rows, dropped, next_seq = self._ring.since(self._cursor)
        if dropped:
            self._file.write(json.dumps({"dropped": dropped, "since": self._cursor}) + "\n")
        self._file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows.to_lists()))
        self._file.flush()
        self._cursor = next_seq

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self._flush()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._flush()
        self._file.close()
