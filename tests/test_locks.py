"""Run lock and path locks: atomic acquire, safe breaking of dead holders, never two holders.

Faults are real: holders are separate processes killed with SIGKILL, records are half-written
by hand, symlinks are planted, and many processes race for one path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from conductor.errors import LockHeldError, StateError, UserError
from conductor.locks import (
    HOST,
    MAX_NAME,
    LockInfo,
    PathLocks,
    RunLock,
    dead_reason,
    path_from_record_name,
    record_name,
)
from conductor.messages import utcnow
from conductor.paths import StateDir
from conductor.processes import process_alive

Events = list[tuple[str, dict[str, Any]]]

HELPER = r"""
import json, os, random, sys, time
from conductor.errors import LockHeldError
from conductor.locks import PathLocks, RunLock
from conductor.paths import StateDir

args = json.loads(sys.argv[1])
mode = args["mode"]

if mode == "runlock":
    with RunLock(StateDir(__import__("pathlib").Path(args["state"])), args["track"]):
        print("ready", flush=True)
        time.sleep(600)

elif mode == "hold":
    locks = PathLocks(__import__("pathlib").Path(args["dir"]))
    locks.acquire(args["path"], worker=args["worker"], task="t", attempt=1)
    print("ready", flush=True)
    time.sleep(600)

elif mode == "race":
    # Take and release one path over and over; while holding, prove exclusivity with an
    # O_EXCL marker file that only one process at a time can create.
    from pathlib import Path
    locks = PathLocks(Path(args["dir"]))
    marker = args["marker"]
    worker = args["worker"]
    while time.time() < args["start_at"]:
        time.sleep(0.001)
    got = violations = denied = 0
    deadline = time.monotonic() + args["seconds"]
    while got < args["want"] and time.monotonic() < deadline:
        if locks.try_acquire(args["path"], worker=worker, task="race", attempt=1) is None:
            denied += 1
            continue
        got += 1
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            violations += 1
            fd = None
        holder = locks.holder(args["path"])
        if holder is None or holder.worker != worker:
            violations += 1
        time.sleep(random.random() * 0.002)
        if fd is not None:
            os.close(fd)
            os.unlink(marker)
        locks.release(args["path"], worker=worker)
    print(json.dumps({"got": got, "violations": violations, "denied": denied}), flush=True)

elif mode == "churn":
    # Take and release a few paths as fast as possible, forever (until killed).
    from pathlib import Path
    locks = PathLocks(Path(args["dir"]))
    worker = args["worker"]
    print("ready", flush=True)
    while True:
        for path in ("a.py", "b.py", "c.py"):
            if locks.try_acquire(path, worker=worker, task="c", attempt=1) is not None:
                locks.release(path, worker=worker)
            locks.acquire(f"{worker}-own.py", worker=worker, task="c", attempt=1)

elif mode == "breakers":
    # Each round: wait for the go file, then race the others to take a dead holder's lock.
    from pathlib import Path
    events = []
    locks = PathLocks(Path(args["dir"]), notify=lambda t, p: events.append([t, p]))
    sync = Path(args["sync"])
    for rnd in range(args["rounds"]):
        while not (sync / f"go-{rnd}").exists():
            time.sleep(0.0005)
        del events[:]
        try:
            info = locks.acquire(args["path"], worker=args["worker"], task="b", attempt=1)
            result = {"got": True, "pid": info.pid}
        except LockHeldError as exc:
            result = {"got": False, "error": str(exc)}
        result["events"] = events[:]
        tmp = sync / f".res-{rnd}-{args['worker']}"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, sync / f"res-{rnd}-{args['worker']}")
"""


@pytest.fixture
def helper(tmp_path: Path) -> Path:
    """The helper script the child processes run."""
    path = tmp_path / "lock_helper.py"
    path.write_text(HELPER)
    return path


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes started by a test; any still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def spawn(helper: Path, procs: list[subprocess.Popen[str]], **args: Any) -> subprocess.Popen[str]:
    """Start the helper in ``args['mode']``; returns the process."""
    proc = subprocess.Popen(
        [sys.executable, str(helper), json.dumps(args)],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    return proc


def wait_ready(proc: subprocess.Popen[str]) -> None:
    """Block until the child prints ``ready``."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"child said {line!r} (exit {proc.poll()})"


def sigkill(proc: subprocess.Popen[str]) -> None:
    """kill -9 the child."""
    os.kill(proc.pid, signal.SIGKILL)


