"""The request log as arrays sliced per arm, and its latency, lateness, hold, goodput, rate and client-load
figures (no energy here).

Lateness and the realized rate are of the time each request was offered to the server: in an unshaped
arm when its last byte was written to the socket (`wire_ns`), in a shaped arm when its user arrived (the
policy's hold is not lateness). A request with no wire time (an older log, or one that failed before
reaching the socket) counts from its dispatch (`sent_ns`), and `Lateness.at` says which it was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import pandas as pd

from harness.energy.lifetimes import chunk_arrays, int_column
from harness.energy.stats import Percentiles, percentiles


class Latency(TypedDict):
    """Seconds, of successful requests: at the server (from sending) and as users see them (from arrival,
    a shaping policy's hold included; the same as the server's in an unshaped arm)."""

    ttft: Percentiles
    itl: Percentiles  # between content chunks
    tpot: Percentiles  # (last - first token) / (output tokens - 1)
    e2e: Percentiles
    user_ttft: Percentiles
    user_e2e: Percentiles


class Hold(Percentiles):
    """Milliseconds a shaping policy held each request it released (sent - arrival; 0 unshaped)."""

    max: float | None


class Goodput(TypedDict):
    """Planned requests that succeeded within the SLO as users see it (from arrival); None without an SLO."""

    slo_ttft_s: float | None
    slo_e2e_s: float | None
    met: int  # successful, with user TTFT <= slo_ttft_s and user E2E <= slo_e2e_s (the ones given)
    share: float | None  # met / planned
    rate: float | None  # met per second of the window


class DispatchLateness(Percentiles):
    """Milliseconds from due to dispatch (`sent_ns`, stamped before the HTTP stack runs): what the
    runner's own clock saw; the HTTP stack's delay to the wire comes on top."""

    max: float | None


class Lateness(Percentiles):
    max: float | None
    bound: float | None  # the p99 bound (ms) the arm was held to; None: exempt or not an arm
    bound_basis: str | None  # "planned_gaps", "max_lateness_ms" (the option), "closed_loop" (exempt)
    # What the figures are of: "wire" (unshaped requests at their wire time), "dispatch" (no wire
    # times in the log: an older log, or a transport without the hook), "arrival" (shaped arms only)
    at: str | None
    dispatch: DispatchLateness


class ClientLoad(TypedDict):
    """What the client carried: requests in flight (as each request found it when sent, itself
    included), those held at `--max-in-flight`, and from the runner (the manifest; None in an older run,
    or the run block) its event loop's lag and CPU share."""

    in_flight_max: int | None
    in_flight_p99: float | None
    capped: int  # requests held at --max-in-flight before they were sent
    capped_ms_max: float | None  # the longest such hold
    loop_lag_ms: DispatchLateness | None  # the runner's loop probe: how late its wake-ups were
    loop_lag_bound_ms: float | None
    cpu_share: float | None  # the runner's CPU time over the arm's wall time (1.0: one core, saturated)


# The default bound on an arm's p99 lateness (docs/energy.md, "Lateness"). A quarter of the median
# planned gap: sends that late still land nearer their own slot than the next one's, so the server
# sees the plan's spacing. The floor keeps timer noise from flagging dense schedules and bursts: the
# highest p99 the load-generator fidelity benchmark measured at any rate the runner kept up with was
# 9.7 ms on a quiet machine, and the embedded default (mock server, sidecar and runner sharing two
# cores) went past 10 ms in its bursts while other tests ran beside it. The cap keeps long gaps from
# excusing a stalled client. Requests due closer together than a send costs leave one after another,
# each costing the client up to 0.6 ms of CPU (the same benchmark): the backlog of a client that spends
# 1 ms a send is allowed on top (a burst of k at one instant: k - 1 ms).
LATENESS_GAP_SHARE = 0.25
LATENESS_FLOOR_MS = 20.0
LATENESS_CAP_MS = 100.0
LATENESS_PER_SEND_MS = 1.0


@dataclass(frozen=True)
class LatenessBound:
    ms: float
    basis: str  # as `Lateness.bound_basis`
    why: str  # how the bound was set, in words, for the flag's message


class Rates(TypedDict):
    target: float | None  # the plan's target mean rate
    planned: float | None
    realized: float | None
    realized_over_planned: float | None


