"""What a person sees while a track runs, read from the bus alone.

The scheduler writes every start, progress report, cost and end on the bus; this module reads
the bus back, like any other reader would, and shows it:

- ``RunView`` folds messages into what is running now (task, agent or command, attempt,
  start time, cost so far, latest progress line), counts of tasks done, running, failed and
  blocked out of the track's total, and the spend against the track's ``budget_usd``. Each
  message that starts or ends something gives a ``Line``.
- ``conductor.render`` draws a view: a live table on a terminal, plain lines elsewhere.
- ``Follower`` reads the bus of a running track as it grows (``BusWatcher``) into a view and
  a renderer; ``run_and_show`` runs a track with one beside it, in the same event loop.

``summary_lines`` is the end-of-run summary ``conductor run`` prints: the outcome, counts and
cost, then each failed task with the reason it failed.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

import anyio

from conductor.bus import Bus
from conductor.errors import ConductorError, UserError
from conductor.messages import Message, MessageType
from conductor.paths import StateDir
from conductor.state import TaskStatus, TrackState, apply, load_state
from conductor.terminal import visible
from conductor.track import Track
from conductor.watch import BusWatcher

if TYPE_CHECKING:
    from conductor.render import Renderer
    from conductor.scheduler import RunOptions, RunResult

ViewMode = Literal["auto", "live", "plain", "none"]
"""How a run is shown: ``auto`` is ``live`` on a terminal and ``plain`` elsewhere."""

VIEW_MODES: dict[str, ViewMode] = {"auto": "auto", "live": "live", "plain": "plain", "none": "none"}
"""Each mode by its name (what ``--progress`` takes)."""

LineKind = Literal[
    "start", "complete", "failed", "retry", "lost", "blocked", "skipped", "budget", "note"
]

TICK = 0.25
"""Seconds between refreshes of the live view (elapsed times move)."""

WIDTH = 160
"""Characters kept of a plain line's detail."""


def pick_mode(mode: ViewMode, stream: TextIO) -> Literal["live", "plain", "none"]:
    """``auto``: live when ``stream`` is a terminal (and ``TERM`` is not ``dumb``), else plain."""
    if mode != "auto":
        return mode
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return "live" if tty and os.environ.get("TERM") != "dumb" else "plain"


@dataclass
class Row:
    """One running attempt, as the live view shows it."""

    task: str
    """The task id."""
    attempt: int | None
    """The attempt number."""
    doing: str
    """The agent or the command: ``$ make``, ``agent api-designer``."""
    since: float
    """When it was dispatched (seconds since the epoch, from the message)."""
    cost_usd: float = 0.0
    """Cost so far of this attempt (its latest PROGRESS)."""
    progress: str = ""
    """The latest progress line."""
    figures: str = ""
    """The latest session figures (turns, tokens) when no progress line was written."""


@dataclass(frozen=True)
class Line:
    """Something that started or ended, printed once."""

    kind: LineKind
    """What happened."""
    task: str
    """The task it happened to ('' for the track)."""
    text: str
    """The detail: duration and cost, the reason, the command."""
    ts: datetime
    """When (the message's time)."""


