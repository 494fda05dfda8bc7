"""The terminal summary printed at the end of every run and by `joulebench report`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, JustifyMethod, RenderResult
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from harness.report.format import fmt_ci, fmt_num, fmt_power_lag
from harness.report.frontier import FrontierPoint, front_mark, pareto_front
from harness.report.gpu_table import GPU_COLUMNS, gpu_rows
from harness.report.gpu_telemetry import host_energy_line

_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


_TEXT_MIN = 10  # where the table does not fit, a text column narrower than this folds


@dataclass(frozen=True)
class Column:
    header: str
    drop: int = 0  # 0: always shown; else left out where the table does not fit, highest first
    text: bool = False  # names and words, which may wrap; every other cell is a figure, shown whole


class FittedTable:
    """A table that fits the console by leaving out its least needed columns, never by cutting figures.

    Left to itself, rich shrinks every column of a table wider than the console and prints "…" in place
    of digits. Here a figure's column keeps the width of its longest figure (its heading wraps between
    words), a text column folds, and one dim line below names the columns left out.
    """

    def __init__(
        self, title: str, columns: Sequence[Column], rows: Sequence[tuple[Sequence[str], str | None]]
    ) -> None:
        self.title, self.columns, self.rows = title, columns, rows
        cells = [[cell_len(row[i]) for row, _ in rows] for i in range(len(columns))]
        # A list to max(): with no rows, `max(header, *[])` is max of one int, a TypeError.
        self._natural = [max([cell_len(c.header), *col]) for c, col in zip(columns, cells, strict=True)]
        self._least = [
            min(natural, _TEXT_MIN) if c.text else max([_longest_word(c.header), *col])
            for c, col, natural in zip(columns, cells, self._natural, strict=True)
        ]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        kept = list(range(len(self.columns)))
        widths: dict[int, int | None] = dict.fromkeys(kept)
        if _span(self._natural, kept) > width:
            droppable = sorted((c.drop, i) for i, c in enumerate(self.columns) if c.drop)
            while _span(self._least, kept) > width and droppable:
                kept.remove(droppable.pop()[1])
            if _span(self._least, kept) <= width:  # else too narrow for any: rich folds what it must
                widths = {i: self._least[i] for i in kept}
                spare = width - _span(self._least, kept)
                for i in kept:  # text columns take what is spare, in order, up to their natural width
                    if self.columns[i].text:
                        grown = min(self._natural[i], self._least[i] + spare)
                        spare -= grown - self._least[i]
                        widths[i] = grown
        table = Table(title=self.title, title_justify="left")
        for i in kept:
            column = self.columns[i]
            justify: JustifyMethod = "left" if column.text else "right"
            table.add_column(column.header, justify=justify, overflow="fold", width=widths[i])
        for cells, style in self.rows:
            table.add_row(*(Text(cells[i]) for i in kept), style=style)
        yield table
        left_out = [c.header for i, c in enumerate(self.columns) if i not in kept]
        if left_out:
            yield Text(f"not shown at {width} columns: {', '.join(left_out)}", "dim")


def _span(widths: Sequence[int], kept: Sequence[int]) -> int:
    """The width of a table of these columns: each padded by a space either side, between borders."""
    return sum(widths[i] + 2 for i in kept) + len(kept) + 1


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)  # 0: an empty heading


# The main table's columns; `drop`: the first left out where it does not fit (every figure is in
# summary.json and report.html).
_ARM_COLUMNS = [
    Column("arm", text=True), Column("ok/planned"), Column("J/req mean"), Column("95% CI", drop=1),
    Column("p50", drop=8), Column("p99", drop=7), Column("all-in J/req"), Column("J/out tok", drop=5),
    Column("mean W", drop=6), Column("TTFT p50 ms", drop=4), Column("E2E p50 ms", drop=3),
    Column("rate real/plan", drop=2),
]  # fmt: skip


def render_terminal_summary(summary: dict, console: Console | None = None) -> None:
    """Print the per-arm table, the energy account, the flags and which arm cost least per request."""
    console = console or wide_console()
    rows = []
    errors = error_codes(summary)
    for block in [*summary["arms"], summary["run"]]:
        jpr = block.get("j_per_request") or {}
        lat = block.get("latency_s") or {}
        rate = block.get("rate") or {}
        run = block is summary["run"]
        cells = [
            block["name"] if run or block["name"] not in errors else f"{block['name']} (!)",
            f"{block['requests']['ok']:,}/{block['requests']['total']:,}",
            fmt_num(jpr.get("mean")),
            fmt_ci(jpr.get("ci95")),
            fmt_num(jpr.get("p50")),
            fmt_num(jpr.get("p99")),
            all_in_cell(block),
            fmt_num(block.get("j_per_output_token")),
            fmt_num(block.get("mean_power_w")),
            _ms((lat.get("ttft") or {}).get("p50")),
            _ms((lat.get("e2e") or {}).get("p50")),
            f"{fmt_num(rate.get('realized'), digits=3)}/{fmt_num(rate.get('planned'), digits=3)}",
        ]
        rows.append((cells, "bold" if run else "red" if block["name"] in errors else None))
    title = f"joulebench · {summary.get('run_id', '')} · method {summary['method']}"
    console.print(FittedTable(title, _ARM_COLUMNS, rows))
    users = users_table(summary)
    if users is not None:
        console.print(users)
    cons, idle = summary["conservation"], summary["idle"]
    j = {k: fmt_num(cons[k], " J") for k in ("total_j", "attributed_j", "unattributed_j")}
    w = {k: fmt_num(idle.get(k), " W") for k in ("power_w", "pre_w", "post_w")}
    console.print(
        f"energy: {j['total_j']} measured = {j['attributed_j']} attributed"
        f" + {j['unattributed_j']} unattributed"
        f" · idle {w['power_w']} ({idle.get('mode')}; before {w['pre_w']}, after {w['post_w']})"
    )
    lag = fmt_power_lag(summary.get("power_lag"))
    if lag is not None:
        console.print(escape(lag), highlight=False)
    idle_apart = idle_table(summary)
    if idle_apart is not None:
        console.print(idle_apart)
    per_gpu = gpu_rows(summary)
    if per_gpu is not None:
        columns = [Column(head, drop=drop, text=text) for head, drop, text in GPU_COLUMNS]
        console.print(FittedTable("energy per GPU over the run", columns, per_gpu))
    host_line = host_energy_line(summary)
    if host_line is not None:
        console.print(escape(host_line), highlight=False)
    for flag in summary["flags"]:
        if flag["severity"] != "info":
            style = _STYLE[flag["severity"]]
            scope = "" if flag["scope"] == "run" else f"[{flag['scope']}] "
            text = escape(f"{flag['severity']}: {scope}{flag['message']}")
            console.print(f"[{style}]{text}[/{style}]", highlight=False)
    infos = sum(1 for f in summary["flags"] if f["severity"] == "info")
    if infos:
        console.print(f"[dim]{infos} informational note(s) in summary.json[/dim]")
    if any(arm["name"] in errors for arm in summary["arms"]):
        console.print("[dim](!): the arm has an error flag (above)[/dim]")
    verdict = cheapest_arm(summary)
    if verdict:
        refused = verdict.startswith(NO_VERDICT)
        console.print(escape(verdict), style="bold red" if refused else None, highlight=False)


def users_table(summary: dict) -> Table | None:
    """What shaping costs users, per arm: the policy's hold and latency from arrival (p50/p99), and goodput
    under the SLO; None when no arm is shaped and no SLO was given (a table of its own, so the main one
    keeps its width)."""
    arms = summary["arms"]
    shaped = any(a.get("policy") for a in arms)
    slo = any(a.get("goodput") for a in arms)
    if not (shaped or slo):
        return None
    table = Table(
        title="as users see it (ms, from arrival)",
        title_justify="left",
        caption=_FRONT_CAPTION if shaped else None,
        caption_justify="left",
    )
    front = arm_front(summary) if shaped else {}
    columns = ["arm", "hold p50/p99", "TTFT p50/p99", "E2E p50/p99"]
    for col in columns + (["goodput"] if slo else []) + (["front"] if shaped else []):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for block in [*arms, summary["run"]]:
        hold = block.get("hold_ms") or {}
        lat = block.get("latency_s") or {}
        cells = [
            block["name"],
            f"{fmt_num(hold.get('p50'))}/{fmt_num(hold.get('p99'))}",
            _p50_p99(lat.get("user_ttft")),
            _p50_p99(lat.get("user_e2e")),
        ]
        if slo:
            cells.append(goodput_cell(block.get("goodput")))
        if shaped:
            run = block is summary["run"]
            cells.append("" if run else front_mark(front[block["name"]], short=True))
        table.add_row(*cells, style="bold" if block is summary["run"] else None)
    return table


def idle_table(summary: dict) -> Table | None:
    """All-in J/request as the idle floor plus what was above it, per arm (a table of its own, so the main
    one keeps its width); None for a summary without the split (written before it, or without power)."""
    blocks = [*summary["arms"], summary["run"]]
    if not any((b.get("all_in_split") or {}).get("idle_j_per_request") is not None for b in blocks):
        return None
    table = Table(title="all-in = idle + above idle (J/request)", title_justify="left")
    for col in ("arm", "all-in", "idle", "above idle", "idle share"):
        table.add_column(col, justify="left" if col == "arm" else "right")
    for block in blocks:
        split = block.get("all_in_split") or {}
        share = split.get("idle_share")
        table.add_row(
            block["name"], all_in_cell(block), fmt_num(split.get("idle_j_per_request")),
            fmt_num(split.get("above_idle_j_per_request")), "-" if share is None else f"{share:.0%}",
            style="bold" if block is summary["run"] else None,
        )  # fmt: skip
    return table


_FRONT_CAPTION = (
    "front ●: on the energy-latency front (all-in J/request vs user TTFT p99); one run, no interval"
)


def arm_front(summary: dict) -> dict[str, bool | None]:
    """Per arm of one run: on the energy-latency front (all-in J/request against user TTFT p99, from
    arrival), or None without both figures (no power over the whole window, no successful request)."""
    points = [FrontierPoint(a["name"], _all_in(a), _user_ttft_p99(a)) for a in summary["arms"]]
    front = set(pareto_front(points))
    return {p.name: (p.name in front) if p.finite else None for p in points}


def _all_in(block: dict) -> float:
    if (block.get("power_coverage") or {}).get("complete") is False:
        return float("nan")  # a figure over part of the window is no point on the front
    value = (block.get("all_in") or {}).get("j_per_request")
    return float("nan") if value is None else float(value)


def _user_ttft_p99(block: dict) -> float:
    value = ((block.get("latency_s") or {}).get("user_ttft") or {}).get("p99")
    return float("nan") if value is None else float(value)


def _p50_p99(stats: dict | None) -> str:
    """A latency's p50/p99 in ms, from its seconds."""
    stats = stats or {}
    return f"{_ms(stats.get('p50'))}/{_ms(stats.get('p99'))}"


