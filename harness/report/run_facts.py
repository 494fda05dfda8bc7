"""What a run measured, as its report states it: its label, the target, the engine, the GPUs, the host,
the plan, the command line and the joulebench that ran it, read from the run folder's manifest, plan and
power.

Nothing here is taken on trust for secrets: URLs and the command line are redacted again when read
(the manifest redacts them when written; a hand-edited or old manifest might not).
"""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from typing import Any

from foundation.redact import redact_userinfo
from harness.power.series import PowerData
from traffic.plan import ArmSpec, PlanHeader

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class ArmFact:
    name: str
    schedule: str  # the schedule as written (`bursty:size=8,...`)
    policy: str | None  # a shaped arm's policy
    rate: str  # its target mean rate, or its users for a closed-loop arm


@dataclass(frozen=True)
class RunFacts:
    label: str  # `joulebench run --label`
    target: str
    api: str
    model: str
    engine: str
    gpus: str
    host_cpu: str
    plan_hash: str
    plan: str  # where the plan came from, its size and seed
    arms: tuple[ArmFact, ...]
    command_line: str
    merge_command_line: str | None  # `joulebench merge` that made the folder from shards (and its power)
    joulebench: str  # the version that ran the measurement
    simulated: bool  # the primary power source read the mock's simulated GPU: no measurement


def run_facts(manifest: dict[str, Any], plan: PlanHeader, power: PowerData) -> RunFacts:
    target = manifest.get("target") or {}
    plan_section = manifest.get("plan") or {}
    argv = manifest.get("command_line")
    merge_argv = (manifest.get("merge") or {}).get("command_line")
    return RunFacts(
        label=str(manifest.get("label") or "none"),
        target=redact_userinfo(str(target["url"])) if target.get("url") else NOT_RECORDED,
        api=_api(target),
        model=str(target.get("model") or NOT_RECORDED),
        engine=_engine(manifest),
        gpus=_gpus(power, _primary_source(manifest)),
        host_cpu=_host_cpu(manifest.get("host") or {}),
        plan_hash=plan.plan_hash or str(plan_section.get("hash") or NOT_RECORDED),
        plan=f"{plan_section.get('origin') or NOT_RECORDED}; {plan.n:,} requests, seed {plan.seed}",
        arms=tuple(_arm(a) for a in plan.arms),
        command_line=_command(argv) if argv else NOT_RECORDED,
        merge_command_line=_command(merge_argv) if merge_argv else None,
        joulebench=str((manifest.get("versions") or {}).get("joulebench") or NOT_RECORDED),
        simulated=(_primary_source(manifest) or {}).get("backend") == "simulated",
    )


def _command(argv: list[Any]) -> str:
    return redact_userinfo(shlex.join(str(a) for a in argv))


def _api(target: dict[str, Any]) -> str:
    if not target.get("backend"):
        return NOT_RECORDED
    how = " (detected)" if target.get("detected") else " (--backend)"
    return f"{target['backend']}{how}"


def _engine(manifest: dict[str, Any]) -> str:
    """From the server record when the run has one (--server-container, --server-info); else the embedded
    mock's profile; else what the server said of itself when probed (TGI's /info); else not recorded."""
    server = manifest.get("server") or {}
    if server.get("kind"):
        version = server.get("version") or "version unknown"
        return f"{server['kind']} {version} (server record: {server.get('launcher') or 'given'})"
    info = ((manifest.get("target") or {}).get("server") or {}).get("info") or {}
    mock = (manifest.get("embedded") or {}).get("mock_server") or {}
    if mock:
        reports = f"; reports version {info['version']}" if info.get("version") else ""
        return f"joulebench mock-server, profile {mock.get('profile')} (embedded default{reports})"
    if info.get("version"):
        router = str(info.get("router") or "")
        engine = "TGI" if router.startswith("text-generation") else router or "server"
        return f"{engine} {info['version']} (as the server reports at /info)"
    return f"{NOT_RECORDED} (the server did not say; no --server-container or --server-info)"


def _primary_source(manifest: dict[str, Any]) -> dict[str, Any] | None:
    sources = (manifest.get("power") or {}).get("sources") or []
    primary = [s for s in sources if isinstance(s, dict) and s.get("role") == "primary"]
    return primary[0] if primary else None


def _gpus(power: PowerData, source: dict[str, Any] | None) -> str:
    """The GPUs whose energy the join used (the primary power data), counted by name."""
    if not power.series:
        return "none (no power data)"
    counts = Counter(s.name or "unnamed GPU" for s in power.series)
    names = ", ".join(f"{n} × {name}" for name, n in counts.items())
    indices = ",".join(s.gpu for s in power.series)
    via = f"; {source.get('kind')}, {source.get('backend')}" if source else ""
    return f"{names} (GPU {indices}{via})"


def _host_cpu(host: dict[str, Any]) -> str:
    if not host.get("cpu_model"):
        return NOT_RECORDED
    cpus = host.get("cpus")
    return f"{host['cpu_model']}, {cpus} logical CPUs" if cpus else str(host["cpu_model"])


def _arm(arm: ArmSpec) -> ArmFact:
    if arm.closed_loop:
        rate = f"{arm.user_count} users (closed loop)"
    else:
        rate = "-" if arm.mean_rate is None else f"{arm.mean_rate:.4g} requests/s"
    return ArmFact(arm.name, arm.spec, arm.policy, rate)
