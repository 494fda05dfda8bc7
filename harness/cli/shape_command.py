"""`joulebench shape`: a proxy that shapes real clients' traffic with one policy (docs/shaping.md)."""

from __future__ import annotations

from harness.cli._typer_flags import FlagValues, model_options
from harness.cli.app import app
from harness.shaping_proxy.proxy_config import ProxyConfig


@app.command("shape")
@model_options(ProxyConfig)  # its fields declare every flag
def shape(flags: FlagValues) -> None:
    """Hold clients' generation requests and release them to the upstream server as --policy says.

    An HTTP proxy in front of vLLM, TGI or any OpenAI/TGI-compatible server: POST
    /v1/chat/completions, /v1/completions, /generate, /generate_stream (and TGI's POST /) are held
    by the policy, then relayed with their answers streamed back untouched; every other request
    passes at once. Prints its base URL as the first stdout line once it accepts connections; logs
    every request with its hold (--log); serves its queue length and hold times to Prometheus on
    --metrics-port. Stops on Ctrl-C or SIGTERM, releasing or answering every held request first.
    """
    from harness.shaping_proxy.proxy_server import serve_proxy

    status = serve_proxy(flags.build(ProxyConfig))
    if status:
        raise SystemExit(status)
