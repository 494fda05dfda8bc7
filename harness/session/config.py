"""What `joulebench run` measures around the requests, and where it sends them, validated in one place.

The runner's own settings stay in `harness.runner.RunOptions`; this holds the rest: the target, idle
capture, power sources, server metrics, the server's container, and how the report splits energy.
A field made with `flag` is a flag of `joulebench run`, declared next to its default (see
foundation.flag_fields.flag); FLAG_PANEL is the help panel of a model's flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, get_args
from urllib.parse import urlsplit

import httpx

from foundation.errors import InputError
from foundation.flag_fields import check_choice, flag
from harness.backends.detect import Backend
from harness.energy.power_lag import parse_power_lag
from harness.energy.split import Method
from harness.power.gpu_backend import parse_gpus
from harness.power.sources.promapi import with_selector

SourceKind = Literal["sidecar", "prometheus", "dcgm"]
SOURCE_KINDS: tuple[SourceKind, ...] = get_args(SourceKind)  # also the order of preference for the primary
IDLE_REAL_S = 30.0  # a real GPU: long enough for the counter's 100 ms steps to be under 1%
IDLE_SIMULATED_S = 3.0  # the simulated GPU's counter is exact, a short window is enough
_POWER = "Power and energy"


@dataclass(frozen=True)
class TargetConfig:
    FLAG_PANEL: ClassVar[str] = "Run"

    # None: the embedded default. Its flag, --target, belongs to the run command: it also picks the plan.
    url: str | None = field(metadata={"flag": None})
    backend: Backend = flag(
        "auto",
        "--backend <str>",  # typer's metavar: six choices (aliases too) would widen the column
        "Protocol: auto (GET /v1/models -> openai-chat, else GET /info -> tgi), openai-chat, "
        "openai-completions, or tgi (TGI's /generate and /generate_stream).",
    )
    model: str | None = flag(
        None, "--model", "Model name for OpenAI requests (default: the first of GET /v1/models)."
    )
    api_key_env: str = flag(
        "JOULEBENCH_API_KEY",
        "--api-key-env",
        "Environment variable holding the API key (sent as a bearer token; never written anywhere).",
    )
    label: str | None = flag(
        None,
        "--label TEXT",
        "A label for the run (one line, up to 200 characters), kept in manifest.json and shown by "
        "`joulebench ls`.",
    )

    def __post_init__(self) -> None:
        # Checked when made: the probe of the server, which checks it too, comes after the plan is built.
        if self.url is not None:
            _check_url("--target", self.url, example="http://127.0.0.1:8000")
        check_choice("--backend", self.backend, Backend)
        if self.label is not None:
            _check_label(self.label)


MAX_LABEL_CHARS = 200


def _check_label(label: str) -> None:
    # One printable line: `joulebench ls` shows it on a run's line, and a newline would split that.
    if not label.strip() or len(label) > MAX_LABEL_CHARS or not label.isprintable():
        raise InputError(
            f"--label {label!r}: expected one line of printable text, 1 to {MAX_LABEL_CHARS} characters"
        )


def parse_gpu_list(text: str | None) -> tuple[str, ...] | None:
    """`--gpus`: 'all' or indices like '0,1' (as the sources label them)."""
    if text is None:
        return None
    indices = parse_gpus(text)
    return None if indices is None else tuple(str(i) for i in indices)


@dataclass(frozen=True)
class PowerConfig:
    FLAG_PANEL: ClassVar[str] = _POWER

    sidecar: str | None = flag(
        None,
        "--sidecar URL",
        "The power sidecar (joulebench sidecar): its high-rate sample log (/samples) is the primary "
        "power source. A run polls it throughout (raw samples go to power_samples.jsonl); a merge "
        "reads the run's window from the sidecar's ring (about 15 min at 100 Hz).",
    )
    prometheus: str | None = flag(
        None,
        "--prometheus URL",
        "A Prometheus that scrapes the sidecar: joulebench_gpu_energy_joules_total (primary if "
        "there is no --sidecar, else a cross-check).",
    )
    dcgm: str | None = flag(
        None,
        "--dcgm URL",
        "A Prometheus that scrapes NVIDIA's dcgm-exporter: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION "
        "(primary if it is the only source, else a cross-check). May be the same URL as --prometheus.",
    )
    primary: SourceKind | None = flag(
        None,
        "--primary",
        "The power source the energy join uses; the others are read for cross-checks. "
        f"(default: the first given of {', '.join(SOURCE_KINDS)})",
    )
    selector: str = flag(
        "",
        "--power-selector MATCHERS",
        'PromQL label matchers for --prometheus and --dcgm series, e.g. instance="gpu-host:9400" '
        "(needed when the Prometheus holds several hosts' GPUs).",
    )
    gpus: tuple[str, ...] | None = flag(
        None,
        "--gpus all|0,1,...",
        "The GPUs serving the model: energy is summed over these (default: every GPU the source has).",
        parse=parse_gpu_list,
    )
    prometheus_step_s: float = flag(
        1.0,
        "--prometheus-step SECONDS",
        "Query resolution for --prometheus/--dcgm: set it to the scrape interval.",
    )
    # Sidecar /samples poll period during the run: its ring is bounded, and a sidecar that dies takes
    # what it sampled since the last poll with it. Not a flag: nothing a user would tune.
    poll_s: float = field(default=1.0, metadata={"flag": None})

    @property
    def sources(self) -> dict[str, str]:
        """kind -> location of every source given, primary first."""
        given = {k: v for k in SOURCE_KINDS if (v := getattr(self, k))}
        first = self.primary_kind
        return dict(sorted(given.items(), key=lambda kv: kv[0] != first))

    @property
    def primary_kind(self) -> SourceKind | None:
        if self.primary:
            return self.primary
        return next((k for k in SOURCE_KINDS if getattr(self, k)), None)

    def validate(self) -> PowerConfig:
        for kind in SOURCE_KINDS:
            url = getattr(self, kind)
            if url is not None:
                _check_url(f"--{kind}", url)
        if self.primary is not None:
            check_choice("--primary", self.primary, SourceKind)
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
    FLAG_PANEL: ClassVar[str] = "Server"

    metrics: str = flag(
        "auto",
        "--server-metrics auto|off|URL",
        "Scrape the server's Prometheus metrics during the run into server_metrics.parquet "
        "(auto: TARGET/metrics). Failed scrapes are counted, never fatal.",
    )
    metrics_interval_s: float = flag(
        1.0, "--server-metrics-interval SECONDS", "Seconds between server metrics scrapes."
    )
    container: str | None = flag(
        None,
        "--server-container NAME",
        "The server's Docker container: its image, version, flags and GPUs go into the manifest, "
        "its log (since its last start) into server.log.",
    )
    restart: bool = flag(
        False,
        "--restart-server",
        "Restart --server-container before the run (fresh KV and prefix caches) and wait until "
        "it is healthy.",
    )
    docker_host: str | None = flag(
        None,
        "--docker-host URL",
        "Docker Engine for --server-container, e.g. unix:///var/run/docker.sock "
        "(default: DOCKER_HOST, else the local socket).",
    )
    info_file: Path | None = flag(
        None,
        "--server-info FILE",
        "server.json written by `joulebench serve vllm|tgi|transformers --out DIR` for a natively started "
        "server: recorded in the manifest.",
    )

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
    FLAG_PANEL: ClassVar[str] = _POWER

    power: PowerConfig = field(default_factory=PowerConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    idle_s: float | None = flag(
        None,
        "--idle SECONDS",
        "Idle capture before and after the run (power only, no requests), for idle power. "
        f"(default: {IDLE_REAL_S:g} s; {IDLE_SIMULATED_S:g} s when the power source is the mock's "
        "simulated GPU; 0 without a power source)",
    )
    method: Method = flag(
        "time",
        "--method",
        "How energy is split among the requests in flight: time (equal shares), tokens "
        "(by prefill and decode tokens) or steps (by the engine steps each request was in, "
        "reconstructed from chunk times). See docs/energy.md.",
    )
    strict: bool = flag(
        False,
        "--strict/--no-strict",
        "Exit with status 1 when a result has an error flag (no power data, no successful requests, "
        "power covering only part of an arm, sends later than the lateness bound, ...).",
    )
    max_lateness_ms: float | None = flag(
        None,
        "--max-lateness-ms MS",
        "Bound on each open-loop arm's p99 lateness (sent - planned); above it the arm is flagged "
        "lateness_over_bound, an error. (default: from each arm's planned gaps, see docs/energy.md)",
        parse=lambda text: parse_lateness_ms("--max-lateness-ms", text),
    )
    slo_ttft_s: float | None = flag(
        None,
        "--slo-ttft SECONDS",
        "SLO on time to first token as users see it (from their arrival, a shaping policy's hold "
        "included): the summary's goodput is the share and rate of planned requests that succeeded "
        "within it (and --slo-e2e, if given). (default: none, no goodput)",
        parse=lambda text: parse_slo_s("--slo-ttft", text),
    )
    slo_e2e_s: float | None = flag(
        None,
        "--slo-e2e SECONDS",
        "SLO on end-to-end latency as users see it, from their arrival: goodput as for --slo-ttft. "
        "(default: none)",
        parse=lambda text: parse_slo_s("--slo-e2e", text),
    )
    power_lag: str = flag(
        "auto",
        "--power-lag auto|off|SECONDS",
        "Shift the power series this much earlier before splitting it: auto estimates each GPU's delay "
        "behind the requests (applied when stable; flagged power_lag_unstable when not), off applies "
        "none. Recorded, so `joulebench report` keeps it. See docs/energy.md.",
        parse=parse_power_lag,
    )
    # Not flags: an experiment's cells may leave report.html out (its plots take about a second), and
    # capture idle power before each cell only (the gap after one cell is the next one's idle window).
    report_html: bool = field(default=True, metadata={"flag": None})
    idle_after: bool = field(default=True, metadata={"flag": None})

    def validate(self, embedded: bool = False) -> MeasureConfig:
        """`embedded`: the embedded default, which brings its own power source."""
        self.power.validate()
        self.server.validate()
        if self.idle_s is not None and not 0 <= self.idle_s <= 3600:
            raise InputError(f"--idle: expected 0 to 3600 seconds, got {self.idle_s}")
        if self.idle_s and not self.power.sources and not embedded:
            raise InputError("--idle: idle power needs a power source (--sidecar, --prometheus or --dcgm)")
        check_choice("--method", self.method, Method)
        parse_power_lag(self.power_lag)
        if self.max_lateness_ms is not None:
            parse_lateness_ms("--max-lateness-ms", repr(self.max_lateness_ms))
        for name, value in (("--slo-ttft", self.slo_ttft_s), ("--slo-e2e", self.slo_e2e_s)):
            if value is not None:
                parse_slo_s(name, repr(value))
        return self


def parse_lateness_ms(flag: str, text: str) -> float:
    """A lateness bound: finite milliseconds above 0."""
    return _positive(flag, text, "milliseconds")


def parse_slo_s(flag: str, text: str) -> float:
    """An SLO: finite seconds above 0."""
    return _positive(flag, text, "seconds")


def _positive(flag: str, text: str, unit: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise InputError(f"{flag}: expected {unit} above 0, got {text!r}")
    return value


def _check_url(flag: str, url: str, example: str = "http://127.0.0.1:9400") -> None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port outside 0-65535, which httpx.URL lets through)
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InputError(f"{flag} {url!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag} {url!r}: not an http(s) URL (e.g. {example})")
