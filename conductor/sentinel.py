"""Keep attempts from holding conductor's kernel locks.

A read-only descriptor is enough to take a ``flock``: a process that can open conductor's
lock files could hold the bus's writer lock and stall every conductor of the track. Claude
Code's sandbox is told not to let Bash read the state directory at all (``sandbox``); this
is the second line, for whatever opens them anyway.

``LockSentinel`` is a thread that reads ``/proc/locks`` every ``interval`` seconds. A holder
of one of conductor's lock files that is an attempt's process (its environment, or an
ancestor's, carries the run's ``CONDUCTOR_RUN_TAG``) and has held it for ``hold_limit``
seconds is killed with everything under it; ``on_kill`` is told. Conductor's own holders
(itself, a person's or a shell task's ``conductor bus post``) are never touched. It runs in a
thread because a stalled lock blocks the event loop. Linux only (elsewhere it does nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil

from conductor.contract import TAG_ENV

KillFn = Callable[[int, str], None]
"""``on_kill(pid, path)``: a holder of ``path`` was killed."""


def lock_holders(keys: dict[tuple[int, int, int], str]) -> list[tuple[int, str]]:
    """``(pid, path)`` of every holder (not waiter) of a lock on one of ``keys``
    (``(major, minor, inode)`` → path), from ``/proc/locks``."""
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            lines = fh.readlines()
    except OSError:
        return []
    found = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":
            continue  # a waiter, not a holder
        try:
            pid = int(fields[4])
            major, minor, inode = fields[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        path = keys.get(key)
        if path is not None:
            found.append((pid, path))
    return found


def _is_attempt(pid: int, tag: str) -> bool:
    """Whether ``pid`` or one of its ancestors carries the run's tag."""
    try:
        proc: psutil.Process | None = psutil.Process(pid)
        while proc is not None and proc.pid > 1:
            with contextlib.suppress(psutil.AccessDenied, OSError):
                if proc.environ().get(TAG_ENV) == tag:
                    return True
            proc = proc.parent()
    except psutil.Error:
        return False
    return False


def _openers(path: str) -> list[int]:
    """Processes that have ``path`` open (by device and inode, however they named it)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                other = os.stat(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                found.append(int(entry))
                break
    return found


def _kill_tree(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return
    for member in family:
        with contextlib.suppress(psutil.Error, OSError):
            member.send_signal(signal.SIGKILL)


class LockSentinel:
    """See the module docstring."""

    def __init__(
        self,
        files: Sequence[Path],
        tag: str,
        *,
        on_kill: KillFn | None = None,
        hold_limit: float = 5.0,
        interval: float = 1.0,
    ) -> None:
        self.files = list(files)
        """Lock files to guard."""
        self.tag = tag
        """The run's ``CONDUCTOR_RUN_TAG``."""
        self.on_kill = on_kill
        self.hold_limit = hold_limit
        self.interval = interval
        self.killed: list[tuple[int, str]] = []
        """``(pid, path)`` of every holder ended."""
        self._since: dict[tuple[int, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockSentinel:
        if os.path.exists("/proc/locks"):
            self._thread = threading.Thread(target=self._run, name="lock sentinel", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _keys(self) -> dict[tuple[int, int, int], str]:
        keys = {}
        for path in self.files:
            with contextlib.suppress(OSError):
                st = os.stat(path)
                keys[(os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = str(path)
        return keys

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.scan()

    def scan(self, now: float | None = None) -> None:
        """Look once; end attempt processes that held a lock too long.

        ``/proc/locks`` names the process that took a lock; a child that inherited the
        descriptor (its taker gone, or not marked) holds it too, so every process with the
        lock file open is looked at.
        """
        now = time.monotonic() if now is None else now
        me = os.getpid()
        keys = self._keys()
        holders = {h for h in lock_holders(keys) if h[0] != me}
        self._since = {h: self._since.get(h, now) for h in holders}
        for (pid, path), since in list(self._since.items()):
            if now - since < self.hold_limit:
                continue
            culprits = [pid] if _is_attempt(pid, self.tag) else []
            if not culprits:
                culprits = [p for p in _openers(path) if p != me and _is_attempt(p, self.tag)]
            for culprit in culprits:
                _kill_tree(culprit)
                self.killed.append((culprit, path))
                if self.on_kill is not None:
                    with contextlib.suppress(Exception):
                        self.on_kill(culprit, path)
            if culprits:
                del self._since[(pid, path)]
