"""benchmarks/worker_lateness.py, the runner's fidelity judged at the server: the medians and ranges
over repeats that the README quotes, a tiny run end to end against the arrival server, and the committed
run (benchmarks/results/fidelity), whose table is rebuilt from its raw points and quoted by the README."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
from joulebench_testkit import REPO, run_benchmark

sys.path[:0] = [str(REPO / "benchmarks")]

from worker_lateness import medians, table  # noqa: E402

COMMITTED = REPO / "benchmarks" / "results" / "fidelity"


def _point(p99: float, realized: float, ok: int = 500, workers: int = 1) -> dict:
    return {
        "rate": 100.0, "tokens": 128, "workers": workers, "requests": 500, "ok": ok,
        "server_ms": {"p50": 0.5, "p99": p99, "max": 2 * p99},
        "bare_ms": {"p50": 0.1, "p99": 1.0, "max": 3.0},
        "p99_over_bare": p99 / 1.0, "realized": realized, "loop_lag_p99_ms": 0.4,
        "cpu_share_busiest": 0.3, "cpu_share_total": 0.3, "loadavg": 0.5,
        "server_self": {"wall_s": 5.0, "cpu_share": 0.2, "loop_lag_ms": {"n": 1000, "p50": 0.1, "p99": 0.5,
                                                                          "max": 1.0}},
    }  # fmt: skip


def test_medians_give_the_range_and_count_only_runs_that_held_the_plan() -> None:
    points = [_point(1.0, 0.999), _point(3.0, 0.9949), _point(2.0, 1.0, ok=499), _point(9.0, 1.2, workers=2)]
    one, two = medians(points)
    assert (one["workers"], one["runs"], two["runs"]) == (1, 3, 1)
    assert one["server_p99"] == 2.0 and one["server_p99_range"] == [1.0, 3.0]
    assert one["realized"] == 0.999 and one["realized_range"] == [0.9949, 1.0]
    # 0.9949 is under 0.995, a run with a failed request did not hold the plan, and neither did one
    # whose arrivals came faster than planned (bunched after a stall).
    assert one["held"] == 1 and two["held"] == 0
    assert one["server_lag_p99"] == 0.5 and one["server_cpu"] == 0.2
    row = table([one]).splitlines()[2]
    assert "| 1 of 3 |" in row and "| 2.00 (1.00–3.00) |" in row and "0.9990 (0.9949–1.0000)" in row


@pytest.mark.slow
def test_a_tiny_run_against_the_arrival_server(tmp_path) -> None:
    result = run_benchmark(
        "worker_lateness.py", "--cases", "50:4", "--workers", "1", "--repeats", "2", "--duration", "1",
        "--lead", "3", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads((tmp_path / "worker_lateness.json").read_text())
    assert len(doc["points"]) == 2 and all(p["ok"] == p["requests"] == 50 for p in doc["points"])
    # Arrival at the server follows the planned time, by the server's own clock.
    assert all(p["server_ms"]["p50"] >= 0 for p in doc["points"])
    # Each send is decided before its bytes are handed to the socket: so are the spreads of the two.
    assert all(p["decided_ms"][q] <= p["wire_ms"][q] for p in doc["points"] for q in ("p50", "p99", "max"))
    # The server's own figures cover the schedule: its probe woke every 5 ms through about 1 s of it.
    assert all(p["server_self"]["loop_lag_ms"]["n"] >= 100 for p in doc["points"])
    (row,) = doc["medians"]
    assert row["runs"] == 2 and row["server_p99_range"][0] <= row["server_p99"] <= row["server_p99_range"][1]
    assert (tmp_path / "worker_lateness.md").read_text() == table(doc["medians"]) + "\n"


def _logged(log: Path) -> list[dict]:
    """The points a benchmark command printed (one JSON line each) among its other output."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _rebuilt(doc: dict, md: Path) -> str:
    """The table rebuilt from the document's raw points; its medians and its .md must be that rebuild."""
    assert medians(doc["points"]) == doc["medians"], md
    text = table(doc["medians"])
    assert md.read_text() == text + "\n", md
    return text


def test_the_committed_run_is_its_raw_points_and_the_readme_quotes_it() -> None:
    doc = json.loads((COMMITTED / "worker_lateness.json").read_text())
    text = _rebuilt(doc, COMMITTED / "worker_lateness.md")
    assert all(r["runs"] >= 3 for r in doc["medians"])  # the issue's rule: medians of 3 or more
    readme = (REPO / "README.md").read_text()
    for line in text.splitlines()[2:]:
        if line.split("|")[3].strip() == "1":  # the README quotes the one-worker rows
            assert line in readme, line
    assert text in (REPO / "docs" / "runner.md").read_text()  # and docs/runner.md the whole table


