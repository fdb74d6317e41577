"""The one small interface every executor implements.

The scheduler owns every state transition: it posts TASK_DISPATCHED, materialises the worker
directory, calls ``Executor.execute`` once per attempt, runs the task's ``verify`` commands,
and posts TASK_COMPLETE or TASK_FAILED. An executor only does the work and reports what
happened in an ``Outcome``; it may post informational messages (WORKER_STARTED, PROGRESS,
CLAIM_*, TOOL_DENIED, API_RETRY) through ``AttemptContext.post``.

Cancellation: the scheduler cancels ``execute`` (anyio cancellation) on timeout or Ctrl-C.
An executor must leave no child process behind when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conductor.messages import Message
    from conductor.track import Task, Track


PostFn = Callable[..., "Message"]
"""``post(type, *, payload=None) -> Message``: posts a message for this attempt's worker."""


@dataclass(frozen=True)
class AttemptContext:
    """Everything an executor needs for one attempt at one task."""

    track: Track
    """The whole track (for agents, defaults, ids)."""
    task: Task
    """The task, with the track's defaults already applied."""
    attempt: int
    """Attempt number, from 1."""
    worker_id: str
    """``<task>.<attempt>``: names the worker directory and signs its messages."""
    repo: Path
    """The repository checkout; commands and sessions run here."""
    worker_dir: Path
    """The ephemeral worker directory (exists; removed by the scheduler afterwards)."""
    log_path: Path
    """Append the attempt's output here."""
    state_root: Path
    """The track's run-state directory."""
    post: PostFn
    """Post a message on the bus as this worker."""
    feedback: str | None = None
    """Why the previous attempt failed, for the next prompt; None on the first attempt."""
    token: str = ""
    """Secret that lets this worker (and only it) post through ``conductor bus post``."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for children: CONDUCTOR_* variables naming the bus and the worker."""
    budget_left_usd: float | None = None
    """Track budget still unspent when the attempt starts; None when there is no budget."""
    services: dict[str, Any] = field(default_factory=dict)
    """Shared run services by name (``"locks"``: the track's ``PathLocks``)."""


@dataclass(frozen=True)
class Outcome:
    """What one attempt did, as the executor saw it."""

    ok: bool
    """The work finished and claims success (verify still to run)."""
    error: str | None = None
    """Why it did not, in one or two lines; shown on the bus and fed back to the next attempt."""
    exit_code: int | None = None
    """Process exit code, for shell commands and CLI sessions."""
    timed_out: bool = False
    """The task's timeout cut it."""
    retryable: bool = True
    """False when a new attempt cannot help (e.g. the track budget is spent)."""
    summary: str | None = None
    """The worker's own summary of what it did."""
    files_changed: list[str] = field(default_factory=list)
    """Repository paths the attempt changed, as reported or observed."""
    cost_usd: float = 0.0
    """Cost of this attempt alone (not cumulative)."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Token usage of this attempt."""
    turns: int | None = None
    """Model turns used."""
    session_id: str | None = None
    """Claude session id, when there was one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Executor-specific details copied into TASK_COMPLETE / TASK_FAILED payloads."""


class Executor(Protocol):
    """Runs one attempt. Implementations: shell, claude, ``conductor.testing.ScriptedExecutor``."""

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Do the task's work; return what happened. Must not raise for a task failure."""
        ...
