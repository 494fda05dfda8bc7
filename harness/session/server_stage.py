"""What ran on the server side, into the manifest (`server`), and its log into the run folder.

- `--server-container NAME`: the Docker container through `harness.deploy.ServerContainer`: restarted
  first with `--restart-server` (fresh KV/prefix caches, as the thesis did) and waited for, described
  (image, version, flags, GPUs; secrets redacted), and its log since its last start saved as
  `server.log` at the end.
- `--server-info FILE`: the `server.json` that `joulebench serve vllm|tgi|transformers --out DIR` wrote for a
  natively started server (its log stays in DIR, which the manifest names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.errors import DockerException
from rich.console import Console

from foundation.errors import InputError
from harness.deploy import ServerContainer, ServerError
from harness.runner import RunResult
from harness.session.config import ServerConfig
from harness.session.pipeline import RunContext

SERVER_LOG = "server.log"


@dataclass(eq=False)  # compared and hashed by identity
class ServerStage:
    config: ServerConfig
    target_url: str
    console: Console
    container: ServerContainer | None = field(default=None, init=False)
    restart: dict[str, Any] | None = field(default=None, init=False)
    info: dict[str, Any] | None = field(default=None, init=False)

    def prepare(self) -> None:
        """Before the target is probed: read --server-info, or connect to the container (and restart it)."""
        cfg = self.config
        if cfg.info_file is not None:
            self.info = _read_info(cfg.info_file)
        if not cfg.container:
            return
        self.container = ServerContainer.connect(cfg.container, docker_host=cfg.docker_host)
        health = self.target_url.rstrip("/") + "/health"
        try:
            if cfg.restart:
                with self.console.status(f"restarting container {cfg.container}"):
                    took = self.container.restart(health_url=health)
                self.console.print(f"container {cfg.container} restarted, healthy after {took:.1f} s")
                self.restart = {"seconds_to_healthy": took}
            else:
                self.container.wait_healthy(health_url=health)
        except ServerError as exc:
            raise InputError(f"--server-container {cfg.container}: {exc}") from None

    def before(self, ctx: RunContext) -> None:
        if self.container is not None:
            try:
                info = self.container.describe(base_url=self.target_url)
            except (ServerError, DockerException) as exc:
                info = {"error": str(exc)}
            info["restart"] = self.restart
        elif self.info is not None:
            info = self.info
        else:
            return
        ctx.folder.update_manifest(server=info)

    def after(self, ctx: RunContext, result: RunResult) -> None:
        if self.container is None:
            return
        manifest = ctx.folder.manifest().get("server") or {}
        try:
            self.container.save_log(ctx.folder.path / SERVER_LOG)
            manifest["log"] = SERVER_LOG
        except (
            ServerError,
            DockerException,
        ) as exc:  # the log is a convenience: the run's results stand without it
            manifest["log_error"] = str(exc)
            self.console.print(f"[yellow]note:[/] server log not saved: {exc}", highlight=False)
        ctx.folder.update_manifest(server=manifest)


def _read_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--server-info {path}: not a readable JSON file ({exc})") from None
    if not isinstance(info, dict):
        raise InputError(
            f"--server-info {path}: expected a JSON object (the server.json of joulebench serve)"
        )
    log = path.parent / SERVER_LOG
    return {**info, "info_file": str(path.resolve()), "log": str(log.resolve()) if log.is_file() else None}