@pytest.fixture
def events() -> Events:
    """Lock notices collected in order."""
    return []


@pytest.fixture
def locks_dir(tmp_path: Path) -> Path:
    """A track's locks directory."""
    return StateDir(tmp_path / "state" / "t1").ensure().locks


@pytest.fixture
def locks(locks_dir: Path, events: Events) -> PathLocks:
    """Path locks that record their notices in ``events``."""
    return PathLocks(locks_dir, notify=lambda t, p: events.append((t, p)))


def plant(directory: Path, path: str, **fields: Any) -> Path:
    """Write a lock record by hand (as another process or host would have)."""
    record: dict[str, Any] = {
        "path": path,
        "worker": "other.1",
        "task": "other",
        "attempt": 1,
        "pid": os.getpid(),
        "host": HOST,
        "pid_start": psutil.Process().create_time(),
        "since": utcnow().isoformat(),
        "lease_expires": None,
    }
    record.update(fields)
    file = directory / record_name(path)
    tmp = directory / ".plant"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, file)
    return file


def types(events: Events) -> list[str]:
    """The notice types, in order."""
    return [t for t, _ in events]


# ----- run lock -----


def test_run_lock_second_process_is_told_who_holds_it(
    tmp_path: Path, helper: Path, children: list[subprocess.Popen[str]]
) -> None:
    """A second conductor on the same track gets LockHeldError naming the holder's pid and host."""
    state = StateDir(tmp_path / "state" / "trk")
    holder = spawn(helper, children, mode="runlock", state=str(state.root), track="trk")
    wait_ready(holder)
    with pytest.raises(LockHeldError) as err, RunLock(state, "trk"):
        pass
    message = str(err.value)
    assert f"pid {holder.pid}" in message
    assert HOST in message
    assert "track 'trk' is already being run" in message
    assert err.value.exit_code == 3
    info = RunLock(state, "trk").holder()
    assert info is not None
    assert info["pid"] == holder.pid
    assert info["track"] == "trk"
    assert "argv" in info and "started_at" in info


def test_run_lock_free_immediately_after_kill_9(
    tmp_path: Path, helper: Path, children: list[subprocess.Popen[str]]
) -> None:
    """kill -9 of the holder frees the run lock at once, despite its run.json left behind."""
    state = StateDir(tmp_path / "state" / "trk")
    holder = spawn(helper, children, mode="runlock", state=str(state.root), track="trk")
    wait_ready(holder)
    sigkill(holder)
    holder.wait()
    assert state.run_info.exists()  # the dead holder's note stays...
    assert RunLock(state, "trk").holder() is None  # ...but does not count
    # RunLock never waits (a held lock raises LockHeldError at once), so taking it here
    # proves the dead holder's lock was free, with no lease to sit out.
    with RunLock(state, "trk") as lock:
        assert lock.held
        info = json.loads(state.run_info.read_text())
        assert info["pid"] == os.getpid()
        assert lock.holder() == info
    assert not state.run_info.exists()


def test_run_lock_in_same_process_and_release(tmp_path: Path) -> None:
    """A second RunLock object is refused while the first holds; after exit it is free."""
    state = StateDir(tmp_path / "state" / "trk")
    with RunLock(state, "trk"), pytest.raises(LockHeldError, match=f"pid {os.getpid()}"):
        RunLock(state, "trk").__enter__()
    with RunLock(state, "trk") as again:
        assert again.held
    assert RunLock(state, "trk").holder() is None


@pytest.mark.parametrize("which", ["run.lock", "run.json"])
def test_run_lock_refuses_symlinks(tmp_path: Path, which: str) -> None:
    """A planted symlink at run.lock or run.json is refused with StateError, target untouched."""
    state = StateDir(tmp_path / "state" / "trk")
    state.root.mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("precious")
    (state.root / which).symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"), RunLock(state, "trk"):
        pass
    assert target.read_text() == "precious"


def test_run_lock_probe_refuses_a_symlink_and_takes_nothing(tmp_path: Path) -> None:
    """``holder()`` refuses a symlinked run.lock, and its probe leaves the lock free to take."""
    state = StateDir(tmp_path / "state" / "trk")
    state.root.mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("precious")
    state.run_lock.symlink_to(target)
    with pytest.raises(StateError, match="symbolic link"):
        RunLock(state, "trk").holder()
    assert target.read_text() == "precious"
    state.run_lock.unlink()
    state.run_lock.touch()
    assert RunLock(state, "trk").holder() is None
    with RunLock(state, "trk") as lock:
        assert lock.held


