"""What happened in a track, attempt by attempt, read back from its bus.

``build_report`` replays every message once and gathers, per attempt: when it was
dispatched and when it ended, its outcome, duration, cost, tokens, turns, agent and model,
the tool calls that were denied, the verify commands and their results, and why it failed.
Per task it sums the attempts; per agent it sums cost. The task statuses are the ones
``conductor status`` shows (``conductor.state``), so the two never disagree.

Decisions where the bus leaves a choice:

- An attempt's start is its TASK_DISPATCHED, its end the TASK_COMPLETE, TASK_FAILED or
  WORKER_LOST of the same attempt. An attempt with no end is ``running`` while a conductor
  holds the track, and ``unfinished`` when the conductor that ran it is gone. An attempt
  whose conductor died is recorded lost only by the next run: it is taken to have ended
  with the last message of its own run, not when the next run noticed it.
- Cost per agent groups attempts by the agent a Claude attempt ran as (WORKER_STARTED or its
  result); shell attempts are grouped as ``shell``.
- The bus keeps every run of the track; the report covers all of them. Long idle gaps
  between runs are drawn shortened in the Gantt picture (``timeline``).

``render_text`` is the terminal form, ``Report.to_dict`` the ``--json`` form, and
``conductor.report_html.render_html`` the one-file HTML page.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conductor.liveness import Runner
from conductor.messages import HUMAN_TYPES, Message, MessageType
from conductor.state import TrackState, apply
from conductor.terminal import visible

if TYPE_CHECKING:
    from conductor.track import Track

TOKEN_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens",
              "cache_creation_input_tokens")
"""The usage fields a report adds up (Anthropic's names)."""

ENDINGS = {
    MessageType.TASK_COMPLETE: "complete",
    MessageType.TASK_FAILED: "failed",
    MessageType.WORKER_LOST: "lost",
}
"""Message types that end an attempt, and the outcome each gives it."""


@dataclass
class Attempt:
    """One attempt at one task."""

    task: str
    """The task id."""
    attempt: int
    """Its number, from 1."""
    worker: str | None
    """The worker id."""
    executor: str
    """``shell`` or ``claude`` (from TASK_DISPATCHED)."""
    started: datetime
    """When it was dispatched."""
    ended: datetime | None = None
    """When its end was recorded (None: no end on the bus)."""
    outcome: str = "running"
    """``complete``, ``failed``, ``lost``, ``running`` or ``unfinished``."""
    final: bool = False
    """A failure that ended the task for good (no retry)."""
    duration: float | None = None
    """Seconds, as the conductor measured them."""
    cost_usd: float = 0.0
    """What its sessions cost."""
    tokens: dict[str, int] = field(default_factory=dict)
    """Token usage, by ``TOKEN_KEYS``."""
    turns: int | None = None
    """Model turns."""
    agent: str | None = None
    """The agent (specialist) a Claude attempt ran as."""
    model: str | None = None
    """The model, when the track named one."""
    denials: list[dict[str, str]] = field(default_factory=list)
    """Refused tool calls: ``tool``, ``target``, ``reason``."""
    verify: list[dict[str, Any]] = field(default_factory=list)
    """Verify commands: ``command``, ``ok``, ``exit_code``, ``duration``."""
    reason: str | None = None
    """Why it failed or was lost."""
    commit: str | None = None
    """The commit that landed its work."""
    api_retries: int = 0
    """API_RETRY messages (rate limits, overload)."""
    summary: str | None = None
    """The worker's own summary of what it did."""
    review: dict[str, Any] | None = None
    """The REVIEW_RESULT of this attempt: ``round``, ``score``, ``threshold``, ``passed``,
    ``scores``, ``comments``, ``cost_usd``."""

    @property
    def id(self) -> str:
        """``task.attempt``."""
        return self.worker or f"{self.task}.{self.attempt}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "task": self.task,
            "attempt": self.attempt,
            "worker": self.worker,
            "executor": self.executor,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "outcome": self.outcome,
            "final": self.final,
            "duration": self.duration,
            "cost_usd": round(self.cost_usd, 6),
            "tokens": dict(self.tokens),
            "turns": self.turns,
            "agent": self.agent,
            "model": self.model,
            "denials": list(self.denials),
            "verify": list(self.verify),
            "reason": self.reason,
            "commit": self.commit,
            "api_retries": self.api_retries,
            "summary": self.summary,
            "review": self.review,
        }


