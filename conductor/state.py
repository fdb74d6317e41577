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
  again, not counted as a failure. One with ``counted`` (a cluster node died under the
  attempt) counts toward ``max_attempts``, and with ``final`` the task failed for good.
- TASK_DEFERRED: the attempt stopped on the API (a usage or rate limit, an overload, refused
  credentials), not on the task: pending again, never counted toward ``max_attempts``; its
  cost counts like a failed attempt's.
- LIMIT_WAIT: the API is limited until ``until`` (Unix time): a run dispatches nothing before
  then, a resumed one included (``conductor.limits``).
- TASK_RESET: pending again with no failures counted (definition changed, ``--from``, or a
  new run retrying a task that had failed for good).
- SKIP (a person's): skipped; dependents may start. Only a TASK_RESET or a TASK_COMPLETE
  changes a skipped task again.
- AGENT_INFERRED: an agent a run inferred (``conductor.inference``); later runs reuse it.
  Its cost counts toward the track's.
- REVIEW_RESULT: a reviewer scored an attempt; rounds count until a TASK_RESET, and the
  review's cost counts toward the task's and the track's.
- APPROVAL_REQUESTED: a run with approval asks; the first APPROVE or REJECT for the whole
  track after it answers (``run --approve`` waits for that). Answers posted before a run asked
  count for nothing.
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
from typing import Any, Literal, Protocol

from conductor.atomic import write_atomic
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
    review_rounds: int = 0
    """REVIEW_RESULT messages since the last reset: rounds of review spent."""
    review_score: float | None = None
    """The newest review's score (0–100)."""
    denials: int = 0
    """TOOL_DENIED messages of the task's attempts."""
    attempt_hash: str | None = None
    """The definition hash the newest attempt was dispatched under."""
    spent_by_hash: dict[str, float] = field(default_factory=dict)
    """Cost of the task's attempts per definition hash: ``max_budget_usd`` caps the sum under
    the current definition (a changed definition, a raised budget included, starts anew)."""


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
    approval: Literal["pending", "approved", "rejected"] | None = None
    """The answer to the newest APPROVAL_REQUESTED: pending until an APPROVE or REJECT for the
    whole track follows it; None when no run asked. An answer posted before a run asked for
    it never counts for that run."""
    approval_reason: str = ""
    """What the REJECT (or APPROVE) said."""
    cost_usd: float = 0.0
    """Cost of every attempt, summed."""
    ended: str | None = None
    """Type of the last TRACK_COMPLETE / TRACK_FAILED / TRACK_INTERRUPTED, if the run ended."""
    notes: int = 0
    """NOTE messages seen."""
    inferred_agents: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Agent definitions inferred by runs (AGENT_INFERRED), by name; the newest wins."""
    limit_until: float | None = None
    """The latest LIMIT_WAIT's ``until`` (Unix time): nothing is dispatched before it."""

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

    def rows(
        self, task_ids: Iterable[str], deps: Callable[[str], list[str]]
    ) -> list[dict[str, Any]]:
        """One JSON-ready row per task, as ``conductor status`` shows it: its status (from
        ``view``), attempts, failures, duration, cost, landed commit, denied writes, the
        newest review score and the review rounds spent, the kept copy of a failed attempt,
        and the last error while it is failed or pending again."""
        order = list(task_ids)
        view = self.view(order, deps)
        rows: list[dict[str, Any]] = []
        for tid in order:
            ts = self.task(tid)
            rows.append(
                {
                    "task": tid,
                    "status": view[tid].value,
                    "attempts": ts.attempts,
                    "failures": ts.failures,
                    "duration": ts.duration,
                    "cost_usd": round(ts.cost_usd, 6),
                    "commit": ts.commit,
                    "denials": ts.denials,
                    "review_score": ts.review_score,
                    "review_rounds": ts.review_rounds,
                    "kept_copy": ts.kept_copy,
                    "error": ts.last_error
                    if view[tid] in (TaskStatus.FAILED, TaskStatus.PENDING)
                    else None,
                }
            )
        return rows


Transition = Callable[[str, TaskStatus, TaskStatus], None]

_CHARGED = frozenset(
    {MessageType.TASK_COMPLETE, MessageType.TASK_FAILED, MessageType.TASK_DEFERRED}
)
"""Attempt ends whose ``cost_usd`` counts toward the task's ``max_budget_usd``."""


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
    if mtype == MessageType.APPROVAL_REQUESTED:
        state.approval = "pending"
        state.approval_reason = ""
        return
    if mtype in (MessageType.APPROVE, MessageType.REJECT) and msg.task is None:
        if state.approval == "pending":
            state.approval = "approved" if mtype == MessageType.APPROVE else "rejected"
            state.approval_reason = str(payload.get("reason") or payload.get("text") or "")
        return
    if mtype == MessageType.NOTE:
        state.notes += 1
        return
    if mtype == MessageType.LIMIT_WAIT:
        state.limit_until = _float(payload.get("until"))
        return
    if mtype == MessageType.AGENT_INFERRED:
        agent = payload.get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("name"), str):
            state.inferred_agents[agent["name"]] = agent
        state.cost_usd += _float(payload.get("cost_usd")) or 0.0
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
        dispatched_hash = payload.get("hash")
        ts.attempt_hash = dispatched_hash if isinstance(dispatched_hash, str) else None
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
    elif mtype == MessageType.TASK_DEFERRED:
        ts.in_flight = None
        ts.started = None
        ts.landing = None
        ts.last_error = str(payload.get("error") or "deferred")
        ts.cost_usd += _float(payload.get("cost_usd")) or 0.0
        state.cost_usd += _float(payload.get("cost_usd")) or 0.0
        if ts.status is TaskStatus.RUNNING:
            ts.status = TaskStatus.PENDING
    elif mtype == MessageType.WORKER_LOST:
        if msg.attempt is None or ts.in_flight == msg.attempt:
            ts.in_flight = None
            ts.started = None
            ts.landing = None
            if payload.get("counted"):  # a cluster node died under it: counts as a failure
                ts.failures += 1
                ts.last_error = str(payload.get("reason") or "worker lost")
                ts.feedback = ts.last_error
            if ts.status is TaskStatus.RUNNING:
                final = payload.get("counted") and payload.get("final")
                ts.status = TaskStatus.FAILED if final else TaskStatus.PENDING
    elif mtype == MessageType.REVIEW_RESULT:
        ts.review_rounds += 1
        ts.review_score = _float(payload.get("score"))
        ts.cost_usd += _float(payload.get("cost_usd")) or 0.0
        state.cost_usd += _float(payload.get("cost_usd")) or 0.0
    elif mtype == MessageType.TASK_RESET:
        ts.status = TaskStatus.PENDING
        ts.review_rounds = 0
        ts.failures = 0
        ts.hash = None
        ts.commit = None
        ts.reverting = None
        ts.last_error = None
        ts.feedback = None
    elif mtype == MessageType.SKIP and ts.status is not TaskStatus.COMPLETE:
        ts.status = TaskStatus.SKIPPED
    if mtype in _CHARGED and ts.attempt_hash is not None:
        cost = _float(payload.get("cost_usd")) or 0.0
        ts.spent_by_hash[ts.attempt_hash] = ts.spent_by_hash.get(ts.attempt_hash, 0.0) + cost
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
CACHE_VERSION = 5


def save_cache(cache_dir: Path, state: TrackState) -> None:
    """Write ``state`` as a rebuildable cache (write aside, then rename)."""
    data = {k: v for k, v in state.__dict__.items() if k != "tasks"}
    data["version"] = CACHE_VERSION
    data["tasks"] = {tid: ts.__dict__ for tid, ts in state.tasks.items()}
    try:
        cache_dir.mkdir(mode=0o700, exist_ok=True)
        write_atomic(cache_dir / CACHE_NAME, json.dumps(data, separators=(",", ":")))
    except OSError:
        pass  # a cache is an optimisation: failing to write it must never fail a run


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
