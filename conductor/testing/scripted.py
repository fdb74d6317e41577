"""A scripted executor: run a track's tasks with canned outcomes, no shell, no model.

Use it to test a track's shape (dependencies, retries, budgets, resume) offline::

    from conductor.scheduler import RunOptions, run_track
    from conductor.testing import ScriptedExecutor, Step

    executor = ScriptedExecutor(default=Step(cost_usd=0.01))
    executor.enqueue("build", Step(ok=False, error="compile error"), Step(writes={"out.txt": "ok"}))
    result = await run_track(track, RunOptions(repo=repo, executors=lambda task: executor))
    assert result.status == "complete"
    assert [c.attempt for c in executor.calls_for("build")] == [1, 2]

Steps for a task are used in order, one per attempt; when they run out, ``default`` is used.

By default the steps write into the checkout. ``ScriptedExecutor(copy=True)`` asks for what a
Claude attempt gets instead: its own copy of the repository, a verdict by what changed there
(with ``Step.claims`` as the worker's claim) and one commit per accepted attempt.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

import anyio

from conductor.commands import append_log
from conductor.executors.base import AttemptContext, ExecutorBase, Needs, Outcome
from conductor.paths import check_repo_path
from conductor.track import Task


@dataclass(frozen=True)
class Step:
    """One scripted attempt."""

    ok: bool = True
    """Whether the attempt succeeds (verify still runs afterwards)."""
    error: str | None = None
    """The failure reason when not ok."""
    delay: float = 0.0
    """Seconds the attempt takes."""
    cost_usd: float = 0.0
    """Cost the attempt reports."""
    writes: dict[str, str | None] = field(default_factory=dict)
    """Repository files the attempt writes (relative path -> content; None deletes it)."""
    claims: list[str] | None = None
    """The files the attempt claims it changed (default: those it writes)."""
    summary: str | None = None
    """The summary the attempt reports."""
    retryable: bool = True
    """False makes a failure final at once."""


class ScriptedExecutor(ExecutorBase):
    """An ``Executor`` that plays ``Step``s instead of running anything."""

    def __init__(
        self, default: Step | None = None, *, copy: bool = False, sandbox: bool = False
    ) -> None:
        self.default = default if default is not None else Step()
        self.copy = copy
        """Work in a copy of the repository, as Claude attempts do."""
        self.sandbox = copy and sandbox
        """Treat what runs in the copy (verify) as untrusted: run it in the sandbox."""
        self._queues: dict[str, deque[Step]] = defaultdict(deque)
        self.calls: list[AttemptContext] = []

    def enqueue(self, task_id: str, *steps: Step) -> ScriptedExecutor:
        """Append steps for ``task_id``'s next attempts."""
        self._queues[task_id].extend(steps)
        return self

    def needs(self, task: Task) -> Needs:
        """A copy when made with ``copy=True``; locks on the task's files."""
        return Needs(copy=self.copy, sandbox=self.sandbox, locks=bool(task.files))

    def calls_for(self, task_id: str) -> list[AttemptContext]:
        """The attempts made at ``task_id``, in order."""
        return [c for c in self.calls if c.task.id == task_id]

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Play the next step of ``ctx.task``."""
        self.calls.append(ctx)
        queue = self._queues.get(ctx.task.id)
        step = queue.popleft() if queue else self.default
        if step.delay:
            await anyio.sleep(step.delay)
        changed = []
        for rel, content in step.writes.items():
            target = ctx.cwd / check_repo_path(rel, "scripted write")
            if content is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            changed.append(rel)
        append_log(
            ctx.log_path, f"scripted attempt {ctx.attempt}: {'ok' if step.ok else step.error}\n"
        )
        return Outcome(
            ok=step.ok,
            error=None if step.ok else (step.error or "scripted failure"),
            cost_usd=step.cost_usd,
            summary=step.summary,
            files_changed=changed,
            claimed_files=(step.claims if step.claims is not None else changed)
            if self.copy
            else None,
            retryable=step.retryable,
        )
