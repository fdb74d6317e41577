"""Replay the bus into the state of every task.

The bus is the truth; ``TrackState`` is what it says, rebuilt by applying messages in order.
The scheduler applies its own messages the same way (it reads them back), so a resumed run,
``conductor status`` and the live scheduler can never disagree.

Rules (the resume semantics live here):

- TASK_DISPATCHED: the task is running attempt N (``in_flight``).
- TASK_COMPLETE: complete, with the definition hash it completed under.
- TASK_FAILED: the attempt failed; ``final`` in the payload says the task failed for good,
  otherwise it is pending again and the failure counts toward ``max_attempts``.
- WORKER_LOST: the attempt ended without a result (conductor killed, interrupted); pending
  again, not counted as a failure.
- TASK_RESET: pending again with no failures counted (definition changed, ``--from``, or a
  new run retrying a task that had failed for good).
- SKIP (a person's): skipped; dependents may start. Only a TASK_RESET or a TASK_COMPLETE
  changes a skipped task again.
- APPROVE: the track is approved (``run --approve`` waits for it).
- LANDING: the running attempt's accepted work is being committed; a conductor that dies
  before TASK_COMPLETE leaves it for resume to finish (``conductor.landing``).
- COPY_REMOVED with ``kept``: a failed attempt's copy stays for inspection.
- REVERTING: ``conductor revert`` is about to move ``HEAD``; its TASK_RESET follows. One cut
  off in between is finished by the next ``run`` or ``revert`` (``conductor.revert``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from conductor.errors import StateError
from conductor.messages import Message, MessageType
from conductor.paths import open_state_file


class TaskStatus(StrEnum):
    """Where a task stands."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    SKIPPED = "skipped"
    BLOCKED = "blocked"


DONE = frozenset({TaskStatus.COMPLETE, TaskStatus.SKIPPED})
"""Statuses that let dependents start."""


@dataclass
class TaskState:
    """What the bus says about one task."""

    id: str
    """The task id."""
    status: TaskStatus = TaskStatus.PENDING
    """Current status (``BLOCKED`` is only derived, see ``TrackState.view``)."""
    attempts: int = 0
    """Highest attempt number dispatched so far (lost attempts included)."""
    failures: int = 0
    """Failed attempts since the last reset; compared with ``max_attempts``."""
    in_flight: int | None = None
    """Attempt number running now, if any."""
    worker: str | None = None
    """Worker id of the running or last attempt."""
    hash: str | None = None
    """Definition hash the task completed under."""
    duration: float | None = None
    """Seconds the completing (or last failed) attempt took."""
    last_error: str | None = None
    """Why the last attempt failed (fed back to the next one)."""
    cost_usd: float = 0.0
    """Cost of every attempt at this task."""
    completions: int = 0
    """TASK_COMPLETE messages seen (resets included): a witness for exactly-once."""
    feedback: str | None = None
    """The fuller failure report (error and output tail) for the next attempt's prompt."""
    started: dict[str, Any] | None = None
    """The running attempt's WORKER_STARTED payload (session id, CLI pid) for orphan reaping."""
    landing: dict[str, Any] | None = None
    """The running attempt's LANDING payload: its commit may be in HEAD already."""
    commit: str | None = None
    """The commit that landed the completing attempt's work (None: nothing to land)."""
    kept_copy: str | None = None
    """A failed attempt's copy kept for inspection (until the next run)."""
    reverting: dict[str, Any] | None = None
    """A REVERTING payload whose TASK_RESET never came (``conductor revert`` was cut off)."""
    denials: int = 0
    """TOOL_DENIED messages of the task's attempts."""


