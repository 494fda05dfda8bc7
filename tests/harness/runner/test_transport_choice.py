"""`--transport auto`, the default: the sender process where it applies (an open-loop request to an
http:// target, no cap), aiohttp anywhere else, and the run's manifest says which and why.
(An open-files limit too low for the sender's descriptors: tests/e2e/test_client_fd_limit.py.)"""

from __future__ import annotations

import pytest
from runner_helpers import one_row_each, plan_of, run_plan

from harness.records import Shard
from harness.runner import RunOptions, transport_choice
from harness.runner.transport_choice import resolve_transport

HTTP = "http://127.0.0.1:1"


def test_auto_is_the_default_and_an_explicit_transport_is_kept() -> None:
    assert RunOptions().transport == "auto"
    plan = plan_of("fixed:interval=0.01", n=5)
    for named in ("aiohttp", "httpx", "sender"):
        kept = resolve_transport(plan, HTTP, RunOptions(transport=named))
        assert kept.transport == named and kept.transport_reason is None


def test_an_open_loop_plan_to_an_http_target_takes_the_sender() -> None:
    chosen = resolve_transport(plan_of("poisson:rate=50", "concurrency:n=2", n=20), HTTP, RunOptions())
    assert chosen.transport == "sender"
    assert chosen.transport_reason == "auto: sender, an open-loop plan to an http:// target with no cap"


@pytest.mark.parametrize(
    ("schedules", "url", "options", "why"),
    [
        (("fixed:interval=0.01",), "https://127.0.0.1:1", {}, "the target is https://"),
        (("fixed:interval=0.01",), HTTP, {"max_in_flight": 8}, "--max-in-flight is set"),
        (("fixed:interval=0.01",), HTTP, {"max_concurrency": 8}, "--max-concurrency is set"),
        (("fixed:interval=0.01",), HTTP, {"max_rate": 5.0}, "--max-rate is set"),
        (("concurrency:n=4",), HTTP, {}, "no open-loop request in this run"),
    ],
    ids=["https", "max-in-flight", "max-concurrency", "max-rate", "closed-loop only"],
)
def test_anywhere_else_auto_takes_aiohttp_and_says_why(schedules, url, options, why) -> None:
    chosen = resolve_transport(plan_of(*schedules, n=10), url, RunOptions(**options))
    assert chosen.transport == "aiohttp"
    assert chosen.transport_reason is not None and chosen.transport_reason.startswith(f"auto: aiohttp, {why}")


def test_a_system_without_seqpacket_sockets_takes_aiohttp(monkeypatch) -> None:
    # What macOS lacks (AF_UNIX SOCK_SEQPACKET) cannot be missing here: the check is stood in for.
    monkeypatch.setattr(transport_choice, "sender_available", lambda: False)
    chosen = resolve_transport(plan_of("poisson:rate=10", n=5), "http://127.0.0.1:1", RunOptions())
    assert chosen.transport == "aiohttp" and "SOCK_SEQPACKET" in (chosen.transport_reason or "")


def test_a_plan_of_shaped_arms_takes_aiohttp() -> None:
    """A policy's releases are sent by the loop at once: the thread has nothing to write ahead."""
    shaped = plan_of("poisson:rate=8", n=5, policies=["passthrough", "window:period=0.5"])
    assert resolve_transport(shaped, HTTP, RunOptions()).transport_reason == (
        "auto: aiohttp, no open-loop request in this run (only closed-loop or shaped arms)"
    )


def test_a_shard_with_no_open_loop_request_of_its_own_takes_aiohttp() -> None:
    """The shard's own requests decide: shard 1 of 2 of a 1-request open-loop arm has none of them."""
    plan = plan_of("fixed:interval=0.01", "concurrency:n=2", n=1)
    assert resolve_transport(plan, HTTP, RunOptions(shard=Shard.parse("1/2"))).transport == "aiohttp"


def test_a_default_run_records_the_transport_it_used_and_why(fast_mock, tmp_path) -> None:
    plan = plan_of("fixed:interval=0.01", "concurrency:n=2", n=20)
    result = run_plan(fast_mock.url, plan, tmp_path, transport="auto")
    assert (one_row_each(result, plan)["status"] == "ok").all()
    options = result.folder.manifest()["options"]
    assert options["transport"] == "sender" and options["transport_reason"].startswith("auto: sender, ")
    capped = run_plan(fast_mock.url, plan, tmp_path / "capped", transport="auto", max_in_flight=4)
    options = capped.folder.manifest()["options"]
    assert options["transport"] == "aiohttp" and "--max-in-flight is set" in options["transport_reason"]