def test_the_16_core_runs_are_their_raw_points_and_docs_runner_quotes_them() -> None:
    """The GPU machine's runs (benchmarks/results/fidelity-16core): the sender's points are the JSON
    lines of its commands' output (sender.log), every table rebuilds from its points, and
    docs/runner.md quotes the sender's whole table."""
    folder = REPO / "benchmarks" / "results" / "fidelity-16core"
    sender = json.loads((folder / "sender.json").read_text())
    assert _logged(folder / "sender.log") == sender["points"] and sender["machine"]["cpus"] == 16
    for name, doc in {"sender": sender, "aiohttp": json.loads((folder / "aiohttp.json").read_text())}.items():
        _rebuilt(doc, folder / f"{name}.md")
        assert all(r["runs"] >= 3 for r in doc["medians"])
    text = table(sender["medians"])
    assert text in (REPO / "docs" / "runner.md").read_text()
    # The sender's one-worker gain the docs state: 100 x 128, p99 at the server 4.34 -> 0.73 ms.
    one = {r.get("transport", "aiohttp"): r for r in sender["medians"] if r["workers"] == 1}
    assert (round(one["aiohttp"]["server_p99"], 2), round(one["sender"]["server_p99"], 2)) == (4.34, 0.73)


def _by(doc: dict, workers: int) -> dict[str, dict]:
    return {r.get("transport", "aiohttp"): r for r in doc["medians"] if r["workers"] == workers}


def _p99(row: dict) -> str:
    low, high = row["server_p99_range"]
    return f"{row['server_p99']:.2f} ms (runs {low:.2f}–{high:.2f})"