@dataclass
class TrackState:
    """Everything replaying the bus up to ``last_seq`` says."""

    track: str
    """The track id."""
    tasks: dict[str, TaskState] = field(default_factory=dict)
    """Per-task state, created on first mention."""
    last_seq: int = 0
    """Highest message applied."""
    last_id: str | None = None
    """Id of that message (validates caches)."""
    runs: int = 0
    """TRACK_STARTED messages seen."""
    approved: bool = False
    """An APPROVE for the whole track was posted."""
    cost_usd: float = 0.0
    """Cost of every attempt, summed."""
    ended: str | None = None
    """Type of the last TRACK_COMPLETE / TRACK_FAILED / TRACK_INTERRUPTED, if the run ended."""
    notes: int = 0
    """NOTE messages seen."""

    def task(self, task_id: str) -> TaskState:
        """The state of ``task_id`` (created pending if never mentioned)."""
        ts = self.tasks.get(task_id)
        if ts is None:
            ts = self.tasks[task_id] = TaskState(task_id)
        return ts

    def view(
        self, task_ids: Iterable[str], deps: Callable[[str], list[str]]
    ) -> dict[str, TaskStatus]:
        """Statuses for display: pending tasks below a failed one are ``BLOCKED``."""
        out: dict[str, TaskStatus] = {}
        order = list(task_ids)
        for tid in order:
            out[tid] = self.task(tid).status
        # Task lists are topologically valid only after validation; iterate to a fixpoint.
        changed = True
        while changed:
            changed = False
            for tid in order:
                if out[tid] is TaskStatus.PENDING and any(
                    out.get(d) in (TaskStatus.FAILED, TaskStatus.BLOCKED) for d in deps(tid)
                ):
                    out[tid] = TaskStatus.BLOCKED
                    changed = True
        return out


Transition = Callable[[str, TaskStatus, TaskStatus], None]


def apply(state: TrackState, msg: Message, on_transition: Transition | None = None) -> None:
    """Apply one message to ``state``; call ``on_transition(task, old, new)`` on a change."""
    state.last_seq = msg.seq
    state.last_id = msg.id
    mtype = msg.type
    payload = msg.payload
    if mtype == MessageType.TRACK_STARTED:
        state.runs += 1
        state.ended = None
        return
    if mtype in (
        MessageType.TRACK_COMPLETE,
        MessageType.TRACK_FAILED,
        MessageType.TRACK_INTERRUPTED,
    ):
        state.ended = mtype
        return
    if mtype == MessageType.APPROVE and msg.task is None:
        state.approved = True
        return
    if mtype == MessageType.NOTE:
        state.notes += 1
        return
    if msg.task is None:
        return
    ts = state.task(msg.task)
    old = ts.status
    if mtype == MessageType.TASK_DISPATCHED:
        if msg.attempt is not None:
            ts.attempts = max(ts.attempts, msg.attempt)
            ts.in_flight = msg.attempt
        ts.worker = msg.worker
        ts.started = None
        ts.landing = None
        ts.reverting = None
        if ts.status is not TaskStatus.SKIPPED:
            ts.status = TaskStatus.RUNNING
    elif mtype == MessageType.WORKER_STARTED:
        if msg.attempt is not None and msg.attempt == ts.in_flight:
            ts.started = dict(payload)
    elif mtype == MessageType.LANDING:
        if msg.attempt is not None and msg.attempt == ts.in_flight:
            ts.landing = dict(payload)
    elif mtype == MessageType.REVERTING:
        ts.reverting = dict(payload)
    elif mtype == MessageType.TOOL_DENIED:
        ts.denials += 1
    elif mtype == MessageType.COPY_REMOVED:
        path = payload.get("path")
        if payload.get("kept") and isinstance(path, str):
            ts.kept_copy = path
        elif path == ts.kept_copy:
            ts.kept_copy = None
    elif mtype == MessageType.TASK_COMPLETE:
        ts.status = TaskStatus.COMPLETE
        ts.in_flight = None
        ts.hash = payload.get("hash")
        ts.duration = _float(payload.get("duration"))
        ts.cost_usd += _float(payload.get("cost_usd")) or 0.0
        state.cost_usd += _float(payload.get("cost_usd")) or 0.0
        ts.completions += 1
        ts.last_error = None
        ts.feedback = None
        ts.started = None
        ts.landing = None
        ts.reverting = None
        commit = payload.get("commit")
        ts.commit = commit if isinstance(commit, str) else None
    elif mtype == MessageType.TASK_FAILED:
        ts.in_flight = None
        ts.failures += 1
        ts.last_error = str(payload.get("error") or "failed")
        ts.feedback = str(payload.get("feedback") or ts.last_error)
        ts.started = None
        ts.landing = None
        ts.duration = _float(payload.get("duration"))
        ts.cost_usd += _float(payload.get("cost_usd")) or 0.0
        state.cost_usd += _float(payload.get("cost_usd")) or 0.0
        if ts.status is not TaskStatus.SKIPPED:
            ts.status = TaskStatus.FAILED if payload.get("final") else TaskStatus.PENDING
    elif mtype == MessageType.WORKER_LOST:
        if msg.attempt is None or ts.in_flight == msg.attempt:
            ts.in_flight = None
            ts.started = None
            ts.landing = None
            if ts.status is TaskStatus.RUNNING:
                ts.status = TaskStatus.PENDING
    elif mtype == MessageType.TASK_RESET:
        ts.status = TaskStatus.PENDING
        ts.failures = 0
        ts.hash = None
        ts.commit = None
        ts.reverting = None
        ts.last_error = None
        ts.feedback = None
    elif mtype == MessageType.SKIP and ts.status is not TaskStatus.COMPLETE:
        ts.status = TaskStatus.SKIPPED
    if on_transition is not None and ts.status is not old:
        on_transition(ts.id, old, ts.status)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def replay(
    messages: Iterable[Message], track_id: str, into: TrackState | None = None
) -> TrackState:
    """Apply ``messages`` in order onto ``into`` (or a fresh state)."""
    state = into if into is not None else TrackState(track_id)
    for msg in messages:
        apply(state, msg)
    return state


