"""Processes: whether one is alive, ending a tree of them, and reaping a dead run's orphans.

Liveness. A process is identified by its pid and, where it matters, its start time: a pid
reused by another process after the first one died is not the same process. A zombie counts
as dead (it can no longer act); a process this user may not inspect counts as alive.

Termination. ``terminate`` sends SIGTERM, waits up to ``TERM_GRACE`` seconds, then SIGKILLs
whatever is left. It never reaps: a child of this process stays a zombie for its owner (an
anyio process, the SDK's transport) to collect, so nobody waits on a pid that is already gone.
``conductor.commands`` ends a command's process group with the same grace.

Orphans. Every worker process (and everything it starts) carries ``BUS_ENV`` naming its
track's bus in its environment, or, for attempts in a copy (which must not learn where the bus
is), ``TAG_ENV`` set to ``run_tag(bus)``, an opaque mark derived from it. When a conductor is
killed with ``kill -9`` its children live on; the next conductor of the track, holding the
run lock, knows that no worker of the track can legitimately be running yet, so
``reap_orphans`` ends every process whose environment names this bus — grandchildren that
left the process group included. A process that scrubs its own environment escapes this;
Claude CLI processes are also ended by the pid recorded in WORKER_STARTED
(``end_recorded``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from conductor.contract import BUS_ENV, TAG_ENV, WORKER_ENV

TERM_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL when conductor ends a process."""
START_TIME_TOLERANCE = 1.0
"""Seconds two readings of one process's start time may differ by (clock rounding)."""
_POLL = 0.05


def process_alive(pid: int, start_time: float | None = None) -> bool:
    """Whether process ``pid`` runs on this host (and, if given, started at ``start_time``)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if start_time is not None:
            return abs(proc.create_time() - start_time) <= START_TIME_TOLERANCE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """The start time (epoch seconds) of process ``pid``, or None if it cannot be read."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (children, grandchildren...); empty if it is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _dead(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _wait_dead(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds for ``procs`` to end; return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if not _dead(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [p for p in alive if not _dead(p)]
    return alive


def terminate(procs: list[psutil.Process], grace: float = TERM_GRACE) -> int:
    """SIGTERM ``procs``, wait up to ``grace`` seconds, SIGKILL the rest; return how many ended.

    Blocking (it sleeps while it waits): call it in a worker thread from async code.
    """
    targets = [p for p in procs if not _dead(p)]
    for proc in targets:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGTERM)
    stubborn = _wait_dead(targets, grace)
    for proc in stubborn:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    survivors = _wait_dead(stubborn, grace)
    return len(targets) - len(survivors)


def end_recorded(pid: object, start: object) -> bool:
    """End process ``pid`` and its descendants if it still runs with start time ``start``.

    Both come from a record on the bus, so anything odd in them (a pid reused by another
    process, this process, a missing start time) leaves everything alone. True if something
    was ended.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1 or pid == os.getpid():
        return False
    if not isinstance(start, int | float) or isinstance(start, bool):
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - float(start)) > 0.05:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        family = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return False
    return terminate(family) > 0


def run_tag(bus_dir: Path) -> str:
    """An opaque mark for the processes of one track's attempts: names no path."""
    return hashlib.sha256(str(bus_dir).encode()).hexdigest()[:24]


def reap_orphans(bus_dir: Path) -> list[int]:
    """End every process whose environment says it works for ``bus_dir`` (by path or by
    ``run_tag``); return their pids.

    Call only while holding the track's run lock, before dispatching: then every such
    process is an orphan of a previous conductor.
    """
    target = str(bus_dir)
    tag = run_tag(bus_dir)
    return _end_marked(lambda env: env.get(BUS_ENV) == target or env.get(TAG_ENV) == tag)


def reap_attempt(bus_dir: Path, worker: str) -> list[int]:
    """End every process left by attempt ``worker`` of the track whose bus is ``bus_dir``
    (its environment carries the run's tag and ``WORKER_ENV``); return their pids."""
    return end_tagged(run_tag(bus_dir), worker)


def end_tagged(tag: str, worker: str) -> list[int]:
    """End every process on this machine of attempt ``worker`` of the run tagged ``tag``;
    return their pids."""
    return _end_marked(lambda env: env.get(TAG_ENV) == tag and env.get(WORKER_ENV) == worker)


def _end_marked(marked: Callable[[dict[str, str]], bool]) -> list[int]:
    """``terminate`` every other process whose environment is ``marked``; return their pids."""
    me = os.getpid()
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if marked(proc.environ()):
                found.append(proc)
        except (psutil.Error, OSError):
            continue  # gone, a zombie, or not ours to read
    terminate(found)
    return [p.pid for p in found]