# ----- path locks: basics -----


def test_acquire_release_and_notices(locks: PathLocks, locks_dir: Path, events: Events) -> None:
    """Acquire writes a readable record and FILE_LOCK; release removes it and sends FILE_UNLOCK."""
    info = locks.acquire("./src//app.py", worker="api.1", task="api", attempt=1)
    assert info.path == "src/app.py"
    assert (info.worker, info.task, info.attempt, info.pid, info.host) == (
        "api.1",
        "api",
        1,
        os.getpid(),
        HOST,
    )
    file = locks_dir / "src%2Fapp.py.json"
    assert json.loads(file.read_text()) == info.to_dict()
    assert locks.holder("src/app.py") == info
    assert locks.list() == [info]
    assert events == [
        (
            "FILE_LOCK",
            {
                "path": "src/app.py",
                "worker": "api.1",
                "task": "api",
                "attempt": 1,
                "pid": os.getpid(),
                "host": HOST,
                "since": info.since.isoformat(),
                "lease_expires": None,
            },
        )
    ]
    assert locks.release("src/app.py", worker="api.1") is True
    assert not file.exists()
    assert locks.holder("src/app.py") is None
    assert types(events) == ["FILE_LOCK", "FILE_UNLOCK"]
    assert events[1][1]["worker"] == "api.1"
    assert locks.release("src/app.py", worker="api.1") is False
    assert [p.name for p in locks_dir.iterdir()] == [".guard"]


def test_reacquire_by_same_worker_is_idempotent(locks: PathLocks, events: Events) -> None:
    """The holder acquiring again gets its own lock back, with no second notice."""
    first = locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    again = locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    assert again == first
    assert types(events) == ["FILE_LOCK"]


def test_conflict_names_the_holder(locks: PathLocks, events: Events) -> None:
    """A live other worker's lock is refused with LockHeldError naming worker, task, pid."""
    locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    with pytest.raises(LockHeldError) as err:
        locks.acquire("a.py", worker="x.2", task="x", attempt=2)
    message = str(err.value)
    assert "'a.py' is locked by worker w.1" in message
    assert "task w" in message and f"pid {os.getpid()}" in message and "since" in message
    assert locks.try_acquire("a.py", worker="x.2", task="x", attempt=2) is None
    assert types(events) == ["FILE_LOCK", "LOCK_DENIED", "LOCK_DENIED"]
    denied = events[1][1]
    assert (denied["path"], denied["worker"], denied["task"], denied["attempt"]) == (
        "a.py",
        "x.2",
        "x",
        2,
    )
    assert denied["holder"]["worker"] == "w.1"
    assert locks.holder("a.py") is not None
    assert locks.holder("a.py").worker == "w.1"  # type: ignore[union-attr]


def test_release_by_non_holder_is_refused(locks: PathLocks) -> None:
    """Only the holder may release: another worker gets UserError and the lock stays."""
    locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    with pytest.raises(UserError, match=r"worker x\.1 cannot unlock a lock held by w\.1"):
        locks.release("a.py", worker="x.1")
    assert locks.holder("a.py") is not None


def test_release_all_and_break_worker(locks: PathLocks, events: Events) -> None:
    """release_all frees one worker's paths only; break_worker breaks a lost worker's locks."""
    for path in ("b.py", "a.py"):
        locks.acquire(path, worker="w.1", task="w", attempt=1)
    locks.acquire("c.py", worker="x.1", task="x", attempt=1)
    locks.acquire("d.py", worker="y.1", task="y", attempt=1)
    assert locks.release_all("w.1") == ["a.py", "b.py"]
    assert [i.path for i in locks.list()] == ["c.py", "d.py"]
    broken = locks.break_worker("x.1", reason="worker lost")
    assert [i.path for i in broken] == ["c.py"]
    assert events[-1][0] == "LOCK_BROKEN"
    assert events[-1][1]["reason"] == "worker lost"
    assert events[-1][1]["holder"]["worker"] == "x.1"
    assert [i.worker for i in locks.list()] == ["y.1"]


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/path", "a/../../b", "nul\x00"])
def test_paths_outside_the_repository_are_refused(locks: PathLocks, bad: str) -> None:
    """Absolute paths, '..' and NUL are user errors, and nothing is written."""
    with pytest.raises(UserError):
        locks.acquire(bad, worker="w.1", task="w", attempt=1)
    assert locks.list() == []