@dataclass
class RequestTimes:
    """The request log's times as arrays, computed once and sliced per arm."""

    sent: np.ndarray
    has_sent: np.ndarray
    arrived: np.ndarray  # the user's arrival: `arrived_ns`, else (an unshaped log) the send
    has_arrived: np.ndarray
    first: np.ndarray
    has_first: np.ndarray
    last: np.ndarray
    has_last: np.ndarray
    done: np.ndarray
    has_done: np.ndarray
    planned: np.ndarray
    has_planned: np.ndarray
    lateness: np.ndarray  # dispatch lateness: the log's `lateness_ns`
    has_lateness: np.ndarray
    wire: np.ndarray
    has_wire: np.ndarray
    offered: np.ndarray  # when the server was offered it: the wire time of an unshaped request, else arrival
    has_offered: np.ndarray
    by_wire: np.ndarray  # bool per row: `offered` is its wire time
    capped: np.ndarray  # ns held at --max-in-flight
    has_capped: np.ndarray
    output: np.ndarray
    has_output: np.ndarray
    prompt: np.ndarray
    has_prompt: np.ndarray
    itl_count: np.ndarray  # int64 per row: its inter-chunk gaps (chunks - 1)
    itl_s: np.ndarray  # float32 seconds: every row's inter-chunk gaps, row after row

    @classmethod
    def of(cls, df: pd.DataFrame) -> RequestTimes:
        cols = {}
        for name, col in (
            ("sent", "sent_ns"),
            ("arrived", "arrived_ns"),
            ("first", "first_token_ns"),
            ("last", "last_token_ns"),
            ("done", "done_ns"),
            ("planned", "planned_ns"),
            ("lateness", "lateness_ns"),
            ("wire", "wire_ns"),
            ("capped", "capped_ns"),
            ("output", "output_tokens"),
            ("prompt", "prompt_tokens"),
        ):
            cols[name], cols[f"has_{name}"] = int_column(df, col)
        unshaped = ~cols["has_arrived"]  # a frame without the column, or a request that never arrived
        cols["arrived"] = np.where(unshaped, cols["sent"], cols["arrived"])
        cols["has_arrived"] = cols["has_arrived"] | cols["has_sent"]
        # An unshaped request arrived when it was sent (the log's arrived = sent): the wire is its offer.
        by_wire = cols["has_wire"] & cols["has_sent"] & (cols["arrived"] == cols["sent"])
        cols["by_wire"] = by_wire
        cols["offered"] = np.where(by_wire, cols["wire"], cols["arrived"])
        cols["has_offered"] = cols["has_arrived"]
        flat, offsets = chunk_arrays(df)
        return cls(**cols, itl_count=np.maximum(np.diff(offsets) - 1, 0), itl_s=_gaps(flat, offsets))


@dataclass
class Codes:
    """A string column as integer codes (pd.factorize): comparing a million Python strings per arm
    would cost more than the join."""

    codes: np.ndarray
    names: list[str]

    @classmethod
    def of(cls, column: pd.Series) -> Codes:
        codes, names = pd.factorize(column.astype(str))
        return cls(codes, list(names))

    def eq(self, name: str) -> np.ndarray:
        if name not in self.names:
            return np.zeros(len(self.codes), dtype=bool)
        rows: np.ndarray = self.codes == self.names.index(name)  # numpy types `==` as Any
        return rows

    def counts(self, rows: np.ndarray) -> dict[str, int]:
        n = np.bincount(self.codes[rows], minlength=len(self.names))
        return {name: int(c) for name, c in sorted(zip(self.names, n, strict=True)) if c}


def latency(times: RequestTimes, ok: np.ndarray) -> Latency:
    """TTFT, inter-chunk latency, time per output token and end-to-end latency (s) of `ok` rows."""
    t = times
    ttft = (t.first - t.sent)[ok & t.has_first & t.has_sent] / 1e9
    e2e = (t.done - t.sent)[ok & t.has_done & t.has_sent] / 1e9
    tpot_rows = ok & t.has_first & t.has_last & t.has_output & (t.output > 1)
    tpot = (t.last - t.first)[tpot_rows] / 1e9 / (t.output[tpot_rows] - 1)
    itl = t.itl_s[np.repeat(ok, t.itl_count)]  # a fresh copy: percentiles may reorder it
    user_ttft = (t.first - t.arrived)[ok & t.has_first & t.has_arrived] / 1e9
    user_e2e = (t.done - t.arrived)[ok & t.has_done & t.has_arrived] / 1e9
    return {
        "ttft": percentiles(ttft, owned=True),
        "itl": percentiles(itl, owned=True),
        "tpot": percentiles(tpot, owned=True),
        "e2e": percentiles(e2e, owned=True),
        "user_ttft": percentiles(user_ttft, owned=True),
        "user_e2e": percentiles(user_e2e, owned=True),
    }


