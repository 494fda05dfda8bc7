"""The server-metrics stage: the server's own Prometheus metrics, scraped about once a second.

vLLM (`vllm:*`), TGI (`tgi_*`) and the mock serve `/metrics`; what they say (requests running and
waiting, batch size, KV-cache use, token counters, latency histograms) explains the power curve. The
scraper runs on its own thread over the idle windows and the run; a failed scrape is counted and
described in the manifest (`server_metrics`), never fatal. The file it leaves,
`server_metrics.parquet`, is laid out in harness/runfolder/server_metrics_file.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from foundation.redact import redact_userinfo
from harness.runfolder.server_metrics_file import SERVER_METRICS_FILE, Sample, write_server_metrics
from harness.runner import RunResult
from harness.session.pipeline import RunContext

_FLUSH_ROWS = 50_000  # rows per row group: bounded memory however long the run


def parse_exposition(text: str) -> list[tuple[str, str, float]]:
    """(sample name, labels JSON, value) of every sample in a Prometheus text exposition."""
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = json.dumps(sample.labels, sort_keys=True, separators=(",", ":"))
            rows.append((sample.name, labels, float(sample.value)))
    return rows


@dataclass(eq=False)  # compared and hashed by identity
class ServerMetricsStage:
    """Scrapes on a thread during the run; parses when the run is over.

    The scraper shares the process (and its GIL) with the runner's event loop: parsing a real vLLM
    exposition (~1,000 lines) is tens of milliseconds of pure Python every second, which would hold
    up sends by up to the interpreter's switch interval. So during the run the thread only fetches and
    appends the raw text to a spool file next to the output; `close` parses it into the Parquet file.
    """

    url: str
    interval_s: float
    console: Console
    scrapes: int = field(default=0, init=False)
    failures: int = field(default=0, init=False)
    errors: dict[str, int] = field(default_factory=dict, init=False)  # error text -> count (first few kinds)
    rows: int = field(default=0, init=False)
    _dir: Path | None = field(default=None, init=False)
    _spool: BinaryIO | None = field(default=None, init=False)
    _meta: dict[str, Any] = field(default_factory=dict, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def before(self, ctx: RunContext) -> None:
        self._dir = ctx.folder.path
        self._meta = {
            "url": redact_userinfo(self.url),
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
        assert self._dir is not None
        return self._dir / f".{SERVER_METRICS_FILE}.spool"

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
        assert self._dir is not None
        self.rows = write_server_metrics(self._dir, self._batches(spool), self._meta)

    def _batches(self, spool: BinaryIO) -> Iterator[list[Sample]]:
        buffer: list[Sample] = []
        while header := spool.readline():
            t_ns, size = (int(x) for x in header.split())
            body = spool.read(size)
            try:
                rows = parse_exposition(body.decode("utf-8", errors="replace"))
            except ValueError as exc:  # text the parser cannot read: a failed scrape, not a crash
                self._failed(exc)
                continue
            buffer.extend((t_ns, name, labels, value) for name, labels, value in rows)
            if len(buffer) >= _FLUSH_ROWS:
                yield buffer
                buffer = []
        yield buffer

    def after(self, ctx: RunContext, result: RunResult) -> None:
        self.close()
        ok = self.scrapes - self.failures
        ctx.folder.update_manifest(
            server_metrics={
                "url": redact_userinfo(self.url),
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
                f"[yellow]note:[/] server metrics {redact_userinfo(self.url)}: {self.failures} of "
                f"{self.scrapes} scrapes "
                f"failed ({first}); {ok} kept in {SERVER_METRICS_FILE if self.rows else 'no file'}",
                highlight=False,
            )
