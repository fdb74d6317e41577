"""The shell executor: a task's ``run:`` command, in the checkout or in its own copy.

A shell task is the person's own command. By default it runs in the checkout (its outputs
are often ignored build files) and may post through ``conductor bus post`` with its worker
token. With ``isolation: copy`` it gets what a Claude attempt gets: its own copy, a sandbox,
a verdict by what it changed and one commit when accepted (``conductor.isolation``).
"""

from __future__ import annotations

import os

from conductor.commands import run_command
from conductor.executors.base import AttemptContext, ExecutorBase, Needs, Outcome
from conductor.sandbox import sandbox_wrapper
from conductor.track import Task


class ShellExecutor(ExecutorBase):
    """Runs ``task.run``; success is exit code 0.

    Children get the environment this process had when the executor was made (one per run),
    plus the attempt's ``CONDUCTOR_*`` variables. In a copy the command runs in the sandbox.
    """

    def __init__(self) -> None:
        self.base_env = dict(os.environ)

    def needs(self, task: Task) -> Needs:
        """The checkout by default; its own sandboxed copy with ``isolation: copy``."""
        in_copy = task.in_copy
        return Needs(copy=in_copy, sandbox=in_copy, locks=bool(task.files))

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Run the command; the log gets its stdout and stderr."""
        command = ctx.task.run
        if not command:
            return Outcome(ok=False, error="task has no run command", retryable=False)
        code = await run_command(
            command,
            cwd=ctx.cwd,
            log_path=ctx.log_path,
            env=ctx.env,
            base_env=self.base_env,
            wrap=sandbox_wrapper(ctx),
        )
        if code == 0:
            return Outcome(ok=True, exit_code=0)
        return Outcome(ok=False, exit_code=code, error=f"command exited with status {code}")
