"""Whether the conductor that ran a track is still there.

A track's bus says a run started (TRACK_STARTED) and, when it ended on its own terms, how it
ended (TRACK_COMPLETE / TRACK_FAILED / TRACK_INTERRUPTED). The conductor holding the run
lock writes ``run.json`` (pid, host, process start) and removes it when it ends; one that
was killed leaves it behind. Put together:

- **running**: ``run.json`` names a process that is alive;
- **gone**: the last run never wrote its end and no conductor is alive: that conductor was
  killed (``kill -9``, a reboot, a lost machine). Attempts the bus shows in flight are not
  running; ``conductor run`` (or ``resume``) records them as lost and goes on;
- **ended**: the last run ended and no conductor is alive;
- **never run**: the bus has no TRACK_STARTED.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Literal

from conductor.errors import ConductorError
from conductor.paths import StateDir, open_state_file

RunnerStatus = Literal["running", "gone", "ended", "never run"]


@dataclass(frozen=True)
class Runner:
    """What is known about the conductor of a track."""

    status: RunnerStatus
    """See the module docstring."""
    pid: int | None = None
    """The pid of the conductor holding (or that last held) the run lock, if recorded."""
    host: str | None = None
    """Its host."""
    started_at: str | None = None
    """When it took the lock (ISO 8601)."""

    def who(self) -> str:
        """``pid 123 on host h`` or ``a conductor`` when nothing was recorded."""
        if self.pid is None:
            return "a conductor"
        return f"pid {self.pid}" + (f" on host {self.host}" if self.host else "")

    def describe(self, track: str) -> str | None:
        """One line for a person, or None when there is nothing to say (ended, never run)."""
        since = f" since {self.started_at}" if self.started_at else ""
        if self.status == "running":
            return f"running now: {self.who()}{since}"
        if self.status == "gone":
            return (
                f"the conductor that ran this track ({self.who()}{since}) is gone: it ended "
                f"without recording the end of its run; `conductor run` on {track} resumes it"
            )
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "status": self.status,
            "pid": self.pid,
            "host": self.host,
            "started_at": self.started_at,
        }


def runner(state_dir: StateDir, track_id: str, *, runs: int, ended: str | None) -> Runner:
    """The conductor of ``track_id``: ``runs`` and ``ended`` are what the bus says
    (``TrackState.runs`` and ``TrackState.ended``).

    Whether one runs is read from ``run.json`` and its process, never by probing the run lock:
    a probe holds the lock for an instant, and a conductor starting in that instant would
    refuse to run. A ``run.json`` from another host counts as running (it cannot be checked
    from here), as the run lock itself does.
    """
    info = _read_info(state_dir)
    if info and _alive(info):
        return _from_info("running", info)
    if runs == 0:
        return Runner("never run")
    if ended is not None:
        return Runner("ended")
    return _from_info("gone", info)


def _alive(info: dict[str, Any]) -> bool:
    from conductor.locks import HOST
    from conductor.processes import process_alive

    pid, host, start = info.get("pid"), info.get("host"), info.get("pid_start")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return False
    if host != HOST:
        return True
    return process_alive(pid, start if isinstance(start, int | float) else None)


def _from_info(status: RunnerStatus, info: dict[str, Any]) -> Runner:
    pid = info.get("pid")
    host = info.get("host")
    started = info.get("started_at")
    return Runner(
        status,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host=host if isinstance(host, str) else None,
        started_at=started if isinstance(started, str) else None,
    )


def _read_info(state_dir: StateDir) -> dict[str, Any]:
    """``run.json`` left by a conductor that died, or ``{}``."""
    with contextlib.suppress(OSError, ConductorError, ValueError):
        fd = open_state_file(state_dir.run_info, os.O_RDONLY)
        with os.fdopen(fd, "rb") as fh:
            data = json.loads(fh.read(64 * 1024))
        if isinstance(data, dict):
            return data
    return {}