def _clip(text: str, width: int) -> str:
    text = " ".join(visible(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def money(value: float) -> str:
    """``$0.0123`` below a dollar, ``$12.34`` from one."""
    return f"${value:.4f}" if value < 1 else f"${value:.2f}"


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def reason(error: str | None, width: int = WIDTH) -> str:
    """One line for a failure: its first line and, when there is one, the last quoted line
    of output (``command not found (exit 127) — sh: 1: ./x: not found``)."""
    lines = [line.strip() for line in (error or "failed").splitlines() if line.strip()]
    if not lines:
        return "failed"
    text = lines[0] if len(lines) == 1 else f"{lines[0]} — {lines[-1]}"
    return _clip(text, width)


class RunView:
    """The state of a run as its bus tells it, for display.

    Start it with the state replayed up to where this run begins (``TrackState``), then
    ``feed`` it each newer message in order.
    """

    def __init__(
        self,
        track: Track,
        state: TrackState | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.track = track
        self.state = state if state is not None else TrackState(track.id)
        self.clock = clock
        self.running: dict[str, Row] = {}
        """Task id → its running attempt, in dispatch order."""
        self.started_at: float | None = None
        """When this run's TRACK_STARTED was written (seconds since the epoch)."""
        self.ended: str | None = None
        """TRACK_COMPLETE, TRACK_FAILED or TRACK_INTERRUPTED once the run ended."""
        self.dispatched = 0
        """Attempts dispatched in this run."""
        self._ids = track.task_ids()
        self.task_width = min(24, max((len(tid) for tid in self._ids), default=0))
        """The width task ids are padded to in lines: the longest id, at most 24."""
        self._deps = {t.id: list(t.depends_on) for t in track.tasks}
        self._counts: dict[str, int] | None = None

    # --- reading -----------------------------------------------------------------------

    def feed(self, msg: Message) -> list[Line]:
        """Apply ``msg``; return the lines it gives (a start, an end, a block)."""
        apply(self.state, msg)
        self._counts = None
        mtype, task, payload = msg.type, msg.task, msg.payload
        if mtype == MessageType.TRACK_STARTED:
            self.started_at = msg.ts.timestamp()
            self.ended = None
            return []
        if mtype in (
            MessageType.TRACK_COMPLETE,
            MessageType.TRACK_FAILED,
            MessageType.TRACK_INTERRUPTED,
        ):
            self.ended = mtype
            return []
        if mtype == MessageType.BUDGET_EXCEEDED:
            spent = _number(payload.get("spent_usd")) or 0.0
            budget = _number(payload.get("budget_usd")) or 0.0
            text = f"budget spent: {money(spent)} of {money(budget)}; no new attempt starts"
            return [Line("budget", "", text, msg.ts)]
        if mtype == MessageType.NOTE:
            note = payload.get("text") or payload.get("message") or ""
            return [Line("note", task or "", _clip(str(note), WIDTH), msg.ts)] if note else []
        if mtype == MessageType.AGENT_INFERRED:
            found = payload.get("agent")
            agent: dict[str, Any] = found if isinstance(found, dict) else {}
            name = str(agent.get("name", "?"))
            if payload.get("fallback"):
                text = f"agent {name}: made from its name ({payload['fallback']})"
            else:
                text = f"agent {name} inferred: {agent.get('role', '')}"
            return [Line("note", "", _clip(text, WIDTH), msg.ts)]
        if mtype == MessageType.LIMIT_WAIT:
            until = payload.get("until_utc") or "?"
            text = f"API {str(payload.get('kind') or 'limit').replace('_', ' ')}: "
            text += f"nothing new starts until {until} (Ctrl-C stops; `conductor run` resumes)"
            return [Line("note", "", _clip(text, WIDTH), msg.ts)]
        if mtype in (MessageType.APPROVE, MessageType.REJECT) and task is None:
            why = payload.get("reason") or payload.get("text") or ""
            verdict = "approved" if mtype == MessageType.APPROVE else "rejected"
            text = f"run {verdict}" + (f": {why}" if why else "")
            return [Line("note", "", _clip(str(text), WIDTH), msg.ts)]
        if task is None:
            return []
        if mtype == MessageType.TASK_DISPATCHED:
            self.dispatched += 1
            new = Row(task, msg.attempt, self._doing(task), msg.ts.timestamp())
            self.running[task] = new
            attempt = f" (attempt {msg.attempt})" if msg.attempt and msg.attempt > 1 else ""
            return [Line("start", task, new.doing + attempt, msg.ts)]
        row = self.running.get(task)
        if mtype in (MessageType.TASK_COMPLETE, MessageType.TASK_FAILED, MessageType.WORKER_LOST):
            if row is not None and (msg.attempt is None or msg.attempt == row.attempt):
                del self.running[task]
            return [self._ended(msg)]
        if mtype == MessageType.TASK_DEFERRED:  # stopped on the API: not counted
            if row is not None and (msg.attempt is None or msg.attempt == row.attempt):
                del self.running[task]
            why = f"{payload.get('error') or 'stopped on the API'} (not counted)"
            stop = payload.get("api_stop")
            fatal = isinstance(stop, dict) and stop.get("kind") in ("auth", "billing")
            return [Line("lost" if fatal else "retry", task, _clip(str(why), WIDTH), msg.ts)]
        if mtype == MessageType.BLOCKED:
            because = payload.get("because")
            return [Line("blocked", task, f"{because} failed" if because else "blocked", msg.ts)]
        if mtype == MessageType.SKIP:
            return [Line("skipped", task, "skipped by a person", msg.ts)]
        if row is not None and (msg.attempt is None or msg.attempt == row.attempt):
            self._update(row, msg)
        return []

    def _doing(self, tid: str) -> str:
        try:
            task = self.track.task(tid)
        except UserError:  # a task the bus names but the definition does not
            return "?"
        if task.run:
            return "$ " + _clip(task.run, 48)
        if task.agent:
            return f"agent {task.agent}"
        return f"claude ({task.type})"

    def _update(self, row: Row, msg: Message) -> None:
        payload = msg.payload
        if msg.type == MessageType.PROGRESS:
            cost = _number(payload.get("cost_usd"))
            if cost is not None:
                row.cost_usd = cost
            text = payload.get("message") or payload.get("text")
            if isinstance(text, str) and text.strip():
                percent = _number(payload.get("percent"))
                row.progress = (f"{percent:.0f}% " if percent is not None else "") + _clip(
                    text, WIDTH
                )
            turns = _number(payload.get("turns"))
            tokens = sum(_number(payload.get(k)) or 0.0 for k in ("tokens_in", "tokens_out"))
            if turns is not None or tokens:
                row.figures = f"turn {int(turns or 0)}, {int(tokens):,} tokens"
        elif msg.type == MessageType.WORKER_STARTED:
            agent = payload.get("agent")
            if isinstance(agent, str) and agent:
                row.doing = f"agent {agent}"
        elif msg.type == MessageType.API_RETRY:
            status = payload.get("status")
            delay = _number(payload.get("delay"))
            wait = f"; retrying in {delay:.0f}s" if delay is not None else "; retrying"
            row.progress = f"API error {status}{wait}" if status else f"API error{wait}"
        elif msg.type == MessageType.VERIFY_RESULT:
            command = _clip(str(payload.get("command", "")), 40)
            ok = payload.get("ok")
            row.progress = f"verify `{command}`: " + (
                "ok" if ok else f"exit {payload.get('exit_code')}"
            )
        elif msg.type == MessageType.REVIEW_RESULT:
            verdict = "passed" if payload.get("passed") else "rejected"
            row.progress = (
                f"review round {payload.get('round')}: score {payload.get('score')}, {verdict}"
            )
        elif msg.type == MessageType.LANDING:
            row.progress = "landing its commit"
        elif msg.type == MessageType.COPY_MADE:
            row.progress = row.progress or "working in its own copy"

    def _ended(self, msg: Message) -> Line:
        payload, task = msg.payload, msg.task or ""
        if msg.type == MessageType.WORKER_LOST:
            why = payload.get("reason") or "lost"
            return Line("lost", task, _clip(str(why), WIDTH), msg.ts)
        parts = []
        duration = _number(payload.get("duration"))
        if duration is not None:
            parts.append(_duration(duration))
        cost = _number(payload.get("cost_usd"))
        if cost:
            parts.append(money(cost))
        if msg.type == MessageType.TASK_COMPLETE:
            commit = payload.get("commit")
            if isinstance(commit, str) and commit:
                parts.append(f"commit {commit[:10]}")
            return Line("complete", task, ", ".join(parts), msg.ts)
        error = reason(payload.get("error"))
        # Attempt numbers go on across runs, while each run (or reset) gives a task
        # max_attempts tries afresh: `failures` is which try of those this one was.
        tried = _number(payload.get("failures"))
        tries = f"attempt {msg.attempt} of {payload.get('max_attempts', '?')}"
        if tried is not None and msg.attempt is not None and int(tried) != msg.attempt:
            tries = f"attempt {msg.attempt}, try {int(tried)} of {payload.get('max_attempts', '?')}"
        else:
            tried = float(msg.attempt) if msg.attempt is not None else None
        if payload.get("final", True):
            max_attempts = _number(payload.get("max_attempts"))
            if tried is not None and max_attempts and tried < max_attempts:
                tries += ", not retried"
            detail = f"{error} ({tries}" + (f", {', '.join(parts)})" if parts else ")")
            return Line("failed", task, detail, msg.ts)
        return Line("retry", task, f"{tries} failed: {error}; retrying", msg.ts)

    # --- figures -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Tasks of the track by what they are now: done (complete or skipped), running,
        failed (for good), blocked, pending, and total."""
        if self._counts is None:
            view = self.state.view(self._ids, lambda tid: self._deps.get(tid, []))
            counts = dict.fromkeys(
                ("done", "running", "failed", "blocked", "pending"), 0
            )
            for status in view.values():
                if status in (TaskStatus.COMPLETE, TaskStatus.SKIPPED):
                    counts["done"] += 1
                else:
                    counts[status.value] += 1
            counts["total"] = len(self._ids)
            self._counts = counts
        return self._counts

    def spent(self) -> float:
        """Cost of the track so far: recorded attempts plus running ones' latest figures."""
        return self.state.cost_usd + sum(row.cost_usd for row in self.running.values())

    def status_line(self) -> str:
        """``3/8 done · 2 running · 1 failed · 0 blocked · $0.0123 of $5.00 · 12.0s``."""
        c = self.counts()
        parts = [
            f"{c['done']}/{c['total']} done",
            f"{len(self.running)} running",
            f"{c['failed']} failed",
            f"{c['blocked']} blocked",
        ]
        spent = self.spent()
        budget = self.track.budget_usd
        if budget is not None:
            parts.append(f"{money(spent)} of {money(float(budget))} budget")
        elif spent:
            parts.append(money(spent))
        if self.started_at is not None:
            parts.append(_duration(max(0.0, self.clock() - self.started_at)))
        return " · ".join(parts)

    def elapsed(self, row: Row) -> str:
        """How long ``row`` has run."""
        return _duration(max(0.0, self.clock() - row.since))


# --- following a run --------------------------------------------------------------------


class Follower:
    """Reads a track's bus as it grows into a view and a renderer, until ``stop``."""

    def __init__(
        self,
        sd: StateDir,
        view: RunView,
        renderer: Renderer,
        *,
        after: int = 0,
        tick: float = TICK,
        pid: int | None = None,
    ) -> None:
        self.sd = sd
        self.view = view
        self.renderer = renderer
        self.cursor = after
        """The last message read."""
        self.tick = tick
        self.pid = pid
        """Show nothing before the TRACK_STARTED of the conductor with this pid (None: show
        everything): a run that cannot start never shows another conductor's messages."""
        self._showing = pid is None
        self._stopping = False
        self._scope: anyio.CancelScope | None = None

    def stop(self) -> None:
        """Read what is left, then end (``run`` returns)."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        """Follow the bus (waiting for it to exist) until ``stop``; close the renderer.

        A bus that becomes unreadable (its directory deleted under the run) ends the view,
        never the run: the scheduler reports that itself."""
        try:
            await self._follow()
        except (ConductorError, OSError):
            return
        finally:
            self.renderer.close(self.view)

    async def _follow(self) -> None:
        while not self.sd.bus.is_dir():
            if self._stopping:
                return
            await anyio.sleep(0.05)
        with Bus.for_state(self.sd, self.view.track.id) as bus:
            async with BusWatcher(bus, rescan_interval=self.tick) as watcher:
                while True:
                    stopping = self._stopping
                    self.drain(bus)
                    if stopping:
                        return
                    with anyio.CancelScope() as self._scope:
                        if self._stopping:
                            self._scope.cancel()
                        await watcher.wait(self.cursor, timeout=self.tick)
                    self._scope = None
                    self.renderer.tick(self.view)

    def drain(self, bus: Bus) -> None:
        """Read every message after the cursor into the view, and show what they gave."""
        lines: list[Line] = []
        while True:
            batch = bus.read(after=self.cursor, limit=1000)
            if not batch:
                # Published positions with nothing to read are quarantined holes: step over
                # them (reading again after taking last_seq, so nothing between is skipped).
                last = bus.last_seq()
                if last > self.cursor and not bus.read(after=self.cursor, limit=1):
                    self.cursor = last
                break
            for msg in batch:
                given = self.view.feed(msg)
                if not self._showing and msg.type == MessageType.TRACK_STARTED:
                    self._showing = msg.payload.get("pid") == self.pid
                if self._showing:
                    lines.extend(given)
                self.cursor = msg.seq
        if self._showing:
            self.renderer.show(self.view, lines)


def replayed(sd: StateDir, track_id: str) -> TrackState:
    """What the bus of ``sd`` says so far (empty when there is no bus yet)."""
    if not sd.bus.is_dir():
        return TrackState(track_id)
    with Bus.for_state(sd, track_id) as bus:
        return load_state(bus, sd.cache, track_id)


def renderer_for(mode: Literal["live", "plain"], stream: TextIO) -> Renderer:
    """The renderer of ``mode`` writing to ``stream`` (``conductor.render``)."""
    from conductor.render import LiveRenderer, PlainRenderer

    return LiveRenderer(stream) if mode == "live" else PlainRenderer(stream)


async def run_and_show(
    track: Track,
    options: RunOptions,
    *,
    mode: ViewMode = "auto",
    stream: TextIO | None = None,
) -> RunResult:
    """``run_track(track, options)`` with the run shown on ``stream`` (default stdout) as
    ``mode`` says, read from the bus as the scheduler writes it."""
    from conductor.scheduler import run_track

    out = stream if stream is not None else sys.stdout
    chosen = pick_mode(mode, out)
    if chosen == "none":
        return await run_track(track, options)
    sd = StateDir.for_track(options.repo.resolve(), track.id, options.state_root)
    view = RunView(track, replayed(sd, track.id))
    follower = Follower(
        sd, view, renderer_for(chosen, out), after=view.state.last_seq, pid=os.getpid()
    )
    result: RunResult | None = None
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(follower.run, name="progress view")
        try:
            result = await run_track(track, options)
        except Exception as exc:  # re-raised as it is below, not inside an exception group
            failure = exc
        finally:
            follower.stop()
    if failure is not None:
        raise failure
    assert result is not None
    return result


# --- the summary ------------------------------------------------------------------------

OUTPUT_LINES = 3
"""Lines of a failure's detail the summary prints under it."""


def summary_lines(result: RunResult, *, repo: os.PathLike[str] | None = None) -> list[str]:
    """The end-of-run summary: outcome, counts and cost, then each failed task with why
    (its error and the last lines of its output), blocked tasks, and what to do next."""
    parts = [f"{len(result.completed)} complete"]
    for label, items in (
        ("skipped", result.skipped),
        ("failed", result.failed),
        ("blocked", result.blocked),
        ("pending", result.pending),  # as `conductor status` says: not done yet
    ):
        if items:
            parts.append(f"{len(items)} {label}")
    cost = f", {money(result.cost_usd)}" if result.cost_usd else ""
    out = [
        f"track {result.track}: {result.status} in {_duration(result.duration)} — "
        f"{', '.join(parts)}{cost}"
    ]
    width = max((len(tid) for tid in result.failed), default=0)
    for tid, error in result.failed.items():
        lines = [line.rstrip() for line in visible(error or "failed").splitlines() if line.strip()]
        out.append(f"  failed   {tid:<{width}}  {lines[0] if lines else 'failed'}")
        out.extend(f"           {'':<{width}}  {line}" for line in lines[1 : 1 + OUTPUT_LINES])
    for tid in result.blocked:
        out.append(f"  blocked  {tid}")
    if result.failed and result.state_dir is not None:
        logs = result.state_dir / "logs"
        if repo is not None and logs.is_absolute():
            with contextlib.suppress(ValueError):
                logs = logs.relative_to(os.path.abspath(repo))
        out.append(f"  logs: {logs}/ (one per attempt, and conductor.log)")
    if result.status == "interrupted":
        out.append("  run `conductor run` again to resume")
    if result.status == "budget":
        out.append("  the track's budget_usd is spent; raise it to continue")
    if result.status == "auth":
        out.append(f"  stopped: {result.reason}")
    return out
