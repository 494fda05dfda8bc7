"""Starting, inspecting and restarting the inference server the harness measures.

- `container`: a server that runs in Docker (the compose stack), driven through the Docker Engine API
  with the `docker` SDK: describe it for the run manifest, wait for health, restart it between runs,
  save its log.
- `native`: vLLM, TGI or `transformers serve` started as a subprocess, for hosts where Docker is not allowed.

Both describe the server in the same shape (`describe()` -> a JSON-ready dict for `manifest.json`),
with secrets (API keys, tokens) redacted from command lines and environments.
"""

from harness.deploy.cmdline import parse_flags, redact_argv, redact_env
from harness.deploy.container import ServerContainer
from harness.deploy.health import ServerError, server_version, wait_http_healthy
from harness.deploy.native import LaunchSpec, NativeServer, tgi_spec, transformers_spec, vllm_spec

__all__ = [
    "LaunchSpec",
    "NativeServer",
    "ServerContainer",
    "ServerError",
    "parse_flags",
    "redact_argv",
    "redact_env",
    "server_version",
    "tgi_spec",
    "transformers_spec",
    "vllm_spec",
    "wait_http_healthy",
]
