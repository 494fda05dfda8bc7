"""The experiment folder `experiments/<experiment_id>/`, read and written here only.

    experiment.yaml              the experiment as resolved (every default filled in, overrides applied)
    cells.parquet, cells.csv     the tidy table: one row per repeat x rate x arm (the same rows in both)
    plans/<rate>.parquet         the whole plan of each offered rate (every cell sends one arm of it)
    runs/<cell name>/            one run folder per cell
    abandoned/<cell name>/       the run folder of a cell that was cut short (kept, never counted)
    cells.log                    each cell's own output (notes, warnings, its run's tables)
    .lock                        held by the process running the cells (its PID inside)
    embedded/                    the embedded target's mock-server and sidecar logs
    server/                      a `serve` target's server.log and server.json
    report.html, experiment_summary.json, *.png   the experiment's report

`cells.parquet` is written after every cell (atomically), so an interrupted experiment resumes from it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import yaml

from foundation.atomic_write import atomic_path, atomic_text, atomic_write
from foundation.errors import InputError
from foundation.tagged_parquet import TaggedFormat, nullable_pandas, read_tagged, schema_of, write_tagged

CELLS_SCHEMA_VERSION = 1
CELL_STATUSES = ("pending", "running", "done")  # running: cut short if the experiment is not

# name -> (pyarrow type, nullable), in table order.
CELL_COLUMNS: dict[str, tuple[pa.DataType, bool]] = {
    "experiment_id": (pa.string(), False),
    "cell": (pa.int64(), False),  # design order over the whole experiment
    "block": (pa.int64(), False),  # (repeat, rate) block, in the order blocks run
    "repeat": (pa.int64(), False),  # 1-based
    "rate": (pa.float64(), True),  # offered requests/s; null: the arms' own rates
    "arm": (pa.string(), False),
    "position": (pa.int64(), False),  # place of the arm in its block, 0-based
    "previous_arm": (pa.string(), True),
    "status": (pa.string(), False),  # CELL_STATUSES
    "exit_code": (pa.int64(), True),
    "run_id": (pa.string(), True),
    "run_dir": (pa.string(), True),  # relative to the experiment folder
    "plan_hash": (pa.string(), True),  # the cell's own plan (one arm of its rate's plan)
    "started_utc": (pa.string(), True),
    "duration_s": (pa.float64(), True),  # the arm's measured window
    "requests": (pa.int64(), True),
    "ok": (pa.int64(), True),
    "j_per_request_all_in": (pa.float64(), True),  # window energy / successful requests
    "j_per_request_attributed": (pa.float64(), True),  # mean of the requests' own shares
    "j_idle_per_request": (pa.float64(), True),  # all-in minus above-idle: the idle floor's share
    "j_above_idle_per_request": (pa.float64(), True),
    "resolution_j_per_request": (pa.float64(), True),  # counter-resolution bound of the all-in figure
    "mean_power_w": (pa.float64(), True),
    "energy_j_total": (pa.float64(), True),
    "idle_power_w": (pa.float64(), True),
    "steady_j_per_request_attributed": (pa.float64(), True),
    "steady_requests": (pa.int64(), True),
    "ttft_p50_s": (pa.float64(), True),
    "ttft_p90_s": (pa.float64(), True),
    "e2e_p50_s": (pa.float64(), True),
    "e2e_p90_s": (pa.float64(), True),
    "lateness_p99_ms": (pa.float64(), True),
    "realized_rate": (pa.float64(), True),
    "flags": (pa.string(), False),  # comma-separated flag codes of the arm and the run ("" for none)
    # What users pay for a shaping policy (an unshaped arm: hold 0, user latency = the server's).
    "hold_p50_ms": (pa.float64(), True),  # sent - arrived
    "hold_p99_ms": (pa.float64(), True),
    "user_ttft_p50_s": (pa.float64(), True),  # first token - arrived
    "user_ttft_p99_s": (pa.float64(), True),
    "user_e2e_p50_s": (pa.float64(), True),  # done - arrived
    "user_e2e_p99_s": (pa.float64(), True),
    "goodput_share": (pa.float64(), True),  # planned requests within slo_ttft_s/slo_e2e_s; null without
}
# Columns a cells table written before arrival shaping lacks: read as nulls.
ADDED_CELL_COLUMNS = (
    "hold_p50_ms", "hold_p99_ms", "user_ttft_p50_s", "user_ttft_p99_s", "user_e2e_p50_s", "user_e2e_p99_s",
    "goodput_share",
)  # fmt: skip
CELLS_FORMAT = TaggedFormat("cells table", "joulebench.cells", CELLS_SCHEMA_VERSION, schema_of(CELL_COLUMNS))
_READABLE_CELLS = TaggedFormat(
    CELLS_FORMAT.what,
    CELLS_FORMAT.key,
    CELLS_SCHEMA_VERSION,
    schema_of({k: v for k, v in CELL_COLUMNS.items() if k not in ADDED_CELL_COLUMNS}),
)


class ExperimentFolder:
    SPEC = "experiment.yaml"
    CELLS = "cells.parquet"
    CELLS_CSV = "cells.csv"
    SUMMARY = "experiment_summary.json"
    REPORT = "report.html"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.runs = self.path / "runs"
        self.plans = self.path / "plans"
        self._id: str | None = None

    @property
    def experiment_id(self) -> str:
        """The folder's name when it was made, as cells.parquet records it (a copied or renamed folder
        keeps its id)."""
        if self._id is None:
            self._id = self.path.name
            if self.has_cells():
                _, header = read_tagged(self.path / self.CELLS, _READABLE_CELLS)
                self._id = str(header.get("experiment_id", self._id))
        return self._id

    @classmethod
    def create(cls, out_dir: Path, name: str, resolved: dict[str, Any]) -> ExperimentFolder:
        """A new folder `<out_dir>/<YYYYmmddTHHMMSS>-<name>[-N]` (UTC) holding experiment.yaml."""
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"--out {out_dir}: cannot create the folder ({exc.strerror})") from None
        base = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{name}"
        for n in range(1, 10_000):
            path = out_dir / (base if n == 1 else f"{base}-{n}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            folder = cls(path)
            folder.write_spec(resolved)
            return folder
        raise InputError(f"--out {out_dir}: too many experiments named {base}-*")

    @classmethod
    def open(cls, path: Path) -> ExperimentFolder:
        try:
            found = (path / cls.SPEC).is_file()
        except OSError as exc:  # a name too long, no permission, a loop of links: no folder to read
            raise InputError(f"{path}: cannot open the experiment folder ({exc.strerror})") from None
        if not found:
            raise InputError(f"{path}: not a joulebench experiment folder (no {cls.SPEC})")
        return cls(path)

    def spec_data(self) -> dict[str, Any]:
        try:
            data = yaml.safe_load((self.path / self.SPEC).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            why = str(exc).splitlines()[0]
            raise InputError(f"{self.path / self.SPEC}: not readable YAML ({why})") from None
        if not isinstance(data, dict):
            raise InputError(f"{self.path / self.SPEC}: damaged (not a mapping)")
        return data

    def write_spec(self, resolved: dict[str, Any]) -> None:
        atomic_text(self.path / self.SPEC, yaml.safe_dump(resolved, sort_keys=False))

    def plan_path(self, rate: float | None) -> Path:
        return self.plans / ("own-rates.parquet" if rate is None else f"rate-{rate:g}.parquet")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One process at a time runs an experiment's cells (a second `resume` would move a live cell's
        folder aside): an exclusive lock on `.lock`, which holds the owner's PID for the message."""
        path = self.path / ".lock"
        with path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                raise InputError(f"{self.path}: already being run by PID {owner}") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # --- cells ------------------------------------------------------------------------------------

    def has_cells(self) -> bool:
        return (self.path / self.CELLS).is_file()

    def read_cells(self) -> pd.DataFrame:
        table, _ = read_tagged(self.path / self.CELLS, _READABLE_CELLS)
        cells = nullable_pandas(table)
        for name in ADDED_CELL_COLUMNS:
            if name not in cells:
                cells[name] = float("nan")
        unknown = sorted(set(cells["status"]) - set(CELL_STATUSES))
        if unknown:
            raise InputError(f"{self.path / self.CELLS}: unknown cell status {unknown[0]!r} (damaged?)")
        return cells

    def write_cells(self, cells: pd.DataFrame) -> None:
        """cells.parquet and cells.csv, each atomically (a crash leaves the previous table)."""
        table = pa.Table.from_pandas(
            cells[list(CELL_COLUMNS)], schema=CELLS_FORMAT.schema, preserve_index=False
        )
        write_tagged(self.path / self.CELLS, table, CELLS_FORMAT, {"experiment_id": self.experiment_id})
        with atomic_path(self.path / self.CELLS_CSV) as tmp:
            cells[list(CELL_COLUMNS)].to_csv(tmp, index=False)

    # --- cell run folders -------------------------------------------------------------------------

    def abandon(self, name: str) -> Path | None:
        """Move a cell's run folder that was cut short out of runs/ (kept for inspection)."""
        path = self.runs / name
        if not path.exists():
            return None
        target = self.path / "abandoned" / name
        n = 1
        while target.exists():
            n += 1
            target = self.path / "abandoned" / f"{name}-{n}"
        target.parent.mkdir(exist_ok=True)
        shutil.move(os.fspath(path), target)
        return target

    # --- report -----------------------------------------------------------------------------------

    def write_report(self, doc: dict[str, Any], html: str, images: dict[str, bytes]) -> Path:
        atomic_text(self.path / self.SUMMARY, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        for name, data in images.items():
            _write_bytes(self.path / name, data)
        return atomic_text(self.path / self.REPORT, html)

    def read_summary(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.path / self.SUMMARY).read_text(encoding="utf-8"))
        return doc


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
