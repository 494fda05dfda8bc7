"""A dcgm-exporter stand-in: serves a recorded exposition (fixtures/dcgm/) over HTTP, with the energy
counters advancing as a running GPU's would, so a real Prometheus can scrape it.

Everything but the counter values is served exactly as recorded (names, HELP/TYPE, label sets). Each
`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` value grows by `watts` (mJ per ms) from its recorded value, and
only at `collect_s` ticks, like dcgm-exporter's collection interval (`-c`).
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "dcgm"
_ENERGY = re.compile(r"^(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION\{(.*)\}) (\d+)$")


class DcgmExporterStandIn:
    def __init__(
        self, fixture: str, watts: dict[str, float], collect_s: float = 1.0, energy: bool = True
    ) -> None:
        """`watts`: power per `gpu` label; `energy=False` drops the energy lines (no counter)."""
        lines = (FIXTURES / fixture).read_text().splitlines()
        if not energy:
            lines = [line for line in lines if "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in line]
        self.lines = lines
        self.watts = watts
        self.collect_s = collect_s
        self.t0 = time.monotonic()
        self.scrapes = 0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                stand_in.scrapes += 1
                body = stand_in.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def elapsed_s(self) -> float:
        """Seconds of energy counted so far (whole collection ticks)."""
        t = time.monotonic() - self.t0
        return t - t % self.collect_s if self.collect_s else t

    def render(self) -> str:
        elapsed = self.elapsed_s()
        out = []
        for line in self.lines:
            m = _ENERGY.match(line)
            if m:
                gpu = re.search(r'gpu="(\d+)"', m.group(2)).group(1)
                line = f"{m.group(1)} {int(m.group(3)) + round(self.watts[gpu] * elapsed * 1000)}"
            out.append(line)
        return "\n".join(out) + "\n"  # the recorded copy lacks the final newline the format requires

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
