"""Policies compared in an experiment: what each arm's shaping policy costs its users, and the
energy-latency frontier per rate, with the dominations the repeats resolve.

An arm is **shaped** when its name holds `traffic.spec.POLICY_SEPARATOR`: a plan with policies names
its arms `<schedule>+<policy>`, and a schedule's own name never holds a '+'. The cells carry no policy
column, and their hold columns cannot tell either (0 in an unshaped arm of a new table, null in an old
one), while a name says it the same way in every table, old or new.

The front is by **means** over repeats (`frontier.pareto_front`): the verdict's energy figure against
the users' TTFT p99 from arrival, the latency a policy adds to (its hold counts from arrival, and
holding is paid in the tail). A domination by means is **resolved** by the repeats when the paired
per-repeat differences of both figures have intervals that exclude zero in the dominating arm's favour,
each at the experiment's level with its multiplicity correction (the pairs `repeats.pair_differences`
makes for every metric). A claim needs both, so each interval at that level is enough: the chance of a
false claim is at most that of the interval on the figure where the claim is false (an
intersection-union test).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape

from harness.report.experiment_format import esc, images_html, level_text, mean_ci
from harness.report.experiment_plots import PlotImage
from harness.report.format import fmt_ci, fmt_num
from harness.report.frontier import FrontierPoint, dominates, front_mark, pareto_front, policy_labels
from traffic.spec import POLICY_SEPARATOR

LATENCY = "user_ttft_p99_s"
LATENCY_LABEL = "user TTFT p99 (s, from arrival)"
GOODPUT = "goodput_share"
# What users pay, per arm over repeats (the cells' columns): only when some arm is shaped.
USER_FIGURES = {
    "hold_p50_ms": "hold p50 (ms)",
    "hold_p99_ms": "hold p99 (ms)",
    "user_ttft_p50_s": "user TTFT p50 (s)",
    LATENCY: "user TTFT p99 (s)",
    "user_e2e_p50_s": "user E2E p50 (s)",
    "user_e2e_p99_s": "user E2E p99 (s)",
}
GOODPUT_LABEL = "goodput (% of planned within the SLO)"


def is_shaped(arms: Iterable[str]) -> bool:
    return any(POLICY_SEPARATOR in arm for arm in arms)


def frontier_records(
    arms: Sequence[dict[str, Any]], pairs: dict[str, list[dict[str, Any]]], energy: str
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The front at one rate (arm names by rising latency) and, per arm: its label, `on_front` (None
    without both means) and `dominated_by` (every arm whose means dominate it, those the repeats
    resolve first, each with the paired differences this arm − that arm on both figures)."""
    labels = policy_labels([a["arm"] for a in arms])
    points = {a["arm"]: _point(a, energy) for a in arms}
    front = pareto_front(list(points.values()))
    known = [p for p in points.values() if p.finite]
    records: dict[str, dict[str, Any]] = {}
    for arm, point in points.items():
        by = [
            _domination(arm, other.name, pairs, energy)
            for other in known
            if point.finite and dominates(other, point)
        ]
        records[arm] = {
            "label": labels[arm],
            "on_front": (arm in front) if point.finite else None,
            "dominated_by": sorted(by, key=lambda d: not d["resolved"]),
        }
    return sorted(front, key=lambda name: points[name].latency), records


def _point(arm: dict[str, Any], energy: str) -> FrontierPoint:
    def mean(metric: str) -> float:
        value = (arm["figures"].get(metric) or {}).get("mean")
        return float("nan") if value is None else float(value)

    return FrontierPoint(arm["arm"], mean(energy), mean(LATENCY))


def _domination(arm: str, by: str, pairs: dict[str, list[dict[str, Any]]], energy: str) -> dict[str, Any]:
    diffs = {
        "energy": paired_difference(pairs[energy], arm, by),
        "latency": paired_difference(pairs[LATENCY], arm, by),
    }
    resolved = all(d["ci"] is not None and d["ci"][0] > 0 for d in diffs.values())
    return {"arm": by, "resolved": resolved, **diffs}


def paired_difference(pairs: list[dict[str, Any]], x: str, y: str) -> dict[str, Any]:
    """x − y over the paired repeats (`mean`, `ci`, `level`, `repeats`), from the summary's pair (x, y)
    or (y, x), whichever `repeats.pair_differences` made; without either, no figures (`level` None)."""
    for p in pairs:
        if {p["a"], p["b"]} == {x, y}:
            sign = 1.0 if p["a"] == x else -1.0
            ci = p["ci"] if p["ci"] is None or sign > 0 else [-p["ci"][1], -p["ci"][0]]
            mean = None if p["mean"] is None else sign * p["mean"]
            return {"mean": mean, "ci": ci, "level": p["level"], "repeats": p["repeats"]}
    return {"mean": None, "ci": None, "level": None, "repeats": 0}


# --- the page and the terminal ---------------------------------------------------------------------


def policies_html(doc: dict[str, Any], images: Sequence[PlotImage]) -> str:
    """The page's section on policies: per rate what users paid and where each arm stands on the front,
    which dominations the repeats resolve, then the frontier plot."""
    frontier = doc["frontier"]
    slo = " and ".join(
        f"{name} ≤ {value:g} s"
        for name, value in (("TTFT", frontier["slo_ttft_s"]), ("E2E", frontier["slo_e2e_s"]))
        if value is not None
    )
    intro = (
        f'<p class="note">Each arm is an offered schedule × a shaping policy. Means over repeats with '
        f"their {level_text(doc['level'])} CI. Hold: how long the policy kept a request (sent − arrived); "
        "user TTFT and E2E count from the user's arrival, the hold included"
        + (f"; goodput: the share of planned requests within the SLO ({esc(slo)})" if slo else "")
        + ". <b>The front is by means</b>: an arm is on it when no other arm's means are as low on both "
        f"{esc(frontier['energy_label'])} and {esc(LATENCY_LABEL)} and lower on one. A domination is "
        "<b>resolved by the repeats</b> only when the paired per-repeat differences on both figures have "
        "intervals that exclude zero, at the pairs' level (the experiment's multiplicity correction "
        "applied); otherwise only the means say it, and another set of repeats might not.</p>"
    )
    tables = "".join(_users_table(doc, block) + _dominance_list(block) for block in doc["rates"])
    return (
        "<h2>Policies: what users pay, and the energy-latency frontier</h2>"
        + intro
        + tables
        + (images_html(images))
    )


