"""How much load the mock server sustains on one CPU core: requests/s and streamed tokens/s.

The mock is pinned to one core and this load client to another, so the figures say what the mock
can take when the load generator has a core of its own. The client is a minimal HTTP/1.1 keep-alive
client on raw asyncio streams (httpx would be the bottleneck long before the server). Scenarios, for
each server variant (HTTP parser x event loop):

- closed loop, non-streaming, short outputs: C connections each sending the next request as soon as
  the previous answer arrived; throughput and latency per C. Capacity = the best throughput.
- open loop, non-streaming: requests sent on an absolute schedule at a fixed rate (2,000/s by
  default, the load generators' top rate); achieved rate, lateness of sends, latency percentiles.
- closed loop, streaming: C streams of long outputs; tokens/s and SSE chunks/s delivered (a chunk
  carries every token generated since the previous one, as vLLM does when the reader falls behind).

The server runs the `synthetic-fast` profile (1 ms steps, no frontend cost) so the simulated GPU
never limits the rate: what is measured is the HTTP server and the simulator's bookkeeping.

    python benchmarks/mock_capacity.py [--duration 5] [--variants httptools-uvloop,h11-asyncio]

Writes benchmarks/results/mock_capacity.json (raw figures per run) and mock_capacity.md (summary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.append(str(REPO / "tests"))  # the process helpers the tests use

from joulebench_testkit import run_mock_server  # noqa: E402


@dataclass
class Run:
    scenario: str
    variant: str
    connections: int
    duration_s: float
    completed: int = 0
    errors: int = 0
    tokens: int = 0
    chunks: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    target_rate: float | None = None
    server_cpu_s: float = 0.0  # CPU time the server process used during the run

    def summary(self) -> dict:
        lat = sorted(self.latencies_ms)
        late = sorted(self.lateness_ms)
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "connections": self.connections,
            "target_rate_per_s": self.target_rate,
            "duration_s": round(self.duration_s, 3),
            "completed": self.completed,
            "errors": self.errors,
            "requests_per_s": round(self.completed / self.duration_s, 1),
            "tokens_per_s": round(self.tokens / self.duration_s, 1),
            "chunks_per_s": round(self.chunks / self.duration_s, 1),
            "tokens_per_chunk": round(self.tokens / self.chunks, 2) if self.chunks else None,
            "server_cpu_s": round(self.server_cpu_s, 3),
            # CPU time per request: unlike throughput, barely moved by other load on the machine
            "server_cpu_us_per_request": (
                round(self.server_cpu_s / self.completed * 1e6, 1) if self.completed else None
            ),
            "server_cpu_share": round(self.server_cpu_s / self.duration_s, 3),
            "latency_ms": _percentiles(lat),
            "send_lateness_ms": _percentiles(late) if late else None,
        }


def _percentiles(values: list[float]) -> dict | None:
    if not values:
        return None

    def q(p: float) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 3)

    mean = round(statistics.fmean(values), 3)
    return {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": round(values[-1], 3), "mean": mean}


class Connection:
    """One keep-alive HTTP/1.1 connection: send a POST, read the whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        if b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
                data = await self.reader.readexactly(size + 2)
                if size == 0:
                    return status, b"".join(parts)
                parts.append(data[:-2])
        start = lower.index(b"content-length:") + 15
        length = int(lower[start : lower.index(b"\r\n", start)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _request(host: str, port: int, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (
        f"POST /v1/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n\r\n"
    ).encode() + data


def _count_stream(body: bytes) -> tuple[int, int]:
    """(tokens from the usage event, content events) of one SSE body."""
    events = [e for e in body.split(b"\n\n") if e.startswith(b"data: {")]
    usage = json.loads(events[-1][6:])["usage"]
    return usage["completion_tokens"], len(events) - 1


async def closed_loop(url: tuple[str, int], run: Run, request: bytes, streaming: bool) -> None:
    host, port = url
    conns = [await Connection.open(host, port) for _ in range(run.connections)]
    end = time.perf_counter() + run.duration_s

    async def user(conn: Connection) -> None:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                status, body = await conn.post(request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                run.errors += 1
                return
            if status != 200:
                run.errors += 1
                continue
            run.latencies_ms.append((time.perf_counter() - t0) * 1000)
            run.completed += 1
            if streaming:
                tokens, chunks = _count_stream(body)
                run.tokens += tokens
                run.chunks += chunks

    t_start = time.perf_counter()
    await asyncio.gather(*(user(c) for c in conns))
    run.duration_s = time.perf_counter() - t_start
    for c in conns:
        c.close()


async def open_loop(url: tuple[str, int], run: Run, request: bytes) -> None:
    """Sends at absolute times start + i/rate on a pool of connections (new ones if all are busy)."""
    host, port = url
    assert run.target_rate is not None
    idle = [await Connection.open(host, port) for _ in range(run.connections)]
    n = int(run.target_rate * run.duration_s)
    start = time.perf_counter() + 0.2
    tasks = []

    async def one(conn: Connection, planned: float) -> None:
        run.lateness_ms.append((time.perf_counter() - planned) * 1000)
        t0 = time.perf_counter()
        try:
            status, _ = await conn.post(request)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            run.errors += 1
            return
        run.latencies_ms.append((time.perf_counter() - t0) * 1000)
        if status == 200:
            run.completed += 1
        else:
            run.errors += 1
        idle.append(conn)

    for i in range(n):
        planned = start + i / run.target_rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = idle.pop() if idle else await Connection.open(host, port)
        tasks.append(asyncio.ensure_future(one(conn, planned)))
    await asyncio.gather(*tasks)
    run.duration_s = time.perf_counter() - start
    run.connections = len(idle)
    for c in idle:
        c.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measured(proc: subprocess.Popen, run: Run, work) -> dict:
    before = cpu_seconds(proc.pid)
    await work
    run.server_cpu_s = cpu_seconds(proc.pid) - before
    summary = run.summary()
    print(json.dumps(summary), flush=True)
    return summary


async def bench_variant(variant: str, args: argparse.Namespace) -> list[dict]:
    short = {"model": "mock", "prompt": "Measure energy per request.", "max_tokens": args.short_tokens}
    stream = {
        **short,
        "max_tokens": args.stream_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = []
    http, loop = variant.split("-")
    mock_args = ["--profile", "synthetic-fast", "--http", http, "--loop", loop]
    with (
        tempfile.TemporaryDirectory() as logs,
        run_mock_server(*mock_args, cpu=args.server_cpu, log_dir=Path(logs)) as server,
    ):
        proc = server.process
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        url = (host, int(port))
        short_request, stream_request = _request(*url, short), _request(*url, stream)
        for conns in args.connections:
            run = Run("closed-loop", variant, conns, args.duration)
            out.append(await measured(proc, run, closed_loop(url, run, short_request, streaming=False)))
        for rate in args.rates:
            run = Run("open-loop", variant, 64, args.duration, target_rate=rate)
            out.append(await measured(proc, run, open_loop(url, run, short_request)))
        for conns in args.stream_connections:
            run = Run("streaming", variant, conns, args.duration)
            out.append(await measured(proc, run, closed_loop(url, run, stream_request, streaming=True)))
    return out


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# Mock server capacity",
        "",
        f"Command: `{meta['command']}`  ",
        f"Host: {meta['host']} ({meta['cpus']} CPUs, load average before: {meta['load_average'][0]:.2f}), "
        f"Python {meta['python']}; server on CPU {meta['server_cpu']}, client on CPU {meta['client_cpu']}; "
        f"profile synthetic-fast; {meta['duration_s']} s per run; {meta['date']}.",
        "",
        "| variant | scenario | conns | target/s | requests/s | tokens/s | chunks/s | server CPU us/req "
        "| server CPU share | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r["latency_ms"] or {}
        target = r["target_rate_per_s"] or ""
        tokens = r["tokens_per_s"] if r["scenario"] == "streaming" else ""
        chunks = r["chunks_per_s"] if r["scenario"] == "streaming" else ""
        lines.append(
            f"| {r['variant']} | {r['scenario']} | {r['connections']} | {target} | {r['requests_per_s']} | "
            f"{tokens} | {chunks} | {r['server_cpu_us_per_request']} | {r['server_cpu_share']} | "
            f"{lat.get('p50', '')} | {lat.get('p99', '')} | {r['errors']} |"
        )
    lines += [
        "",
        "Per variant: best closed-loop requests/s, and what one core would take at the lowest server CPU",
        "cost per request of the closed-loop runs (the figure least moved by other load on the machine);",
        "best streaming tokens/s and SSE events/s:",
        "",
    ]
    for variant in dict.fromkeys(r["variant"] for r in results):
        mine = [r for r in results if r["variant"] == variant]
        closed = [r for r in mine if r["scenario"] == "closed-loop" and r["server_cpu_us_per_request"]]
        streamed = [r for r in mine if r["scenario"] == "streaming"]
        achieved = max((r["requests_per_s"] for r in closed), default=0)
        cheapest = min((r["server_cpu_us_per_request"] for r in closed), default=None)
        per_core = round(1e6 / cheapest) if cheapest else 0
        tokens = max((r["tokens_per_s"] for r in streamed), default=0)
        events = max((r["chunks_per_s"] for r in streamed), default=0)
        lines.append(
            f"- {variant}: {achieved} requests/s measured; {cheapest} us CPU per request, so about "
            f"{per_core} requests/s per core; {tokens} streamed tokens/s in up to {events} events/s"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument(
        "--variants",
        default="httptools-uvloop,h11-asyncio",
        help="HTTP parser-event loop pairs to compare (default httptools-uvloop,h11-asyncio)",
    )
    parser.add_argument("--connections", default="16,64,256", help="closed-loop concurrency levels")
    parser.add_argument("--rates", default="2000", help="open-loop target rates, requests/s")
    parser.add_argument("--stream-connections", default="16,64,256", help="concurrent streams")
    parser.add_argument("--short-tokens", type=int, default=1, help="max_tokens of non-streaming requests")
    parser.add_argument("--stream-tokens", type=int, default=256, help="max_tokens of streaming requests")
    parser.add_argument("--server-cpu", type=int, default=0, help="CPU for the mock server")
    parser.add_argument("--client-cpu", type=int, default=1, help="CPU for this load client")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    args.connections = [int(x) for x in args.connections.split(",") if x]
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.stream_connections = [int(x) for x in args.stream_connections.split(",") if x]
    os.sched_setaffinity(0, {args.client_cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = []
    for variant in args.variants.split(","):
        results += asyncio.run(bench_variant(variant, args))
    meta = {
        "command": " ".join(["python", "benchmarks/mock_capacity.py", *sys.argv[1:]]),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "server_cpu": args.server_cpu,
        "client_cpu": args.client_cpu,
        "duration_s": args.duration,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": os.getloadavg(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mock_capacity.json").write_text(json.dumps({"meta": meta, "runs": results}, indent=1) + "\n")
    (args.out / "mock_capacity.md").write_text(markdown(results, meta))
    print(f"wrote {args.out / 'mock_capacity.json'} and {args.out / 'mock_capacity.md'}")


if __name__ == "__main__":
    main()
