"""`joulebench serve vllm|tgi|transformers|container`: start or control the inference server under test."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from foundation.errors import InputError
from harness.cli.app import app
from harness.deploy.container import ServerContainer
from harness.deploy.health import ServerError
from harness.deploy.native import LaunchSpec, NativeServer, tgi_spec, transformers_spec, vllm_spec
from harness.power.gpu_backend import parse_gpus

serve_app = typer.Typer(
    help="Start vLLM, TGI or transformers as a subprocess (hosts without Docker), or control the server's "
    "container.",
    no_args_is_help=True,
)
app.add_typer(serve_app, name="serve")

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}

Out = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Run folder for server.log and server.json (default: runs/serve-KIND-TIME).",
        show_default=False,
    ),
]
Host = Annotated[str, typer.Option(help="Address the server binds to (0.0.0.0 to serve other hosts).")]
Model = Annotated[str, typer.Option(help="Model: a local folder or a Hugging Face model id.")]
OpenAIPort = Annotated[int, typer.Option(help="Port of the OpenAI-compatible API.")]
HealthTimeout = Annotated[
    float, typer.Option("--health-timeout", help="Seconds to wait for GET /health to answer 200.", min=1)
]
Grace = Annotated[
    float,
    typer.Option(
        help="Seconds between the stop signal (SIGTERM) and SIGKILL when stopping the server.", min=0
    ),
]
Env = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        help="KEY=VALUE set in the server's environment (repeatable), e.g. VLLM_USE_FLASHINFER_SAMPLER=0.",
        show_default=False,
    ),
]


@serve_app.command("vllm", context_settings=_PASS_THROUGH)
def serve_vllm(
    ctx: typer.Context,
    model: Model,
    host: Host = "127.0.0.1",
    port: OpenAIPort = 8000,
    python: Annotated[
        str,
        typer.Option(
            help="Python interpreter that has vLLM installed (default: the one running joulebench).",
            show_default=False,
        ),
    ] = sys.executable,
    tensor_parallel_size: Annotated[
        int | None,
        typer.Option(
            "--tensor-parallel-size",
            min=1,
            help="Split the model over this many GPUs (vLLM's --tensor-parallel-size); the run's --gpus must "
            "then name all of them.",
            show_default=False,
        ),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="The GPUs that serve, as the sidecar numbers them (0,1): CUDA_VISIBLE_DEVICES in PCI bus "
            "order; as many as the model is split over. Give the same to `joulebench run --gpus`.",
            show_default=False,
        ),
    ] = None,
    env: Env = None,
    out: Out = None,
    health_timeout: HealthTimeout = 600.0,
    grace: Grace = 30.0,
) -> None:
    """Run vLLM's OpenAI-compatible server until Ctrl-C (or SIGTERM), then stop it and all its processes.

    Every option not listed here is passed to vLLM unchanged, e.g.
    `joulebench serve vllm --model /models/llama --dtype bfloat16 --max-model-len 4096 --enforce-eager`.
    The server's log and its exact flags and version go to the run folder (server.log, server.json).
    """
    spec = vllm_spec(
        model, host=host, port=port, extra_args=ctx.args, python=python, env=_parse_env(env),
        tensor_parallel_size=tensor_parallel_size, gpus=_parse_serving_gpus(gpus),
    )  # fmt: skip
    _serve(spec, out, health_timeout, grace)


@serve_app.command("tgi", context_settings=_PASS_THROUGH)
def serve_tgi(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Option(help="Model: a local folder or a Hugging Face model id (--model-id).")
    ],
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of TGI's API.")] = 8080,
    launcher: Annotated[
        str, typer.Option(help="TGI's launcher executable (name on PATH, or a path).")
    ] = "text-generation-launcher",
    env: Env = None,
    out: Out = None,
    health_timeout: HealthTimeout = 600.0,
    grace: Grace = 30.0,
) -> None:
    """Run TGI's text-generation-launcher until Ctrl-C (or SIGTERM), then stop it and all its processes.

    Every option not listed here is passed to the launcher unchanged, e.g. `--dtype bfloat16
    --max-batch-prefill-tokens 8192`. The log, flags and version go to the run folder.
    """
    spec = tgi_spec(model, host=host, port=port, extra_args=ctx.args, launcher=launcher, env=_parse_env(env))
    _serve(spec, out, health_timeout, grace)


@serve_app.command("transformers", context_settings=_PASS_THROUGH)
def serve_transformers(
    ctx: typer.Context,
    model: Model,
    host: Host = "127.0.0.1",
    port: OpenAIPort = 8000,
    continuous_batching: Annotated[
        bool,
        typer.Option(
            "--continuous-batching/--no-continuous-batching",
            help="Batch requests together (transformers' continuous batching); without it each request "
            "runs its own generate().",
        ),
    ] = True,
    executable: Annotated[
        str, typer.Option(help="transformers' command-line program (name on PATH, or a path).")
    ] = "transformers",
    env: Env = None,
    out: Out = None,
    health_timeout: HealthTimeout = 600.0,
    grace: Grace = 30.0,
) -> None:
    """Run `transformers serve` (Hugging Face transformers' OpenAI-compatible server) until Ctrl-C.

    The model is loaded at start and is the only one served. Every option not listed here is passed
    to `transformers serve` unchanged, e.g. `--dtype bfloat16 --attn-implementation sdpa`. The log,
    flags and the transformers version its interpreter imports go to the run folder.
    """
    spec = transformers_spec(
        model, host=host, port=port, continuous_batching=continuous_batching, extra_args=ctx.args,
        executable=executable, env=_parse_env(env),
    )  # fmt: skip
    _serve(spec, out, health_timeout, grace)


@serve_app.command("container")
def serve_container(
    name: Annotated[
        str, typer.Argument(help="Container name or id, e.g. joulebench-vllm-1 (see `docker ps`).")
    ],
    docker_host: Annotated[
        str | None,
        typer.Option(
            "--docker-host",
            help="Docker Engine address, e.g. unix:///var/run/docker.sock (default: DOCKER_HOST, else the "
            "local socket).",
            show_default=False,
        ),
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Restart the container first, for a fresh server state.")
    ] = False,
    stop_timeout: Annotated[
        int,
        typer.Option(
            "--stop-timeout", help="On --restart: seconds before Docker kills the old instance.", min=0
        ),
    ] = 30,
    health_timeout: HealthTimeout = 600.0,
    url: Annotated[
        str | None,
        typer.Option(
            help="The server's base URL, e.g. http://127.0.0.1:8000: its version is recorded, and a "
            "container without a health check is ready when URL/health answers 200.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder: writes server.json there (and server.log with --save-log).",
            show_default=False,
        ),
    ] = None,
    save_log: Annotated[
        bool,
        typer.Option("--save-log", help="Save the current instance's log to OUT/server.log (needs --out)."),
    ] = False,
) -> None:
    """Describe the server's container (image, version, flags, GPUs) as JSON; optionally restart it first.

    Waits until the container is healthy. Typical use between the runs of an experiment:
    `joulebench serve container joulebench-vllm-1 --restart --url http://127.0.0.1:8000 --out runs/next`.
    """
    if save_log and out is None:
        raise InputError("--save-log: needs --out (the folder to save server.log in)")
    container = ServerContainer.connect(name, docker_host=docker_host)
    health_url = url.rstrip("/") + "/health" if url else None
    console = Console(stderr=True)
    try:
        if restart:
            with console.status(f"restarting {name}"):
                took = container.restart(
                    stop_timeout_s=stop_timeout, health_timeout_s=health_timeout, health_url=health_url
                )
            console.print(f"{name} restarted and healthy after {took:.1f} s")
        else:
            with console.status(f"waiting for {name} to be healthy") as status:
                container.wait_healthy(
                    timeout_s=health_timeout,
                    health_url=health_url,
                    on_wait=lambda s: status.update(f"waiting for {name} to be healthy ({s:.0f} s)"),
                )
        info = container.describe(base_url=url)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "server.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            if save_log:
                container.save_log(out / "server.log")
    except ServerError as exc:
        _fail(exc)
    typer.echo(json.dumps(info, indent=2, sort_keys=True))


def _serve(spec: LaunchSpec, out: Path | None, health_timeout: float, grace: float) -> None:
    out = out or Path("runs") / f"serve-{spec.kind}-{time.strftime('%Y%m%dT%H%M%S')}"
    console = Console(stderr=True)
    server = NativeServer(spec, out_dir=out, health_timeout_s=health_timeout, grace_s=grace)
    # SIGTERM stops the server as Ctrl-C does; SIGINT is set too because a shell starts background jobs
    # with SIGINT ignored, and `kill -INT` must still stop a `joulebench serve ... &`.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.start()
        with console.status(f"starting {spec.kind}: waiting for {spec.base_url}{spec.health_path}") as status:
            server.on_wait = lambda s: status.update(f"starting {spec.kind}: waiting for /health ({s:.0f} s)")
            waited = server.wait_healthy()
        version = server.describe().get("version") or "(version unknown)"
        typer.echo(
            f"{spec.kind} {version} healthy at {spec.base_url} after {waited:.1f} s; "
            f"log and flags in {out}/ ; Ctrl-C stops it",
        )
        while (code := server.poll()) is None:
            time.sleep(0.5)
        raise ServerError(
            f"{spec.kind} server exited with code {code}; last log line: {server.last_log_line()!r}"
        )
    except KeyboardInterrupt:
        console.print(f"stopping {spec.kind} ...")
    except ServerError as exc:
        _fail(exc)
    finally:
        for sig in previous:  # a second Ctrl-C while stopping skips the grace period
            signal.signal(sig, lambda signum, frame: server.hurry())
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo(f"{spec.kind} stopped ({server.describe().get('stop')}); log: {server.log_path}")


def _parse_env(pairs: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InputError(f"--env: {pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def _parse_serving_gpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    indices = parse_gpus(text)
    if indices is None:
        raise InputError("--gpus: name the GPUs that serve (like 0,1), not 'all'")
    return indices


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _fail(exc: Exception) -> None:
    print(f"joulebench: error: {exc}", file=sys.stderr)
    raise typer.Exit(1)
