"""One exception root for everything conductor raises on purpose.

User errors (a bad track file, a bad argument, a hostile path) are kept apart from runtime
failures (a task failed, the budget ran out). The CLI maps each class to a message and an exit
code in one place (``conductor.cli``); set ``CONDUCTOR_RAISE_ERRORS=1`` to get the traceback.
How a run ends (failed, budget spent, interrupted) is no exception: it is the run's result
(``conductor.scheduler.RunResult.exit_code``).

Exit codes (also in the README):

====  ==========================================================
0     success
1     the track ran and at least one task failed or was blocked
2     user error: bad track file, bad argument, unknown task
3     a lock is held: another conductor runs this track, or a path lock is taken
4     the track's budget was spent before all tasks completed
5     state error: the bus or state directory is unusable or hostile
6     a person rejected the run (``conductor reject``), or its approval wait timed out
7     the API refused the credentials (not logged in, an invalid key, an unpaid account): the
      run stopped before other tasks spent anything; set ``ANTHROPIC_API_KEY`` or
      ``CLAUDE_CODE_OAUTH_TOKEN``
130   interrupted (Ctrl-C / SIGTERM); resume with ``conductor run`` again
====  ==========================================================
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class ConductorError(Exception):
    """Root of every error conductor raises on purpose."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        field: str | None = None,
        task_id: str | None = None,
    ) -> None:
        from pathlib import Path  # not at import: `conductor --version` has no use for it

        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.field = field
        self.task_id = task_id
        self.others: tuple[ConductorError, ...] = ()
        """Further problems found with this one, earliest line first (a file with several
        mistakes is one error naming the first, ``(and N more problems)``)."""

    def __str__(self) -> str:
        where = ""
        if self.path is not None and (self.line is not None or not self._names_path()):
            where = str(self.path)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        what = f"{self.field}: " if self.field else ""
        return f"{where}{what}{self.message}"

    def _names_path(self) -> bool:
        """Whether the message already names its file as a word (then it is not prefixed
        with it a second time)."""
        edge = r"""[\s'"`:,]"""
        pattern = rf"(^|{edge}){re.escape(str(self.path))}($|{edge})"
        return re.search(pattern, self.message) is not None


class UserError(ConductorError):
    """Something a person wrote is wrong: a track file, an argument, a task name."""

    exit_code = 2


class TrackError(UserError):
    """A track file is invalid (syntax, schema, graph)."""


class TemplateError(UserError):
    """A worker template is invalid or renders with an unknown placeholder."""


class LockHeldError(ConductorError):
    """A lock is held by someone else (another conductor, another worker)."""

    exit_code = 3


class StateError(ConductorError):
    """The bus or state directory is unusable: hostile symlink, oversized message, bad name."""

    exit_code = 5
