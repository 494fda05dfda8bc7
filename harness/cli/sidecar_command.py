"""`joulebench sidecar`: sample GPU power and energy, serve it to Prometheus and to the harness."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated

import httpx
import typer

from foundation.errors import InputError
from harness.cli.app import app
from harness.power.gpu_backend import PowerBackend, parse_gpus
from harness.power.nvml import NvmlBackend
from harness.power.sampler import MAX_INTERVAL_S, MIN_INTERVAL_S
from harness.power.sidecar_server import Sidecar
from harness.power.simulated import SimulatedBackend


@app.command("sidecar")
def sidecar(
    host: Annotated[
        str,
        typer.Option(
            help="Address to listen on: this host only by default. --host 0.0.0.0 (all interfaces, for "
            "a Prometheus or harness on another host or container) lets anyone who can reach the port "
            "read this host's GPU power, energy and clock: there is no authentication.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port for /metrics, /samples, /time and /healthz.")] = 9400,
    interval: Annotated[
        float,
        typer.Option(
            help=f"Seconds between power samples ({MIN_INTERVAL_S}-{MAX_INTERVAL_S}; "
            "0.1 = 10 Hz, 0.01 = 100 Hz). The energy counter is read every max(interval, 0.5) s "
            "as the exact anchor.",
        ),
    ] = 0.1,
    gpus: Annotated[str, typer.Option(help="GPU indices to sample: 'all' or a list like '0,2'.")] = "all",
    backend: Annotated[
        str,
        typer.Option(
            help="'nvml' reads the GPUs of this machine; 'simulated' reads the mock server's simulated GPU."
        ),
    ] = "nvml",
    simulate_from: Annotated[
        str | None,
        typer.Option(
            "--simulate-from",
            help="Base URL of a joulebench mock server (its GET /sim/gpu), e.g. http://127.0.0.1:8000. "
            "Required with --backend simulated.",
            show_default=False,
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log",
            help="Also append every sample to FILE (JSON lines; the format of /samples, see docs/power.md).",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
) -> None:
    """Run the power sidecar until Ctrl-C or SIGTERM.

    Samples each GPU's instant power every --interval seconds and its energy counter at a lower rate
    on fixed-cadence threads; serves Prometheus metrics at /metrics (joulebench_gpu_energy_joules_total
    and the rest, see docs/power.md), the high-rate sample log at /samples?since=SEQ, and this host's
    clock at /time.
    """
    if not MIN_INTERVAL_S <= interval <= MAX_INTERVAL_S:
        raise InputError(f"--interval: expected {MIN_INTERVAL_S} to {MAX_INTERVAL_S} seconds, got {interval}")
    if not 0 <= port <= 65535:
        raise InputError(f"--port: expected 0-65535, got {port}")
    indices = parse_gpus(gpus)
    chosen = _backend(backend, simulate_from, indices)
    try:
        car = Sidecar(chosen, host=host, port=port, interval_s=interval, log_path=log)
    except BaseException:
        chosen.close()
        raise
    logging.basicConfig(level=logging.WARNING, format="joulebench sidecar: %(message)s")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    car.start()
    listen_host, listen_port = car.address
    names = ", ".join(f"{g.index} ({g.name or g.uuid})" for g in chosen.devices())
    typer.echo(
        f"joulebench sidecar: {chosen.name} GPU {names}; every {interval:g} s; "
        f"http://{listen_host}:{listen_port}/metrics /samples /time" + (f"; log {log}" if log else ""),
        err=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        car.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("joulebench sidecar: stopped", err=True)


def _backend(kind: str, simulate_from: str | None, indices: list[int] | None) -> PowerBackend:
    if kind == "nvml":
        if simulate_from is not None:
            raise InputError("--simulate-from: only used with --backend simulated")
        return NvmlBackend(indices)
    if kind == "simulated":
        if simulate_from is None:
            raise InputError("--backend simulated: needs --simulate-from URL (the mock server)")
        try:
            httpx.URL(simulate_from)
        except httpx.InvalidURL as exc:  # not an httpx.HTTPError: the backend's reads would not catch it
            raise InputError(f"--simulate-from: {simulate_from!r} is not a valid URL ({exc})") from None
        return SimulatedBackend(simulate_from, indices)
    raise InputError(f"--backend: expected 'nvml' or 'simulated', got {kind!r}")
