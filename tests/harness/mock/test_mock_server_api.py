"""The mock server over real HTTP: third-party clients, formats, /metrics, /sim/gpu, bad requests."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from joulebench_testkit import require_tool, run_mock_server
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with run_mock_server("--speed", "20", "--seed", "5", log_dir=tmp_path_factory.mktemp("mock")) as s:
        yield s


@pytest.fixture(scope="module")
def tgi_server(tmp_path_factory):
    with run_mock_server(
        "--speed",
        "20",
        "--flavour",
        "tgi",
        "--model-name",
        "tgi-mock",
        log_dir=tmp_path_factory.mktemp("mock-tgi"),
    ) as s:
        yield s


def sse_events(body: str, prefix: str = "data: ") -> list[str]:
    # Split on "\n" only: token text may hold characters str.splitlines() breaks on.
    return [line[len(prefix) :] for line in body.split("\n") if line.startswith(prefix)]


# ------------------------------------------------------------------------------------------ OpenAI SDK
def test_openai_sdk_chat_and_completions(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list()] == ["mock"]

    chat = client.chat.completions.create(
        model="mock",
        messages=[{"role": "user", "content": "How much energy?"}],
        max_tokens=12,
        extra_body={"ignore_eos": True},
    )
    assert chat.choices[0].finish_reason == "length" and chat.choices[0].message.role == "assistant"
    assert chat.usage.completion_tokens == 12 and chat.usage.prompt_tokens > 0
    assert chat.choices[0].message.content

    text = client.completions.create(
        model="mock", prompt="Energy per request", max_tokens=7, extra_body={"ignore_eos": True}
    )
    assert text.usage.completion_tokens == 7 and text.choices[0].finish_reason == "length"
    assert text.usage.prompt_tokens == 5  # ceil(18 bytes / 4)


def test_openai_sdk_streams_with_usage(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    chunks = list(
        client.chat.completions.create(
            model="mock",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=9,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 9
    assert chunks[-2].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text

    pieces = list(
        client.completions.create(
            model="mock", prompt="hi", max_tokens=5, stream=True, extra_body={"ignore_eos": True}
        )
    )
    assert pieces[-1].choices[0].finish_reason == "length"
    assert all(p.usage is None for p in pieces)  # no include_usage: no usage chunk


def test_openai_errors_are_vllm_shaped(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="other", prompt="hi", max_tokens=5)
    assert missing.value.body == {
        "message": "The model `other` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }
    with pytest.raises(openai.BadRequestError) as too_long:
        client.completions.create(model="mock", prompt="hi", max_tokens=100_000)
    assert (
        too_long.value.body["param"] == "max_tokens"
        and "maximum context length is 4096" in too_long.value.body["message"]
    )


# ------------------------------------------------------------------------------------------ TGI client
def test_huggingface_inference_client_text_generation(server):
    client = InferenceClient(server.url)
    text = client.text_generation("Hello", max_new_tokens=6)
    assert isinstance(text, str) and text
    out = client.text_generation("Hello", max_new_tokens=6, details=True)
    assert out.details.generated_tokens <= 6 and len(out.details.tokens) == out.details.generated_tokens
    assert out.details.finish_reason in ("length", "eos_token")
    assert "".join(t.text for t in out.details.tokens) == out.generated_text

    tokens = list(client.text_generation("Hello", max_new_tokens=5, stream=True))
    assert 1 <= len(tokens) <= 5 and all(isinstance(t, str) for t in tokens)
    events = list(client.text_generation("Hello", max_new_tokens=5, stream=True, details=True))
    last = events[-1]
    assert last.details is not None and last.details.generated_tokens == len(events)
    assert last.generated_text == "".join(e.token.text for e in events)
    assert [e.index for e in events] == list(range(1, len(events) + 1))


def test_huggingface_chat_completion_without_model_on_tgi_flavour(tgi_server):
    # InferenceClient sends a placeholder model id when given none; real TGI ignores the field.
    client = InferenceClient(tgi_server.url)
    out = client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert out.choices[0].message.content and out.usage.completion_tokens <= 5
    chunks = list(
        client.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_tgi_generate_headers_and_stream_format(server):
    doc = {"inputs": "hello world", "parameters": {"max_new_tokens": 8, "details": True}}
    r = httpx.post(server.url + "/generate", json=doc, timeout=30)
    assert r.status_code == 200
    h = r.headers
    assert h["x-compute-type"] == "gpu+optimized" and int(h["x-compute-characters"]) == 11
    assert (
        int(h["x-prompt-tokens"]) == 3
        and int(h["x-generated-tokens"]) == r.json()["details"]["generated_tokens"]
    )
    for name in ("x-total-time", "x-validation-time", "x-queue-time", "x-inference-time", "x-time-per-token"):
        assert int(h[name]) >= 0
    assert float(h["x-compute-time"]) * 1000 == pytest.approx(int(h["x-total-time"]), abs=1)
    assert int(h["x-inference-time"]) <= int(h["x-total-time"])

    s = httpx.post(server.url + "/generate_stream", json=doc, timeout=30)
    assert (
        s.headers["content-type"].startswith("text/event-stream") and s.headers["x-accel-buffering"] == "no"
    )
    events = [json.loads(e) for e in sse_events(s.text, prefix="data:")]
    assert all(e["details"] is None for e in events[:-1]) and events[-1]["details"]["input_length"] == 3
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert "data: " not in s.text  # TGI writes data:{...} without a space


def test_tgi_info_health_and_models(tgi_server):
    info = httpx.get(tgi_server.url + "/info").json()
    assert info["model_id"] == "tgi-mock" and info["max_total_tokens"] == 4096 and info["router"]
    assert httpx.get(tgi_server.url + "/health").status_code == 200
    models = httpx.get(tgi_server.url + "/v1/models").json()
    assert models["data"][0] == {"id": "tgi-mock", "object": "model", "created": 0, "owned_by": "tgi-mock"}


# ------------------------------------------------------------------------------------------ metrics
def _families(url: str) -> dict:
    text = httpx.get(url + "/metrics").text
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def test_vllm_metrics_parse_and_count(server):
    httpx.post(
        server.url + "/v1/completions",
        json={"model": "mock", "prompt": "abcd", "max_tokens": 4, "ignore_eos": True},
        timeout=30,
    )
    families, text = _families(server.url)
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prompt_tokens",
        "vllm:generation_tokens",
        "vllm:time_to_first_token_seconds",
        "vllm:inter_token_latency_seconds",
        "vllm:e2e_request_latency_seconds",
        "vllm:request_success",
    ):
        assert name in families, name
    assert families["vllm:prompt_tokens"].type == "counter"
    assert families["vllm:e2e_request_latency_seconds"].type == "histogram"
    generated = {s.name: s.value for s in families["vllm:generation_tokens"].samples}
    assert generated["vllm:generation_tokens_total"] >= 4
    labels = families["vllm:num_requests_running"].samples[0].labels
    assert labels == {"engine": "0", "model_name": "mock"}
    assert not any(line.startswith("tgi_") for line in text.splitlines())


def test_tgi_metrics_parse(tgi_server):
    httpx.post(
        tgi_server.url + "/generate", json={"inputs": "abc", "parameters": {"max_new_tokens": 3}}, timeout=30
    )
    families, text = _families(tgi_server.url)
    for name in (
        "tgi_batch_current_size",
        "tgi_queue_size",
        "tgi_request_count",
        "tgi_request_duration",
        "tgi_batch_forward_duration",
        "tgi_request_generated_tokens",
    ):
        assert name in families, name
    assert "tgi_request_count 1.0" in text.splitlines()
    assert not any(line.startswith("vllm:") for line in text.splitlines())


@pytest.mark.parametrize("which", ["server", "tgi_server"])
def test_promtool_accepts_metrics(which, request):
    promtool = require_tool("promtool", "apt-get install prometheus")
    url = request.getfixturevalue(which).url
    text = httpx.get(url + "/metrics").text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    # Exit 0 (clean) or 3 (lint findings); a parse error would be 1. The only findings allowed are
    # the ones the real servers' own names draw: vLLM's colons and its histogram
    # vllm:iteration_tokens_total, TGI's counters without _total (tgi_request_count).
    assert result.returncode in (0, 3), result.stderr
    allowed = (
        "metric names should not contain ':'",
        'counter metrics should have "_total" suffix',
        'non-counter metrics should not have "_total" suffix',
        'non-histogram and non-summary metrics should not have "_count" suffix',
    )
    findings = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert all(any(a in line for a in allowed) for line in findings), findings


# ------------------------------------------------------------------------------------------ /sim/gpu
def test_sim_gpu_follows_the_contract(server):
    doc = httpx.get(server.url + "/sim/gpu").json()
    assert (
        doc["schema_version"] == 1 and doc["speed"] == 20.0 and doc["profile"] == "h100-vllm0.26-llama3.2-1b"
    )
    assert set(doc["clock"]) == {"epoch_ns", "mono_ns", "boot_id"}
    (gpu,) = doc["gpus"]
    assert set(gpu) >= {
        "index",
        "uuid",
        "name",
        "energy_j",
        "power_w",
        "power_limit_w",
        "temperature_c",
        "sm_clock_hz",
        "mem_clock_hz",
        "utilization_gpu",
        "utilization_memory",
        "driver",
    }
    assert gpu["index"] == 0 and gpu["uuid"] == "GPU-mock-0000" and gpu["power_limit_w"] == 700.0


def test_idle_energy_is_exactly_idle_power_times_simulated_time(server):
    # The module's server is shared: a request of an earlier test (an aborted stream) may still be
    # running in the simulator, so wait for two idle readings in a row.
    deadline = time.monotonic() + 30
    while True:
        a = httpx.get(server.url + "/sim/gpu").json()
        b = httpx.get(server.url + "/sim/gpu").json()
        if a["gpus"][0]["power_w"] == b["gpus"][0]["power_w"] == 119.82:
            break
        assert time.monotonic() < deadline, f"the simulated GPU never went idle: {b}"
        time.sleep(0.2)
    dt = b["sim_time_s"] - a["sim_time_s"]
    assert dt > 0 and (b["clock"]["mono_ns"] - a["clock"]["mono_ns"]) * 20 / 1e9 == pytest.approx(
        dt, rel=1e-6
    )
    assert b["gpus"][0]["energy_j"] - a["gpus"][0]["energy_j"] == pytest.approx(119.82 * dt, rel=1e-6)


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        ("/v1/completions", b"{not json", 400, "Bad Request"),
        ("/v1/completions", b"[1, 2]", 400, "Bad Request"),
        ("/v1/completions", b'{"model": "mock"}', 400, "BadRequestError"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": "many"}', 400, "Bad Request"),
        ("/v1/completions", b'{"prompt": "x", "max_tokens": 0}', 400, "BadRequestError"),
        (
            "/v1/completions",
            b'{"prompt": "x", "stream_options": {"include_usage": true}}',
            400,
            "BadRequestError",
        ),
        ("/v1/chat/completions", b'{"model": "mock"}', 400, "Bad Request"),
        ("/v1/chat/completions", b'{"messages": [{"content": "x"}]}', 400, "Bad Request"),
        ("/v1/chat/completions", b'{"messages": "hi"}', 400, "Bad Request"),
        (
            "/v1/chat/completions",
            b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5000}',
            400,
            "BadRequestError",
        ),
    ],
)
def test_openai_bad_requests(server, path, body, status, kind):
    r = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["type"] == kind and error["code"] == status and error["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "text"),
    [
        (b"{not json", "application/json", 400, "Failed to parse the request body as JSON"),
        (b'{"parameters": {}}', "application/json", 422, "missing field `inputs`"),
        (b'{"inputs": 5}', "application/json", 422, "Failed to deserialize the JSON body"),
        (b'{"inputs": "x"}', "text/plain", 415, "Expected request with `Content-Type: application/json`"),
    ],
)
def test_tgi_rejections_are_axum_plain_text(server, body, content_type, status, text):
    r = httpx.post(server.url + "/generate", content=body, headers={"content-type": content_type})
    assert r.status_code == status and text in r.text and r.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"max_new_tokens": 5000}, "`inputs` tokens + `max_new_tokens` must be <= 4096"),
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 1.5}, "`top_p` must be > 0.0 and < 1.0"),
    ],
)
def test_tgi_validation_errors(server, parameters, message):
    r = httpx.post(server.url + "/generate", json={"inputs": "hello", "parameters": parameters})
    assert r.status_code == 422
    assert (
        r.json() == {"error": r.json()["error"], "error_type": "validation"} and message in r.json()["error"]
    )


def test_unknown_routes_and_methods(server):
    assert httpx.get(server.url + "/nope").status_code == 404
    assert httpx.get(server.url + "/v1/completions").status_code == 405
    assert httpx.post(server.url + "/metrics").status_code == 405


def test_tgi_responses_carry_the_request_id_of_the_ground_truth(server):
    """`x-request-id` on /generate and /generate_stream, whose last 16 hex digits are the simulator's
    request number: the run's rows match `GET /sim/requests` on the TGI API as on the OpenAI one."""
    doc = {"inputs": "hello world", "parameters": {"max_new_tokens": 6, "details": True}}
    whole = httpx.post(server.url + "/generate", json=doc, timeout=30)
    stream = httpx.post(server.url + "/generate_stream", json=doc, timeout=30)
    generated = {
        whole.headers["x-request-id"]: whole.json()["details"]["generated_tokens"],
        stream.headers["x-request-id"]: json.loads(sse_events(stream.text, "data:")[-1])["details"][
            "generated_tokens"
        ],
    }
    truth = {r["rid"]: r for r in httpx.get(server.url + "/sim/requests").json()["requests"]}
    assert len(generated) == 2  # two requests, two ids
    for xid, tokens in generated.items():
        assert xid.startswith("tgi-")
        mine = truth[int(xid[-16:], 16)]
        assert (mine["generated"], mine["prompt_tokens"]) == (tokens, 3)  # "hello world": 3 tokens
