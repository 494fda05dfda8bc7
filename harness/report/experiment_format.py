"""How the experiment's page and terminal write its figures: levels, means with their intervals, shares,
embedded plots. Shared by the report (`experiment_report.py`) and its policy section
(`experiment_frontier.py`)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from harness.report.format import fmt_ci, fmt_num

if TYPE_CHECKING:  # the plots module draws with matplotlib; this one only embeds what it drew
    from harness.report.experiment_plots import PlotImage


def level_text(level: float) -> str:
    return f"{100 * level:.3g}%"


def mean_ci(fig: dict[str, Any] | None, scale: float = 1.0) -> str:
    """A figure over repeats as 'mean [low, high]' (the mean alone under two repeats), times `scale`."""
    if not fig or fig["mean"] is None:
        return "-"
    ci = None if fig["ci"] is None else [fig["ci"][0] * scale, fig["ci"][1] * scale]
    return f"{fmt_num(fig['mean'] * scale)} {fmt_ci(ci)}" if ci else fmt_num(fig["mean"] * scale)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def esc(value: Any) -> str:
    return html.escape(str(value))


def images_html(images: Sequence[PlotImage]) -> str:
    """Each figure under its heading, its PNG bytes embedded (the page stands alone)."""
    return "".join(
        f"<h2>{esc(img.title)}</h2>"
        f'<img alt="{esc(img.title)}" src="data:image/png;base64,{base64.b64encode(img.png).decode()}">'
        for img in images
    )
