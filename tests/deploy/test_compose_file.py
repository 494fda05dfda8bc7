"""docker-compose.yml and .env.example, checked by a real compose implementation for every profile.

Debian's docker-compose 1.29 parses, interpolates and validates the file against its schema without an
engine (`config`); its normalized output is then also validated against the current Compose
Specification schema (the one Docker Compose v2 implements, as vendored by check-jsonschema), and
checked for what the issue asks: the right services per profile, ports on 127.0.0.1 only, GPUs through
the NVIDIA runtime (utility only for the sidecar), a health check per server, no default password.
"""

from __future__ import annotations

import importlib.resources
import json
import re

import jsonschema
import pytest
import yaml
from deploy_tools import compose, env_file_values, write_env
from joulebench_testkit import REPO, require_module

PROFILES = {
    "vllm": {"vllm", "sidecar", "prometheus", "grafana"},
    "tgi": {"tgi", "sidecar", "prometheus", "grafana"},
    "mock": {"mock", "sidecar-sim", "prometheus", "grafana"},
}
SERVERS = {"vllm": "vllm", "tgi": "tgi", "mock": "mock"}
PUBLISHED = {"8000", "9400", "9090", "3000"}  # server, sidecar (sample log), Prometheus (reader), Grafana


def config(tmp_path, profile: str, **env: str) -> dict:
    env_file = write_env(tmp_path / f"{profile}.env", GRAFANA_ADMIN_PASSWORD="test-only-password", **env)
    result = compose(["--profile", profile, "config"], REPO, env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def active(cfg: dict, profile: str) -> dict[str, dict]:
    return {name: svc for name, svc in cfg["services"].items() if profile in (svc.get("profiles") or [])}


def published_ports(svc: dict) -> list[tuple[str, str, str]]:
    """(host ip, host port, container port) of each published port, from short or long syntax."""
    out = []
    for port in svc.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), str(port.get("published", "")), str(port["target"])))
        else:
            host_ip, host_port, container = str(port).split("/")[0].rsplit(":", 2)
            out.append((host_ip, host_port, container))
    return out


