"""The sidecar binds 127.0.0.1 unless told otherwise, so every deployment that must reach it from
another container passes `--host 0.0.0.0` itself: the Dockerfile's default command, both compose
sidecars (NVML and simulated) and the Kubernetes DaemonSet."""

from __future__ import annotations

import itertools
import json
import shlex

import yaml
from joulebench_testkit import REPO


def _listens_everywhere(argv: list[str]) -> bool:
    return any(a == "--host" and b == "0.0.0.0" for a, b in itertools.pairwise(argv))


def test_dockerfile_default_command_listens_on_all_interfaces():
    text = (REPO / "deploy" / "sidecar" / "Dockerfile").read_text()
    [cmd] = [line for line in text.splitlines() if line.startswith("CMD ")]
    argv = json.loads(cmd.removeprefix("CMD "))
    assert argv[:2] == ["joulebench", "sidecar"] and _listens_everywhere(argv), cmd


def test_compose_sidecars_listen_on_all_interfaces_and_publish_on_bind_address():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    sidecars = {
        name: svc for name, svc in services.items() if "joulebench sidecar" in str(svc.get("command"))
    }
    assert set(sidecars) == {"sidecar", "sidecar-sim"}
    for name, svc in sidecars.items():
        assert _listens_everywhere(shlex.split(svc["command"])), name
        # ... while the host sees the port on BIND_ADDRESS (loopback unless changed) only.
        assert all(p.startswith("${BIND_ADDRESS:-127.0.0.1}:") for p in svc["ports"]), (name, svc["ports"])


def test_kubernetes_daemonset_listens_on_all_interfaces():
    docs = yaml.safe_load_all((REPO / "deploy" / "k8s" / "serving" / "sidecar.yaml").read_text())
    [daemonset] = [d for d in docs if d and d["kind"] == "DaemonSet"]
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["joulebench", "sidecar"] and _listens_everywhere(container["args"])
