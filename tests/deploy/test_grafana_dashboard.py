"""The provisioned Grafana datasource and dashboard, and the Prometheus config the compose file mounts.

Every dashboard query must parse as PromQL (promtool) and name only metrics that really exist: the
names are read at test time from the running sidecar's and mock server's /metrics; vLLM and TGI names
the mock does not serve must be in deploy/grafana/server-metrics.yaml, which says where they come
from. A slow test runs every query through a real Prometheus scraping the mock stack, with the
shipped prometheus.yml (its `server`/`sidecar` targets pointed at the local processes).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from joulebench_testkit import REPO, PrometheusServer, require_tool, run_mock_server, simulated_sidecar
from prometheus_client.parser import text_string_to_metric_families

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "joulebench.json"
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"
# Grafana's variables, replaced by values Prometheus accepts (as Grafana does before sending a query).
GRAFANA_VARS = {"$__rate_interval": "4s", "$__interval": "1s", "$__range": "1m", "$gpu": ".*"}
VARIABLE_SOURCE = {"type": "prometheus", "uid": "${datasource}"}  # every data source reference
_PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def variable(name: str) -> dict:
    (found,) = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    return found


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query, with Grafana's variables substituted."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets") or []:
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small lexer: enough for dashboard queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()
        if before.isalnum() or before == "." or after.startswith("("):  # part of a number, or a function
            continue
        if match.group().lower() not in _PROMQL_WORDS:
            names.add(match.group())
    return names


def documented_server_metrics() -> set[str]:
    doc = yaml.safe_load((GRAFANA / "server-metrics.yaml").read_text())
    names = set()
    for server in doc.values():
        assert server["sources"], "every list of server metrics names its source"
        for name, kind in server["metrics"].items():
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind == "histogram" else {name}
    return names


def exposed_names(url: str) -> set[str]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metric_name_lexer():
    expr = 'sum(rate(a_total{gpu=~"$g", x="rate(b)"}[4s])) / sum by (le) (rate(vllm:c_bucket[1m] offset 5m))'
    expr += " * 1e3 + on(gpu) group_left(uuid) c_info"
    assert metric_names(expr) == {"a_total", "vllm:c_bucket", "c_info"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(d_bucket[4s])))") == {"d_bucket"}


def test_datasource_and_dashboard_provisioning_fit_together():
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert datasource["jsonData"]["timeInterval"] == "1s"
    assert datasource["isDefault"] and datasource["uid"]
    board = dashboard()
    assert board["uid"] and board["title"]
    # The data source is a variable, by default the provisioned Prometheus, so that the dashboard also
    # works on a Grafana whose Prometheus (a cluster's) has another uid.
    variables = board["templating"]["list"]
    chooser = variables[0]  # first: the others' queries go through it
    assert chooser["name"] == "datasource" and chooser["type"] == "datasource"
    assert chooser["query"] == "prometheus" and chooser["current"]["value"] == datasource["uid"]
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == VARIABLE_SOURCE, panel["title"]
            assert all(t["datasource"] == VARIABLE_SOURCE for t in panel["targets"]), panel["title"]
    for var in variables[1:]:
        assert var["datasource"] == VARIABLE_SOURCE, var["name"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/joulebench.yml").read_text())["providers"][
        0
    ]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in compose["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = compose["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/" + DASHBOARD.name


def test_no_datasource_reference_pins_a_uid():
    """Anywhere in the dashboard (panels, targets, variables, annotations): a data source is the variable."""

    def references(node: object) -> list[object]:
        if isinstance(node, dict):
            own = [node["datasource"]] if "datasource" in node else []
            return own + [r for key, value in node.items() for r in references(value) if key != "datasource"]
        return [r for value in node for r in references(value)] if isinstance(node, list) else []

    found = references(dashboard())
    assert len(found) > len(queries())  # panels, targets and the GPU variable
    assert [r for r in found if r != VARIABLE_SOURCE] == []


def test_every_query_is_valid_promql(tmp_path):
    promtool = require_tool("promtool", "apt-get install prometheus")
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(queries())]
    assert len(rules) >= 20
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_covers_power_energy_and_both_servers():
    by_panel: dict[str, set[str]] = {}
    for title, expr in queries():
        by_panel.setdefault(title, set()).update(metric_names(expr))
    used = set().union(*by_panel.values())
    assert {"joulebench_gpu_energy_joules_total", "joulebench_gpu_power_watts"} <= used
    # energy rate against requests running/waiting (vLLM) and batch/queue size (TGI), in one panel each
    energy = "joulebench_gpu_energy_joules_total"
    vllm = {energy, "vllm:num_requests_running", "vllm:num_requests_waiting"}
    tgi = {energy, "tgi_batch_current_size", "tgi_queue_size"}
    assert any(vllm <= names for names in by_panel.values())
    assert any(tgi <= names for names in by_panel.values())
    gpu_var = variable("gpu")
    assert re.fullmatch(r"label_values\((\w+), gpu\)", gpu_var["definition"])


@pytest.fixture(scope="module")
def mock_stack(tmp_path_factory):
    """The mock server and a simulated sidecar reading it, as the compose `mock` profile runs them."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        run_mock_server("--seed", "1", log_dir=logs) as mock,
        simulated_sidecar(mock.url, "--interval", "0.05", log_dir=logs) as sidecar,
    ):
        yield mock.url, sidecar.url


