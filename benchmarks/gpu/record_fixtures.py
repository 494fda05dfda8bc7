#!/usr/bin/env python3
"""Record raw HTTP responses of a live vLLM (or TGI) server as backend test fixtures.

Writes, per case, `<name>.body` (the response body exactly as it came off the socket, after HTTP
de-chunking) and `<name>.json` (request, status, headers, the size and arrival time of every read,
the server's version, and `expect`: what a correct client must measure, computed here by a plain
reference decoder that shares no code with joulebench's parser). The shared backend suite
(tests/harness/backends/test_recorded_fixtures.py) replays every folder under its fixtures/.

Needs only httpx. On the GPU machine, with vLLM serving on port 8000:

    python3 benchmarks/gpu/record_fixtures.py --base-url http://127.0.0.1:8000 --out "$OUT/vllm-0.26.0"

then copy the folder to tests/harness/backends/fixtures/vllm-0.26.0/. `--server tgi` records TGI's
native API instead. With a random-weight model, `chat_stream_linebreak` keeps the first of up to
`--tries` streams whose text holds a character str.splitlines() splits at (U+2028, \\x0b, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from harness.deploy.native import package_version

LINE_BREAKERS = ("\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
DROP_HEADERS = {"date", "content-length", "transfer-encoding", "connection"}


def cases(server: str, model: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (api, path, JSON body)."""
    chat = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 32}
    completion = {"model": model, "prompt": PROMPT, "max_tokens": 32}
    usage = {"stream_options": {"include_usage": True}}
    streaming = {"stream": True, **usage, "ignore_eos": True}
    if server == "tgi":
        generate = {"inputs": PROMPT, "parameters": {"max_new_tokens": 32, "details": True}}
        return {
            "generate_stream": ("tgi-generate", "/generate_stream", generate),
            "generate": ("tgi-generate", "/generate", generate),
            "error_422": (
                "tgi-generate",
                "/generate",
                {"inputs": PROMPT, "parameters": {"max_new_tokens": 10**7}},
            ),
            "chat_stream": ("openai-chat", "/v1/chat/completions", {**chat, "stream": True, **usage}),
        }
    if server == "transformers":
        # It refuses fields it does not know (ignore_eos: HTTP 422), and generates up to any max_tokens
        # (no 400 to record).
        plain = {"stream": True, **usage}
        return {
            "chat_stream": ("openai-chat", "/v1/chat/completions", {**chat, **plain}),
            "completion_stream": ("openai-completions", "/v1/completions", {**completion, **plain}),
            "chat": ("openai-chat", "/v1/chat/completions", {**chat, "stream": False}),
            "error_422": ("openai-chat", "/v1/chat/completions", {**chat, **streaming}),
        }
    return {
        "chat_stream": ("openai-chat", "/v1/chat/completions", {**chat, **streaming}),
        "completion_stream": ("openai-completions", "/v1/completions", {**completion, **streaming}),
        "chat": ("openai-chat", "/v1/chat/completions", {**chat, "stream": False}),
        "completion": ("openai-completions", "/v1/completions", {**completion, "stream": False}),
        "error_400": ("openai-chat", "/v1/chat/completions", {**chat, "max_tokens": 10**7, "stream": True}),
        "chat_stream_linebreak": (
            "openai-chat", "/v1/chat/completions",
            {**chat, "max_tokens": 256, "stream": True, **usage, "ignore_eos": True, "temperature": 1.0},
        ),
    }  # fmt: skip


