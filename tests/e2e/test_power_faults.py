"""Power that is never silently wrong and survives a crash (issue 18, items 2-4), end to end: the mock
server, a real `joulebench sidecar --backend simulated` process and `joulebench run` as a user runs it.

- The sidecar reads the mock's simulated GPU through a proxy that breaks some readings (one energy
  reading of 0, NaN energy, NaN and negative power): the run's energy is still the mock's exact
  counter (no reset stitched, nothing over-counted), the sidecar's /metrics counts each kind of
  refused read, and the run's flags say what was left out.
- A run SIGKILLed mid-plan keeps the sidecar rows it had polled: `joulebench recover` rebuilds
  power.parquet from them and `joulebench report` shows energy.

The truth is the mock's own counter, read directly (not through the proxy) while the run goes on.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from e2e_stack import flag_codes, manifest, output, run_folder, summary
from joulebench_testkit import joulebench_argv, run_joulebench, run_mock_server, simulated_sidecar

from harness.runfolder.power_file import load_power

pytestmark = pytest.mark.slow


class TruthPoller:
    """The mock's exact energy counter, read every 0.1 s on its own (same host: its clock is ours)."""

    def __init__(self, mock_url: str) -> None:
        self.url = mock_url + "/sim/gpu"
        self.t_ns: list[int] = []
        self.energy_j: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.wait(0.1):
                doc = client.get(self.url).json()
                self.t_ns.append(int(doc["clock"]["mono_ns"]))
                self.energy_j.append(float(doc["gpus"][0]["energy_j"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def energy(self, start_ns: int, end_ns: int) -> float:
        assert self.t_ns[0] <= start_ns < end_ns <= self.t_ns[-1]
        e = np.interp([start_ns, end_ns], self.t_ns, self.energy_j)
        return float(e[1] - e[0])


# (from s, to s after arm(), field, value): each window is longer than the counter's 0.5 s period, so
# it catches at least one counter reading; the power loop reads every 0.05 s.
FAULTS = [
    (1.0, 1.7, "energy_j", 0.0),
    (2.6, 3.3, "energy_j", float("nan")),
    (3.6, 3.75, "power_w", float("nan")),
    (4.0, 4.15, "power_w", -5.0),
]


class FaultyGpu(ThreadingHTTPServer):
    """The mock's /sim/gpu, with the FAULTS applied once `arm()` has been called."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.armed_at: float | None = None
        super().__init__(("127.0.0.1", 0), _FaultHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def arm(self) -> None:
        self.armed_at = time.monotonic()

    def break_(self, doc: dict) -> dict:
        if self.armed_at is not None:
            since = time.monotonic() - self.armed_at
            for start, end, name, value in FAULTS:
                if start <= since < end:
                    doc["gpus"][0][name] = value
        return doc

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _FaultHandler(BaseHTTPRequestHandler):
    server: FaultyGpu
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        doc = httpx.get(self.server.upstream + self.path, timeout=10).json()
        body = json.dumps(self.server.break_(doc)).encode()  # NaN as JSON's NaN, as a broken server sends it
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def read_errors(sidecar_url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(sidecar_url + "/metrics").text
    out = {}
    for labels, value in re.findall(r"^joulebench_gpu_read_errors_total{(.*)} (\S+)$", text, re.M):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        out[parsed["loop"], parsed.get("kind", "failed")] = float(value)
    return out


def test_bad_readings_are_refused_counted_and_flagged_never_counted(tmp_path) -> None:
    with run_mock_server("--seed", "1", log_dir=tmp_path) as mock:
        proxy = FaultyGpu(mock.url)
        truth = TruthPoller(mock.url)
        try:
            with simulated_sidecar(proxy.url, "--interval", "0.05", log_dir=tmp_path) as side:
                watcher = threading.Thread(target=_arm_when_folder_appears, args=(tmp_path / "runs", proxy))
                watcher.start()
                result = run_joulebench(
                    "run", "--target", mock.url, "--sidecar", side.url, "--schedule", "fixed:interval=0.1",
                    "--n", "60", "--max-tokens", "32", "--idle", "1", "--out", "runs", cwd=tmp_path,
                )  # fmt: skip
                watcher.join()
                errors = read_errors(side.url)
        finally:
            truth.stop()
            proxy.close()
    assert result.returncode == 0, output(result)
    folder = run_folder(result, tmp_path)

    # The energy is the mock's own: the zero was not stitched as a reset (which would add the whole
    # counter again), and the NaN left nothing behind.
    run = manifest(folder)["run"]
    (sidecar,) = manifest(folder)["power"]["sources"]
    measured = sidecar["run_energy_j"]
    assert measured == pytest.approx(truth.energy(run["start_ns"], run["end_ns"]), rel=0.02)
    series = load_power(folder).series[0]
    assert np.all(np.isfinite(series.energy_j)) and np.all(np.diff(series.energy_j) >= 0)
    assert not any("reset" in issue.replace("not a reset", "") for issue in series.issues)

    # Refused at the source and counted per kind.
    assert errors.get(("counter", "glitch"), 0) >= 1 and errors.get(("counter", "invalid"), 0) >= 1, errors
    assert errors.get(("power", "invalid"), 0) >= 2 and errors["counter", "failed"] == 0, errors

    # ... and the run says what was left out, where its figures are shown.
    doc = summary(folder)
    assert "power_issue" in flag_codes(doc)
    messages = " | ".join(f["message"] for f in doc["flags"] if f["code"] == "power_issue")
    left_out = r"reading\(s\) left out, at [^:]*: "
    assert re.search(rf"energy counter {left_out}dropped by the sidecar: a lone drop below", messages)
    assert re.search(rf"energy counter {left_out}refused by the sidecar: not a number", messages)
    assert re.search(rf"power {left_out}refused by the sidecar: not a number, infinite or negative", messages)


def _arm_when_folder_appears(runs: Path, proxy: FaultyGpu) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (runs.is_dir() and any(runs.iterdir())):
        time.sleep(0.02)
    proxy.arm()


def test_a_run_killed_mid_plan_keeps_its_power(tmp_path) -> None:
    with (
        run_mock_server("--seed", "1", log_dir=tmp_path) as mock,
        simulated_sidecar(mock.url, "--interval", "0.05", log_dir=tmp_path) as side,
    ):
        truth = TruthPoller(mock.url)
        try:
            process = subprocess.Popen(
                joulebench_argv(
                    "run", "--target", mock.url, "--sidecar", side.url, "--schedule", "fixed:interval=0.1",
                    "--n", "200", "--max-tokens", "32", "--idle", "1", "--no-progress", "--out", "runs",
                ),
                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            folder = _wait_for_requests(tmp_path / "runs", 80)  # about 4 s into the plan
            process.kill()
            process.wait(timeout=30)
        finally:
            truth.stop()
    assert not (folder / "power.parquet").exists() and not (folder / "requests.parquet").exists()
    assert (folder / "power_samples.jsonl").stat().st_size > 0  # written as it was polled

    recovered = run_joulebench("recover", str(folder), cwd=tmp_path)
    assert recovered.returncode == 0, output(recovered)
    assert "recovered after an unfinished run" in recovered.stdout
    assert "power: rebuilt power.parquet from power_samples.jsonl: 1 GPU(s)" in recovered.stdout

    # The rebuilt series is the mock's counter wherever it has samples.
    series = load_power(folder).series[0]
    inside = (series.t_ns > truth.t_ns[0]) & (series.t_ns < truth.t_ns[-1])
    t_a, t_b = series.t_ns[inside][0], series.t_ns[inside][-1]
    ours = np.interp([t_a, t_b], series.t_ns, series.energy_j)
    assert (t_b - t_a) / 1e9 > 3.0  # the idle window and seconds of the plan
    assert ours[1] - ours[0] == pytest.approx(truth.energy(t_a, t_b), rel=0.01)

    report = run_joulebench("report", str(folder), cwd=tmp_path)
    assert report.returncode == 0, output(report)
    doc = summary(folder)
    assert "no_power_data" not in flag_codes(doc)
    assert doc["run"]["energy_j_total"] > 0
    assert any("rebuilt from power_samples.jsonl" in f["message"] for f in doc["flags"])
    energy = pd.read_parquet(folder / "energy.parquet")
    ok = energy[(~energy["warmup"]) & energy["energy_j"].notna()]
    assert len(ok) >= 20 and (ok["energy_j"] > 0).all()


def _wait_for_requests(runs: Path, lines: int, timeout_s: float = 120) -> Path:
    """The run folder, once its request log has `lines` lines (the plan is under way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logs = list(runs.glob("*/requests.jsonl")) if runs.is_dir() else []
        if logs and logs[0].read_bytes().count(b"\n") >= lines:
            return logs[0].parent
        time.sleep(0.05)
    raise AssertionError(f"the run did not log {lines} lines within {timeout_s} s")
