"""`server_metrics.parquet`: the server's own Prometheus metrics, scraped about once a second during a run.

vLLM (`vllm:*`), TGI (`tgi_*`) and the mock serve `/metrics`; what they say (requests running and
waiting, batch size, KV-cache use, token counters, latency histograms) explains the power curve. The
scraper runs on its own thread over the idle windows and the run; a failed scrape is counted and
described in the manifest (`server_metrics`), never fatal.

Long format, one row per sample of a scrape:

| column | type | meaning |
|---|---|---|
| `t_ns` | int64 | harness monotonic clock: the midpoint of the scrape's request |
| `name` | string | sample name as exposed (`vllm:num_requests_running`, `..._bucket`, ...) |
| `labels` | string | the sample's labels as compact JSON with sorted keys (`le` included) |
| `value` | float64 | |

Parquet metadata key `joulebench.server_metrics`: `{"schema_version": 1, "url", "interval_s",
"anchor"}`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from traffic.errors import InputError

if TYPE_CHECKING:  # harness.report reads this file's format; it need not load the runner for that
    from ..runner import RunContext, RunResult

SERVER_METRICS_FILE = "server_metrics.parquet"
SCHEMA_VERSION = 1
_KEY = b"joulebench.server_metrics"
_SCHEMA = pa.schema(
    [
        pa.field("t_ns", pa.int64(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
_FLUSH_ROWS = 50_000
# Batch size over time, for the report's power timeline: (running, waiting) per server flavour.
LOAD_METRICS = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size"),
}


def parse_exposition(text: str) -> list[tuple[str, str, float]]:
    """(sample name, labels JSON, value) of every sample in a Prometheus text exposition."""
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = json.dumps(sample.labels, sort_keys=True, separators=(",", ":"))
            rows.append((sample.name, labels, float(sample.value)))
    return rows


class ServerMetricsStage:
    """Scrapes on a thread during the run; parses when the run is over.

    The scraper shares the process (and its GIL) with the runner's event loop: parsing a real vLLM
    exposition (~1,000 lines) is tens of milliseconds of pure Python every second, which would hold
    up sends by up to the interpreter's switch interval. So during the run the thread only fetches and
    appends the raw text to a spool file next to the output; `close` parses it into the Parquet file.
    """

    name = "server_metrics"

    def __init__(self, url: str, interval_s: float, console: Console) -> None:
        self.url = url
        self.interval_s = interval_s
        self.console = console
        self.scrapes = 0
        self.failures = 0
        self.errors: dict[str, int] = {}  # error text -> how often (the first few kinds)
        self.rows = 0
        self._path: Path | None = None
        self._spool: BinaryIO | None = None
        self._meta: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def before(self, ctx: RunContext) -> None:
        self._path = ctx.folder.path / SERVER_METRICS_FILE
        self._meta = {
            "schema_version": SCHEMA_VERSION,
            "url": self.url,
            "interval_s": self.interval_s,
            "anchor": ctx.anchor.as_dict(),
        }
        self._spool = self._spool_path.open("w+b")
        self._thread = threading.Thread(target=self._loop, name="server-metrics", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        period_ns = int(self.interval_s * 1e9)
        start = time.monotonic_ns()
        with httpx.Client(timeout=max(self.interval_s, 2.0)) as client:
            k = 0
            while not self._stop.is_set():
                self._scrape(client)
                # Absolute deadlines; a scrape slower than the period skips the deadlines it missed.
                k = max(k + 1, (time.monotonic_ns() - start) // period_ns + 1)
                self._stop.wait(max(0.0, (start + k * period_ns - time.monotonic_ns()) / 1e9))

    def _scrape(self, client: httpx.Client) -> None:
        assert self._spool is not None
        self.scrapes += 1
        try:
            m0 = time.monotonic_ns()
            response = client.get(self.url)
            m1 = time.monotonic_ns()
            response.raise_for_status()
        # Anything the server can do wrong must not stop the scraper, let alone the run.
        except Exception as exc:
            self._failed(exc)
            return
        body = response.content
        self._spool.write(b"%d %d\n" % ((m0 + m1) // 2, len(body)) + body)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        text = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        if text in self.errors or len(self.errors) < 5:
            self.errors[text] = self.errors.get(text, 0) + 1

    @property
    def _spool_path(self) -> Path:
        assert self._path is not None
        return self._path.with_name(f".{self._path.name}.spool")

    @property
    def _partial_path(self) -> Path:
        assert self._path is not None
        return self._path.with_name(f".{self._path.name}.partial")

    def close(self) -> None:
        """Stop scraping, parse what was scraped into the file (also after an error: nothing is lost)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._spool is None:
            return
        spool, self._spool = self._spool, None
        try:
            spool.seek(0)
            self._convert(spool)
        finally:
            spool.close()
            self._spool_path.unlink(missing_ok=True)

    def _convert(self, spool: BinaryIO) -> None:
        assert self._path is not None
        writer: pq.ParquetWriter | None = None
        buffer: list[tuple[int, str, str, float]] = []

        def flush() -> None:
            nonlocal writer
            if writer is None:
                schema = _SCHEMA.with_metadata({_KEY: json.dumps(self._meta).encode()})
                writer = pq.ParquetWriter(self._partial_path, schema)
            writer.write_table(_table(buffer))
            self.rows += len(buffer)
            buffer.clear()

        try:
            while header := spool.readline():
                t_ns, size = (int(x) for x in header.split())
                body = spool.read(size)
                try:
                    rows = parse_exposition(body.decode("utf-8", errors="replace"))
                except ValueError as exc:  # text the parser cannot read: a failed scrape, not a crash
                    self._failed(exc)
                    continue
                buffer.extend((t_ns, name, labels, value) for name, labels, value in rows)
                if len(buffer) >= _FLUSH_ROWS:  # a row group: bounded memory however long the run
                    flush()
            if buffer:
                flush()
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            os.replace(self._partial_path, self._path)

    def after(self, ctx: RunContext, result: RunResult) -> None:
        self.close()
        ok = self.scrapes - self.failures
        ctx.folder.update_manifest(
            server_metrics={
                "url": self.url,
                "interval_s": self.interval_s,
                "scrapes": self.scrapes,
                "failures": self.failures,
                "errors": self.errors,
                "rows": self.rows,
                "file": SERVER_METRICS_FILE if self.rows else None,
            }
        )
        if self.failures:
            first = next(iter(self.errors), "")
            self.console.print(
                f"[yellow]note:[/] server metrics {self.url}: {self.failures} of {self.scrapes} scrapes "
                f"failed ({first}); {ok} kept in {SERVER_METRICS_FILE if self.rows else 'no file'}",
                highlight=False,
            )


