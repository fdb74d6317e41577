"""The one small interface every executor implements.

The scheduler owns every state transition: it posts TASK_DISPATCHED, materialises the worker
directory (and, when the executor needs one, the attempt's own copy of the repository), calls
``Executor.execute`` once per attempt, judges a copy by what changed in it, runs the task's
``verify`` commands, lands accepted work and posts TASK_COMPLETE or TASK_FAILED. An executor
only does the work and reports what happened in an ``Outcome``; it may post informational
messages (WORKER_STARTED, PROGRESS, CLAIM_*, TOOL_DENIED, API_RETRY) through
``AttemptContext.post``.

An executor says what it needs for a task through ``needs`` (a copy, a sandbox, path locks)
and how to end what a killed conductor left running through ``recover``; the scheduler knows
nothing else about it. ``ExecutorBase`` has the defaults.

Cancellation: the scheduler cancels ``execute`` (anyio cancellation) on timeout or Ctrl-C.
An executor must leave no child process behind when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from conductor.bus import Bus
    from conductor.executors.api_errors import ApiStop
    from conductor.locks import PathLocks
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
    """The person's repository checkout."""
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
    """Secret that lets this worker (and only it) post through ``conductor bus post``; empty
    for attempts in a copy, which never post themselves."""
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for children: CONDUCTOR_* variables naming the worker (and, outside
    a copy, the bus)."""
    budget_left_usd: float | None = None
    """What the attempt may spend: the lesser of the track's unspent ``budget_usd`` and what
    the task's earlier attempts left of its ``max_budget_usd``; None when neither is set."""
    locks: PathLocks | None = None
    """The track's path locks, when the run has them."""
    bus: Bus | None = None
    """The track's bus, for reading (executors post through ``post``)."""
    workdir: Path | None = None
    """Where the attempt works: its own copy, or None for the checkout (``cwd``)."""
    tmp_dir: Path | None = None
    """The attempt's private temporary directory (writable inside the sandbox)."""
    sandbox: Sandbox | None = None
    """How commands of this attempt are confined; None when they are not."""

    @property
    def cwd(self) -> Path:
        """The directory the attempt works in: its copy, or the checkout."""
        return self.workdir if self.workdir is not None else self.repo


@dataclass(frozen=True)
class Sandbox:
    """The confinement of one attempt's commands (see ``conductor.sandbox``)."""

    allowed_domains: tuple[str, ...] = ()
    """Domains sandboxed commands may reach; none by default."""
    hidden: tuple[Path, ...] = ()
    """Directories replaced by empty ones inside the sandbox (conductor's state)."""


@dataclass(frozen=True)
class Needs:
    """What an executor needs the scheduler to provide for one task."""

    copy: bool = False
    """Work in a copy of the repository; judged by its diff, landed as one commit."""
    sandbox: bool = False
    """What runs in the copy is untrusted: run it in the sandbox (a copy is required)."""
    locks: bool = True
    """Hold path locks on the task's ``files`` while the attempt runs."""


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
    claimed_files: list[str] | None = None
    """Files the worker claims it changed; None when it makes no claim (a shell command).
    In a copy the claim must match what really changed."""
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
    worker_lost: dict[str, Any] | None = None
    """Set when the worker died with the machine it ran on (a cluster node): where (``node``)
    and what was seen. Recorded as a WORKER_LOST that counts toward ``max_attempts``."""
    api_stop: ApiStop | None = None
    """Set when the session stopped on the API (credentials refused, a usage or rate limit,
    an overload), not on the task: recorded as TASK_DEFERRED, which never counts toward
    ``max_attempts`` (``conductor.limits``)."""


class Executor(Protocol):
    """Runs one attempt. Implementations: shell, claude, ``conductor.testing.ScriptedExecutor``."""

    def needs(self, task: Task) -> Needs:
        """What the scheduler must provide for an attempt at ``task``."""
        ...

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Do the task's work; return what happened. Must not raise for a task failure."""
        ...

    def recover(self, started: dict[str, Any]) -> bool:
        """End what a killed conductor's attempt left running, from its WORKER_STARTED
        payload; True if something was ended."""
        ...


class ExecutorBase:
    """Defaults for ``Executor``: no copy, locks on ``files``, nothing to recover."""

    def needs(self, task: Task) -> Needs:
        """Work in the checkout, holding locks on the task's files."""
        return Needs(copy=False, sandbox=False, locks=bool(task.files))

    def recover(self, started: dict[str, Any]) -> bool:
        """Nothing of an attempt outlives its process group."""
        return False


def needs_of(executor: object, task: Task) -> Needs:
    """``executor.needs(task)``, or the defaults for an executor that only has ``execute``."""
    method = getattr(executor, "needs", None)
    if callable(method):
        needs = method(task)
        if isinstance(needs, Needs):
            return needs
    return ExecutorBase().needs(task)
