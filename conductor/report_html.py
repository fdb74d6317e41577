"""The report as one self-contained HTML file: inline CSS, inline SVG, no scripts or fonts.

Two pictures and four tables:

- a Gantt chart of attempts over time, one row per task, each attempt a bar coloured by its
  outcome (long idle gaps between runs are drawn shortened and marked);
- the DAG, tasks in columns by dependency depth, coloured by status;
- tasks (status, attempts, duration, cost, tokens, denials), every attempt (verify results,
  denials, why it failed), cost per agent.

Every string that comes from the bus or the track file is escaped; the page loads nothing
from anywhere, so it can be mailed, attached to CI or opened offline.
"""

from __future__ import annotations

from datetime import datetime
from html import escape

from conductor.report import (
    Attempt,
    Report,
    TaskSummary,
    money,
    place,
    seconds,
    timeline,
    tokens_text,
)
from conductor.terminal import visible

COLOURS = {
    "complete": "#2e9d57",
    "failed": "#d64545",
    "lost": "#e08a1e",
    "running": "#3b7dd8",
    "unfinished": "#9a6fb0",
    "pending": "#c3c9d2",
    "blocked": "#7d8591",
    "skipped": "#b9a9e0",
}
"""Fill colour per attempt outcome and per task status."""

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d232b;
background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6573;margin:0 0 14px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:18px}.card span{color:#5b6573;font-size:12px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;color:#fff;font-size:12px}
.note{background:#fff4e0;border:1px solid #f0c27a;border-radius:6px;padding:8px 12px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde2e8;margin:6px 0}
th,td{padding:5px 10px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
th{background:#f1f3f6;font-weight:600;font-size:13px}td.n{text-align:right;
font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f6;padding:1px 4px;
border-radius:3px;word-break:break-all}
.ok{color:#2e9d57}.bad{color:#d64545}.why{color:#8a2f2f}
td,.sub{overflow-wrap:anywhere}td.n,.badge{overflow-wrap:normal;white-space:nowrap}
svg{background:#fff;border:1px solid #dde2e8;border-radius:6px;max-width:100%;height:auto}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;fill:#1d232b}
svg .axis{fill:#5b6573;font-size:11px}svg .light{fill:#fff;font-size:11px}
.legend span{display:inline-block;margin-right:14px;font-size:12px}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:4px;
vertical-align:-1px}
"""


def _e(value: object) -> str:
    # Control characters (a task's escape sequences) are shown as text, as on a terminal:
    # HTML forbids most of them and a browser would draw boxes.
    return escape(visible(str(value)), quote=True)


def _colour(state: str) -> str:
    return COLOURS.get(state, "#c3c9d2")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_html(report: Report, *, now: datetime) -> str:
    """The whole page for ``report``; ``now`` ends the bars of attempts still running."""
    status = report.status()
    tok = tokens_text(report.to_dict()["tokens"])
    span = (report.last - report.first).total_seconds() if report.first and report.last else None
    cards = [
        (str(len(report.tasks)), "tasks"),
        (str(len(report.attempts)), "attempts"),
        (money(report.cost_usd), "cost"),
        (tok or "0", "tokens"),
        (str(sum(t.denials for t in report.tasks)), "denied tool calls"),
        (seconds(span), "first to last message"),
        (str(report.runs), "runs"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>conductor report: {_e(report.track)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Track {_e(report.track)} "
        f'<span class="badge" style="background:{_colour(_status_colour(status))}">'
        f"{_e(status)}</span></h1>",
    ]
    if report.description:
        parts.append(f'<p class="sub">{_e(report.description)}</p>')
    parts.append(
        f'<p class="sub">{report.messages} messages'
        + (f", {_e(report.first.isoformat(timespec='seconds'))} to "
           f"{_e(report.last.isoformat(timespec='seconds'))}" if report.first and report.last
           else "")
        + "</p>"
    )
    said = report.runner.describe(report.source or report.track)
    if said:
        parts.append(f'<p class="note">{_e(said)}</p>')
    parts.append('<div class="cards">')
    for value, label in cards:
        parts.append(f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>')
    parts.append("</div>")
    parts.append("<h2>Attempts over time</h2>")
    parts.append(_legend(["complete", "failed", "lost", "running", "unfinished"]))
    parts.append(gantt_svg(report, now=now))
    parts.append("<h2>Tasks and their dependencies</h2>")
    parts.append(_legend(["complete", "failed", "running", "pending", "blocked", "skipped"]))
    if not report.has_graph:
        parts.append(
            '<p class="sub">Dependencies are known only from the track file: '
            "pass it instead of the track id to draw the edges.</p>"
        )
    parts.append(dag_svg(report))
    parts.append("<h2>Tasks</h2>")
    parts.append(_task_table(report.tasks))
    parts.append("<h2>Attempts</h2>")
    parts.append(_attempt_table(report.attempts))
    parts.append("<h2>Cost per agent</h2>")
    parts.append(_agent_table(report))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _status_colour(status: str) -> str:
    return {"gone": "unfinished", "interrupted": "lost", "not run": "pending"}.get(status, status)


def _legend(states: list[str]) -> str:
    items = "".join(
        f'<span><i style="background:{_colour(s)}"></i>{_e(s)}</span>' for s in states
    )
    return f'<p class="legend">{items}</p>'


# --- Gantt --------------------------------------------------------------------------------

def gantt_svg(report: Report, *, now: datetime) -> str:
    """Attempts over time: a row per task, a bar per attempt."""
    rows = [t for t in report.tasks if t.attempts]
    attempts = report.attempts
    label_w = min(220, 24 + 7 * max((len(t.id) for t in rows), default=4))
    width, row_h, top = 960, 26, 30
    plot_w = width - label_w - 20
    height = top + row_h * max(1, len(rows)) + 30
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="gantt" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="attempts over time">'
    ]
    if not attempts:
        out.append(f'<text x="20" y="{top + 14}">No attempt has run yet.</text></svg>')
        return "".join(out)
    segments, total = timeline(attempts, now)
    scale = plot_w / total if total > 0 else 0.0
    start0 = attempts[0].started.timestamp()

    def x_of(when: float) -> float:
        return label_w + place(segments, total, when) * scale

    # Axis ticks: five, labelled with the real time since the first dispatch.
    for i in range(6):
        axis = total * i / 5
        x = label_w + axis * scale
        real = _real_time(segments, axis) - start0
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 24}" '
            'stroke="#eceff3"/>'
            f'<text class="axis" x="{x:.1f}" y="{height - 10}" text-anchor="{anchor}">'
            f"{_e(_tick(real, total))}</text>"
        )
    # Shortened gaps: a dashed line and how long the idle time really was.
    for index, (start, end, axis) in enumerate(segments):
        if index % 2 == 0:  # timeline() alternates busy spans and the gaps between them
            continue
        if segments[index + 1][2] - axis >= (end - start) * 0.999:
            continue  # drawn to scale: nothing to mark
        x = label_w + axis * scale
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 10}" x2="{x:.1f}" y2="{height - 24}" '
            'stroke="#9aa3ae" stroke-dasharray="4 3"/>'
            f'<text class="axis" x="{x + 3:.1f}" y="{top - 14}">'
            f"{_e(seconds(end - start))} idle</text>"
        )
    for row, task in enumerate(rows):
        y = top + row * row_h
        out.append(
            f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">'
            f"{_e(_clip(task.id, 28))}<title>{_e(task.id)}</title></text>"
        )
        for a in task.attempts:
            x0 = x_of(a.started.timestamp())
            x1 = x_of((a.ended or now).timestamp())
            w = max(3.0, x1 - x0)
            out.append(
                f'<g class="bar" data-outcome="{_e(a.outcome)}">'
                f'<rect x="{x0:.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" rx="3" '
                f'fill="{_colour(a.outcome)}"><title>{_e(_bar_title(a))}</title></rect>'
            )
            if w > 22:
                out.append(
                    f'<text class="light" x="{x0 + 5:.1f}" y="{y + row_h / 2 + 4:.1f}">'
                    f"#{a.attempt}</text>"
                )
            out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _tick(value: float, total: float) -> str:
    """An axis label precise enough to tell the ticks of a short run apart."""
    if total < 1:
        return f"{value:.2f}s"
    if total < 10:
        return f"{value:.1f}s"
    return seconds(value)


def _real_time(segments: list[tuple[float, float, float]], axis: float) -> float:
    """The wall-clock time at ``axis`` (the inverse of ``place``)."""
    for i, (start, end, at) in enumerate(segments):
        nxt = segments[i + 1][2] if i + 1 < len(segments) else at + (end - start)
        if axis <= nxt:
            share = (axis - at) / (nxt - at) if nxt > at else 0.0
            return start + (end - start) * share
    return segments[-1][1] if segments else 0.0


def _bar_title(a: Attempt) -> str:
    bits = [f"{a.id}: {a.outcome}", seconds(a.duration)]
    if a.cost_usd:
        bits.append(money(a.cost_usd))
    if a.agent:
        bits.append(f"agent {a.agent}")
    if a.reason and a.outcome != "complete":
        bits.append(a.reason.splitlines()[0][:200])
    return " · ".join(bits)


# --- DAG ----------------------------------------------------------------------------------

def dag_svg(report: Report) -> str:
    """The tasks in columns by dependency depth, coloured by status, edges as arrows."""
    tasks = {t.id: t for t in report.tasks}
    level = _levels(tasks)
    columns: dict[int, list[str]] = {}
    for tid, lv in level.items():
        columns.setdefault(lv, []).append(tid)
    # One barycentre pass: a task sits near the tasks it depends on.
    position: dict[str, float] = {}
    for lv in sorted(columns):
        column = columns[lv]
        if lv > 0:
            column.sort(
                key=lambda tid: (
                    sum(position.get(d, 0.0) for d in tasks[tid].depends_on)
                    / max(1, len(tasks[tid].depends_on))
                )
            )
        for i, tid in enumerate(column):
            position[tid] = float(i)
    if not tasks:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" id="dag" width="300" height="40">'
            '<text x="12" y="24">No tasks.</text></svg>'
        )
    node_w, node_h, col_gap, row_gap, pad = 210, 46, 56, 14, 16
    tallest = max(len(c) for c in columns.values())
    width = pad * 2 + len(columns) * node_w + (len(columns) - 1) * col_gap
    height = pad * 2 + tallest * node_h + (tallest - 1) * row_gap
    xy: dict[str, tuple[float, float]] = {}
    for lv, column in columns.items():
        offset = (tallest - len(column)) * (node_h + row_gap) / 2
        for i, tid in enumerate(column):
            xy[tid] = (pad + lv * (node_w + col_gap), pad + offset + i * (node_h + row_gap))
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="dag" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" '
        'fill="#9aa3ae"/></marker></defs>',
    ]
    for tid, task in tasks.items():
        x2, y2 = xy[tid]
        for dep in task.depends_on:
            if dep not in xy:
                continue
            x1, y1 = xy[dep]
            sx, sy = x1 + node_w, y1 + node_h / 2
            ex, ey = x2 - 2, y2 + node_h / 2
            mid = (sx + ex) / 2
            out.append(
                f'<path class="edge" d="M{sx:.1f},{sy:.1f} C{mid:.1f},{sy:.1f} {mid:.1f},'
                f'{ey:.1f} {ex:.1f},{ey:.1f}" fill="none" stroke="#9aa3ae" stroke-width="1.4" '
                'marker-end="url(#arrow)"/>'
            )
    for tid, task in tasks.items():
        x, y = xy[tid]
        fill = _colour(task.status)
        text_class = "light" if task.status not in ("pending", "skipped") else ""
        label = _clip(task.id, 26)
        room = node_w - 18
        # An id that may not fit (about 8 px a bold letter) is squeezed to the node's width,
        # never drawn past its edge.
        fit = (
            f' textLength="{room}" lengthAdjust="spacingAndGlyphs"' if len(label) * 8 > room else ""
        )
        out.append(
            f'<g class="node" data-status="{_e(task.status)}">'
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{node_w}" height="{node_h}" rx="6" '
            f'fill="{fill}"><title>{_e(_node_title(task))}</title></rect>'
            f'<text x="{x + 9:.1f}" y="{y + 19:.1f}" class="{text_class}"{fit} '
            f'style="font-size:13px;font-weight:600">{_e(label)}</text>'
            f'<text x="{x + 9:.1f}" y="{y + 36:.1f}" class="{text_class}">'
            f"{_e(_node_line(task))}</text></g>"
        )
    out.append("</svg>")
    return "".join(out)


def _levels(tasks: dict[str, TaskSummary]) -> dict[str, int]:
    """Each task's column: the length of the longest dependency chain before it (a track may
    list its tasks in any order)."""
    level: dict[str, int] = {}
    for root in tasks:
        stack: list[tuple[str, bool]] = [(root, False)]
        visiting: set[str] = set()
        while stack:
            tid, expanded = stack.pop()
            if tid in level:
                continue
            deps = [d for d in tasks[tid].depends_on if d in tasks]
            if expanded:
                level[tid] = 1 + max((level.get(d, 0) for d in deps), default=-1)
                continue
            if tid in visiting:
                continue  # a cycle: a validated track has none
            visiting.add(tid)
            stack.append((tid, True))
            stack.extend((d, False) for d in deps if d not in level)
    return level


def _node_line(task: TaskSummary) -> str:
    n = len(task.attempts)
    line = f"{task.status} · {n} attempt{'s' if n != 1 else ''}"
    if task.cost_usd:
        line += f" · {money(task.cost_usd)}"
    return _clip(line, 34)


def _node_title(task: TaskSummary) -> str:
    title = f"{task.id}" + (f" — {task.name}" if task.name else "") + f": {task.status}"
    if task.depends_on:
        title += f"; after {', '.join(task.depends_on)}"
    return title


# --- tables -------------------------------------------------------------------------------

def _task_table(tasks: list[TaskSummary]) -> str:
    rows = [
        "<table><tr><th>task</th><th>status</th><th>attempts</th><th>duration</th>"
        "<th>cost</th><th>tokens</th><th>denied</th><th>verify (last attempt)</th></tr>"
    ]
    for t in tasks:
        last = t.attempts[-1] if t.attempts else None
        verify = ""
        if last is not None and last.verify:
            passed = sum(1 for v in last.verify if v["ok"])
            cls = "ok" if passed == len(last.verify) else "bad"
            verify = f'<span class="{cls}">{passed}/{len(last.verify)} passed</span>'
        name = f"<br><small>{_e(t.name)}</small>" if t.name and t.name != t.id else ""
        rows.append(
            f"<tr><td><code>{_e(t.id)}</code>{name}</td>"
            f'<td><span class="badge" style="background:{_colour(t.status)}">{_e(t.status)}'
            f'</span></td><td class="n">{len(t.attempts)}</td>'
            f'<td class="n">{_e(seconds(t.duration) if t.attempts else "-")}</td>'
            f'<td class="n">{_e(money(t.cost_usd))}</td>'
            f"<td>{_e(tokens_text(t.tokens()))}</td>"
            f'<td class="n">{t.denials}</td><td>{verify}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _attempt_table(attempts: list[Attempt]) -> str:
    if not attempts:
        return '<p class="sub">No attempts yet.</p>'
    rows = [
        "<table><tr><th>attempt</th><th>outcome</th><th>started</th><th>duration</th>"
        "<th>cost</th><th>tokens</th><th>agent</th><th>verify, denials, reason</th></tr>"
    ]
    for a in attempts:
        detail: list[str] = []
        for v in a.verify:
            mark = '<span class="ok">✓</span>' if v["ok"] else '<span class="bad">✗</span>'
            code = "" if v["ok"] else f" exit {_e(v['exit_code'])}"
            detail.append(f"{mark} <code>{_e(_clip(v['command'], 160))}</code>{code}")
        for d in a.denials:
            detail.append(
                f'<span class="bad">denied</span> {_e(d["tool"])} '
                f"<code>{_e(_clip(d['target'], 120))}</code>: {_e(_clip(d['reason'], 200))}"
            )
        if a.review is not None:
            cls = "ok" if a.review.get("passed") else "bad"
            detail.append(
                f'<span class="{cls}">review round {_e(a.review.get("round"))}: score '
                f'{_e(a.review.get("score"))}</span> (needs {_e(a.review.get("threshold"))})'
            )
        if a.reason and a.outcome != "complete":
            detail.append(f'<span class="why">{_e(_clip(a.reason, 400))}</span>')
        if a.commit:
            detail.append(f"commit <code>{_e(a.commit[:12])}</code>")
        agent = a.agent or ("shell" if a.executor == "shell" else "")
        rows.append(
            f"<tr><td><code>{_e(a.id)}</code></td>"
            f'<td><span class="badge" style="background:{_colour(a.outcome)}">'
            f"{_e(a.outcome)}</span></td>"
            f"<td>{_e(a.started.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f'<td class="n">{_e(seconds(a.duration))}</td>'
            f'<td class="n">{_e(money(a.cost_usd))}</td>'
            f"<td>{_e(tokens_text(a.tokens))}"
            + (f"<br><small>{a.turns} turns</small>" if a.turns is not None else "")
            + f"</td><td>{_e(agent)}</td><td>{'<br>'.join(detail)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _agent_table(report: Report) -> str:
    agents = report.agents()
    if not agents:
        return '<p class="sub">No attempts yet.</p>'
    rows = [
        "<table><tr><th>agent</th><th>attempts</th><th>cost</th><th>tokens</th></tr>"
    ]
    for c in agents:
        rows.append(
            f"<tr><td>{_e(c.agent)}</td><td class=\"n\">{c.attempts}</td>"
            f'<td class="n">{_e(money(c.cost_usd))}</td><td>{_e(tokens_text(c.tokens))}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)