def hold_ms(times: RequestTimes, rows: np.ndarray) -> Hold:
    """The holds of the `rows` that were sent, whatever their outcome (the policy's doing, not the
    server's)."""
    held = (times.sent - times.arrived)[rows & times.has_sent & times.has_arrived] / 1e6
    return {**percentiles(held), "max": float(held.max()) if len(held) else None}


def goodput(
    times: RequestTimes,
    rows: np.ndarray,
    ok: np.ndarray,
    slo_ttft_s: float | None,
    slo_e2e_s: float | None,
    duration_s: float | None,
) -> Goodput | None:
    """Of the planned `rows`, the successes within each SLO given, as users see them (from arrival). A
    success without the time an SLO needs (no first token, for a TTFT SLO) does not count as within it."""
    if slo_ttft_s is None and slo_e2e_s is None:
        return None
    t = times
    met = ok & t.has_arrived
    if slo_ttft_s is not None:
        met &= t.has_first & (t.first - t.arrived <= round(slo_ttft_s * 1e9))
    if slo_e2e_s is not None:
        met &= t.has_done & (t.done - t.arrived <= round(slo_e2e_s * 1e9))
    count, planned = int(met.sum()), int(rows.sum())
    return {
        "slo_ttft_s": slo_ttft_s,
        "slo_e2e_s": slo_e2e_s,
        "met": count,
        "share": count / planned if planned else None,
        "rate": count / duration_s if duration_s else None,
    }


def lateness_ms(times: RequestTimes, rows: np.ndarray, bound: LatenessBound | None = None) -> Lateness:
    """Of the `rows` offered to the server: offered - due (the figures and the bound), and dispatch - due."""
    t = times
    # At the wire where there is one, else the log's own lateness (arrival - planned).
    wired = t.by_wire & t.has_planned
    mine = rows & (wired | t.has_lateness)
    late = np.where(wired, t.offered - t.planned, t.lateness)[mine] / 1e6
    dispatch = t.lateness[rows & t.has_lateness] / 1e6
    return {
        **percentiles(late),
        "max": float(late.max()) if len(late) else None,
        "bound": None if bound is None else bound.ms,
        "bound_basis": None if bound is None else bound.basis,
        "at": _lateness_at(t, mine),
        "dispatch": {**percentiles(dispatch), "max": float(dispatch.max()) if len(dispatch) else None},
    }


def _lateness_at(t: RequestTimes, mine: np.ndarray) -> str | None:
    """What the `mine` rows' lateness is of (`Lateness.at`)."""
    if not mine.any():
        return None
    if (mine & t.by_wire).any():
        return "wire"
    return "arrival" if (t.arrived != t.sent)[mine].all() else "dispatch"


LATENESS_AT = {
    "wire": "at the wire",
    "dispatch": "at dispatch (no wire times in this log)",
    "arrival": "of arrivals",
}


def client_load(times: RequestTimes, rows: np.ndarray) -> ClientLoad:
    """The `rows`' in-flight counts (each request's dispatch to its end, over every row of the log, so a
    straggler of another scope counts) and their holds at --max-in-flight; the runner's figures None."""
    t = times
    life = t.has_sent & t.has_done
    starts, ends = np.sort(t.sent[life]), np.sort(t.done[life])
    mine = t.sent[rows & life]
    # As request i found it: those sent up to it (itself included) less those done by then.
    counts = np.searchsorted(starts, mine, side="right") - np.searchsorted(ends, mine, side="right")
    held = t.capped[rows & t.has_capped]
    held = held[held > 0]
    return {
        "in_flight_max": int(counts.max()) if len(counts) else None,
        "in_flight_p99": float(np.percentile(counts, 99)) if len(counts) else None,
        "capped": len(held),
        "capped_ms_max": float(held.max()) / 1e6 if len(held) else None,
        "loop_lag_ms": None,
        "loop_lag_bound_ms": None,
        "cpu_share": None,
    }