def test_glob_and_long_paths_get_safe_record_names(locks: PathLocks, locks_dir: Path) -> None:
    """Glob patterns and very long paths lock fine, with names of at most 200 characters."""
    long_path = "/".join(["d" * 50] * 12) + "/file.py"
    locks.acquire("src/**/*.py", worker="w.1", task="w", attempt=1)
    locks.acquire(long_path, worker="w.1", task="w", attempt=1)
    names = sorted(p.name for p in locks_dir.iterdir() if not p.name.startswith("."))
    assert all(len(n) <= MAX_NAME for n in names)
    assert "src%2F%2A%2A%2F%2A.py.json" in names
    assert locks.holder(long_path) is not None
    assert sorted(i.path for i in locks.list()) == sorted(["src/**/*.py", long_path])


@given(st.text(min_size=1, max_size=300))
def test_record_names_are_safe_and_reversible(path: str) -> None:
    """Any path maps to a flat, non-hidden name of <= 200 chars that decodes back unless hashed."""
    name = record_name(path)
    assert "/" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert len(name) <= MAX_NAME
    decoded = path_from_record_name(name)
    assert decoded is None or decoded == path
    if len(path) <= 30:
        assert decoded == path


# ----- path locks: liveness and breaking -----


def test_dead_holder_killed_with_sigkill_is_broken_by_next_acquire(
    locks_dir: Path,
    locks: PathLocks,
    events: Events,
    helper: Path,
    children: list[subprocess.Popen[str]],
) -> None:
    """A holder process killed with kill -9 loses its lock to the next acquire, with LOCK_BROKEN."""
    holder = spawn(helper, children, mode="hold", dir=str(locks_dir), path="a.py", worker="h.1")
    wait_ready(holder)
    with pytest.raises(LockHeldError, match=f"pid {holder.pid}"):
        locks.acquire("a.py", worker="n.1", task="n", attempt=1)
    sigkill(holder)
    holder.wait()
    info = locks.acquire("a.py", worker="n.1", task="n", attempt=1)
    assert info.worker == "n.1"
    assert types(events) == ["LOCK_DENIED", "LOCK_BROKEN", "FILE_LOCK"]
    broken = events[1][1]
    assert broken["holder"]["pid"] == holder.pid
    assert broken["worker"] == "h.1"
    assert broken["broken_by"] == "n.1"
    assert f"pid {holder.pid} is gone" in broken["reason"]


