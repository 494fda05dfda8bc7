"""What `joulebench run` measures around the requests, validated in one place.

The runner's own settings stay in `harness.runner.RunOptions`; this holds the rest: idle capture,
power sources, server metrics, the server's container, and how the report splits energy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from traffic.errors import InputError

from ..energy import METHODS
from ..power.backend import parse_gpus
from ..power.sources.promapi import with_selector

SOURCE_KINDS = ("sidecar", "prometheus", "dcgm")  # also the default order of preference for the primary
IDLE_REAL_S = 30.0  # a real GPU: long enough for the counter's 100 ms steps to be under 1%
IDLE_SIMULATED_S = 3.0  # the simulated GPU's counter is exact, a short window is enough


@dataclass(frozen=True)
class PowerConfig:
    sidecar: str | None = None  # the sidecar's base URL: its high-rate /samples log
    prometheus: str | None = None  # a Prometheus scraping the sidecar (joulebench_gpu_energy_joules_total)
    dcgm: str | None = None  # a Prometheus scraping dcgm-exporter (DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION)
    selector: str = ""  # PromQL label matchers for the Prometheus sources, e.g. instance="gpu-host:9400"
    primary: str | None = None  # which source the join uses; default: the first given of SOURCE_KINDS
    gpus: tuple[str, ...] | None = None  # GPU indices serving the model (None: every GPU a source has)
    prometheus_step_s: float = 1.0  # query resolution: set it to the scrape interval
    # Sidecar /samples poll period during the run: its ring is bounded, and a sidecar that dies takes
    # what it sampled since the last poll with it.
    poll_s: float = 1.0

    @property
    def sources(self) -> dict[str, str]:
        """kind -> location of every source given, primary first."""
        given = {k: v for k in SOURCE_KINDS if (v := getattr(self, k))}
        first = self.primary_kind
        return dict(sorted(given.items(), key=lambda kv: kv[0] != first))

    @property
    def primary_kind(self) -> str | None:
        if self.primary:
            return self.primary
        return next((k for k in SOURCE_KINDS if getattr(self, k)), None)

    def validate(self) -> PowerConfig:
        for kind in SOURCE_KINDS:
            url = getattr(self, kind)
            if url is not None:
                _check_url(f"--{kind}", url)
        if self.primary is not None:
            if self.primary not in SOURCE_KINDS:
                raise InputError(
                    f"--primary: expected one of {', '.join(SOURCE_KINDS)}, got {self.primary!r}"
                )
            if not getattr(self, self.primary):
                raise InputError(f"--primary {self.primary}: give --{self.primary} URL too")
        if self.selector:
            if not (self.prometheus or self.dcgm):
                raise InputError("--power-selector: only applies to --prometheus and --dcgm")
            with_selector("up", self.selector)
        if not self.prometheus_step_s >= 0.001:
            raise InputError(f"--prometheus-step: expected at least 0.001 s, got {self.prometheus_step_s}")
        return self


@dataclass(frozen=True)
class ServerConfig:
    metrics: str = "auto"  # the server's /metrics URL; "auto": <target>/metrics; "off": not scraped
    metrics_interval_s: float = 1.0
    container: str | None = None  # the server's Docker container (name or id)
    restart: bool = False  # restart it before the run, for a fresh server state
    docker_host: str | None = None
    info_file: Path | None = None  # server.json of `joulebench serve vllm|tgi --out DIR`

    def metrics_url(self, target: str) -> str | None:
        if self.metrics == "off":
            return None
        if self.metrics == "auto":
            return target.rstrip("/") + "/metrics"
        return self.metrics

    def validate(self) -> ServerConfig:
        if self.metrics not in ("auto", "off"):
            _check_url("--server-metrics", self.metrics)
        if not 0.05 <= self.metrics_interval_s <= 3600:
            raise InputError(
                f"--server-metrics-interval: expected 0.05 to 3600 seconds, got {self.metrics_interval_s}"
            )
        if self.restart and not self.container:
            raise InputError("--restart-server: needs --server-container NAME")
        if self.docker_host is not None and not self.container:
            raise InputError("--docker-host: only used with --server-container")
        if self.info_file is not None:
            if self.container:
                raise InputError("--server-info: give --server-container or --server-info, not both")
            if not self.info_file.is_file():
                raise InputError(f"--server-info {self.info_file}: file not found")
        return self


@dataclass(frozen=True)
class MeasureConfig:
    power: PowerConfig = field(default_factory=PowerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    idle_s: float | None = None  # idle capture before and after the run; None: by the power source
    method: str = "time"  # how the join splits energy among requests in flight
    strict: bool = False  # exit 1 when a result carries an error flag

    def validate(self, embedded: bool = False) -> MeasureConfig:
        """`embedded`: the embedded default, which brings its own power source."""
        self.power.validate()
        self.server.validate()
        if self.idle_s is not None and not 0 <= self.idle_s <= 3600:
            raise InputError(f"--idle: expected 0 to 3600 seconds, got {self.idle_s}")
        if self.idle_s and not self.power.sources and not embedded:
            raise InputError("--idle: idle power needs a power source (--sidecar, --prometheus or --dcgm)")
        if self.method not in METHODS:
            raise InputError(f"--method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        return self


def parse_gpu_list(text: str | None) -> tuple[str, ...] | None:
    """`--gpus`: 'all' or indices like '0,1' (as the sources label them)."""
    if text is None:
        return None
    indices = parse_gpus(text)
    return None if indices is None else tuple(str(i) for i in indices)


def _check_url(flag: str, url: str) -> None:
    try:
        parts = urlsplit(url)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InputError(f"{flag} {url!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag} {url!r}: not an http(s) URL (e.g. http://127.0.0.1:9400)")