@dataclass
class TaskSummary:
    """One task: its status and its attempts."""

    id: str
    """The task id."""
    name: str
    """Its name (from the track file, or TASK_DISPATCHED)."""
    status: str
    """As ``conductor status`` shows it."""
    depends_on: list[str]
    """Its dependencies (empty when the report has no track file)."""
    attempts: list[Attempt] = field(default_factory=list)
    """Every attempt, in order."""

    @property
    def cost_usd(self) -> float:
        """Cost of every attempt."""
        return sum(a.cost_usd for a in self.attempts)

    @property
    def duration(self) -> float:
        """Seconds spent in every attempt."""
        return sum(a.duration or 0.0 for a in self.attempts)

    @property
    def denials(self) -> int:
        """Refused tool calls over every attempt."""
        return sum(len(a.denials) for a in self.attempts)

    def tokens(self) -> dict[str, int]:
        """Token usage over every attempt."""
        return _sum_tokens(self.attempts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "depends_on": list(self.depends_on),
            "cost_usd": round(self.cost_usd, 6),
            "duration": round(self.duration, 3),
            "denials": self.denials,
            "tokens": self.tokens(),
            "attempts": [a.to_dict() for a in self.attempts],
        }


@dataclass
class AgentCost:
    """What one agent's attempts cost."""

    agent: str
    """The agent's name (``shell`` for shell attempts)."""
    attempts: int = 0
    """How many attempts ran as it."""
    cost_usd: float = 0.0
    """Their cost."""
    tokens: dict[str, int] = field(default_factory=dict)
    """Their token usage."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "agent": self.agent,
            "attempts": self.attempts,
            "cost_usd": round(self.cost_usd, 6),
            "tokens": dict(self.tokens),
        }


@dataclass
class Report:
    """Everything ``conductor report`` shows."""

    track: str
    """The track id."""
    description: str
    """The track's description (empty without a track file)."""
    tasks: list[TaskSummary]
    """Every task, in the track's order (or in order of first mention on the bus)."""
    runner: Runner
    """Whether a conductor runs the track now, or the one that ran it is gone."""
    runs: int = 0
    """TRACK_STARTED messages."""
    ended: str | None = None
    """How the last run ended (a message type), if it did."""
    messages: int = 0
    """Messages on the bus."""
    first: datetime | None = None
    """The first message's time."""
    last: datetime | None = None
    """The last message's time."""
    has_graph: bool = False
    """The dependencies are known (the report was given the track file)."""
    source: str | None = None
    """The track file as `conductor run` takes it to resume the track, when known."""

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt of every task, by start time."""
        return sorted((a for t in self.tasks for a in t.attempts), key=lambda a: a.started)

    @property
    def cost_usd(self) -> float:
        """Cost of the whole track."""
        return sum(t.cost_usd for t in self.tasks)

    def counts(self) -> dict[str, int]:
        """Tasks per status."""
        out: dict[str, int] = {}
        for task in self.tasks:
            out[task.status] = out.get(task.status, 0) + 1
        return out

    def agents(self) -> list[AgentCost]:
        """Cost per agent, most expensive first."""
        by: dict[str, AgentCost] = {}
        for a in self.attempts:
            name = a.agent or ("shell" if a.executor == "shell" else "(no agent)")
            entry = by.setdefault(name, AgentCost(name))
            entry.attempts += 1
            entry.cost_usd += a.cost_usd
            for key, value in a.tokens.items():
                entry.tokens[key] = entry.tokens.get(key, 0) + value
        return sorted(by.values(), key=lambda c: (-c.cost_usd, c.agent))

    def status(self) -> str:
        """``running``, ``gone``, ``complete``, ``failed``, ``interrupted`` or ``not run``."""
        if self.runner.status in ("running", "gone"):
            return self.runner.status
        if self.ended is None:
            return "not run"
        return self.ended.removeprefix("TRACK_").lower()

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` form."""
        return {
            "track": self.track,
            "description": self.description,
            "status": self.status(),
            "runner": self.runner.to_dict(),
            "runs": self.runs,
            "ended": self.ended,
            "messages": self.messages,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "cost_usd": round(self.cost_usd, 6),
            "tokens": _sum_tokens(self.attempts),
            "denials": sum(t.denials for t in self.tasks),
            "counts": self.counts(),
            "agents": [c.to_dict() for c in self.agents()],
            "tasks": [t.to_dict() for t in self.tasks],
        }