def arm_lateness_bound(planned_ns: np.ndarray, max_lateness_ms: float | None) -> LatenessBound | None:
    """An open-loop arm's bound: `--max-lateness-ms` when given, else from its planned send times."""
    if max_lateness_ms is not None:
        return LatenessBound(max_lateness_ms, "max_lateness_ms", "--max-lateness-ms")
    return lateness_bound(planned_ns)


def lateness_bound(planned_ns: np.ndarray) -> LatenessBound | None:
    """The default bound on the p99 lateness of an open-loop arm with these planned send times."""
    t = np.sort(np.asarray(planned_ns, dtype=np.int64))
    if len(t) == 0:
        return None
    median_ms = float(np.median(np.diff(t))) / 1e6 if len(t) > 1 else None
    share = None if median_ms is None else LATENESS_GAP_SHARE * median_ms
    gap = "" if median_ms is None else f"median planned gap {median_ms:.3g} ms"
    if share is None or share < LATENESS_FLOOR_MS:
        base, why = LATENESS_FLOOR_MS, f"the {LATENESS_FLOOR_MS:g} ms floor" + (gap and f"; {gap}")
    elif share > LATENESS_CAP_MS:
        base, why = LATENESS_CAP_MS, f"the {LATENESS_CAP_MS:g} ms cap; {gap}"
    else:
        base, why = share, f"{LATENESS_GAP_SHARE:g} x the {gap}"
    backlog = _send_backlog_ms(t, LATENESS_PER_SEND_MS)
    if backlog > 0:
        why += f" + {backlog:.3g} ms of sending backlog at {LATENESS_PER_SEND_MS:g} ms a request"
    return LatenessBound(base + backlog, "planned_gaps", why)


def _send_backlog_ms(planned_ns: np.ndarray, per_send_ms: float) -> float:
    """The most a client spending `per_send_ms` on each send falls behind these sorted planned times:
    the queue of Lindley's recursion L_i = max(0, L_(i-1) + per_send - gap_i), whose closed form is
    S_i - min(0, min_(j<=i) S_j) for S the running sum of (per_send - gap). k requests due at one
    instant: (k - 1) x per_send."""
    if len(planned_ns) < 2:
        return 0.0
    steps = per_send_ms - np.diff(planned_ns) / 1e6
    total = np.cumsum(steps)
    return float(max(0.0, (total - np.minimum(np.minimum.accumulate(total), 0.0)).max()))


def rates(times: RequestTimes, rows: np.ndarray, target: float | None) -> Rates:
    """Planned and realized request rates: the realized one of the requests as offered to the server,
    from the first to the last (an unshaped arm's wire times, else its sends; a shaped arm's arrivals as
    the runner played them: a policy's releases are not the load offered)."""
    planned = _rate(times.planned[rows & times.has_planned])
    realized = _rate(times.offered[rows & times.has_offered])
    ratio = realized / planned if planned and realized is not None else None
    return {"target": target, "planned": planned, "realized": realized, "realized_over_planned": ratio}


def _gaps(flat: np.ndarray, offsets: np.ndarray, block: int = 1 << 23) -> np.ndarray:
    """Gaps between consecutive chunks of the same row (float32 s; blockwise to bound memory)."""
    if len(flat) < 2:
        return np.zeros(0, dtype=np.float32)
    gaps = np.empty(len(flat) - 1, dtype=np.float32)
    for i in range(0, len(gaps), block):
        j = min(i + block, len(gaps))
        gaps[i:j] = (flat[i + 1 : j + 1] - flat[i:j]) / 1e9
    # A gap ending at a row's first chunk spans two rows.
    across = offsets[1:-1] - 1
    keep = np.ones(len(gaps), dtype=bool)
    keep[across[(across >= 0) & (across < len(gaps))]] = False
    return gaps[keep]


def _rate(t_ns: np.ndarray) -> float | None:
    if len(t_ns) < 2:
        return None
    span = (int(t_ns.max()) - int(t_ns.min())) / 1e9
    return (len(t_ns) - 1) / span if span > 0 else None