def _users_table(doc: dict[str, Any], block: dict[str, Any]) -> str:
    level = level_text(doc["level"])
    with_goodput = any(GOODPUT in a["figures"] for a in block["arms"])
    metrics = {doc["metric"]: doc["frontier"]["energy_label"], **USER_FIGURES}
    head = ["arm", "policy", "repeats", *(f"{label} [{level} CI]" for label in metrics.values())]
    head += [f"{GOODPUT_LABEL} [{level} CI]"] if with_goodput else []
    head += ["on the front (by means)", "dominated by (resolved by the repeats?)"]
    rows = []
    for arm in block["arms"]:
        f = arm["figures"]
        cols = [arm["arm"], arm["label"], (f.get(doc["metric"]) or {}).get("repeats", 0)]
        cols += [mean_ci(f.get(metric)) for metric in metrics]
        cols += [mean_ci(f.get(GOODPUT), 100)] if with_goodput else []
        cols += [front_mark(arm["on_front"]), dominated_text(arm, block) or "-"]
        css = ' class="front"' if arm["on_front"] else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{esc(v)}</td>" for v in cols) + "</tr>")
    return (
        f"<h3>At {esc(block['label'])}</h3><table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>"
        + "".join(rows)
        + "</table>"
    )


def dominated_text(arm: dict[str, Any], block: dict[str, Any]) -> str:
    """The users' table's cell: the arms whose domination the repeats resolve, and how many more
    dominate by the means only (the list under the table names them)."""
    labels = _labels(block)
    resolved = [f"{labels[d['arm']]} (resolved)" for d in arm["dominated_by"] if d["resolved"]]
    others = sum(not d["resolved"] for d in arm["dominated_by"])
    arms = "arm" if others == 1 else "arms"
    more = f"{'and ' if resolved else ''}{others} {arms} by the means only" if others else ""
    return "; ".join([*resolved, *([more] if more else [])])


def _labels(block: dict[str, Any]) -> dict[str, str]:
    return {a["arm"]: a["label"] for a in block["arms"]}


def front_text(block: dict[str, Any]) -> str:
    labels = _labels(block)
    return ", ".join(labels[name] for name in block["front"]) or "none"


def dominations(block: dict[str, Any]) -> list[tuple[bool, str]]:
    """One line per arm off the front at one rate, those with a resolved domination first: (resolved,
    the line: which arms dominate it, the resolved ones with both paired differences)."""
    labels = _labels(block)
    lines = []
    for arm in block["arms"]:
        resolved = [d for d in arm["dominated_by"] if d["resolved"]]
        means_only = [labels[d["arm"]] for d in arm["dominated_by"] if not d["resolved"]]
        if not arm["dominated_by"]:
            continue
        parts = [
            f"dominated by {labels[d['arm']]}, resolved by the repeats ({_differences(arm, d, labels)})"
            for d in resolved
        ]
        if means_only:
            by = ", ".join(means_only)
            parts.append(f"by the means also by {by}, not resolved" if resolved else
                         f"dominated by {by} by the means only, not resolved by the repeats")  # fmt: skip
        lines.append((bool(resolved), f"{labels[arm['arm']]}: " + "; ".join(parts)))
    return sorted(lines, key=lambda line: not line[0])


def _dominance_list(block: dict[str, Any]) -> str:
    items = "".join(
        f'<li class="{"yes" if resolved else "no"}">{esc(line)}</li>' for resolved, line in dominations(block)
    )
    head = f"On the front at {esc(block['label'])} (by means, by rising latency): {esc(front_text(block))}."
    return f'<p class="note">{head}' + (f"</p><ul>{items}</ul>" if items else " No arm is dominated.</p>")


def _differences(arm: dict[str, Any], d: dict[str, Any], labels: dict[str, str]) -> str:
    """'window-1s − passthrough: energy 10.70 [2.034, 19.37] J, user TTFT p99 0.9723 [0.3568, 1.588] s at
    99.8%'."""
    level = d["energy"]["level"]
    at = "" if level is None else f" at {level_text(level)}"
    return (
        f"{labels[arm['arm']]} − {labels[d['arm']]}: energy {_signed(d['energy'])} J, "
        f"user TTFT p99 {_signed(d['latency'])} s{at}"
    )


def _signed(diff: dict[str, Any]) -> str:
    if diff["mean"] is None:
        return "-"
    ci = diff["ci"]
    return fmt_num(diff["mean"]) + ("" if ci is None else f" {fmt_ci(ci)}")


def terminal_notes(doc: dict[str, Any]) -> list[str]:
    """Under the terminal table: per rate the front and every domination, resolved or not."""
    notes = [
        f"Energy-latency front ({escape(doc['frontier']['energy_label'])} vs {LATENCY_LABEL}), by means:"
    ]
    for block in doc["rates"]:
        notes.append(f"at {escape(block['label'])}: {escape(front_text(block))}")
        for resolved, line in dominations(block):
            style = "green" if resolved else "dim"
            notes.append(f"  [{style}]{escape(line)}[/{style}]")
    return notes