def test_zombie_holder_counts_as_dead(
    locks_dir: Path, locks: PathLocks, helper: Path, children: list[subprocess.Popen[str]]
) -> None:
    """A killed holder not yet reaped by its parent (a zombie) is dead: its lock is broken."""
    holder = spawn(helper, children, mode="hold", dir=str(locks_dir), path="a.py", worker="h.1")
    wait_ready(holder)
    sigkill(holder)
    deadline = time.monotonic() + 60
    while psutil.Process(holder.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not process_alive(holder.pid)
    assert locks.acquire("a.py", worker="n.1", task="n", attempt=1).worker == "n.1"


def test_pid_reuse_means_dead(locks: PathLocks, locks_dir: Path, events: Events) -> None:
    """A record whose pid is alive but started at another time (pid reused) is broken."""
    real_start = psutil.Process().create_time()
    plant(locks_dir, "a.py", pid=os.getpid(), pid_start=real_start - 1000)
    assert process_alive(os.getpid(), real_start)
    assert not process_alive(os.getpid(), real_start - 1000)
    info = locks.acquire("a.py", worker="n.1", task="n", attempt=1)
    assert info.worker == "n.1"
    assert "now belongs to another process" in events[0][1]["reason"]


def test_lease_expiry_breaks_and_renew_keeps(
    locks_dir: Path, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lock whose lease lapsed is broken even if its pid lives; its holder acquiring it
    again renews the lease and keeps it. (The lease is long and its end is reached by moving
    the locks' clock, so a slow machine cannot let it lapse early.)"""
    leased = PathLocks(locks_dir, lease_seconds=60, notify=lambda t, p: events.append((t, p)))
    first = leased.acquire("a.py", worker="w.1", task="w", attempt=1)
    assert first.lease_expires is not None
    assert first.lease_expires - first.since <= timedelta(seconds=60.01)
    for _ in range(3):
        time.sleep(0.01)  # the clock moves on between renewals
        leased.acquire("a.py", worker="w.1", task="w", attempt=1)
        with pytest.raises(LockHeldError):
            leased.acquire("a.py", worker="x.1", task="x", attempt=1)
    renewed = leased.holder("a.py")
    assert renewed is not None and renewed.lease_expires is not None
    assert renewed.lease_expires > first.lease_expires
    later = renewed.lease_expires + timedelta(seconds=1)
    monkeypatch.setattr("conductor.locks.utcnow", lambda: later)
    assert dead_reason(renewed) is not None
    taken = leased.acquire("a.py", worker="x.1", task="x", attempt=1)
    assert taken.worker == "x.1"
    broken = [p for t, p in events if t == "LOCK_BROKEN"]
    assert len(broken) == 1 and broken[0]["reason"].startswith("lease expired")


def test_other_host_without_lease_is_never_auto_broken(
    locks: PathLocks, locks_dir: Path, events: Events
) -> None:
    """A holder on another host (no lease) survives acquire and break_dead; --break removes it."""
    plant(locks_dir, "a.py", host="elsewhere.example", pid=1, pid_start=1.0)
    with pytest.raises(LockHeldError, match=r"host elsewhere\.example"):
        locks.acquire("a.py", worker="n.1", task="n", attempt=1)
    assert locks.break_dead() == []
    assert locks.holder("a.py") is not None
    broken = locks.break_lock("a.py", reason="that machine is gone")
    assert broken is not None and broken.host == "elsewhere.example"
    assert events[-1][0] == "LOCK_BROKEN"
    assert events[-1][1]["reason"] == "that machine is gone"
    assert locks.holder("a.py") is None
    assert locks.break_lock("a.py", reason="again") is None


def test_other_host_with_expired_lease_is_broken(locks: PathLocks, locks_dir: Path) -> None:
    """A holder on another host whose lease expired is provably gone and is broken."""
    past = (utcnow() - timedelta(minutes=5)).isoformat()
    plant(locks_dir, "a.py", host="elsewhere.example", lease_expires=past)
    assert [i.path for i in locks.break_dead()] == ["a.py"]


def test_break_dead_breaks_only_the_dead(
    locks: PathLocks, locks_dir: Path, helper: Path, children: list[subprocess.Popen[str]]
) -> None:
    """break_dead (resume) breaks killed holders and garbled records, and keeps live ones."""
    holder = spawn(helper, children, mode="hold", dir=str(locks_dir), path="dead.py", worker="d.1")
    wait_ready(holder)
    sigkill(holder)
    holder.wait()
    locks.acquire("live.py", worker="l.1", task="l", attempt=1)
    (locks_dir / "garbled.py.json").write_text('{"path": "garbled.py", "wor')
    (locks_dir / ".tmp-999-abc").write_text("left by a writer killed mid-write")
    broken = locks.break_dead()
    assert [i.path for i in broken] == ["dead.py"]
    assert [i.path for i in locks.list()] == ["live.py"]
    assert locks.unreadable() == []
    assert not (locks_dir / ".tmp-999-abc").exists()


def test_garbled_record_is_breakable_with_a_warning(
    locks: PathLocks, locks_dir: Path, events: Events
) -> None:
    """A half-written record never crashes: readers skip it, the next acquire breaks it."""
    (locks_dir / "a.py.json").write_text('{"path": "a.py", "worker": "w.1", "ta')
    (locks_dir / "b.py.json").write_text(json.dumps({"path": "b.py", "worker": 3}))
    with capture_logs() as logs:
        assert locks.holder("a.py") is None
        assert locks.list() == []
    assert [entry["log_level"] for entry in logs] == ["warning"] * 3
    assert {u.path for u in locks.unreadable()} == {"a.py", "b.py"}
    with capture_logs() as logs:
        info = locks.acquire("a.py", worker="n.1", task="n", attempt=1)
    assert info.worker == "n.1"
    assert any(entry["event"] == "breaking unreadable lock record" for entry in logs)
    assert events[0][0] == "LOCK_BROKEN"
    assert events[0][1]["holder"] is None
    assert events[0][1]["path"] == "a.py"
    assert events[0][1]["reason"].startswith("unreadable record")
    assert locks.release("b.py", worker="w.1") is False
    assert locks.break_lock("b.py", reason="by hand") is None
    assert locks.unreadable() == []


def test_symlinked_locks_dir_is_refused(tmp_path: Path) -> None:
    """A locks directory that is a symlink is refused; its target is not written to."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / "locks"
    link.symlink_to(target)
    locks = PathLocks(link)
    with pytest.raises(StateError, match="symbolic link"):
        locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    with pytest.raises(StateError, match="symbolic link"):
        locks.list()
    assert list(target.iterdir()) == []


def test_symlink_at_a_record_path_is_refused(
    locks: PathLocks, locks_dir: Path, tmp_path: Path
) -> None:
    """A symlink planted where a record goes is refused by every operation; its target survives."""
    target = tmp_path / "victim"
    target.write_text("precious")
    (locks_dir / record_name("a.py")).symlink_to(target)
    for call in (
        lambda: locks.acquire("a.py", worker="w.1", task="w", attempt=1),
        lambda: locks.release("a.py", worker="w.1"),
        lambda: locks.break_lock("a.py", reason="x"),
        lambda: locks.holder("a.py"),
        locks.list,
        locks.break_dead,
    ):
        with pytest.raises(StateError, match="symbolic link"):
            call()
    assert target.read_text() == "precious"


def test_symlink_at_guard_is_refused(locks: PathLocks, locks_dir: Path, tmp_path: Path) -> None:
    """A symlink planted at locks/.guard is refused."""
    (locks_dir / ".guard").unlink(missing_ok=True)
    (locks_dir / ".guard").symlink_to(tmp_path / "victim")
    with pytest.raises(StateError, match="symbolic link"):
        locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    assert not (tmp_path / "victim").exists()


def test_failed_notice_rolls_back_the_acquire(locks_dir: Path) -> None:
    """If the FILE_LOCK notice cannot be sent, the lock is not left taken."""

    def broken_bus(mtype: str, payload: dict[str, Any]) -> None:
        raise OSError("disk full")

    locks = PathLocks(locks_dir, notify=broken_bus)
    with pytest.raises(OSError, match="disk full"):
        locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    assert locks.list() == []


def test_lockinfo_round_trip() -> None:
    """LockInfo survives to_dict/from_dict; malformed records raise ValueError."""
    info = LockInfo(
        path="a.py",
        worker="w.1",
        task="w",
        attempt=1,
        pid=10,
        host="h",
        pid_start=1.5,
        since=utcnow(),
        lease_expires=utcnow() + timedelta(seconds=5),
    )
    assert LockInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info
    for bad in ([], {"path": "a"}, {**info.to_dict(), "since": "2020-01-01T00:00:00"}):
        with pytest.raises(ValueError):
            LockInfo.from_dict(bad)


# ----- never two holders -----


@pytest.mark.slow
def test_never_two_holders_under_contention(
    locks_dir: Path, helper: Path, children: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """8 processes take and release one path 60 times each; an O_EXCL marker never collides."""
    n, want = 8, 60
    start_at = time.time() + 5.0  # all eight have started by then, even on a loaded machine
    marker = tmp_path / "held.marker"
    procs = [
        spawn(
            helper,
            children,
            mode="race",
            dir=str(locks_dir),
            path="shared.py",
            worker=f"r{i}.1",
            marker=str(marker),
            want=want,
            seconds=300,
            start_at=start_at,
        )
        for i in range(n)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=400)
        assert proc.returncode == 0
        results.append(json.loads(out))
    assert sum(r["violations"] for r in results) == 0
    assert [r["got"] for r in results] == [want] * n
    assert sum(r["denied"] for r in results) > 0  # they really contended
    assert PathLocks(locks_dir).list() == []


@pytest.mark.slow
def test_racing_breakers_of_a_dead_lock_leave_exactly_one_holder(
    locks_dir: Path, helper: Path, children: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    """8 processes race to take a dead holder's lock, 30 rounds: one winner, one LOCK_BROKEN."""
    n, rounds = 8, 30
    sync = tmp_path / "sync"
    sync.mkdir()
    workers = [f"b{i}.1" for i in range(n)]
    procs = [
        spawn(
            helper,
            children,
            mode="breakers",
            dir=str(locks_dir),
            path="shared.py",
            worker=w,
            sync=str(sync),
            rounds=rounds,
        )
        for w in workers
    ]
    real_start = psutil.Process().create_time()
    for rnd in range(rounds):
        # The dead holder: a record of this (live) pid but another start time, i.e. a reused pid.
        plant(locks_dir, "shared.py", worker="dead.1", pid_start=real_start - 1000 - rnd)
        (sync / f"go-{rnd}").touch()
        deadline = time.monotonic() + 30
        while len(list(sync.glob(f"res-{rnd}-*"))) < n:
            assert time.monotonic() < deadline, f"round {rnd} did not finish"
            assert all(p.poll() is None for p in procs)
            time.sleep(0.005)
        results = [json.loads((sync / f"res-{rnd}-{w}").read_text()) for w in workers]
        winners = [r for r in results if r["got"]]
        assert len(winners) == 1, f"round {rnd}: {len(winners)} holders"
        breaks = [p for r in results for t, p in r["events"] if t == "LOCK_BROKEN"]
        assert len(breaks) == 1
        assert breaks[0]["holder"]["worker"] == "dead.1"
        locks_now = PathLocks(locks_dir).list()
        assert len(locks_now) == 1 and locks_now[0].pid == winners[0]["pid"]
        assert all("is locked by worker" in r["error"] for r in results if not r["got"])
    for proc in procs:
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_kill_9_mid_operation_never_tears_a_record_or_wedges_the_guard(
    locks_dir: Path, helper: Path, children: list[subprocess.Popen[str]]
) -> None:
    """Lockers killed with -9 at random moments leave only whole records and a free guard."""
    locks = PathLocks(locks_dir, guard_timeout=30.0)
    torn = 0
    for rnd in range(6):
        procs = [
            spawn(helper, children, mode="churn", dir=str(locks_dir), worker=f"c{rnd}x{i}.1")
            for i in range(4)
        ]
        for proc in procs:
            wait_ready(proc)
        deadline = time.monotonic() + 0.1 + 0.05 * rnd
        scans = 0
        while time.monotonic() < deadline or scans < 10:  # at least 10 scans, however slow
            _, bad = locks.scan()  # readers take no lock and must never see a torn record
            torn += len(bad)
            scans += 1
        for proc in procs:
            sigkill(proc)
        for proc in procs:
            proc.wait()
        locks.break_dead()  # resume: the guard is free and every dead holder's lock goes
        assert locks.list() == []
        assert [p.name for p in locks_dir.iterdir()] == [".guard"]
    assert torn == 0
    assert locks.acquire("a.py", worker="after.1", task="a", attempt=1).worker == "after.1"


def test_never_two_holders_among_threads(locks_dir: Path) -> None:
    """Threads sharing one PathLocks (as worker tools do) never hold one path together."""
    import threading

    locks = PathLocks(locks_dir)
    holding: list[str] = []
    violations: list[str] = []
    counts = dict.fromkeys(range(6), 0)
    mutex = threading.Lock()

    def racer(i: int) -> None:
        worker = f"t{i}.1"
        while counts[i] < 20:
            if locks.try_acquire("shared.py", worker=worker, task="t", attempt=1) is None:
                continue
            with mutex:
                if holding:
                    violations.append(f"{worker} with {holding}")
                holding.append(worker)
            time.sleep(0.0005)
            with mutex:
                holding.remove(worker)
            assert locks.release("shared.py", worker=worker)
            counts[i] += 1

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert violations == []
    assert sum(counts.values()) == 120


def test_bus_notifier_posts_lock_notices_about_their_worker(tmp_path: Path) -> None:
    """Lock notices go on the bus as messages about the task, worker and attempt they name;
    liveness says this process's lock is alive."""
    from conductor.bus import Bus
    from conductor.locks import bus_notifier, liveness

    with Bus(tmp_path / "bus", "trk") as bus:
        locks = PathLocks(tmp_path / "locks", notify=bus_notifier(bus))
        info = locks.acquire("src/a.py", worker="api.2", task="api", attempt=2)
        assert liveness(info) == (True, None)
        locks.release("src/a.py", worker="api.2")
        posted = [(m.type, m.task, m.worker, m.attempt, m.payload["path"]) for m in bus.iter_all()]
    assert posted == [
        ("FILE_LOCK", "api", "api.2", 2, "src/a.py"),
        ("FILE_UNLOCK", "api", "api.2", 2, "src/a.py"),
    ]
