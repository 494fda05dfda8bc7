"""The measurement settings of `joulebench run`, validated in one place: one-line errors naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundation.errors import InputError
from harness.session.config import MeasureConfig, PowerConfig, ServerConfig, parse_gpu_list


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            MeasureConfig(power=PowerConfig(sidecar="localhost:9400")),
            "--sidecar 'localhost:9400': not an http",
        ),
        (MeasureConfig(power=PowerConfig(prometheus="ftp://x")), "--prometheus 'ftp://x': not an http"),
        (
            MeasureConfig(power=PowerConfig(sidecar="http://a", primary="nvml")),
            "--primary 'nvml': expected one of sidecar, prometheus, dcgm",
        ),
        (MeasureConfig(power=PowerConfig(sidecar="http://a", primary="dcgm")), "--primary dcgm: give --dcgm"),
        (MeasureConfig(power=PowerConfig(sidecar="http://a", selector='job="x"')), "--power-selector: only"),
        (MeasureConfig(power=PowerConfig(prometheus="http://p", selector="job=x")), "label matchers"),
        (MeasureConfig(power=PowerConfig(prometheus="http://p", prometheus_step_s=0)), "--prometheus-step"),
        (MeasureConfig(idle_s=-1), "--idle: expected 0 to 3600"),
        (MeasureConfig(idle_s=5), "--idle: idle power needs a power source"),
        (MeasureConfig(method="joules"), "--method 'joules': expected one of time, tokens, steps"),
        (MeasureConfig(server=ServerConfig(metrics="nope")), "--server-metrics 'nope'"),
        (MeasureConfig(server=ServerConfig(metrics_interval_s=0)), "--server-metrics-interval"),
        (MeasureConfig(server=ServerConfig(restart=True)), "--restart-server: needs --server-container"),
        (MeasureConfig(server=ServerConfig(docker_host="unix:///x")), "--docker-host: only used with"),
        (MeasureConfig(server=ServerConfig(info_file=Path("/nonexistent.json"))), "--server-info"),
    ],
)
def test_bad_settings_name_their_flag(config: MeasureConfig, message: str) -> None:
    with pytest.raises(InputError) as caught:
        config.validate()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_idle_without_a_source_is_fine_for_the_embedded_default() -> None:
    assert MeasureConfig(idle_s=5).validate(embedded=True).idle_s == 5


def test_primary_defaults_to_the_first_given_source_in_preference_order() -> None:
    both = PowerConfig(prometheus="http://p", sidecar="http://s", dcgm="http://d")
    assert both.primary_kind == "sidecar" and list(both.sources) == ["sidecar", "prometheus", "dcgm"]
    chosen = PowerConfig(prometheus="http://p", sidecar="http://s", primary="prometheus")
    assert list(chosen.sources) == ["prometheus", "sidecar"]
    assert PowerConfig().primary_kind is None and PowerConfig().sources == {}


def test_server_metrics_url() -> None:
    assert ServerConfig().metrics_url("http://h:8000/") == "http://h:8000/metrics"
    assert ServerConfig(metrics="off").metrics_url("http://h:8000") is None
    assert ServerConfig(metrics="http://m/x").metrics_url("http://h:8000") == "http://m/x"


def test_gpu_list() -> None:
    assert parse_gpu_list(None) is None and parse_gpu_list("all") is None
    assert parse_gpu_list("0,2") == ("0", "2")
    with pytest.raises(InputError, match="--gpus"):
        parse_gpu_list("0,x")
