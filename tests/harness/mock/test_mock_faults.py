"""Each fault mode does what it says (probability 1 unless the test is about the rate)."""

from __future__ import annotations

import itertools
import json
import time

import httpx
import pytest

COMPLETIONS = "/v1/completions"
STREAM = {
    "model": "mock",
    "prompt": "x",
    "max_tokens": 20,
    "ignore_eos": True,
    "stream": True,
    "stream_options": {"include_usage": True},
}
WHOLE = {"model": "mock", "prompt": "x", "max_tokens": 20, "ignore_eos": True}
TGI = {"inputs": "x", "parameters": {"max_new_tokens": 20, "details": True}}


def events(text: str, prefix: str = "data: ") -> list[str]:
    return [line[len(prefix) :] for line in text.split("\n") if line.startswith(prefix)]


def test_error_rate_answers_with_the_chosen_status(mock_server):
    server = mock_server("--error-rate", "1", "--error-status", "503", "--speed", "20")
    r = httpx.post(server.url + COMPLETIONS, json=WHOLE)
    assert r.status_code == 503 and r.json()["error"]["code"] == 503
    t = httpx.post(server.url + "/generate", json=TGI)
    assert t.status_code == 503 and set(t.json()) == {"error", "error_type"}
    assert httpx.get(server.url + "/health").status_code == 200  # only generation requests fail


def test_error_rate_is_a_seeded_share(mock_server):
    server = mock_server("--error-rate", "0.3", "--speed", "50", "--profile", "synthetic-fast", "--seed", "9")
    with httpx.Client(base_url=server.url) as client:
        codes = [client.post(COMPLETIONS, json={**WHOLE, "max_tokens": 1}).status_code for _ in range(200)]
    share = sum(c != 200 for c in codes) / len(codes)
    assert 0.2 < share < 0.4 and set(codes) <= {200, 500, 503} and {500, 503} <= set(codes)


def test_rate_limit_answers_429_with_retry_after(mock_server):
    server = mock_server("--rate-limit-rate", "1", "--retry-after", "7")
    r = httpx.post(server.url + COMPLETIONS, json=WHOLE)
    assert r.status_code == 429 and r.headers["retry-after"] == "7" and r.json()["error"]["code"] == 429
    t = httpx.post(server.url + "/generate", json=TGI)
    assert t.status_code == 429 and t.headers["retry-after"] == "7" and t.json()["error_type"] == "overloaded"


def test_latency_spike_delays_the_first_token(mock_server):
    server = mock_server("--spike-rate", "1", "--spike-s", "0.6", "--profile", "synthetic-fast")
    t0 = time.perf_counter()
    r = httpx.post(server.url + COMPLETIONS, json={**WHOLE, "max_tokens": 2}, timeout=30)
    assert r.status_code == 200 and time.perf_counter() - t0 >= 0.6


def test_stall_pauses_a_stream_midway(mock_server):
    server = mock_server("--stall-rate", "1", "--stall-s", "0.8", "--profile", "synthetic-fast")
    times, t0 = [], time.perf_counter()
    with httpx.stream("POST", server.url + COMPLETIONS, json={**STREAM, "max_tokens": 40}, timeout=30) as r:
        for _ in r.iter_raw():
            times.append(time.perf_counter() - t0)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 0.75 and len(times) >= 2
    t0 = time.perf_counter()
    assert httpx.post(server.url + COMPLETIONS, json=WHOLE, timeout=30).status_code == 200
    assert time.perf_counter() - t0 >= 0.8


def test_disconnect_drops_the_connection_mid_response(mock_server):
    server = mock_server("--disconnect-rate", "1", "--speed", "5")
    received = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream("POST", server.url + COMPLETIONS, json={**STREAM, "max_tokens": 30}, timeout=30) as r,
    ):
        for chunk in r.iter_raw():
            received.append(chunk)
    assert received and b"[DONE]" not in b"".join(received)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(server.url + COMPLETIONS, json=WHOLE, timeout=30)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(server.url + "/generate_stream", json=TGI, timeout=30).read()
    time.sleep(0.3)
    state = httpx.get(server.url + "/sim/state").json()
    assert state["in_flight"] == 0 and state["running"] == 0  # nothing left behind
    assert "Traceback" not in server.log.read_text()


def test_malformed_event_and_body(mock_server):
    server = mock_server("--malformed-rate", "1", "--speed", "20")
    data = events(httpx.post(server.url + COMPLETIONS, json=STREAM, timeout=30).text)
    bad = []
    for e in data:
        try:
            json.loads(e) if e != "[DONE]" else None
        except json.JSONDecodeError:
            bad.append(e)
    assert len(bad) == 1 and data[-1] == "[DONE]"
    r = httpx.post(server.url + COMPLETIONS, json=WHOLE, timeout=30)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    tgi = events(httpx.post(server.url + "/generate_stream", json=TGI, timeout=30).text, prefix="data:")
    assert sum(1 for e in tgi if not e.endswith("}")) == 1


def test_response_without_usage(mock_server):
    server = mock_server("--no-usage-rate", "1", "--speed", "20")
    data = [
        json.loads(e) for e in events(httpx.post(server.url + COMPLETIONS, json=STREAM, timeout=30).text)[:-1]
    ]
    assert data and all(d["choices"] for d in data)  # include_usage asked for, no usage chunk came
    assert "usage" not in httpx.post(server.url + COMPLETIONS, json=WHOLE, timeout=30).json()
    assert "details" not in httpx.post(server.url + "/generate", json=TGI, timeout=30).json()
    last = json.loads(
        events(httpx.post(server.url + "/generate_stream", json=TGI, timeout=30).text, "data:")[-1]
    )
    assert last["generated_text"] is not None and last["details"] is None


def test_faults_can_come_from_the_profile(mock_server, tmp_path):
    from harness.mock.profile import load_profile

    profile = load_profile("synthetic-fast").with_changes(faults={"rate_limit_rate": 1.0, "retry_after_s": 3})
    path = tmp_path / "faulty.json"
    path.write_text(profile.model_dump_json())
    server = mock_server("--profile", str(path))
    r = httpx.post(server.url + COMPLETIONS, json=WHOLE)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
