"""The server-metrics scraper: every sample of every scrape into server_metrics.parquet, failures counted
and never fatal, and the batch-size series the report draws under the power curve."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from harness.clock import ClockAnchor
from harness.runfolder.server_metrics_file import SERVER_METRICS_FILE, read_server_metrics, server_load
from harness.session.metrics_scraper import ServerMetricsStage, parse_exposition

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="1.0",model_name="m"}} 3.0
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="+Inf",model_name="m"}} 4.0
vllm:e2e_request_latency_seconds_count{{engine="0",model_name="m"}} 4.0
vllm:e2e_request_latency_seconds_sum{{engine="0",model_name="m"}} 2.5
"""


def test_parse_keeps_every_sample_with_sorted_labels() -> None:
    rows = parse_exposition(VLLM.format(running=3, waiting=1))
    names = [r[0] for r in rows]
    assert names.count("vllm:e2e_request_latency_seconds_bucket") == 2
    assert ("vllm:num_requests_running", '{"engine":"0","model_name":"m"}', 3.0) in rows
    assert any(r[1] == '{"engine":"0","le":"+Inf","model_name":"m"}' and r[2] == 4.0 for r in rows)


def test_tgi_names_parse_too() -> None:
    text = (
        "# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 5\n"
        "# TYPE tgi_queue_size gauge\ntgi_queue_size 2\n"
    )
    assert parse_exposition(text) == [("tgi_batch_current_size", "{}", 5.0), ("tgi_queue_size", "{}", 2.0)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hits = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits += 1
        hit = self.server.hits
        if hit % 3 == 0:  # every third scrape fails: a server under load, a restart, a proxy hiccup
            body, status = b"overloaded", 503
        elif hit % 4 == 0:  # and some answers are not Prometheus text at all
            body, status = b"<html>gateway says hello</html>\n", 200
        else:
            body, status = VLLM.format(running=hit, waiting=hit % 2).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def metrics_server():
    server = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    server.shutdown()
    server.server_close()


@dataclass
class _Folder:
    path: Path

    def manifest(self) -> dict:
        return {}

    def update_manifest(self, **sections) -> None:
        self.sections = sections


@dataclass
class _Ctx:
    folder: _Folder
    anchor: ClockAnchor


def test_scrapes_into_the_file_and_counts_failures(metrics_server, tmp_path) -> None:
    ctx = _Ctx(_Folder(tmp_path), ClockAnchor.now())
    console = Console(file=io.StringIO())
    stage = ServerMetricsStage(metrics_server, 0.05, console)
    t0 = time.monotonic_ns()
    stage.before(ctx)
    time.sleep(1.0)
    stage.after(ctx, result=None)
    t1 = time.monotonic_ns()
    record = ctx.folder.sections["server_metrics"]
    n = record["scrapes"]
    assert n >= 8
    refused, garbled = n // 3, n // 4 - n // 12
    assert record["failures"] == refused + garbled  # exactly the scrapes the server spoilt
    errors = record["errors"]
    assert len(errors) == 2 and sum(errors.values()) == record["failures"]
    assert any("503" in e for e in errors) and any(e.startswith("ValueError") for e in errors)
    frame = read_server_metrics(tmp_path)
    assert list(frame.columns) == ["t_ns", "name", "labels", "value"]
    assert frame["t_ns"].between(t0, t1).all()
    assert frame["t_ns"].nunique() == record["scrapes"] - record["failures"]
    assert record["rows"] == len(frame) == 6 * frame["t_ns"].nunique()
    meta = pq.read_schema(tmp_path / SERVER_METRICS_FILE).metadata[b"joulebench.server_metrics"]
    assert b'"schema_version": 1' in meta and metrics_server.encode() in meta
    load = server_load(tmp_path)
    assert list(load.columns) == ["t_ns", "running", "waiting"] and load["t_ns"].is_monotonic_increasing
    assert set(load["running"]) <= {h for h in range(1, 100) if h % 3 and h % 4}
    assert set(load["waiting"]) <= {0, 1}
    assert "scrapes failed" in console.file.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == [SERVER_METRICS_FILE]  # no spool or partial left


def test_nothing_scraped_means_no_file(tmp_path) -> None:
    ctx = _Ctx(_Folder(tmp_path), ClockAnchor.now())
    stage = ServerMetricsStage("http://127.0.0.1:1/metrics", 0.05, Console(file=io.StringIO()))
    stage.before(ctx)
    time.sleep(0.3)
    stage.after(ctx, result=None)
    assert ctx.folder.sections["server_metrics"]["file"] is None
    assert not (tmp_path / SERVER_METRICS_FILE).exists() and server_load(tmp_path) is None
    assert list(tmp_path.iterdir()) == []  # no spool or partial file left either
