"""Choosing and checking the protocol before a run: `--backend auto|openai-chat|openai-completions|tgi`.

Both probes always run, so the manifest records what the server said about itself:
`GET /v1/models` (OpenAI-compatible servers: vLLM, TGI's Messages API, the mock) and `GET /info`
(TGI: model id, version, limits). `auto` picks OpenAI chat when `/v1/models` answers, else TGI's
native API when `/info` does. An explicit backend the server does not speak is an input error; an
explicit OpenAI backend with a model named needs no model list (`transformers serve` may fail to give
one), unless the server answers like TGI.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import httpx

from foundation.errors import InputError
from foundation.flag_fields import check_choice
from foundation.redact import redact_data
from harness.backends.base import Api
from harness.backends.client import make_client
from harness.backends.openai import OpenAIChat, OpenAICompletions
from harness.backends.tgi import TGIGenerate

APIS: dict[str, type[Api]] = {cls.name: cls for cls in (OpenAIChat, OpenAICompletions, TGIGenerate)}
BACKEND_ALIASES = {"openai": "openai-chat", "tgi": "tgi-generate"}
Backend = Literal["auto", "openai-chat", "openai-completions", "tgi", "openai", "tgi-generate"]  # aliases too
BACKEND_CHOICES: tuple[Backend, ...] = get_args(Backend)


@dataclass
class Target:
    url: str
    api: Api
    detected: bool  # chosen by --backend auto
    server: dict[str, Any] = field(default_factory=dict)  # {"models": [...], "info": {...}} as probed


def check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        httpx.URL(url)  # what the client will make of it: a bad port or host fails here, not mid-run
    except (ValueError, httpx.InvalidURL) as exc:
        raise InputError(f"--target {url!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--target {url!r}: not an http(s) URL (e.g. http://127.0.0.1:8000)")
    return url.rstrip("/")


async def resolve_target(
    url: str,
    backend: str = "auto",
    model: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 10.0,
) -> Target:
    url = check_url(url)
    check_choice("--backend", backend, Backend)
    name = BACKEND_ALIASES.get(backend, backend)
    async with make_client(url, pool=2, timeout_s=timeout_s, api_key=api_key) as client:
        models, info = await asyncio.gather(_probe(client, url, "/v1/models"), _probe(client, url, "/info"))
    openai_ok = isinstance(models.data, dict) and isinstance(models.data.get("data"), list)
    tgi_ok = isinstance(info.data, dict) and "model_id" in info.data
    server: dict[str, Any] = {}
    if openai_ok:
        server["models"] = [m.get("id") for m in models.data["data"] if isinstance(m, dict)]
    if tgi_ok:  # copied into the manifest: redacted like everything else a server says
        server["info"] = redact_data(info.data, api_key)
    if name == "auto":
        if not (openai_ok or tgi_ok):
            raise InputError(
                f"--target {url}: does not answer like an OpenAI-compatible server "
                f"(GET /v1/models: {models.outcome}) or TGI (GET /info: {info.outcome}); "
                "check the URL or pass --backend"
            )
        name = "openai-chat" if openai_ok else "tgi-generate"
    elif name.startswith("openai") and not openai_ok and model is not None and not tgi_ok:
        # Named protocol and model: the list is not needed (transformers serve's lists its Hugging Face
        # cache, and fails where there is none). What it answered goes into the manifest.
        server["models_error"] = models.outcome
    elif name.startswith("openai") and not openai_ok:
        hint = "; it answers like TGI: try --backend tgi" if tgi_ok else ""
        raise InputError(
            f"--backend {backend}: {url} does not answer GET /v1/models like an OpenAI-compatible server "
            f"({models.outcome}){hint}"
        )
    elif name == "tgi-generate" and not tgi_ok:
        hint = "; it answers like an OpenAI-compatible server: try --backend openai-chat" if openai_ok else ""
        raise InputError(
            f"--backend {backend}: {url} does not answer GET /info like TGI ({info.outcome}){hint}"
        )
    if name.startswith("openai") and model is None:
        if not server.get("models"):
            raise InputError(f"--target {url}: GET /v1/models lists no model; pass --model")
        model = server["models"][0]
    if name == "tgi-generate" and model is None:
        model = info.data.get("model_id")
    return Target(url=url, api=APIS[name](model), detected=backend == "auto", server=server)


@dataclass
class _Probe:
    outcome: str  # for error messages: "HTTP 404", "not JSON", "ok"
    data: Any = None


async def _probe(client: httpx.AsyncClient, url: str, path: str) -> _Probe:
    try:
        response = await client.get(path)
    except httpx.ConnectError as exc:
        raise InputError(f"--target {url}: cannot connect ({exc or type(exc).__name__})") from None
    except httpx.TimeoutException:
        raise InputError(f"--target {url}: no answer to GET {path} within the timeout") from None
    except httpx.HTTPError as exc:
        raise InputError(f"--target {url}: GET {path} failed ({type(exc).__name__}: {exc})") from None
    if response.status_code in (401, 403):
        raise InputError(
            f"--target {url}: GET {path} was refused (HTTP {response.status_code}); "
            "set the API key in the variable named by --api-key-env"
        )
    if response.status_code != 200:
        return _Probe(f"HTTP {response.status_code}")
    try:
        return _Probe("ok", response.json())
    except ValueError:
        return _Probe("HTTP 200 but not JSON")