def _sum_tokens(attempts: Iterable[Attempt]) -> dict[str, int]:
    out = dict.fromkeys(TOKEN_KEYS, 0)
    for a in attempts:
        for key, value in a.tokens.items():
            out[key] = out.get(key, 0) + value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_PERSONS = HUMAN_TYPES | {MessageType.PERSON_COMMIT}
"""What a person posts, between runs as often as during one."""


def build_report(
    messages: Iterable[Message],
    track_id: str,
    runner: Runner,
    definition: Track | None = None,
) -> Report:
    """Gather the report of ``track_id`` from its bus ``messages`` (in order).

    ``runner`` says whether the track's conductor is there (``conductor.liveness``);
    ``definition`` (the track file) gives task names, their order and the DAG's edges.
    """
    state = TrackState(track_id)
    attempts: dict[tuple[str, int], Attempt] = {}
    names: dict[str, str] = {}
    count = 0
    first: datetime | None = None
    last: datetime | None = None
    run_ends: list[datetime] = []  # the last message of each run before the newest
    run_of: dict[tuple[str, int], int] = {}  # the run each attempt was dispatched in
    run_last: datetime | None = None  # the last message of the current run, not a person's
    for msg in messages:
        apply(state, msg)
        count += 1
        if msg.type == MessageType.TRACK_STARTED and run_last is not None:
            run_ends.append(run_last)
        if msg.worker is not None or msg.type not in _PERSONS:
            run_last = msg.ts
        first = first or msg.ts
        last = msg.ts
        if msg.task is None:
            continue
        payload = msg.payload
        if msg.type == MessageType.TASK_DISPATCHED and msg.attempt is not None:
            attempts[(msg.task, msg.attempt)] = Attempt(
                task=msg.task,
                attempt=msg.attempt,
                worker=msg.worker,
                executor=_text(payload.get("executor")) or "?",
                started=msg.ts,
            )
            run_of[(msg.task, msg.attempt)] = len(run_ends)
            name = _text(payload.get("name"))
            if name:
                names[msg.task] = name
            continue
        if msg.attempt is None:
            continue
        at = attempts.get((msg.task, msg.attempt))
        if at is None:
            continue
        _absorb(at, msg)
        run = run_of[(msg.task, msg.attempt)]
        if msg.type == MessageType.WORKER_LOST and run < len(run_ends):
            at.ended = max(at.started, run_ends[run])
            at.duration = (at.ended - at.started).total_seconds()
    if definition is not None:
        order = definition.task_ids()
        deps = {t.id: list(t.depends_on) for t in definition.tasks}
        names.update({t.id: t.name for t in definition.tasks if t.name})
    else:
        order = list(state.tasks)
        deps = {}
    view = state.view(order, lambda tid: deps.get(tid, []))
    live = runner.status == "running"
    by_task: dict[str, list[Attempt]] = {}
    for (tid, _), at in sorted(attempts.items()):
        by_task.setdefault(tid, []).append(at)
    tasks: list[TaskSummary] = []
    for tid in order:
        summary = TaskSummary(tid, names.get(tid, ""), view[tid].value, deps.get(tid, []))
        summary.attempts = by_task.get(tid, [])
        for a in summary.attempts:
            if a.ended is None and not live:
                a.outcome = "unfinished"
        tasks.append(summary)
    return Report(
        track=track_id,
        description=definition.description if definition is not None else "",
        tasks=tasks,
        runner=runner,
        runs=state.runs,
        ended=state.ended,
        messages=count,
        first=first,
        last=last,
        has_graph=definition is not None,
    )