def _table(rows: list[tuple[int, str, str, float]]) -> pa.Table:
    t, name, labels, value = zip(*rows, strict=True)
    return pa.table(
        {
            "t_ns": pa.array(t, pa.int64()),
            "name": pa.array(name, pa.string()),
            "labels": pa.array(labels, pa.string()),
            "value": pa.array(value, pa.float64()),
        },
        schema=_SCHEMA,
    )


def load_server_metrics(run_dir: str | os.PathLike, names: list[str] | None = None) -> pd.DataFrame | None:
    """The samples of `server_metrics.parquet` (only `names` if given); None when the run has none."""
    path = Path(run_dir) / SERVER_METRICS_FILE
    if not path.is_file():
        return None
    filters = [("name", "in", names)] if names else None
    try:
        return pq.read_table(path, filters=filters).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({first})") from None


def server_load(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """Requests running and waiting on the server over time (`t_ns`, `running`, `waiting`), summed over
    engines/shards; None without server metrics or without a known batch metric."""
    names = [n for pair in LOAD_METRICS.values() for n in pair]
    frame = load_server_metrics(run_dir, names)
    if frame is None or frame.empty:
        return None
    for running, waiting in LOAD_METRICS.values():
        part = frame[frame["name"].isin([running, waiting])]
        if (part["name"] == running).any():
            wide = part.pivot_table(index="t_ns", columns="name", values="value", aggfunc="sum")
            return pd.DataFrame(
                {
                    "t_ns": wide.index.to_numpy(dtype=np.int64),
                    "running": wide[running].to_numpy(dtype=float),
                    "waiting": wide[waiting].to_numpy(dtype=float) if waiting in wide else np.nan,
                }
            )
    return None
