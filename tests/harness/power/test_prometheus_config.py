"""The shipped deploy/prometheus/prometheus.yml: valid, and scraping the sidecar and the server at 1 s."""

from __future__ import annotations

import subprocess

import yaml
from joulebench_testkit import REPO, require_tool

CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"


def test_promtool_check_config():
    promtool = require_tool("promtool", "apt-get install prometheus")
    result = subprocess.run([promtool, "check", "config", str(CONFIG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrapes_sidecar_and_server_every_second():
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {job: [t for s in j["static_configs"] for t in s["targets"]] for job, j in jobs.items()}
    assert targets == {"joulebench-sidecar": ["sidecar:9400"], "inference-server": ["server:8000"]}
    for job in jobs.values():
        assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "1s"
    assert config["global"]["scrape_timeout"] == "1s"
