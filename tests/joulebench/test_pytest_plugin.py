"""joulebench/pytest_plugin.py, as a user's test suite meets it: loaded through the `pytest11` entry point
(not named on the command line), a real mock-server process per test, stopped by PID afterwards."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import tomllib
from joulebench_testkit import REPO, alive

pytest_plugins = ["pytester"]

USER_TESTS = """
import json, os, pathlib, httpx, pytest

def _record(server):
    with pathlib.Path(os.environ["PIDS_FILE"]).open("a") as f:
        f.write(json.dumps({"pid": server.pid, "profile": server.profile}) + "\\n")

def _profile(server):
    return httpx.get(server.url + "/sim/state", timeout=30).json()["profile"]

def test_default(joulebench_mock):
    _record(joulebench_mock)
    body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    reply = httpx.post(joulebench_mock.url + "/v1/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
    assert _profile(joulebench_mock).startswith("h100")

@pytest.mark.joulebench_mock(profile="synthetic-fast", args=["--model-name", "mine"])
def test_marker(joulebench_mock):
    _record(joulebench_mock)
    models = httpx.get(joulebench_mock.url + "/v1/models", timeout=30).json()
    assert [m["id"] for m in models["data"]] == ["mine"]
    assert _profile(joulebench_mock) == "synthetic-fast"

@pytest.mark.parametrize("joulebench_mock", ["synthetic-fast"], indirect=True)
def test_param(joulebench_mock):
    _record(joulebench_mock)
    assert _profile(joulebench_mock) == "synthetic-fast"
"""


def test_a_users_tests_get_a_running_mock_stopped_afterwards(pytester, tmp_path, monkeypatch):
    pids = tmp_path / "pids.jsonl"
    monkeypatch.setenv("PIDS_FILE", str(pids))
    pytester.makepyfile(test_user=USER_TESTS)
    # A subprocess: the plugin comes from the entry point, as in a user's project, not from this session.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=3)
    started = [json.loads(line) for line in pids.read_text().splitlines()]
    assert [s["profile"] for s in started] == [None, "synthetic-fast", "synthetic-fast"]
    assert len({s["pid"] for s in started}) == 3  # a process of its own per test
    assert not any(alive(s["pid"]) for s in started)  # each stopped at its test's teardown


def test_a_mock_that_cannot_start_fails_the_test_with_its_log(pytester):
    pytester.makepyfile(
        test_bad="""
import pytest

@pytest.mark.joulebench_mock(profile="no-such-profile")
def test_it(joulebench_mock):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*did not start*", "*no-such-profile*"])


def test_the_entry_point_names_the_plugin():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["pytest11"]
    installed = {e.name: e.value for e in entry_points(group="pytest11")}
    assert installed.get("joulebench") == declared["joulebench"] == "joulebench.pytest_plugin", (
        "pytest11 entry point not installed: run `pip install -e .` again"
    )
