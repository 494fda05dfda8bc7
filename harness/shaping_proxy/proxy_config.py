"""What `joulebench shape` is told: the policy, the upstream, where to listen, the bounds; checked here.

A field made with `flag` is a flag of `joulebench shape`, declared next to its default (see
foundation.flag_fields.flag); harness/cli/_typer_flags.py builds the options from them. Every check
happens when the config is made, before a socket is bound or the log is opened.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from foundation.errors import InputError
from foundation.flag_fields import flag
from foundation.redact import redact_userinfo
from traffic.shaping import PolicySpec, parse_policy

DEFAULT_MAX_HELD = 1000
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]+")


def parse_policy_flag(text: str) -> PolicySpec:
    try:
        return parse_policy(text)
    except ValueError as exc:
        raise InputError(f"--policy {text!r}: {exc}") from None


def parse_upstream(text: str) -> str:
    """The upstream's base URL without a trailing slash; one line naming --upstream if it is unusable."""
    shown = redact_userinfo(text)
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port out of range or not a number raises here
    except ValueError as exc:
        raise InputError(f"--upstream {shown!r}: not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"--upstream {shown!r}: not an http(s) URL (e.g. http://127.0.0.1:8000)")
    if not (_HOST_NAME.fullmatch(parts.hostname) or _is_ipv6(parts.hostname)):
        raise InputError(
            f"--upstream {shown!r}: {parts.hostname!r} is no host name or address "
            "(ASCII letters, digits, '.', '-', '_'; an international name as xn--...)"
        )
    if parts.username is not None or parts.password is not None:
        # The proxy holds no credential of its own: clients' Authorization headers are forwarded.
        raise InputError(
            f"--upstream {shown!r}: credentials in the URL are not supported "
            "(the clients' own Authorization headers are forwarded)"
        )
    if parts.query or parts.fragment:
        raise InputError(f"--upstream {shown!r}: a base URL takes no query or fragment")
    return text.rstrip("/")


@dataclass(frozen=True)
class ProxyConfig:
    FLAG_PANEL: ClassVar[str] = "Proxy"

    policy: PolicySpec | None = flag(
        None,
        "--policy SPEC",
        "The shaping policy, as KIND:key=value,... (e.g. window:period=1, concurrency-cap:c=4; "
        "docs/shaping.md lists them). Required.",
        parse=parse_policy_flag,
    )
    upstream: str | None = flag(
        None,
        "--upstream URL",
        "Base URL of the server behind the proxy (vLLM, TGI or any OpenAI/TGI-compatible one), "
        "e.g. http://127.0.0.1:8000. Required.",
        parse=parse_upstream,
    )
    host: str = flag(
        "127.0.0.1",
        "--host ADDRESS",
        "Address to listen on: this host only by default. --host 0.0.0.0 lets anyone who can reach the "
        "port use the upstream through the proxy, with the credentials they send.",
    )
    port: int = flag(
        8080, "--port PORT", "Port to listen on; 0 picks a free one (the first stdout line says which)."
    )
    metrics_host: str = flag(
        "127.0.0.1",
        "--metrics-host ADDRESS",
        "Address of the proxy's own Prometheus endpoint (GET /metrics).",
    )
    metrics_port: int = flag(
        9410,
        "--metrics-port PORT",
        "Port of the proxy's own /metrics, apart from the proxy's port, whose /metrics is the "
        "upstream's; 0 picks a free one (stderr says which).",
    )
    max_held: int = flag(
        DEFAULT_MAX_HELD,
        "--max-held N",
        "The most requests held at once; one more is answered 503 (and logged) instead of queued.",
    )
    grace_s: float = flag(
        5.0,
        "--grace SECONDS",
        "On Ctrl-C or SIGTERM: how long the policy keeps releasing held requests and in-flight ones "
        "may finish; then the held ones are answered 503 and everything left is recorded as cancelled.",
    )
    log: Path | None = flag(
        None,
        "--log FILE",
        "Append one JSON line per request (arrival, release, hold, first byte, end, status, outcome) "
        "to FILE; no header or body is written, so no credential.",
    )
    seed: int = flag(
        0, "--seed N", "Seed of the random numbers a policy may draw (no built-in policy draws any)."
    )

    def __post_init__(self) -> None:
        if self.policy is None:
            raise InputError("--policy: required, e.g. --policy window:period=1 (docs/shaping.md)")
        if self.upstream is None:
            raise InputError("--upstream: required, e.g. --upstream http://127.0.0.1:8000")
        for name, port in (("--port", self.port), ("--metrics-port", self.metrics_port)):
            if not 0 <= port <= 65535:
                raise InputError(f"{name}: expected 0-65535, got {port}")
        if self.max_held < 1:
            raise InputError(f"--max-held: expected at least 1, got {self.max_held}")
        if not (math.isfinite(self.grace_s) and 0 <= self.grace_s <= 3600):
            raise InputError(f"--grace: expected 0 to 3600 seconds, got {self.grace_s}")
        if self.seed < 0:
            raise InputError(f"--seed: expected 0 or more, got {self.seed}")
        if self.log is not None:
            _check_log(self.log)

    @property
    def spec(self) -> PolicySpec:
        assert self.policy is not None  # __post_init__ refuses None
        return self.policy

    @property
    def upstream_url(self) -> str:
        assert self.upstream is not None
        return self.upstream


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _check_log(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"--log {path}: is a folder")
    if not path.parent.is_dir():
        raise InputError(f"--log {path}: {path.parent} is not a folder")
