"""The shell executor: a task's ``run:`` command, in the checkout or in its own copy.

A shell task is the person's own command. By default it runs in the checkout (its outputs
are often ignored build files) and may post through ``conductor bus post`` with its worker
token. With ``isolation: copy`` it gets what a Claude attempt gets: its own copy, a sandbox,
a verdict by what it changed and one commit when accepted (``conductor.isolation``).

A failed command's error says why in words (``command not found (exit 127)``, ``not executable
(exit 126)``, ``killed by SIGKILL``) followed by the last lines of its output: stdout and stderr
share the attempt's log, in the order they were written, and a command's complaint is nearly
always at the end. Exit codes 126 and 127 mean the command could not be started at all; a new
attempt cannot help, so they are not retried (the TASK_FAILED is final and carries ``cause``).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from conductor.commands import run_command
from conductor.errors import StateError
from conductor.executors.base import AttemptContext, ExecutorBase, Needs, Outcome
from conductor.paths import open_state_file
from conductor.sandbox import sandbox_wrapper
from conductor.track import Task

NOT_STARTED = {126: "not executable", 127: "command not found"}
"""Exit codes (as POSIX shells use them) of a command that could not be started."""

OUTPUT_LINES = 3
"""Lines of the command's output a failure's error quotes."""

LINE_WIDTH = 300
"""Characters kept of each quoted line."""


def failure(code: int, output: str) -> tuple[str, str | None]:
    """The error of a command that exited with ``code`` after writing ``output``, and its
    cause when it could not be started at all (126, 127), else None."""
    cause = NOT_STARTED.get(code)
    if cause is not None:
        head = f"{cause} (exit {code})"
    elif code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        head = f"command killed by {name}"
    else:
        head = f"command exited with status {code}"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    quoted = [line if len(line) <= LINE_WIDTH else line[: LINE_WIDTH - 1] + "…"
              for line in lines[-OUTPUT_LINES:]]
    return "\n".join([head, *quoted]), cause


def _size(path: os.PathLike[str]) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _output_since(path: os.PathLike[str], offset: int, limit: int = 4096) -> str:
    """The end (at most ``limit`` bytes) of what was appended to ``path`` after ``offset``."""
    try:
        with os.fdopen(open_state_file(Path(path), os.O_RDONLY), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            fh.seek(max(offset, end - limit))
            return fh.read().decode("utf-8", "replace")
    except (OSError, StateError):
        return ""


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
        offset = _size(ctx.log_path)
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
        error, cause = failure(code, _output_since(ctx.log_path, offset))
        return Outcome(
            ok=False,
            exit_code=code,
            error=error,
            retryable=cause is None,
            extra={"cause": cause} if cause else {},
        )