def record(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> tuple[httpx.Response, bytes, list[list[int]]]:
    t0 = time.monotonic_ns()
    reads: list[list[int]] = []
    data = b""
    with client.stream("POST", path, json=body) as response:
        for raw in response.iter_raw():
            reads.append([time.monotonic_ns() - t0, len(raw)])
            data += raw
    return response, data, reads


def record_until(
    client: httpx.Client, path: str, body: dict[str, Any], tries: int
) -> tuple[httpx.Response, bytes, list[list[int]], int]:
    """Record; with tries > 1, until the text holds a line-breaking character (attempt > tries: none did)."""
    for attempt in range(1, tries + 1):
        response, data, reads = record(client, path, body)
        if tries == 1 or any(c in data.decode("utf-8", "replace") for c in LINE_BREAKERS):
            return response, data, reads, attempt
    return response, data, reads, tries + 1


def expectations(api: str, stream: bool, status: int, body: bytes, headers: httpx.Headers) -> dict[str, Any]:
    """A deliberately plain decoder: events end at a blank line, lines at LF (vLLM and TGI write LF)."""
    expect: dict[str, Any] = {"http_status": status}
    if api == "tgi-generate" and status < 300:  # TGI's non-streaming counts come in headers
        for key, header in (("prompt_tokens", "x-prompt-tokens"), ("output_tokens", "x-generated-tokens")):
            if header in headers:
                expect[key] = int(headers[header])
    if status >= 300:
        expect.update(status="http_error", chunks=0, error_contains=_error_message(body)[:40])
        return expect
    if not stream:
        data = json.loads(body)
        _usage(api, data if not isinstance(data, list) else data[0], expect)
        expect.update(status="ok", chunks=0)
        return expect
    chunks, ended, finished = 0, False, False
    for event in body.split(b"\n\n"):
        lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            continue
        text = b"\n".join(line[5:].removeprefix(b" ") for line in lines).decode()
        if text == "[DONE]":
            ended = True
            continue
        obj = json.loads(text, strict=False)
        if api == "tgi-generate":
            token = obj.get("token") or {}
            chunks += bool(token.get("text") and not token.get("special"))
            ended = ended or obj.get("generated_text") is not None
        else:
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") or {}
                chunks += bool(choice.get("text") or delta.get("content") or delta.get("reasoning_content"))
                finished = finished or bool(choice.get("finish_reason"))
        _usage(api, obj, expect)
    # A clean end once a choice finished and usage arrived is complete too (transformers sends no [DONE]).
    complete = ended or (finished and "output_tokens" in expect and body.endswith(b"\n\n"))
    expect.update(status="ok" if complete else "stream_error", chunks=chunks)
    return expect


def _usage(api: str, obj: dict[str, Any], expect: dict[str, Any]) -> None:
    if api == "tgi-generate":
        details = obj.get("details") or {}
        if details:
            expect.update(
                finish_reason=details.get("finish_reason"), output_tokens=details.get("generated_tokens")
            )
            if "input_length" in details:
                expect["prompt_tokens"] = details["input_length"]
        return
    if obj.get("usage"):
        expect.update(
            prompt_tokens=obj["usage"]["prompt_tokens"], output_tokens=obj["usage"]["completion_tokens"]
        )
    for choice in obj.get("choices") or ():
        if choice.get("finish_reason"):
            expect["finish_reason"] = choice["finish_reason"]


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()
    error = data.get("error", data)
    if isinstance(error, dict):  # OpenAI's and vLLM's {"error": {"message"}}, FastAPI's {"detail"}
        return str(error.get("message") or error.get("detail"))
    return str(error)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--out", type=Path, required=True, help="folder for <name>.json + <name>.body")
    parser.add_argument("--server", choices=["vllm", "tgi", "transformers"], default="vllm")
    parser.add_argument("--model", help="model name (default: the first of GET /v1/models)")
    parser.add_argument("--tries", type=int, default=20, help="streams tried for chat_stream_linebreak")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=args.base_url, timeout=120.0) as client:
        version = _server_version(client, args.server)
        if args.model:
            model = args.model
        elif args.server != "tgi":
            model = client.get("/v1/models").json()["data"][0]["id"]
        else:
            model = client.get("/info").json()["model_id"]
        for name, (api, path, body) in cases(args.server, model).items():
            tries = args.tries if name == "chat_stream_linebreak" else 1
            response, data, reads, attempt = record_until(client, path, body, tries)
            if tries > 1 and attempt > tries:
                print(f"{name}: no stream of {tries} held a line-breaking character; kept the last")
            stream = bool(body.get("stream")) or path == "/generate_stream"
            when = datetime.now(timezone.utc).isoformat(timespec="seconds")
            meta = {
                "source": f"recorded by benchmarks/gpu/record_fixtures.py from {args.server} {version} "
                f"({args.base_url}, model {model}) at {when}"
                + (f", attempt {min(attempt, tries)}" if tries > 1 else ""),
                "api": api,
                "stream": stream,
                "request": {"method": "POST", "path": path, "body": body},
                "response": {
                    "status": response.status_code,
                    "headers": [[k, v] for k, v in response.headers.items() if k.lower() not in DROP_HEADERS],
                },
                "chunks": reads,
                "expect": expectations(api, stream, response.status_code, data, response.headers),
            }
            (args.out / f"{name}.body").write_bytes(data)
            (args.out / f"{name}.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            print(f"{name}: HTTP {response.status_code}, {len(data)} bytes, {meta['expect']}")


def _server_version(client: httpx.Client, server: str) -> str:
    if server == "transformers":  # no version route: what `joulebench serve` records, read the same way
        program = shutil.which("transformers")
        said = package_version(program, "transformers", os.environ) if program else {}
        return str(said.get("version") or "unknown")
    try:
        response = client.get("/version" if server == "vllm" else "/info")
        return str(response.json().get("version", "unknown"))
    except (httpx.HTTPError, ValueError):
        return "unknown"


if __name__ == "__main__":
    main()
