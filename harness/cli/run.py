"""`joulebench run`: build or load a plan, check the target, execute the plan into a run folder."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from traffic.builder import build_plan
from traffic.errors import InputError
from traffic.plan import Plan, load_plan

from ..backends import Target, resolve_target
from ..records import Shard
from ..runfolder import RunFolder, host_info, versions
from ..runner import RunContext, RunOptions, check_run, run_pipeline
from ..runner.summary import arm_summary, arm_table
from ._plan_options import EPILOG, PlanOptions, plan_options
from .app import app

_RUN = "Run"
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


@app.command("run", epilog=EPILOG)
@plan_options
def run(
    plan: PlanOptions,
    target: Annotated[
        str,
        typer.Option(
            "--target",
            metavar="URL",
            help="Base URL of the server, e.g. http://127.0.0.1:8000.",
            rich_help_panel=_RUN,
        ),
    ],
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
) -> None:
    """Send an arrival plan to an LLM server (OpenAI-compatible or TGI) and log every request.

    The plan comes from --plan FILE or from the plan flags below (the same as `joulebench plan
    build`). The run folder <out>/<run_id>/ gets plan.parquet, requests.jsonl (written as the run
    goes), requests.parquet (one row per planned request) and manifest.json.
    """
    options = RunOptions(
        stream=stream, max_concurrency=max_concurrency, max_rate=max_rate, warmup=warmup,
        time_limit_s=time_limit, timeout_s=timeout, grace_s=grace, arm_gap_s=arm_gap,
        shard=Shard.parse(shard), start_at_epoch_s=start_at, progress=progress, transport=transport,
    ).validate()  # fmt: skip
    api_key = os.environ.get(api_key_env) or None
    the_plan, plan_origin = _plan(plan_file, plan)
    resolved = asyncio.run(resolve_target(target, backend, model, api_key))
    check_run(the_plan, resolved, options)
    folder = RunFolder.create(out, the_plan)
    err = Console(stderr=True)
    err.print(f"run folder: {folder.path}")
    manifest = _manifest(the_plan, plan_origin, resolved, api_key_env, api_key is not None)
    for note in manifest["target"]["notes"]:
        err.print(f"[yellow]note:[/] {note}")
    folder.update_manifest(**manifest)
    result = run_pipeline(RunContext(the_plan, resolved, options, folder, api_key))
    Console().print(arm_table(arm_summary(result.requests)))
    typer.echo(f"{result.stop_reason}: {folder.path}")
    if result.stop_reason in ("interrupted", "aborted"):
        raise typer.Exit(130)


def _plan(plan_file: Path | None, flags: PlanOptions) -> tuple[Plan, str]:
    if plan_file is not None:
        if flags.given():
            raise InputError("--plan: give a plan file or plan flags (--prompts, --schedule, ...), not both")
        return load_plan(plan_file), str(plan_file)
    if not flags.given():
        raise InputError(
            "--plan: give a plan file, or build one with plan flags (e.g. --schedule ... --n 100)"
        )
    err = Console(stderr=True)
    with err.status("building plan") as status:
        built = build_plan(flags.to_spec(), progress=lambda message: status.update(message))
    return built, "built from flags"


def _notes(plan: Plan, target: Target) -> list[str]:
    if target.api.name == "tgi-generate" and bool(plan.rows["ignore_eos"].any()):
        return ["the plan sets ignore_eos, which TGI's API does not have: max_tokens is only an upper bound"]
    return []


def _manifest(plan: Plan, origin: str, target: Target, api_key_env: str, api_key_set: bool) -> dict[str, Any]:
    header = plan.header
    return {
        "command_line": [_USERINFO.sub("***@", arg) for arg in sys.argv],
        "versions": versions(),
        "host": host_info(),
        "target": {
            "url": _USERINFO.sub("***@", target.url),
            "backend": target.api.name,
            "model": target.api.model,
            "detected": target.detected,
            "server": target.server,
            "api_key": {"env": api_key_env, "set": api_key_set},
            "notes": _notes(plan, target),
        },
        "plan": {
            "hash": header.plan_hash,
            "origin": origin,
            "n": header.n,
            "seed": header.seed,
            "target_mean_rate": header.target_mean_rate,
            "prompt_source": header.prompt_source,
            "arms": [
                {"name": a.name, "kind": a.kind, "spec": a.spec, "mean_rate": a.mean_rate, "users": a.users}
                for a in header.arms
            ],
        },
    }