def _absorb(at: Attempt, msg: Message) -> None:
    """Add what ``msg`` says about attempt ``at``."""
    payload = msg.payload
    if msg.type == MessageType.WORKER_STARTED:
        at.agent = _text(payload.get("agent")) or at.agent
        at.model = _text(payload.get("model")) or at.model
    elif msg.type == MessageType.TOOL_DENIED:
        target = payload.get("command") or payload.get("path") or payload.get("target") or ""
        at.denials.append(
            {
                "tool": str(payload.get("tool") or "?"),
                "target": str(target),
                "reason": str(payload.get("reason") or ""),
            }
        )
    elif msg.type == MessageType.VERIFY_RESULT:
        at.verify.append(
            {
                "command": str(payload.get("command") or ""),
                "ok": bool(payload.get("ok")),
                "exit_code": payload.get("exit_code"),
                "duration": _number(payload.get("duration")),
            }
        )
    elif msg.type == MessageType.API_RETRY:
        at.api_retries += 1
    elif msg.type == MessageType.REVIEW_RESULT:
        at.review = {
            key: payload.get(key)
            for key in ("round", "score", "threshold", "passed", "scores", "comments", "cost_usd")
        }
    elif msg.type in ENDINGS:
        at.ended = msg.ts
        at.outcome = ENDINGS[MessageType(msg.type)]
        at.final = bool(payload.get("final"))
        duration = _number(payload.get("duration"))
        at.duration = duration if duration is not None else (msg.ts - at.started).total_seconds()
        at.cost_usd = _number(payload.get("cost_usd")) or 0.0
        usage = payload.get("usage")
        if isinstance(usage, dict):
            at.tokens = {
                k: int(v) for k in TOKEN_KEYS if (v := _number(usage.get(k))) is not None
            }
        turns = _number(payload.get("turns"))
        at.turns = int(turns) if turns is not None else None
        at.agent = at.agent or _text(payload.get("agent"))
        at.reason = _text(payload.get("error")) or _text(payload.get("reason"))
        at.commit = _text(payload.get("commit"))
        at.summary = _text(payload.get("summary"))


# --- the terminal form --------------------------------------------------------------------

OUTCOME_MARK = {"complete": "✓", "failed": "✗", "lost": "!", "running": "…", "unfinished": "?"}
"""One character per attempt outcome, for the terminal."""


def money(value: float) -> str:
    """Dollars with four decimals."""
    return f"${value:.4f}"


