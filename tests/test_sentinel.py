"""The lock sentinel ends attempt processes that hold conductor's kernel locks."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conductor.contract import TAG_ENV
from conductor.sentinel import LockSentinel, lock_holders

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(600)
"""


def hold(path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def gone(proc: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def test_attempt_holding_a_lock_too_long_is_killed_and_others_are_not(tmp_path: Path) -> None:
    """A holder whose environment carries the run's tag is killed once it held the lock past
    the limit; a holder without the tag (a person's process) is left alone."""
    lock = tmp_path / ".lock"
    lock.write_text("")
    other = tmp_path / "other.lock"
    other.write_text("")
    hostile = hold(lock, {**os.environ, TAG_ENV: "run-tag"})
    person = hold(other, {k: v for k, v in os.environ.items() if k != TAG_ENV})
    try:
        holders = {pid for pid, _ in lock_holders(
            {(os.major(os.stat(p).st_dev), os.minor(os.stat(p).st_dev), os.stat(p).st_ino): str(p)
             for p in (lock, other)}
        )}
        assert {hostile.pid, person.pid} <= holders
        killed: list[tuple[int, str]] = []
        sentinel = LockSentinel(
            [lock, other], "run-tag", hold_limit=5.0, on_kill=lambda pid, p: killed.append((pid, p))
        )
        sentinel.scan(now=100.0)
        assert killed == [], "not before the limit"
        sentinel.scan(now=106.0)
        assert killed == [(hostile.pid, str(lock))]
        assert gone(hostile)
        assert person.poll() is None and psutil.pid_exists(person.pid)
    finally:
        for proc in (hostile, person):
            proc.kill()
            proc.wait()


def test_a_child_that_dropped_the_tag_is_still_an_attempt(tmp_path: Path) -> None:
    """A holder that removed the tag from its own environment is found through its parent."""
    lock = tmp_path / ".lock"
    lock.write_text("")
    script = f"env -u {TAG_ENV} {sys.executable} -c '{HOLD}' {lock}; true"  # sh stays
    parent = subprocess.Popen(
        ["/bin/sh", "-c", script], env={**os.environ, TAG_ENV: "run-tag"},
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "held"
        sentinel = LockSentinel([lock], "run-tag", hold_limit=0.0)
        sentinel.scan(now=1.0)
        assert len(sentinel.killed) == 1
        assert gone(parent) or psutil.Process(sentinel.killed[0][0]).status() == "zombie"
    finally:
        parent.kill()
        parent.wait()


def test_a_lock_passed_to_a_child_is_found_through_the_child(tmp_path: Path) -> None:
    """A marked process that takes the lock, hands the descriptor to a child and exits is
    not the end of it: the child holding the lock is found by its open file and killed."""
    lock = tmp_path / ".lock"
    lock.write_text("")
    handoff = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "if os.fork() == 0:\n"
        "    time.sleep(600)\n"
        "    os._exit(0)\n"
        "print('handed', flush=True)\n"
    )
    taker = subprocess.Popen(
        [sys.executable, "-c", handoff, str(lock)], env={**os.environ, TAG_ENV: "run-tag"},
        stdout=subprocess.PIPE, text=True,
    )
    assert taker.stdout is not None and taker.stdout.readline().strip() == "handed"
    taker.wait()
    sentinel = LockSentinel([lock], "run-tag", hold_limit=0.0)
    try:
        sentinel.scan(now=1.0)
        assert len(sentinel.killed) == 1 and sentinel.killed[0][0] != taker.pid
        child = sentinel.killed[0][0]
        deadline = time.monotonic() + 30
        while psutil.pid_exists(child) and time.monotonic() < deadline:
            time.sleep(0.05)
            with contextlib.suppress(psutil.Error):
                if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                    break
        assert lock_holders(sentinel._keys()) == []
    finally:
        for pid, _ in sentinel.killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