# --- the status cache ---------------------------------------------------------------------

CACHE_NAME = "state.json"
CACHE_VERSION = 3


def save_cache(cache_dir: Path, state: TrackState) -> None:
    """Write ``state`` as a rebuildable cache (write aside, then rename)."""
    data = {k: v for k, v in state.__dict__.items() if k != "tasks"}
    data["version"] = CACHE_VERSION
    data["tasks"] = {tid: ts.__dict__ for tid, ts in state.tasks.items()}
    target = cache_dir / CACHE_NAME
    tmp = cache_dir / f".{CACHE_NAME}.{os.getpid()}.tmp"
    try:
        cache_dir.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, target)
    except OSError:
        # A cache is an optimisation: failing to write it must never fail a run.
        tmp.unlink(missing_ok=True)


def load_cache(cache_dir: Path, track_id: str) -> TrackState | None:
    """The cached state, or None when missing, stale-format or unreadable."""
    try:
        fd = open_state_file(cache_dir / CACHE_NAME, os.O_RDONLY)
        with os.fdopen(fd) as fh:
            data = json.load(fh)
        if data.pop("version", None) != CACHE_VERSION or data.get("track") != track_id:
            return None
        tasks = {
            tid: TaskState(**{**t, "status": TaskStatus(t["status"])})
            for tid, t in data.pop("tasks").items()
        }
        return TrackState(tasks=tasks, **data)
    except (OSError, ValueError, TypeError, KeyError, StateError):
        return None


class MessageSource(Protocol):
    """What ``load_state`` needs of a bus."""

    def get(self, seq: int) -> Message | None:
        """The message at ``seq``, if published."""
        ...

    def read(self, after: int = 0, limit: int | None = None) -> list[Message]:
        """Published messages after ``after``, in order."""
        ...


def load_state(
    bus: MessageSource,
    cache_dir: Path,
    track_id: str,
    *,
    batch: int = 5000,
    refresh_cache: bool = False,
) -> TrackState:
    """The state the bus describes: the cache if it still matches the bus, plus newer messages.

    With ``refresh_cache`` the cache is rewritten when it was missing, stale or behind.
    """
    state = load_cache(cache_dir, track_id)
    if state is not None and state.last_seq:
        msg = bus.get(state.last_seq)
        if msg is None or msg.id != state.last_id:
            state = None
    fresh = state is not None
    if state is None:
        state = TrackState(track_id)
    while True:
        messages = bus.read(after=state.last_seq, limit=batch)
        if not messages:
            break
        fresh = False
        replay(messages, track_id, into=state)
    if refresh_cache and not fresh:
        save_cache(cache_dir, state)
    return state