@pytest.mark.parametrize("name", ["100x128", "1000x16"])
def test_the_16_core_runs_of_the_c_parser_are_their_raw_points_and_the_docs_quote_them(name: str) -> None:
    """100 x 128 and 1,000 x 16 on the GPU machine with the sender parsing in C: the points are the
    JSON lines of the command's output (its .log), the table rebuilds from them, docs/runner.md
    quotes it, and its prose and the README the figures below."""
    folder = REPO / "benchmarks" / "results" / "fidelity-16core"
    doc = json.loads((folder / f"{name}.json").read_text())
    assert _logged(folder / f"{name}.log") == doc["points"] and doc["machine"]["cpus"] == 16
    text = _rebuilt(doc, folder / f"{name}.md")
    assert all(r["runs"] == 3 for r in doc["medians"])
    assert all(p["server_self"]["unstamped_reads"] == 0 for p in doc["points"])
    runner = (REPO / "docs" / "runner.md").read_text()
    assert text in runner
    prose = " ".join(runner.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    if name == "100x128":
        sender, aiohttp = (_by(doc, 1)[t] for t in ("sender", "aiohttp"))
        s_low, s_high = sender["server_p99_range"]
        a_low, a_high = aiohttp["server_p99_range"]
        assert (
            f"{sender['server_p99']:.2f} ms with the sender (runs {s_low:.2f}–{s_high:.2f}) against "
            f"{aiohttp['server_p99']:.2f} ms with aiohttp (runs {a_low:.2f}–{a_high:.2f})"
        ) in prose
        assert f"{sender['server_p99']:.2f} ms against aiohttp's {aiohttp['server_p99']:.2f} ms" in readme
        return
    two, four, eight = (_by(doc, k) for k in (2, 4, 8))
    assert all(r["held"] == r["runs"] for rows in (two, four, eight) for r in rows.values())
    s2, s4, s8 = (f"{rows['sender']['server_p99']:.2f}" for rows in (two, four, eight))
    a2, a4, a8 = (f"{rows['aiohttp']['server_p99']:.2f}" for rows in (two, four, eight))
    assert f"The sender's p99 was {s2} ms with two workers, {s4} with four and {s8} with eight." in prose
    assert f"aiohttp's was {a2}, {a4} and {a8} ms." in prose
    assert (
        f"{s2} ms with two workers, {s4} with four and {s8} with eight (aiohttp {a2}, {a4}, {a8} ms)"
        in readme
    )
    ratio = f"{eight['sender']['p99_over_bare']:.2f}"
    assert f"With eight workers the sender's p99 was {ratio} times the bare timer's" in prose
    assert f"with eight {ratio} times the bare timer's" in readme


def test_the_2_core_transport_run_is_its_raw_points_and_docs_runner_quotes_it() -> None:
    folder = REPO / "benchmarks" / "results" / "fidelity-sender"
    doc = json.loads((folder / "worker_lateness.json").read_text())
    text = _rebuilt(doc, folder / "worker_lateness.md")
    assert all(r["runs"] >= 3 for r in doc["medians"])
    assert text in (REPO / "docs" / "runner.md").read_text()
    # Every arrival was stamped by the kernel, not by the server's loop.
    assert all(p["server_self"]["unstamped_reads"] == 0 for p in doc["points"])


def test_the_2_core_transport_prose_states_the_runs_figures() -> None:
    doc = json.loads(
        (REPO / "benchmarks" / "results" / "fidelity-sender" / "worker_lateness.json").read_text()
    )
    rows = {(r["rate"], r["workers"], r.get("transport", "aiohttp")): r for r in doc["medians"]}

    def p99(key: tuple) -> str:
        low, high = rows[key]["server_p99_range"]
        return f"{rows[key]['server_p99']:.2f} ms ({low:.2f}–{high:.2f})"

    readme = " ".join((REPO / "README.md").read_text().split())
    runner = " ".join((REPO / "docs" / "runner.md").read_text().split())
    one = rows[(100.0, 1, "sender")]
    low, high = one["server_p99_range"]
    assert (
        f"a p99 of {one['server_p99']:.2f} ms (runs {low:.2f}–{high:.2f}), {one['p99_over_bare']:.2f} times"
        in readme
    )
    fast = f"{p99((1000.0, 1, 'sender'))} against aiohttp's {p99((1000.0, 1, 'aiohttp'))}"
    assert fast in readme and fast in runner
    two = rows[(1000.0, 2, "sender")]
    assert f"with two workers {two['server_p99']:.2f} ms, {two['p99_over_bare']:.2f} times the bare" in readme
    ratios = [
        p["p99_over_bare"]
        for p in doc["points"]
        if (p["rate"], p["workers"], p["transport"]) == (1000.0, 2, "sender")
    ]
    assert f"within 1.2 in {sum(r <= 1.2 for r in ratios)} of {len(ratios)} runs" in runner


def test_the_breakdown_run_is_its_raw_points_and_docs_runner_quotes_it() -> None:
    folder = REPO / "benchmarks" / "results" / "fidelity-sender-breakdown"
    doc = json.loads((folder / "worker_lateness.json").read_text())
    _rebuilt(doc, folder / "worker_lateness.md")
    runner = " ".join((REPO / "docs" / "runner.md").read_text().split())
    assert doc["command"].removeprefix("python ").split(" --out ")[0] in runner

    def median(workers: int, key: str, q: str) -> str:
        runs = [p[key][q] for p in doc["points"] if p["workers"] == workers]
        assert len(runs) >= 3 and all(p["transport"] == "sender" for p in doc["points"])
        return f"{statistics.median(runs):.2f}"

    stamps = ("decided_ms", "wire_ms", "server_ms")
    two = [median(2, key, "p99") for key in stamps]
    assert f"p99 {two[0]} ms when the send was decided, {two[1]} ms at the wire, {two[2]} ms at" in runner
    half = [median(2, key, "p50") for key in stamps]
    bare = median(2, "bare_ms", "p50")
    assert f"p50 {half[0]}, {half[1]} and {half[2]} ms (the bare timer's {bare})" in runner
    assert f"bare timer's p99 was {median(2, 'bare_ms', 'p99')} ms with two workers" in runner
    one = [median(1, key, "p99") for key in stamps]
    assert f"With one worker: p99 {one[0]}, {one[1]} and {one[2]} ms" in runner


def test_the_sender_process_run_is_its_raw_points_and_docs_runner_and_readme_quote_it() -> None:
    folder = REPO / "benchmarks" / "results" / "fidelity-sender-process"
    doc = json.loads((folder / "worker_lateness.json").read_text())
    text = _rebuilt(doc, folder / "worker_lateness.md")
    runner_raw = (REPO / "docs" / "runner.md").read_text()
    assert text in runner_raw and all(p["transport"] == "sender" for p in doc["points"])
    assert all(r["runs"] >= 3 for r in doc["medians"])
    assert all(p["server_self"]["unstamped_reads"] == 0 for p in doc["points"])
    runner = " ".join(runner_raw.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    assert doc["command"].removeprefix("python ").split(" --out ")[0] in runner
    rows = {(r["rate"], r["workers"]): r for r in doc["medians"]}

    def ranged(key: tuple, figure: str, unit: str = "") -> str:
        low, high = rows[key][f"{figure}_range"]
        return f"{rows[key][figure]:.2f}{unit} ({low:.2f}–{high:.2f})"

    fast = [p["p99_over_bare"] for p in doc["points"] if p["rate"] == 1000.0]
    within = f"{sum(r <= 1.2 for r in fast)} of {len(fast)} runs"
    one, two = ranged((1000.0, 1), "p99_over_bare"), ranged((1000.0, 2), "p99_over_bare")
    assert f"times the bare timer's in {within}: {one} with one worker, {two} with two" in runner
    assert f"With one worker the p99 was {ranged((1000.0, 1), 'server_p99', ' ms')}" in runner
    slow = ranged((100.0, 1), "server_p99", " ms")
    under = sum(p["server_ms"]["p99"] <= 2 for p in doc["points"] if (p["rate"], p["workers"]) == (100.0, 1))
    assert f"p99 {slow} with one worker, within issue 19's 2 ms in {under} of 3 runs" in runner
    assert f"With two workers {ranged((100.0, 2), 'server_p99', ' ms')}" in runner
    every = [p["p99_over_bare"] for p in doc["points"]]
    assert f"All {len(every)} runs together: within 1.2 times the bare timer's p99 in " + str(
        sum(r <= 1.2 for r in every)
    ) in runner
    said = f"within 1.2 times the bare timer's p99 in {within} at 1,000 requests/s ({one} with one worker"
    assert f"{said}, {two} with two)" in readme
    assert all(r <= 1 for r in fast)  # "at or below the bare timer's in every 1,000 × 16 run"
    assert "the p99 was at or below the bare timer's in every 1,000 × 16 run" in runner
    bare = [p["bare_ms"]["p99"] for p in doc["points"]]
    assert f"(its p99 ranged {min(bare):.2f}–{max(bare):.2f} ms over these runs)" in runner
    one_worker = rows[(1000.0, 1)]
    assert f"was {one_worker['cpu_busiest']:.2f} with one worker at 1,000 × 16" in runner
    assert f"the runner used {one_worker['cpu_total']:.2f} of a core in all" in runner


@pytest.mark.parametrize("name", ["100x128", "1000x16"])
def test_the_16_core_runs_of_the_sender_process_are_their_raw_points_and_docs_quote_them(name: str) -> None:
    folder = REPO / "benchmarks" / "results" / "fidelity-16core-process"
    doc = json.loads((folder / f"{name}.json").read_text())
    assert _logged(folder / f"{name}.log") == doc["points"] and doc["machine"]["cpus"] == 16
    assert all(r["runs"] == 3 and r["held"] == 3 for r in doc["medians"])
    assert all(p["server_self"]["unstamped_reads"] == 0 and p["transport"] == "sender" for p in doc["points"])
    runner_raw = (REPO / "docs" / "runner.md").read_text()
    assert _rebuilt(doc, folder / f"{name}.md") in runner_raw
    runner = " ".join(runner_raw.split())
    readme = " ".join((REPO / "README.md").read_text().split())
    assert doc["command"].removeprefix("python ").split(" --out ")[0] in runner
    rows = {r["workers"]: r for r in doc["medians"]}
    if name == "100x128":
        low, high = rows[1]["p99_over_bare_range"]
        ratio = f"{rows[1]['p99_over_bare']:.2f} times the bare timer's ({low:.2f}–{high:.2f})"
        assert f"p99 {_p99(rows[1])}, {ratio}" in runner
        return
    assert f"was {_p99(rows[1])} with one worker" in runner
    two, four, eight = (f"{rows[k]['server_p99']:.2f}" for k in (2, 4, 8))
    assert f"{two} with two, {four} with four and {eight} with eight" in runner
    ratios = [p["p99_over_bare"] for p in doc["points"]]
    assert f"within 1.2 times it in {sum(r <= 1.2 for r in ratios)} of {len(ratios)} runs" in runner
    medians = ", ".join(f"{rows[k]['p99_over_bare']:.2f}" for k in (1, 2, 4))
    assert f"the median run's {medians} and {rows[8]['p99_over_bare']:.2f}" in runner
    bare = [p["bare_ms"]["p99"] for p in doc["points"]]
    by_row = [r["bare_p99"] for r in doc["medians"]]
    assert f"whose own p99 here was {min(bare):.2f}–{max(bare):.2f} ms by run" in runner
    assert f"({min(by_row):.2f}–{max(by_row):.2f} in the rows' medians)" in runner
    thread = json.loads((REPO / "benchmarks" / "results" / "fidelity-16core" / "1000x16.json").read_text())
    old = _by(thread, 1)["sender"]["server_p99"]
    assert f"where the thread's was {old:.2f} ms" in runner
    assert f"a p99 of {rows[1]['server_p99']:.2f} ms with one worker (the thread's: {old:.2f} ms)" in readme
    low, high = min(rows[k]["server_p99"] for k in (2, 4, 8)), max(rows[k]["server_p99"] for k in (2, 4, 8))
    assert f"{low:.2f}–{high:.2f} ms with two to eight" in readme