def gpu_requests(svc: dict) -> list[dict]:
    return (((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []


def aliases(svc: dict) -> set[str]:
    networks = svc.get("networks") or {}
    return {alias for net in networks.values() for alias in ((net or {}).get("aliases") or [])}


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_brings_up_the_right_stack(tmp_path, profile):
    cfg = config(tmp_path, profile)
    services = active(cfg, profile)
    assert set(services) == PROFILES[profile]
    server = services[SERVERS[profile]]
    sidecar = services["sidecar-sim" if profile == "mock" else "sidecar"]

    # One Prometheus configuration for every profile: the server is `server:8000`, power `sidecar:9400`.
    assert [name for name, svc in services.items() if "server" in aliases(svc)] == [SERVERS[profile]]
    assert [name for name, svc in services.items() if "sidecar" in aliases(svc)] == [
        "sidecar-sim" if profile == "mock" else "sidecar"
    ]
    assert ("127.0.0.1", "8000", "8000") in published_ports(server)
    assert ("127.0.0.1", "9400", "9400") in published_ports(sidecar)

    # Only the ports a user needs, all on loopback.
    ports = [p for svc in services.values() for p in published_ports(svc)]
    assert {host_port for _, host_port, _ in ports} == PUBLISHED
    assert all(host_ip == "127.0.0.1" for host_ip, _, _ in ports), ports

    # Every server has a health check (the harness waits on it and on restarts).
    assert server["healthcheck"]["test"][0] == "CMD"
    assert "8000/health" in " ".join(server["healthcheck"]["test"])

    # depends_on never points outside the profile.
    for name, svc in services.items():
        assert set(svc.get("depends_on") or {}) <= set(services), name


@pytest.mark.parametrize("profile", ["vllm", "tgi"])
def test_gpus_through_the_nvidia_runtime(tmp_path, profile):
    services = active(config(tmp_path, profile, GPU_IDS="2,3", TENSOR_PARALLEL_SIZE="2"), profile)
    [server_gpus] = gpu_requests(services[profile])
    assert server_gpus["driver"] == "nvidia"
    assert server_gpus["device_ids"] == ["2,3"]  # Docker joins device IDs into NVIDIA_VISIBLE_DEVICES
    assert server_gpus["capabilities"] == ["gpu"]
    [sidecar_gpus] = gpu_requests(services["sidecar"])
    assert sidecar_gpus["device_ids"] == ["2,3"]  # watches the server's GPUs
    # NVML needs the utility capability only: no compute access for the sidecar.
    assert sidecar_gpus["capabilities"] == ["gpu", "utility"]
    assert services["sidecar"]["environment"]["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    command = services[profile]["command"].split()
    parallel_flag = "--tensor-parallel-size" if profile == "vllm" else "--num-shard"
    assert command[command.index(parallel_flag) + 1] == "2"


def test_mock_profile_needs_no_gpu(tmp_path):
    services = active(config(tmp_path, "mock"), "mock")
    assert not any(gpu_requests(svc) for svc in services.values())
    assert "--backend simulated --simulate-from http://mock:8000" in services["sidecar-sim"]["command"]
    assert services["sidecar-sim"]["depends_on"]["mock"]["condition"] == "service_healthy"
    assert services["mock"]["command"].startswith("joulebench mock-server --host 0.0.0.0 --port 8000")
    # mock and sidecars run from the image built from the power helper's Dockerfile
    for name in ("mock", "sidecar-sim"):
        assert services[name]["build"]["dockerfile"] == "deploy/sidecar/Dockerfile"
    assert (REPO / "deploy/sidecar/Dockerfile").is_file()


def test_env_settings_reach_the_server_command_lines(tmp_path):
    settings = dict(
        MODEL="/models/my-model", DTYPE="float16", TENSOR_PARALLEL_SIZE="2", MAX_BATCH_SIZE="64",
        MAX_BATCH_TOKENS="4096", MAX_MODEL_LEN="2048", MAX_INPUT_TOKENS="1024",
        VLLM_EXTRA_ARGS="--quantization fp8 --enforce-eager", TGI_EXTRA_ARGS="--quantize fp8",
        SERVER_PORT="18000", BIND_ADDRESS="127.0.0.2",
    )  # fmt: skip
    cfg = config(tmp_path, "vllm", **settings)
    vllm = cfg["services"]["vllm"]["command"].split()
    expected_vllm = {
        "--model": "/models/my-model", "--dtype": "float16", "--tensor-parallel-size": "2",
        "--max-num-seqs": "64", "--max-num-batched-tokens": "4096", "--max-model-len": "2048",
        "--quantization": "fp8",
    }  # fmt: skip
    for flag, value in expected_vllm.items():
        assert vllm[vllm.index(flag) + 1] == value, flag
    assert "--enforce-eager" in vllm
    tgi = cfg["services"]["tgi"]["command"].split()
    expected_tgi = {
        "--model-id": "/models/my-model", "--dtype": "float16", "--num-shard": "2", "--max-batch-size": "64",
        "--max-batch-prefill-tokens": "4096", "--max-total-tokens": "2048", "--max-input-tokens": "1024",
        "--quantize": "fp8",
    }  # fmt: skip
    for flag, value in expected_tgi.items():
        assert tgi[tgi.index(flag) + 1] == value, flag
    assert ("127.0.0.2", "18000", "8000") in published_ports(cfg["services"]["vllm"])


def test_grafana_password_is_required_and_never_defaulted(tmp_path):
    env_file = write_env(tmp_path / "no-password.env")  # .env.example as shipped: the password is empty
    result = compose(["--profile", "mock", "config"], REPO, env_file)
    assert result.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in result.stderr
    grafana = config(tmp_path, "mock")["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == "test-only-password"
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"


def test_hf_token_is_runtime_env_only(tmp_path):
    cfg = config(tmp_path, "vllm", HF_TOKEN="hf_test_token")
    holders = {name for name, svc in cfg["services"].items() if "hf_test_token" in json.dumps(svc)}
    assert holders == {"vllm", "tgi"}
    for name in holders:
        assert cfg["services"][name]["environment"]["HF_TOKEN"] == "hf_test_token"
        assert "build" not in cfg["services"][name]
    assert "HF_TOKEN" not in (REPO / "deploy/sidecar/Dockerfile").read_text()


def test_images_are_pinned(tmp_path):
    cfg = config(tmp_path, "vllm")
    # Images we build ourselves (from this checkout) are excluded: their version is the checkout's.
    images = {name: svc["image"] for name, svc in cfg["services"].items() if "build" not in svc}
    assert images["vllm"].startswith("vllm/vllm-openai:v")
    assert images["tgi"].startswith("ghcr.io/huggingface/text-generation-inference:")
    for name, image in images.items():
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.search(r"\d", tag) and tag != "latest", f"{name}: {image} is not pinned to a version"


def test_env_example_documents_exactly_the_compose_variables():
    text = (REPO / "docker-compose.yml").read_text()
    used = dict(re.findall(r"\$\{([A-Z0-9_]+)(?::[-?]([^}]*))?\}", text))
    documented = env_file_values(REPO / ".env.example")
    compose_own = {"COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"}  # read by compose itself
    assert set(documented) - compose_own == set(used)
    for name, default in used.items():
        if name == "GRAFANA_ADMIN_PASSWORD":
            assert documented[name] == "", "no default password"
        else:
            assert documented[name] == default, (
                f"{name}: .env.example says {documented[name]!r}, compose {default!r}"
            )


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_config_matches_the_compose_specification_schema(tmp_path, profile):
    require_module("check_jsonschema", "pip install check-jsonschema")
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)]
    errors += [
        f"normalized: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(config(tmp_path, profile))
    ]
    assert errors == []


def test_mounted_files_exist(tmp_path):
    cfg = config(tmp_path, "mock")
    for svc in cfg["services"].values():
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(str(REPO)) and not source.endswith("/models"):
                assert (REPO / source[len(str(REPO)) + 1 :]).exists(), source