@pytest.mark.slow  # starts the mock server and a sidecar
def test_every_queried_metric_is_exported(mock_stack):
    mock_url, sidecar_url = mock_stack
    # The sidecar's gauges appear with the first sample of their loop (power, and the slower GPU state),
    # which a loaded machine may not have taken yet: one snapshot that holds both.
    first = {"joulebench_gpu_power_watts", "joulebench_gpu_temperature_celsius"}
    deadline = time.monotonic() + 10
    while not first <= (sidecar := exposed_names(sidecar_url)):
        assert time.monotonic() < deadline, sorted(sidecar)
        time.sleep(0.1)
    mock = exposed_names(mock_url)
    assert "joulebench_gpu_energy_joules_total" in sidecar and "vllm:num_requests_running" in mock
    known = sidecar | mock | documented_server_metrics()
    gpu_var = re.fullmatch(r"label_values\((\w+), gpu\)", variable("gpu")["definition"])
    unknown = {
        f"{title}: {name}" for title, expr in queries() for name in metric_names(expr) if name not in known
    }
    if gpu_var.group(1) not in sidecar:
        unknown.add(f"variable gpu: {gpu_var.group(1)}")
    assert unknown == set()
    # joulebench_* names must come from the real sidecar, never from the documented server list
    ours = {name for _, expr in queries() for name in metric_names(expr) if name.startswith("joulebench_")}
    assert ours <= sidecar, ours - sidecar


def test_prometheus_scrapes_the_compose_service_names():
    promtool = require_tool("promtool", "apt-get install prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    interval = config["global"]["scrape_interval"]
    targets = set()
    for job in config["scrape_configs"]:
        assert job.get("scrape_interval", interval) == "1s", job["job_name"]
        for static in job.get("static_configs") or []:
            targets.update(static["targets"])
    # docker-compose.yml gives the server (vllm, tgi or mock) the alias `server`, the sidecar `sidecar`.
    assert {"server:8000", "sidecar:9400"} <= targets


@pytest.mark.slow
@pytest.mark.prometheus
def test_every_query_returns_data_from_a_real_prometheus(mock_stack, tmp_path):
    mock_url, sidecar_url = mock_stack
    config = PROMETHEUS_YML.read_text()
    for alias, url in (("server:8000", mock_url), ("sidecar:9400", sidecar_url)):
        config = config.replace(alias, url.removeprefix("http://"))
    prometheus = PrometheusServer(tmp_path, config=config)
    try:
        # load on the mock for a while, so rates, batch sizes and histograms have data
        with httpx.Client(timeout=30) as client:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
                client.post(mock_url + "/v1/chat/completions", json=body)
                client.post(
                    mock_url + "/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 8}}
                )
        time.sleep(2)
        mock_names, empty = exposed_names(mock_url) | exposed_names(sidecar_url), []
        for title, expr in queries():
            if not prometheus.query(expr) and metric_names(expr) <= mock_names:
                empty.append(f"{title}: {expr}")
        assert empty == [], "queries on metrics the mock stack serves returned no data"
    finally:
        prometheus.stop()


def test_server_metric_list_is_not_our_own_names():
    """The documented list holds only vLLM/TGI names, so it can never vouch for a joulebench metric."""
    assert all(name.startswith(("vllm:", "tgi_")) for name in documented_server_metrics())
    assert Path(GRAFANA / "server-metrics.yaml").read_text().count("http") >= 2
