"""deploy/k8s: valid against the Kubernetes OpenAPI schemas (offline), consistent with each other, and the
load generator's Indexed Job run the way Kubernetes would run it, end to end against the mock server.

Schemas: the `kubernetes-validate` package bundles the JSON schemas generated from each Kubernetes
release's OpenAPI document; `strict` rejects unknown fields, so a typo in a field name fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
import yaml
from joulebench_testkit import (
    REPO,
    PrometheusServer,
    require_module,
    require_tool,
    run_mock_server,
    simulated_sidecar,
)

K8S = REPO / "deploy" / "k8s"
VERSIONS = ["1.29", "1.37"]  # the oldest Kubernetes release still common in managed clusters, and the newest


def documents() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def find(kind: str, name: str) -> dict:
    [doc] = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env") or []}


def test_manifests_exist():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    assert {
        ("Deployment", "vllm"),
        ("Service", "vllm"),
        ("DaemonSet", "joulebench-sidecar"),
        ("ConfigMap", "prometheus-config"),
        ("Deployment", "prometheus"),
        ("Job", "joulebench-loadgen"),
        ("Job", "joulebench-merge"),
        ("ConfigMap", "joulebench-run"),
        ("PersistentVolumeClaim", "joulebench-results"),
    } <= kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    kubernetes_validate = require_module("kubernetes_validate", "pip install kubernetes-validate")
    failures = []
    for path, doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            failures.append(
                f"{path.relative_to(REPO)} {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            failures.append(f"{path.relative_to(REPO)}: no schema ({exc.message}); use built-in kinds only")
    assert failures == []


def test_namespace_and_labels():
    for path, doc in documents():
        meta = doc["metadata"]
        if doc["kind"] != "Namespace":
            assert meta.get("namespace") == "joulebench", f"{path.name} {doc['kind']}/{meta['name']}"
        if doc["kind"] in ("Deployment", "DaemonSet", "Job"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert labels.get("app.kubernetes.io/part-of") == "joulebench"


def test_prometheus_config_checks_and_finds_every_target(tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    config_text = find("ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    (tmp_path / "prometheus.yml").write_text(config_text)
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_text)
    assert config["global"]["scrape_interval"] == "1s"

    # Each DNS name is a headless Service whose selector picks the pods that listen on the scraped port.
    scraped = set()
    for job in config["scrape_configs"]:
        for sd in job["dns_sd_configs"]:
            for name in sd["names"]:
                service_name, namespace = re.fullmatch(
                    r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local", name
                ).groups()
                assert namespace == "joulebench"
                service = find("Service", service_name)
                assert service["spec"]["clusterIP"] == "None", f"{service_name} must be headless"
                workloads = [
                    d
                    for _, d in documents()
                    if d["kind"] in ("Deployment", "DaemonSet")
                    and service["spec"]["selector"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()
                ]
                assert workloads, f"{service_name} selects no pods"
                for workload in workloads:
                    ports = {p["containerPort"] for p in container(workload)["ports"]}
                    assert sd["port"] in ports
                    scraped.add(workload["metadata"]["name"])
    assert scraped == {"vllm", "joulebench-sidecar"}


def test_scrape_annotations_for_an_existing_prometheus():
    for kind, name, port in [("Deployment", "vllm", "8000"), ("DaemonSet", "joulebench-sidecar", "9400")]:
        annotations = find(kind, name)["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": port,
            "prometheus.io/path": "/metrics",
        }


def test_gpu_access():
    vllm = find("Deployment", "vllm")
    assert container(vllm)["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container(vllm)[probe]["httpGet"]["path"] == "/health"
    hf = env_of(container(vllm))["HF_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert hf["optional"] is True  # public models need no secret; the token is never written in a manifest
    sidecar = find("DaemonSet", "joulebench-sidecar")
    spec = sidecar["spec"]["template"]["spec"]
    c = container(sidecar)
    assert "nvidia.com/gpu" not in str(c.get("resources")), (
        "the sidecar must not take GPUs from the scheduler"
    )
    assert env_of(c)["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert env_of(c)["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert c["args"][:4] == ["joulebench", "sidecar", "--backend", "nvml"]


def test_indexed_job_is_consistent_with_its_run_config():
    job = find("Job", "joulebench-loadgen")
    spec = job["spec"]
    c = container(job)
    env = env_of(c)
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == int(env["SHARDS"]["value"])
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    run_config = find("ConfigMap", "joulebench-run")["data"]
    for job_name in ("joulebench-loadgen", "joulebench-merge"):
        for var in env_of(container(find("Job", job_name))).values():
            ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
            if ref:
                assert ref["name"] == "joulebench-run" and ref["key"] in run_config, var
        claim = find("Job", job_name)["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]
        assert claim["claimName"] == "joulebench-results"
    assert find("PersistentVolumeClaim", "joulebench-results")["spec"]["accessModes"] == ["ReadWriteMany"]


def pod_script(job: dict, index: int | None, values: dict[str, str], results: Path) -> tuple[list[str], dict]:
    """The container's command and environment as Kubernetes would give them to pod `index`.

    Environment: literal values, configMapKeyRef from `values` (the ConfigMap), JOB_COMPLETION_INDEX
    (set by Kubernetes in Indexed mode); the results volume's mountPath becomes the local folder.
    """
    c = container(job)
    env = {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    for var in c.get("env") or []:
        ref = (var.get("valueFrom") or {}).get("configMapKeyRef")
        env[var["name"]] = values[ref["key"]] if ref else var["value"]
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    mount = c["volumeMounts"][0]["mountPath"]
    command = [part.replace(mount, str(results)) for part in c["command"]]
    assert command[:2] == ["sh", "-c"]
    return command, env


@contextmanager
def scraping(folder: Path, sidecar_url: str) -> Iterator[PrometheusServer]:
    """A Prometheus scraping the sidecar once a second, as serving/prometheus.yaml does."""
    folder.mkdir()
    server = PrometheusServer(folder, {"sidecar": [sidecar_url.removeprefix("http://")]}, scrape_s=1.0)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.prometheus
def test_indexed_job_shards_and_merge_end_to_end(tmp_path):
    """Each pod of the Indexed Job runs its shard against the mock from one start; merging gives the plan,
    with its energy from a Prometheus scraping the mock's simulated power sidecar (the cluster's)."""
    job, merge_job = find("Job", "joulebench-loadgen"), find("Job", "joulebench-merge")
    n_shards = job["spec"]["completions"]
    n_requests, interval = 48, 0.05
    results = tmp_path / "results"
    with (
        run_mock_server("--seed", "1", log_dir=tmp_path) as mock,
        simulated_sidecar(mock.url, log_dir=tmp_path) as sidecar,
        scraping(tmp_path / "prometheus", sidecar.url) as prometheus,
    ):
        url = mock.url
        start_at = time.time() + 20  # time for every shard's process to start (2 shared CPU cores here)
        values = dict(find("ConfigMap", "joulebench-run")["data"])
        values.update(
            run_name="e2e",
            start_at=f"{start_at:.3f}",
            target=url,
            plan_args=f"--prompts synthetic --schedule fixed:interval={interval} --n {n_requests} --seed 7 "
            "--max-tokens 8",
        )
        pods = []
        for index in range(n_shards):
            command, env = pod_script(job, index, values, results)
            pods.append(
                subprocess.Popen(
                    command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
            )
        outputs = [pod.communicate(timeout=240)[0] for pod in pods]
        for index, (pod, output) in enumerate(zip(pods, outputs, strict=True)):
            assert pod.returncode == 0, f"shard {index}: {output[-3000:]}"
        command, env = pod_script(merge_job, None, values, results)
        assert env["PROMETHEUS_URL"] == "http://prometheus.joulebench.svc:9090"  # serving/prometheus.yaml
        # Here: the local Prometheus, and the idle seconds this test's start leaves after the warm-ups.
        env.update(PROMETHEUS_URL=prometheus.url, IDLE_BEFORE_S="3")
        merged = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert merged.returncode == 0, merged.stdout + merged.stderr

    shard_folders = sorted(results.glob("e2e/shard-*/*/requests.parquet"))
    assert len(shard_folders) == n_shards
    for index in range(n_shards):
        [requests] = results.glob(f"e2e/shard-{index}/*/requests.parquet")
        ids = pd.read_parquet(requests).query("not warmup")["request_id"]
        assert sorted(ids) == [i for i in range(n_requests) if i % n_shards == index], f"shard {index}"

    [summary_file] = results.glob("e2e/merged/*/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["run"]["energy_j_total"] > 0 and summary["idle"]["pre_w"]
    assert not [f for f in summary["flags"] if f["severity"] == "error"], summary["flags"]
    [merged_file] = results.glob("e2e/merged/*/requests.parquet")
    frame = pd.read_parquet(merged_file)
    measured = frame[~frame["warmup"].astype(bool)]
    assert sorted(measured["request_id"]) == list(range(n_requests)), "each planned request exactly once"
    assert set(measured["status"]) == {"ok"}
    # All shards ran on one clock from the shared start: request k was due at start_at + k * interval.
    due = start_at * 1e9 + measured["request_id"].to_numpy() * interval * 1e9
    planned = measured["planned_epoch_ns"].to_numpy(dtype="float64")
    assert abs(planned - due).max() < 5e6, "planned times off the shared start by more than 5 ms"
    lateness = measured["lateness_ns"].to_numpy(dtype="float64")
    assert (lateness >= 0).all() and pd.Series(lateness).quantile(0.5) < 0.5e9
