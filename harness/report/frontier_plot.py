"""The energy-latency frontier drawn: each arm a point at its latency and energy (with intervals over
repeats when there are), the front as a staircase, labels placed clear of points and of each other.
Used by a run's page (`run_frontier`) and an experiment's (`experiment_plots.frontier`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from harness.report.frontier import policy_labels
from harness.report.plots import arm_colors


@dataclass(frozen=True)
class FrontierMark:
    """One arm on an energy-latency plot: its name (its colour), the label beside it, its means and,
    over repeats, their intervals (None: one run, or too few repeats)."""

    name: str
    label: str
    latency: float
    energy: float
    latency_ci: tuple[float, float] | None = None
    energy_ci: tuple[float, float] | None = None


def draw_frontier(
    ax: Axes, marks: Sequence[FrontierMark], front: Sequence[str], colors: dict[str, str]
) -> None:
    """Each arm a point (filled with a black edge on the front, hollow off it), its intervals as error
    bars, the front as the staircase that bounds what it dominates (up and to the right of it), and a
    label beside each point placed clear of the points and the other labels."""
    for m in marks:
        on = m.name in front
        color = colors[m.name]
        xerr, yerr = _err(m.latency, m.latency_ci), _err(m.energy, m.energy_ci)
        ax.errorbar([m.latency], [m.energy], xerr=xerr, yerr=yerr, fmt="o", color=color, ms=8 if on else 6,
                    mfc=color if on else "white", mec="black" if on else color, mew=1.2, capsize=3,
                    elinewidth=0.9, zorder=3)  # fmt: skip
    steps = sorted((m for m in marks if m.name in front), key=lambda m: (m.latency, m.energy))
    if steps:
        ax.step([m.latency for m in steps], [m.energy for m in steps], where="post", color="black", lw=1,
                ls="--", zorder=2)  # fmt: skip
    ax.margins(x=0.12, y=0.15)
    latencies = [m.latency for m in marks if m.latency > 0]
    if latencies and max(latencies) / min(latencies) > _LOG_SPAN:
        # Limits from the means: an interval reaching to zero would stretch a log axis by decades.
        ax.set_xscale("log")
        ax.set_xlim(min(latencies) / 1.8, max(latencies) * 1.8)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 0.02, 0.05, 0.1, ...: plain numbers
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.autoscale_view()  # the limits the labels are placed in: final before any is measured
    _place_labels(ax, marks, colors)
    # Legend entries in neutral grey: the colours name the arms, the markers what they mean.
    ax.plot([], [], "o", color="grey", mfc="grey", mec="black", ms=8, ls="none", label="on the front")
    ax.plot([], [], "o", color="grey", mfc="white", ms=6, ls="none", label="dominated")
    ax.plot([], [], color="black", lw=1, ls="--", label="front (what it dominates: above and right)")


def _err(value: float, ci: tuple[float, float] | None) -> list[list[float]] | None:
    return None if ci is None else [[value - ci[0]], [ci[1] - value]]


_LOG_SPAN = 10.0  # latencies spanning more than this factor get a log axis
# Where a label may go, in points from its point, tried in turn: right, left, above, below, further out.
_LABEL_OFFSETS = [(7, 4), (-7, 4), (7, -12), (-7, -12), (0, 10), (0, -16), (12, 16), (-12, 16), (12, -22),
                  (-12, -22), (0, 24), (0, -28)]  # fmt: skip


def _place_labels(ax: Axes, marks: Sequence[FrontierMark], colors: dict[str, str]) -> None:
    """Greedy, from the left: each label at the first offset whose box stays inside the axes and
    overlaps no point and no label placed before; failing that, where it is inside and overlaps
    fewest. Boxes are measured in pixels at the figure's final size. In the point's colour, so a label
    in a cluster still says which point it names."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)  # drawn on a figure of its own, never a subfigure
    renderer = FigureCanvasAgg(fig).get_renderer()
    frame = ax.get_window_extent(renderer)
    points = [ax.transData.transform((m.latency, m.energy)) for m in marks]
    taken: list[Bbox] = [Bbox.from_bounds(x - 6, y - 6, 12, 12) for x, y in points]
    for m in sorted(marks, key=lambda m: (m.latency, m.energy)):
        best: tuple[tuple[bool, int], Any, Bbox] | None = None
        for dx, dy in _LABEL_OFFSETS:
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            text = ax.annotate(m.label, (m.latency, m.energy), textcoords="offset points", xytext=(dx, dy),
                               fontsize=8, ha=ha, color=colors[m.name])  # fmt: skip
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            score = (not inside, sum(box.overlaps(other) for other in taken))
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, text, box)
            else:
                text.remove()
            if score == (False, 0):
                break
        if best is not None:
            taken.append(best[2])


def run_frontier(summary: dict, front: Sequence[str]) -> Figure | None:
    """All-in J/request against user TTFT p99 per arm of one run, the front marked: one run, no interval."""
    marks = []
    for arm in summary["arms"]:
        energy = (arm.get("all_in") or {}).get("j_per_request")
        latency = ((arm.get("latency_s") or {}).get("user_ttft") or {}).get("p99")
        complete = (arm.get("power_coverage") or {}).get("complete") is not False
        if energy is not None and latency is not None and complete:
            marks.append(FrontierMark(arm["name"], arm["name"], latency, energy))
    if not marks:
        return None
    labels = policy_labels([m.name for m in marks])
    marks = [FrontierMark(m.name, labels[m.name], m.latency, m.energy) for m in marks]
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    ax.set_xlabel("user TTFT p99 (s, from arrival)")
    ax.set_ylabel("all-in J per successful request")
    ax.set_title("One run: no intervals (for a claim, run an experiment with repeats)", fontsize=9)
    draw_frontier(ax, marks, front, arm_colors([a["name"] for a in summary["arms"]]))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8, ncol=3, frameon=False)
    return fig
