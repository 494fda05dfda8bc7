"""`joulebench mock-server`: an OpenAI (vLLM) and TGI compatible server that simulates a GPU."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from foundation.errors import InputError
from harness.cli.app import app

_GPUS = "Simulated GPUs (docs/mock.md)"
_FAULTS = "Fault injection (per-request probabilities; also settable in the profile's 'faults')"


def _rate(name: str, what: str) -> Any:
    return typer.Option(f"--{name}", min=0.0, max=1.0, help=what, rich_help_panel=_FAULTS, show_default=False)


@app.command("mock-server")
def mock_server(
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback by default; 0.0.0.0 serves other hosts).")
    ] = ("127.0.0.1"),
    port: Annotated[
        int,
        typer.Option(
            min=0, max=65535, help="Port to bind; 0 picks a free one (the first stdout line says which)."
        ),
    ] = 8000,
    profile: Annotated[
        str,
        typer.Option(help="Built-in profile name (see docs/mock.md) or path to a profile JSON file."),
    ] = "h100-vllm0.26-llama3.2-1b",
    seed: Annotated[int, typer.Option(min=0, help="Seed for output lengths, token texts and faults.")] = 0,
    speed: Annotated[
        float,
        typer.Option(
            min=1e-6, help="Simulated seconds per wall-clock second (>1 runs the virtual clock faster)."
        ),
    ] = 1.0,
    model_name: Annotated[
        str, typer.Option(help="Model id served (what requests must name in 'model').")
    ] = "mock",
    flavour: Annotated[
        str | None,
        typer.Option(
            help="'vllm' or 'tgi': which /metrics families and /v1/models shape (default: the profile's)."
        ),
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option(help="tokenizer.json to count prompt tokens exactly (default: ceil(UTF-8 bytes / 4))."),
    ] = None,
    always_max_tokens: Annotated[
        bool,
        typer.Option(
            help="Every request generates max_tokens, as if ignore_eos were set (TGI has no ignore_eos)."
        ),
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a profile field: SECTION.FIELD=VALUE (a JSON value), e.g. "
            "scheduler.max_num_seqs=64. Repeatable.",
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option(help="Write {url, host, port, pid} as JSON here once serving (removed on exit)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "warning",
    http: Annotated[
        str, typer.Option(help="uvicorn HTTP implementation: auto (httptools if installed), h11, httptools.")
    ] = ("auto"),
    loop: Annotated[
        str, typer.Option(help="Event loop: auto (uvloop if installed), asyncio, uvloop.")
    ] = "auto",
    error_rate: Annotated[
        float | None, _rate("error-rate", "Answer this share of requests with an error (--error-status).")
    ] = None,
    error_status: Annotated[
        list[int] | None,
        typer.Option(
            help="Status codes for --error-rate (repeatable; 500, 502, 503, 504).", rich_help_panel=_FAULTS
        ),
    ] = None,
    rate_limit_rate: Annotated[
        float | None, _rate("rate-limit-rate", "Answer this share with 429 and Retry-After.")
    ] = None,
    retry_after: Annotated[
        int | None, typer.Option(min=0, help="Retry-After seconds of injected 429s.", rich_help_panel=_FAULTS)
    ] = None,
    spike_rate: Annotated[
        float | None, _rate("spike-rate", "Hold this share of requests --spike-s before serving.")
    ] = None,
    spike_s: Annotated[
        float | None,
        typer.Option(min=0.0, help="Latency spike length, simulated seconds.", rich_help_panel=_FAULTS),
    ] = None,
    stall_rate: Annotated[
        float | None, _rate("stall-rate", "Pause this share of responses --stall-s (mid-stream).")
    ] = None,
    stall_s: Annotated[
        float | None, typer.Option(min=0.0, help="Stall length, simulated seconds.", rich_help_panel=_FAULTS)
    ] = None,
    disconnect_rate: Annotated[
        float | None, _rate("disconnect-rate", "Drop the connection of this share mid-response.")
    ] = None,
    malformed_rate: Annotated[
        float | None,
        _rate("malformed-rate", "Send one truncated-JSON event (or body) in this share of responses."),
    ] = None,
    no_usage_rate: Annotated[
        float | None, _rate("no-usage-rate", "Leave usage (TGI: details) out of this share.")
    ] = None,
    linebreak_rate: Annotated[
        float | None,
        _rate(
            "linebreak-rate",
            "Share of output tokens holding a str.splitlines() break (U+2028, \\x0b, \\x1c, ...).",
        ),
    ] = None,
    gpus: Annotated[
        int,
        typer.Option(
            min=1, help="GPUs on the simulated host (all listed at /sim/gpu).", rich_help_panel=_GPUS
        ),
    ] = 1,
    tensor_parallel: Annotated[
        int,
        typer.Option(
            min=1,
            help="How many of them serve the model (the first ones); the rest idle.",
            rich_help_panel=_GPUS,
        ),
    ] = 1,
    gpu_fail: Annotated[
        str | None,
        typer.Option(
            help="INDEX@SECONDS: every read of that GPU fails from that simulated second on.",
            rich_help_panel=_GPUS,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve vLLM's OpenAI API and TGI's API from a simulated GPU (continuous batching and power).

    Prints the base URL as the first stdout line once it accepts connections; stops on Ctrl-C or
    SIGTERM. The simulated GPU is at GET /sim/gpu (docs/contracts.md). Documentation: docs/mock.md.
    """
    from harness.mock.gpu_host import host_layout
    from harness.mock.profile import load_profile
    from harness.mock.server import bind, serve
    from harness.mock.state import Settings

    if not math.isfinite(speed):  # typer's min= lets inf and nan through; the simulator refuses them
        raise InputError(f"--speed: expected a finite number of simulated seconds per second, got {speed}")
    prof = load_profile(profile)
    changes: dict[str, dict[str, Any]] = {}
    for item in set_ or []:
        key, sep, raw = item.partition("=")
        section, dot, field = key.partition(".")
        if not sep or not dot:
            raise InputError(f"--set {item!r}: expected SECTION.FIELD=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw  # a bare string
        changes.setdefault(section, {})[field] = value
    faults = {
        name: value
        for name, value in {
            "error_rate": error_rate,
            "rate_limit_rate": rate_limit_rate,
            "spike_rate": spike_rate,
            "stall_rate": stall_rate,
            "disconnect_rate": disconnect_rate,
            "malformed_rate": malformed_rate,
            "no_usage_rate": no_usage_rate,
            "linebreak_rate": linebreak_rate,
            "error_statuses": error_status or None,  # an empty list is "not given"
            "retry_after_s": retry_after,
            "spike_s": spike_s,
            "stall_s": stall_s,
        }.items()
        if value is not None  # flags not given keep the profile's setting
    }
    if faults:
        changes["faults"] = {**changes.get("faults", {}), **faults}
    for section in changes:
        if section not in type(prof).model_fields or section in ("source", "schema_version"):
            raise InputError(f"--set: unknown profile section {section!r}")
    if changes:
        prof = prof.with_changes(**changes)
    if flavour is not None and flavour not in ("vllm", "tgi"):
        raise InputError(f"--flavour: expected 'vllm' or 'tgi', got {flavour!r}")
    if tokenizer is not None and not tokenizer.is_file():
        raise InputError(f"--tokenizer: {tokenizer} is not a file")
    if not model_name.strip():
        raise InputError("--model-name: must not be empty (requests name it in 'model')")
    if ready_file is not None:
        _check_writable(ready_file)
    for name, value, allowed in (
        ("--http", http, ("auto", "h11", "httptools")),
        ("--loop", loop, ("auto", "asyncio", "uvloop")),
        ("--log-level", log_level, ("critical", "error", "warning", "info", "debug")),
    ):
        if value not in allowed:
            raise InputError(f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    settings = Settings(
        profile=prof,
        seed=seed,
        speed=speed,
        model_name=model_name,
        flavour=flavour or prof.flavour,
        tokenizer=tokenizer,
        always_max_tokens=always_max_tokens,
        host=host_layout(gpus, tensor_parallel, gpu_fail),
    )
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise InputError(f"--host {host} --port {port}: cannot bind ({exc.strerror or exc})") from None
    serve(settings, sock, ready_file=ready_file, http=http, loop=loop, log_level=log_level)


def _check_writable(path: Path) -> None:
    # The file appears only once the server is up (its existence means "ready"), so probe the
    # folder now: a failure then would come from inside uvicorn's start-up, as a traceback.
    if path.is_dir():
        raise InputError(f"--ready-file {path}: is a folder")
    probe = path.with_name(path.name + ".tmp")
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--ready-file {path}: cannot write there ({exc.strerror or exc})") from None