def seconds(value: float | None) -> str:
    """``0.5s``, ``3m12s``, ``2h05m``."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def tokens_text(tokens: dict[str, int]) -> str:
    """``1,200 in / 340 out`` (cache reads counted as input)."""
    into = (
        tokens.get("input_tokens", 0)
        + tokens.get("cache_read_input_tokens", 0)
        + tokens.get("cache_creation_input_tokens", 0)
    )
    out = tokens.get("output_tokens", 0)
    return f"{into:,} in / {out:,} out" if into or out else ""


def timeline(
    attempts: list[Attempt], now: datetime, *, gap_share: float = 0.15
) -> tuple[list[tuple[float, float, float]], float]:
    """Piecewise mapping of wall-clock time onto a drawing axis that shortens idle gaps.

    Returns ``(segments, total)``: each segment is ``(start_epoch, end_epoch, axis_start)``
    (busy time maps 1:1, an idle gap longer than ``gap_share`` of the busy time is drawn as
    that share) and the axis length in seconds. Use ``place`` to map a time.
    """
    spans = sorted(
        (a.started.timestamp(), (a.ended or now).timestamp()) for a in attempts
    )
    if not spans:
        return [], 0.0
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, max(start, end)])
    busy = sum(e - s for s, e in merged) or 1.0
    cap = busy * gap_share
    segments: list[tuple[float, float, float]] = []
    axis = 0.0
    prev_end: float | None = None
    for start, end in merged:
        if prev_end is not None:
            gap = start - prev_end
            # The gap itself is a segment drawn at most `cap` long.
            width = min(gap, cap)
            segments.append((prev_end, start, axis))
            axis += width
        segments.append((start, end, axis))
        axis += end - start
        prev_end = end
    return segments, axis


def place(segments: list[tuple[float, float, float]], total: float, when: float) -> float:
    """Where ``when`` (epoch seconds) falls on the axis ``timeline`` made (the segments are
    contiguous and sorted, so a binary search finds the one holding it)."""
    if not segments or when <= segments[0][0]:
        return 0.0
    i = bisect.bisect_right(segments, when, key=lambda seg: seg[0]) - 1
    start, end, axis = segments[i]
    if when >= end:
        return segments[i + 1][2] if i + 1 < len(segments) else total
    nxt = segments[i + 1][2] if i + 1 < len(segments) else total
    return axis + (nxt - axis) * ((when - start) / (end - start))


def render_text(report: Report, *, now: datetime, width: int = 40) -> str:
    """The terminal report: summary, a text Gantt, tasks with their attempts, cost per agent."""
    lines: list[str] = []
    attempts = report.attempts
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.counts().items()))
    totals = [f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"]
    if report.cost_usd:
        totals.append(money(report.cost_usd))
    tok = tokens_text(_sum_tokens(attempts))
    if tok:
        totals.append(tok + " tokens")
    denied = sum(t.denials for t in report.tasks)
    if denied:
        totals.append(f"{denied} denied")
    lines.append(
        f"track {report.track}: {report.status()} — {counts or 'no tasks'}; {', '.join(totals)}"
    )
    said = report.runner.describe(report.source or report.track)
    if said:
        lines.append(f"  {said}")
    if attempts:
        segments, total = timeline(attempts, now)
        label = max(len(a.id) for a in attempts)
        lines.append("")
        lines.append(f"timeline ({seconds(total)} drawn; idle gaps shortened)")
        for a in attempts:
            begin = place(segments, total, a.started.timestamp())
            end = place(segments, total, (a.ended or now).timestamp())
            scale = width / total if total else 0.0
            left = min(width - 1, int(begin * scale))
            span = max(1, round((end - begin) * scale))
            bar = " " * left + "█" * min(span, width - left)
            lines.append(
                f"  {a.id:<{label}}  |{bar:<{width}}|  {OUTCOME_MARK.get(a.outcome, '?')} "
                f"{a.outcome} {seconds(a.duration)}"
            )
    lines.append("")
    lines.append("tasks")
    tid_width = max((len(t.id) for t in report.tasks), default=4)
    for task in report.tasks:
        n = len(task.attempts)
        parts = [f"  {task.id:<{tid_width}}  {task.status:<8}  {n} attempt{'s' if n != 1 else ''}"]
        if task.attempts:
            parts.append(seconds(task.duration))
        if task.cost_usd:
            parts.append(money(task.cost_usd))
        tok = tokens_text(task.tokens())
        if tok:
            parts.append(tok)
        if task.denials:
            parts.append(f"{task.denials} denied")
        lines.append("  ".join(parts))
        for a in task.attempts:
            lines.extend(_attempt_lines(a, tid_width))
    agents = report.agents()
    if agents:
        lines.append("")
        lines.append("cost per agent")
        agent_width = max(len(c.agent) for c in agents)
        for c in agents:
            tok = tokens_text(c.tokens)
            lines.append(
                f"  {c.agent:<{agent_width}}  {c.attempts} attempt{'s' if c.attempts != 1 else ''}"
                f"  {money(c.cost_usd)}" + (f"  {tok}" if tok else "")
            )
    return "\n".join(lines)


def _attempt_lines(a: Attempt, indent: int) -> list[str]:
    pad = " " * (indent + 4)
    mark = OUTCOME_MARK.get(a.outcome, "?")
    head = f"{pad}#{a.attempt} {mark} {a.outcome:<10} {seconds(a.duration)}"
    extra = []
    if a.cost_usd:
        extra.append(money(a.cost_usd))
    tok = tokens_text(a.tokens)
    if tok:
        extra.append(tok)
    if a.turns is not None:
        extra.append(f"{a.turns} turns")
    if a.agent:
        extra.append(f"agent {a.agent}")
    if a.commit:
        extra.append(f"commit {a.commit[:12]}")
    if a.api_retries:
        extra.append(f"{a.api_retries} API retries")
    out = [head + ("  " + "  ".join(extra) if extra else "")]
    for v in a.verify:
        mark = "✓" if v["ok"] else "✗"
        code = "" if v["ok"] else f" (exit {v['exit_code']})"
        out.append(f"{pad}   verify {mark} {_one_line(v['command'], 90)}{code}")
    if a.review is not None:
        verdict = "passed" if a.review.get("passed") else "rejected"
        out.append(
            f"{pad}   review round {a.review.get('round')}: {verdict}, score "
            f"{a.review.get('score')} (needs {a.review.get('threshold')})"
        )
    for d in a.denials:
        out.append(
            f"{pad}   denied {d['tool']} {_one_line(d['target'], 60)}: {_one_line(d['reason'], 80)}"
        )
    if a.reason and a.outcome != "complete":
        out.append(f"{pad}   why: {_one_line(a.reason, 110)}")
    return out


def _one_line(text: str, width: int) -> str:
    line = " ".join(visible(str(text)).split())
    return line if len(line) <= width else line[: width - 1] + "…"
