"""Processes: liveness by pid and start time, ending a tree, reaping a dead run's orphans."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from conductor.contract import BUS_ENV, TAG_ENV, WORKER_ENV
from conductor.processes import (
    descendants,
    end_recorded,
    process_alive,
    process_start_time,
    reap_attempt,
    reap_orphans,
    run_tag,
    terminate,
)


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_end_recorded_kills_the_recorded_process() -> None:
    """A live process with the recorded start time is ended (with its children)."""
    proc = _sleeper()
    try:
        start = psutil.Process(proc.pid).create_time()
        assert end_recorded(proc.pid, start)
        assert proc.wait(timeout=10) is not None
    finally:
        proc.kill()
        proc.wait()


def test_end_recorded_refuses_a_reused_pid() -> None:
    """A pid whose start time differs from the record (reused) is left alone."""
    proc = _sleeper()
    try:
        start = psutil.Process(proc.pid).create_time()
        assert not end_recorded(proc.pid, start - 100)
        assert not end_recorded(proc.pid, None)
        assert not end_recorded(os.getpid(), psutil.Process().create_time())
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_end_recorded_of_a_dead_process_is_false() -> None:
    """A process that already ended is nothing to reap."""
    proc = _sleeper()
    start = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    assert not end_recorded(proc.pid, start)


def test_process_alive_and_start_time() -> None:
    """This process is alive with its own start time, not with another; a reaped one is dead."""
    start = process_start_time(os.getpid())
    assert start is not None
    assert process_alive(os.getpid()) and process_alive(os.getpid(), start)
    assert not process_alive(os.getpid(), start - 1000)
    proc = _sleeper()
    proc.kill()
    proc.wait()
    assert not process_alive(proc.pid)
    assert process_start_time(proc.pid) is None
    assert not process_alive(0) and not process_alive(-1)


def test_terminate_kills_what_ignores_sigterm() -> None:
    """A process that ignores SIGTERM is SIGKILLed after the grace; the count says it ended."""
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print(1, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline()  # the handler is installed
        assert terminate([psutil.Process(proc.pid)], grace=0.2) == 1
        assert proc.wait(timeout=10) == -9
    finally:
        proc.kill()
        proc.wait()


def test_descendants_lists_grandchildren() -> None:
    """descendants() reaches a grandchild; a gone pid has none."""
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(1, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline()
        below = descendants(proc.pid)
        assert len(below) == 1
        terminate([psutil.Process(proc.pid), *below])
        assert proc.wait(timeout=10) is not None
        assert descendants(proc.pid) == []
    finally:
        proc.kill()
        proc.wait()


def _marked(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env={**os.environ, **env}
    )


def _wait_environ(proc: subprocess.Popen[bytes], key: str) -> None:
    """Wait until the child's environment can be read (it has exec'ed)."""
    deadline = time.monotonic() + 30
    while key not in psutil.Process(proc.pid).environ():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_reap_orphans_ends_processes_marked_with_the_bus(tmp_path: Path) -> None:
    """Processes naming the bus, or carrying its tag, are ended; others are left alone."""
    bus = tmp_path / "state" / "bus"
    by_path = _marked({BUS_ENV: str(bus)})
    by_tag = _marked({TAG_ENV: run_tag(bus)})
    other = _marked({BUS_ENV: str(tmp_path / "other" / "bus")})
    try:
        for proc in (by_path, by_tag, other):
            _wait_environ(proc, BUS_ENV if proc is not by_tag else TAG_ENV)
        assert sorted(reap_orphans(bus)) == sorted([by_path.pid, by_tag.pid])
        assert by_path.wait(timeout=10) is not None and by_tag.wait(timeout=10) is not None
        assert other.poll() is None
    finally:
        for proc in (by_path, by_tag, other):
            proc.kill()
            proc.wait()


def test_reap_attempt_ends_only_that_attempt(tmp_path: Path) -> None:
    """reap_attempt ends the tagged processes of one worker, not another worker's."""
    bus = tmp_path / "bus"
    mine = _marked({TAG_ENV: run_tag(bus), WORKER_ENV: "build.1"})
    theirs = _marked({TAG_ENV: run_tag(bus), WORKER_ENV: "test.1"})
    try:
        for proc in (mine, theirs):
            _wait_environ(proc, WORKER_ENV)
        assert reap_attempt(bus, "build.1") == [mine.pid]
        assert mine.wait(timeout=10) is not None
        assert theirs.poll() is None
    finally:
        for proc in (mine, theirs):
            proc.kill()
            proc.wait()
