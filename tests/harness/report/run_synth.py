"""A synthetic but complete run folder (plan, manifest, requests.parquet, power.parquet) for report tests.

Two arms at the same mean rate over the same prompts: `fixed` (one request every 0.5 s) and `bursty`
(5 requests at once every 2.5 s). The simulated GPU draws 100 W idle plus 150 W whenever anything is
in flight plus 10 W per request, so batching (bursty) costs less energy per request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.clock import ClockAnchor
from harness.power.series import EnergySeries, PowerData
from harness.records import RequestRecord, records_frame
from harness.runfolder import RunFolder
from harness.runfolder.power_file import save_power
from harness.runfolder.requests_file import write_requests
from traffic.plan import ArmSpec, PlanHeader, make_plan
from traffic.shaping import parse_policy

S = 1_000_000_000
MS = 1_000_000
T0 = 1_000 * S  # monotonic origin of the synthetic run
N = 20  # requests per arm
IDLE_S = 10  # idle windows before and after


def _plan(policy: str | None = None):
    shaped = {} if policy is None else {"policy": policy, "policy_name": parse_policy(policy).name}
    arms = (
        ArmSpec("fixed", "fixed", {"interval": 0.5}, "fixed:interval=0.5", mean_rate=2.0, **shaped),
        ArmSpec(
            "bursty", "bursty", {"size": 5, "gap": 2.5}, "bursty:size=5,gap=2.5", mean_rate=2.0, **shaped
        ),
    )
    offsets = {"fixed": [0.5 * i for i in range(N)], "bursty": [2.5 * (i // 5) for i in range(N)]}
    rows = []
    for arm in arms:
        for seq, off in enumerate(offsets[arm.name]):
            rows.append({
                "request_id": len(rows), "arm": arm.name, "seq": seq, "offset_s": off, "prompt_id": f"p{seq}",
                "prompt": f"prompt {seq}", "messages": None, "prompt_chars": 8, "prompt_tokens": 50,
                "max_tokens": 20, "ignore_eos": True, "temperature": 0.0,
            })  # fmt: skip
    header = PlanHeader(
        seed=1, arms=arms, prompt_source={"spec": "synthetic"}, n=len(rows), target_mean_rate=2.0
    )
    return make_plan(header, pd.DataFrame(rows)), offsets


def build_run(
    out: Path,
    *,
    status: str = "ok",
    with_power: bool = True,
    power_offset_ns: int = 0,
    power_end_s: float | None = None,
    late_ms: float = 0.0,
    policy: str | None = None,
    hold_ms: float = 0.0,
) -> Path:
    """`power_end_s`: the power samples stop that many seconds after T0 (as when the sidecar dies);
    `late_ms`: every request of arm `fixed` is sent that much after it was planned; `policy`: both arms
    are shaped by it (in the plan), and every request is held `hold_ms` between arriving and being sent."""
    plan, offsets = _plan(policy)
    folder = RunFolder.create(out, plan)
    anchor = ClockAnchor(epoch_ns=1_700_000_000 * S, mono_ns=T0, boot_id="synthetic")
    records, lifetimes, arms = [], [], []
    start = T0 + IDLE_S * S
    for arm_index, name in enumerate(("fixed", "bursty")):
        arm_start = start
        for seq, off in enumerate(offsets[name]):
            rid = arm_index * N + seq
            rec = RequestRecord(rid, name, seq, f"p{seq}", warmup=False, api="openai-chat", stream=True)
            rec.planned_ns = arm_start + int(off * S)
            arrived = rec.planned_ns + 200_000 + (int(late_ms * MS) if name == "fixed" else 0)
            rec.arrived_ns = arrived if policy is not None else None
            rec.sent_ns = arrived + int(hold_ms * MS)
            rec.first_byte_ns = rec.sent_ns + 20 * MS
            rec.first_token_ns = rec.sent_ns + 30 * MS
            rec.chunk_ns = [rec.first_token_ns + i * 40 * MS for i in range(20)]
            rec.last_token_ns = rec.chunk_ns[-1]
            rec.prompt_tokens, rec.output_tokens = 50, 20
            rec.finish(status, rec.last_token_ns + MS, error=None if status == "ok" else "HTTP 503")
            rec.http_status = 200 if status == "ok" else 503
            records.append(rec)
            lifetimes.append((rec.sent_ns, rec.done_ns))
        arm_end = max(r.done_ns for r in records if r.arm == name)
        arms.append({"name": name, "start_ns": arm_start, "end_ns": arm_end})
        start = arm_end + S
    write_requests(records_frame(records, anchor), folder.requests_path, anchor)
    run_end = arms[-1]["end_ns"]
    folder.update_manifest(
        clock={"anchor": anchor.as_dict()},
        arms=arms,
        idle={
            "pre": {"start_ns": T0, "end_ns": T0 + IDLE_S * S},
            "post": {"start_ns": run_end + S, "end_ns": run_end + S + IDLE_S * S},
        },
    )
    if with_power:
        end = run_end + (IDLE_S + 2) * S if power_end_s is None else T0 + int(power_end_s * S)
        t = np.arange(T0, end, 10 * MS)
        save_power(folder.path, PowerData([_gpu(t, lifetimes, power_offset_ns)], source="synthetic"))
    return folder.path


def _gpu(t: np.ndarray, lifetimes: list[tuple[int, int]], offset_ns: int) -> EnergySeries:
    s = np.array([a for a, _ in lifetimes])
    e = np.array([b for _, b in lifetimes])
    mid = t[:-1] + np.diff(t) // 2
    n = ((mid[:, None] >= s) & (mid[:, None] < e)).sum(axis=1)
    watts = 100.0 + 150.0 * (n > 0) + 10.0 * n
    energy = np.concatenate([[0.0], np.cumsum(watts * np.diff(t) / S)])
    return EnergySeries(
        "0", t + offset_ns, energy, uuid="GPU-synthetic", name="Synthetic GPU", source="synthetic"
    )
