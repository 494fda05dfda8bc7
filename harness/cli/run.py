"""`joulebench run`: flags -> settings -> `harness.measure.session.run_measured` (docs/run.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from traffic.errors import InputError

from ..measure.config import MeasureConfig, PowerConfig, ServerConfig, parse_gpu_list
from ..measure.session import PlanSource, TargetConfig, run_measured
from ..records import Shard
from ..runner import RunOptions
from ._plan_options import EPILOG, PlanOptions, plan_options
from .app import app

_RUN = "Run"
_POWER = "Power and energy"
_SERVER = "Server"


@app.command("run", epilog=EPILOG)
@plan_options
def run(
    plan: PlanOptions,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="URL",
            help="Base URL of the server, e.g. http://127.0.0.1:8000. Without it: the embedded default "
            "(a mock server and a simulated power sidecar, started and stopped by joulebench; a built-in "
            "three-arm plan unless --plan or plan flags are given).",
            show_default=False,
            rich_help_panel=_RUN,
        ),
    ] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            metavar="FILE",
            help="A plan from `joulebench plan build` (instead of the plan flags).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for run folders (each run gets <out>/<run_id>/).",
            rich_help_panel=_RUN,
        ),
    ] = Path("runs"),
    backend: Annotated[
        str,
        typer.Option(
            help="Protocol: auto (GET /v1/models -> openai-chat, else GET /info -> tgi), openai-chat, "
            "openai-completions, or tgi (TGI's /generate and /generate_stream).",
            rich_help_panel=_RUN,
        ),
    ] = "auto",
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name for OpenAI requests (default: the first of GET /v1/models).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    api_key_env: Annotated[
        str,
        typer.Option(
            help="Environment variable holding the API key (sent as a bearer token; never written anywhere).",
            rich_help_panel=_RUN,
        ),
    ] = "JOULEBENCH_API_KEY",
    stream: Annotated[
        bool,
        typer.Option(
            help="Streaming responses (per-chunk times, TTFT) or whole responses.", rich_help_panel=_RUN
        ),
    ] = True,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            help="Client-side cap on requests in flight; the wait is logged as queued_ns "
            "(default: no cap, pure open loop).",
            rich_help_panel=_RUN,
        ),
    ] = None,
    max_rate: Annotated[
        float | None,
        typer.Option(
            metavar="REQ/S",
            help="Guard: never more than this many requests per second "
            "(floor(R) per 1 s window); the wait is logged as queued_ns.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    warmup: Annotated[
        int,
        typer.Option(
            help="Requests sent one at a time before the plan (the plan's first prompts), logged "
            "with warmup=true and negative ids, excluded from results.",
            rich_help_panel=_RUN,
        ),
    ] = 1,
    time_limit: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Stop sending this long after the measured start; "
            "requests not sent by then are logged not_sent.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Per-request limit from sending to the end of the response.",
            rich_help_panel=_RUN,
        ),
    ] = 300.0,
    grace: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="After Ctrl-C, SIGTERM or the time limit: how long requests "
            "in flight may still finish before they are cancelled.",
            rich_help_panel=_RUN,
        ),
    ] = 30.0,
    arm_gap: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Idle time between one arm's last response and the next arm's start.",
            rich_help_panel=_RUN,
        ),
    ] = 0.0,
    shard: Annotated[
        str,
        typer.Option(
            metavar="I/N",
            help="Send only this shard's slice of the plan (request_id % N == I) at "
            "the original offsets; merge the shards' folders with `joulebench merge`.",
            rich_help_panel=_RUN,
        ),
    ] = "0/1",
    start_at: Annotated[
        float | None,
        typer.Option(
            metavar="EPOCH_S",
            help="Start the measured plan at this epoch time (seconds), "
            "so all shards start together; warm-up happens before it.",
            rich_help_panel=_RUN,
        ),
    ] = None,
    transport: Annotated[
        str,
        typer.Option(
            help="HTTP transport under httpx: aiohttp (aiohttp's connection pool, cheaper per request) or "
            "httpx (httpcore). See docs/runner.md.",
            rich_help_panel=_RUN,
        ),
    ] = "aiohttp",
    progress: Annotated[
        bool, typer.Option(help="Live progress display on stderr.", rich_help_panel=_RUN)
    ] = True,
    sidecar: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The power sidecar (joulebench sidecar): its high-rate sample log (/samples), polled "
            "during the run, is the primary power source; raw samples go to power_samples.jsonl.",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    prometheus: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A Prometheus that scrapes the sidecar: joulebench_gpu_energy_joules_total (primary if "
            "there is no --sidecar, else a cross-check).",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    dcgm: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="A Prometheus that scrapes NVIDIA's dcgm-exporter: DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION "
            "(primary if it is the only source, else a cross-check). May be the same URL as --prometheus.",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    primary: Annotated[
        str | None,
        typer.Option(
            metavar="sidecar|prometheus|dcgm",
            help="The power source the energy join uses; the others are read for cross-checks. "
            "(default: the first given of sidecar, prometheus, dcgm)",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    power_selector: Annotated[
        str,
        typer.Option(
            metavar="MATCHERS",
            help='PromQL label matchers for --prometheus and --dcgm series, e.g. instance="gpu-host:9400" '
            "(needed when the Prometheus holds several hosts' GPUs).",
            rich_help_panel=_POWER,
        ),
    ] = "",
    gpus: Annotated[
        str | None,
        typer.Option(
            metavar="all|0,1,...",
            help="The GPUs serving the model: energy is summed over these "
            "(default: every GPU the source has).",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    prometheus_step: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            help="Query resolution for --prometheus/--dcgm: set it to the scrape interval.",
            rich_help_panel=_POWER,
        ),
    ] = 1.0,
    idle: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Idle capture before and after the run (power only, no requests), for idle power. "
            "(default: 30 s; 3 s when the power source is the mock's simulated GPU; "
            "0 without a power source)",
            show_default=False,
            rich_help_panel=_POWER,
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            metavar="time|tokens",
            help="How energy is split among the requests in flight: time (equal shares) or tokens "
            "(by prefill and decode tokens). See docs/energy.md.",
            rich_help_panel=_POWER,
        ),
    ] = "time",
    strict: Annotated[
        bool,
        typer.Option(
            help="Exit with status 1 when a result has an error flag (no power data, no successful "
            "requests, ...).",
            rich_help_panel=_POWER,
        ),
    ] = False,
    server_metrics: Annotated[
        str,
        typer.Option(
            metavar="auto|off|URL",
            help="Scrape the server's Prometheus metrics during the run into server_metrics.parquet "
            "(auto: TARGET/metrics). Failed scrapes are counted, never fatal.",
            rich_help_panel=_SERVER,
        ),
    ] = "auto",
    server_metrics_interval: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds between server metrics scrapes.", rich_help_panel=_SERVER
        ),
    ] = 1.0,
    server_container: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="The server's Docker container: its image, version, flags and GPUs go into the manifest, "
            "its log (since its last start) into server.log.",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
    restart_server: Annotated[
        bool,
        typer.Option(
            "--restart-server",
            help="Restart --server-container before the run (fresh KV and prefix caches) and wait until "
            "it is healthy.",
            rich_help_panel=_SERVER,
        ),
    ] = False,
    docker_host: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Docker Engine for --server-container, e.g. unix:///var/run/docker.sock "
            "(default: DOCKER_HOST, else the local socket).",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
    server_info: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="server.json written by `joulebench serve vllm|tgi --out DIR` for a natively started "
            "server: recorded in the manifest.",
            show_default=False,
            rich_help_panel=_SERVER,
        ),
    ] = None,
) -> None:
    """Send an arrival plan to an LLM server, log every request, measure GPU energy, report per request.

    Plan (--plan FILE or the plan flags) -> idle capture -> the plan, arm by arm -> idle capture ->
    power from the sources (--sidecar, --prometheus, --dcgm) -> energy join -> summary.json,
    energy.parquet, report.html and a table here. Without --target, everything runs on an embedded mock
    stack: `joulebench run` alone measures three arrival schedules and says which cost least per
    request. The run folder <out>/<run_id>/ also holds plan.parquet, requests.parquet,
    power.parquet, server_metrics.parquet and manifest.json. See docs/run.md.
    """
    options = RunOptions(
        stream=stream, max_concurrency=max_concurrency, max_rate=max_rate, warmup=warmup,
        time_limit_s=time_limit, timeout_s=timeout, grace_s=grace, arm_gap_s=arm_gap,
        shard=Shard.parse(shard), start_at_epoch_s=start_at, progress=progress, transport=transport,
    )  # fmt: skip
    measure = MeasureConfig(
        power=PowerConfig(
            sidecar=sidecar, prometheus=prometheus, dcgm=dcgm, selector=power_selector, primary=primary,
            gpus=parse_gpu_list(gpus), prometheus_step_s=prometheus_step,
        ),
        server=ServerConfig(
            metrics=server_metrics, metrics_interval_s=server_metrics_interval, container=server_container,
            restart=restart_server, docker_host=docker_host, info_file=server_info,
        ),
        idle_s=idle, method=method, strict=strict,
    )  # fmt: skip
    code = run_measured(
        TargetConfig(url=target, backend=backend, model=model, api_key_env=api_key_env),
        _plan_source(plan_file, plan, embedded=target is None),
        options,
        measure,
        out,
    )
    if code:
        raise typer.Exit(code)


def _plan_source(plan_file: Path | None, flags: PlanOptions, embedded: bool) -> PlanSource:
    if plan_file is not None:
        if flags.given():
            raise InputError("--plan: give a plan file or plan flags (--prompts, --schedule, ...), not both")
        return PlanSource(file=plan_file)
    if flags.given():
        return PlanSource(spec=flags.to_spec)
    if not embedded:  # the built-in plan is for the embedded mock, not for someone's server
        raise InputError(
            "--plan: give a plan file, or build one with plan flags (e.g. --schedule ... --n 100)"
        )
    return PlanSource()