def goodput_cell(goodput: dict | None) -> str:
    """The share of planned requests that met the SLO, and their rate."""
    if not goodput or goodput.get("share") is None:
        return "-"
    return f"{goodput['share']:.0%} {fmt_num(goodput.get('rate'), '/s', digits=3)}"


def wide_console(stderr: bool = False) -> Console:
    """A console that keeps the wide tables readable in logs and pipes (rich assumes 80 columns there)."""
    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def all_in_cell(block: dict) -> str:
    """The all-in J/request, or why there is none where the window's power was incomplete."""
    coverage = block.get("power_coverage") or {}
    if coverage.get("complete") is False:
        return f"- (power {coverage['min']:.1%})"
    return fmt_num((block.get("all_in") or {}).get("j_per_request"))


def error_codes(summary: dict) -> dict[str, list[str]]:
    """Scope ("run", an arm, "gpu N") -> codes of its error flags."""
    out: dict[str, set[str]] = {}
    for flag in summary.get("flags", []):
        if flag["severity"] == "error":
            out.setdefault(flag["scope"], set()).add(flag["code"])
    return {scope: sorted(codes) for scope, codes in out.items()}


NO_VERDICT = "No verdict on which arm cost least"


def no_verdict(errors: dict[str, list[str]]) -> str:
    """One line: why no arm is named cheapest (error flags make some figure incomplete or off-plan)."""
    where = "; ".join(f"{scope}: {', '.join(codes)}" for scope, codes in errors.items())
    return f"{NO_VERDICT}: error flags ({where}) mean a figure is incomplete or not of the plan's load."


def cheapest_arm(summary: dict) -> str | None:
    """'<arm> cost least per request ...' over the arms with an all-in figure; a refusal when an error
    flag concerns the run, an arm or a GPU; None with fewer than 2 arms to compare."""
    if len(summary["arms"]) < 2:
        return None
    errors = error_codes(summary)
    if errors:
        return no_verdict(errors)
    costs = [
        (a["name"], a["all_in"]["j_per_request"], (a.get("j_per_request") or {}).get("mean"))
        for a in summary["arms"]
        if (a.get("all_in") or {}).get("j_per_request") is not None
    ]
    if len(costs) < 2:
        return None
    costs.sort(key=lambda c: c[1])
    name, best, attributed = costs[0]
    others = ", ".join(
        f"{1 - best / cost:.0%} less than {other} ({fmt_num(cost, ' J')})" for other, cost, _ in costs[1:]
    )
    return (
        f"Least energy per successful request: {name} at {fmt_num(best, ' J')} all-in "
        f"(attributed {fmt_num(attributed, ' J')}): {others}."
    )


def _ms(seconds: float | None) -> str:
    return fmt_num(None if seconds is None else seconds * 1e3)
