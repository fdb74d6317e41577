"""The run lock (one conductor per track) and path locks (one worker per repository path).

**Run lock.** ``run.lock`` in the track's state directory is a kernel ``flock`` (filelock's
``FileLock``) taken without waiting. The kernel drops it when its holder dies, even by
``kill -9``, so a crashed conductor never blocks a resume. ``run.json`` beside it says who holds
it (pid, host, process start time, start of the run, argv) so a second ``conductor run`` can say
whom to wait for.

**Path locks.** ``locks/`` holds one JSON record per locked path (or glob pattern), named by a
percent-encoding of the path (``src%2Fapp.py.json``; long paths end in ``~`` and a hash)::

    {"path": "src/app.py", "worker": "api.1", "task": "api", "attempt": 1, "pid": 4242,
     "host": "build-3", "pid_start": 1767225600.12, "since": "2026-...+00:00",
     "lease_expires": null}

Every change (acquire, release, break) happens while holding the kernel lock
``locks/.guard``, so checking a record and acting on it is one atomic step: two processes can
never both take a free path, and two breakers of a dead holder's lock can never both win.
Records are written aside and linked (or renamed) into place, so a reader never sees a torn
record; readers (``holder``, ``list``) take no lock. Records are not fsynced: after a power loss
every holder on this host is dead anyway, and a lost record only frees a dead holder's path.

**Liveness.** A holder is provably dead when its lease has expired, or when it runs on this host
and its pid is gone, is a zombie, or now belongs to another process (its start time differs from
``pid_start``). A holder on another host without a lease is never broken automatically; a
person can break it (``conductor locks TRACK --break PATH``). A record that cannot be parsed
(half-written by hand) is logged and treated as breakable. Workers run inside the conductor
process, so a record's pid is the conductor's.

Each acquire, release, break and denial is reported through ``notify(type, payload)`` (the
scheduler posts it on the bus): ``FILE_LOCK``, ``FILE_UNLOCK``, ``LOCK_BROKEN``, ``LOCK_DENIED``.
Notices are sent while the guard is held, so their order on the bus is the order of the changes.

Path locks do not know about patterns: a lock on ``src/*.py`` and one on ``src/app.py`` are two
different records. Keeping overlapping file sets apart is the scheduler's job.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import string
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from conductor.atomic import TMP_PREFIX, write_atomic
from conductor.errors import LockHeldError, StateError, UserError
from conductor.logs import get_logger
from conductor.messages import MessageType, utcnow
from conductor.paths import (
    StateDir,
    check_name,
    check_repo_path,
    ensure_dir,
    open_state_file,
    refuse_symlink,
)

if TYPE_CHECKING:
    import filelock  # imported where a lock is taken: listing locks takes none

    from conductor.bus import Bus

log = get_logger(__name__)

NotifyFn = Callable[[str, dict[str, Any]], None]
"""Receives every lock event: a ``MessageType`` value and a JSON-ready payload."""

HOST = socket.gethostname()
"""This machine's host name, as written in lock records."""

GUARD_NAME = ".guard"
"""The kernel lock serialising every change in a locks directory."""

MAX_NAME = 200
"""Longest record file name, ``.json`` included."""

MAX_RECORD_BYTES = 64 * 1024
"""A record larger than this is treated as unreadable."""

_SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "-_.,+=@")
_SUFFIX = ".json"


@dataclasses.dataclass(frozen=True)
class LockInfo:
    """Who holds the lock on one path."""

    path: str
    """The locked repository path or glob pattern, normalised."""
    worker: str
    """The worker (one attempt at one task) holding it."""
    task: str
    """The task of that worker."""
    attempt: int
    """The attempt number of that worker."""
    pid: int
    """The process whose life the lock follows (the conductor running the worker)."""
    host: str
    """The host that process runs on."""
    pid_start: float | None
    """That process's start time (epoch seconds), to detect pid reuse; None if unknown."""
    since: datetime
    """When the lock was taken, UTC."""
    lease_expires: datetime | None
    """When the lock lapses unless its holder acquires it again, UTC; None for no lease."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record."""
        return {
            "path": self.path,
            "worker": self.worker,
            "task": self.task,
            "attempt": self.attempt,
            "pid": self.pid,
            "host": self.host,
            "pid_start": self.pid_start,
            "since": self.since.isoformat(),
            "lease_expires": self.lease_expires.isoformat() if self.lease_expires else None,
        }

    @classmethod
    def from_dict(cls, data: Any) -> LockInfo:
        """Parse a record; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("record is not a JSON object")
        try:
            path, worker, task = data["path"], data["worker"], data["task"]
            attempt, pid, host = data["attempt"], data["pid"], data["host"]
            pid_start, since = data.get("pid_start"), _parse_time(data["since"])
            lease = data.get("lease_expires")
        except KeyError as exc:
            raise ValueError(f"record lacks field {exc}") from exc
        for name, value in (("path", path), ("worker", worker), ("task", task), ("host", host)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        for name, value in (("attempt", attempt), ("pid", pid)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer")
        if pid_start is not None and (
            not isinstance(pid_start, int | float) or isinstance(pid_start, bool)
        ):
            raise ValueError("pid_start must be a number or null")
        return cls(
            path=path,
            worker=worker,
            task=task,
            attempt=attempt,
            pid=pid,
            host=host,
            pid_start=float(pid_start) if pid_start is not None else None,
            since=since,
            lease_expires=_parse_time(lease) if lease is not None else None,
        )

    def describe(self) -> str:
        """One line for people: ``worker W (task T, attempt A, pid P on host H since S)``."""
        return (
            f"worker {self.worker} (task {self.task}, attempt {self.attempt}, pid {self.pid} "
            f"on host {self.host} since {self.since.isoformat(timespec='seconds')})"
        )


@dataclasses.dataclass(frozen=True)
class UnreadableRecord:
    """A file in the locks directory that is not a valid record (half-written, edited by hand)."""

    file: Path
    """The record file."""
    path: str | None
    """The locked path, decoded from the file name; None when the name is hashed."""
    error: str
    """What is wrong with it."""


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("time must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no timezone")
    return parsed


def dead_reason(info: LockInfo, *, now: datetime | None = None) -> str | None:
    """Why the holder of ``info`` is provably dead, or None if it may be alive."""
    from conductor.processes import process_alive  # psutil: loaded only to check a holder

    now = now or utcnow()
    if info.lease_expires is not None and info.lease_expires <= now:
        return f"lease expired at {info.lease_expires.isoformat(timespec='seconds')}"
    if info.host != HOST:
        return None
    if not process_alive(info.pid):
        return f"holder pid {info.pid} is gone"
    if info.pid_start is not None and not process_alive(info.pid, info.pid_start):
        return f"holder pid {info.pid} now belongs to another process"
    return None


def liveness(info: LockInfo, *, now: datetime | None = None) -> tuple[bool | None, str | None]:
    """``(alive, why dead)`` of the holder of ``info``; alive is None when it cannot be told
    (a holder on another host, without a lease)."""
    reason = dead_reason(info, now=now)
    if reason is not None:
        return False, reason
    if info.host == HOST or info.lease_expires is not None:
        return True, None
    return None, None


def bus_notifier(bus: Bus) -> NotifyFn:
    """A ``NotifyFn`` posting each lock notice on ``bus``, about the task, worker and attempt
    its payload names."""

    def notify(mtype: str, payload: dict[str, Any]) -> None:
        task, worker, attempt = payload.get("task"), payload.get("worker"), payload.get("attempt")
        bus.post(
            mtype,
            task=task if isinstance(task, str) else None,
            worker=worker if isinstance(worker, str) else None,
            attempt=attempt if isinstance(attempt, int) else None,
            payload=payload,
        )

    return notify


def record_name(path: str) -> str:
    """The record file name of a normalised path: percent-encoded, hashed if long."""
    parts: list[str] = []
    for index, ch in enumerate(path):
        if ch in _SAFE_CHARS and not (index == 0 and ch == "."):
            parts.append(ch)
        else:
            parts.extend(f"%{byte:02X}" for byte in ch.encode("utf-8"))
    name = "".join(parts)
    room = MAX_NAME - len(_SUFFIX)
    if len(name) > room:
        digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]
        name = name[: room - len(digest) - 1] + "~" + digest
    return name + _SUFFIX


def path_from_record_name(name: str) -> str | None:
    """The path a record file name encodes, or None for hashed or foreign names."""
    if not name.endswith(_SUFFIX) or "~" in name or name.startswith("."):
        return None
    return unquote(name[: -len(_SUFFIX)], errors="strict")


class RunLock:
    """The one-conductor-per-track lock: ``with RunLock(state, track_id): ...``."""

    def __init__(self, state: StateDir, track_id: str) -> None:
        self.state = state
        self.track_id = track_id
        self._lock: filelock.FileLock | None = None

    def __enter__(self) -> RunLock:
        import filelock

        ensure_dir(self.state.root)
        refuse_symlink(self.state.run_lock)
        refuse_symlink(self.state.run_info)
        lock = filelock.FileLock(
            str(self.state.run_lock),
            timeout=0,
            blocking=False,
            mode=0o600,
            fallback_to_soft=False,
        )
        try:
            lock.acquire()
        except filelock.Timeout:
            raise LockHeldError(self._held_message()) from None
        except OSError as exc:
            raise StateError(f"cannot take the run lock: {exc}", path=self.state.run_lock) from exc
        try:
            self._write_info()
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.state.run_info)
        finally:
            lock.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the run lock."""
        return self._lock is not None

    def holder(self) -> dict[str, Any] | None:
        """What ``run.json`` says if anyone holds the run lock (``{}`` if unsaid), else None.

        The probe is a shared ``flock`` on ``run.lock``, which the holder's ``FileLock`` (an
        exclusive ``flock``) refuses; probes never refuse each other, and filelock is not loaded.
        """
        if self._lock is not None:
            return _read_json(self.state.run_info) or {}
        try:
            fd = open_state_file(self.state.run_lock, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise StateError(
                    f"cannot probe the run lock: {exc}", path=self.state.run_lock
                ) from exc
            return self._current_info()
        finally:
            os.close(fd)  # releases the probe's flock
        return None

    def _current_info(self, wait: float = 1.0) -> dict[str, Any]:
        """``run.json`` of the holder; waits briefly while it is missing or left by a dead run."""
        deadline = time.monotonic() + wait
        while True:
            info = _read_json(self.state.run_info)
            if info is not None and _info_alive(info):
                return info
            if time.monotonic() >= deadline:
                return info or {}
            time.sleep(0.05)

    def _held_message(self) -> str:
        info = self._current_info()
        who = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
        if not info:
            who = "another process (it has not written run.json yet)"
        since = f" since {info['started_at']}" if info.get("started_at") else ""
        return (
            f"track '{self.track_id}' is already being run by {who}{since}; wait for it or stop it"
        )

    def _write_info(self) -> None:
        from conductor.processes import process_start_time

        pid = os.getpid()
        info = {
            "track": self.track_id,
            "pid": pid,
            "host": HOST,
            "pid_start": process_start_time(pid),
            "started_at": utcnow().isoformat(),
            "argv": list(sys.argv),
        }
        write_atomic(self.state.run_info, json.dumps(info, indent=2))


def _info_alive(info: dict[str, Any]) -> bool:
    pid, host, start = info.get("pid"), info.get("host"), info.get("pid_start")
    if host != HOST or not isinstance(pid, int):
        return True
    from conductor.processes import process_alive

    return process_alive(pid, start if isinstance(start, int | float) else None)


def _read_json(file: Path) -> dict[str, Any] | None:
    """A small JSON object file, or None if missing or unreadable."""
    try:
        raw = _read_regular(file)
    except FileNotFoundError:
        return None
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _read_regular(file: Path) -> bytes | None:
    """Bytes of ``file`` without following a symlink; None if larger than a record may be.

    Raises ``FileNotFoundError`` if it is missing and ``StateError`` if it is a symlink or not a
    regular file.
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"refusing to use {file}: it is a symbolic link", path=file) from exc
        raise StateError(f"cannot read {file}: {exc.strerror}", path=file) from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise StateError(f"refusing to use {file}: it is not a regular file", path=file)
        data = fh.read(MAX_RECORD_BYTES + 1)
    return data if len(data) <= MAX_RECORD_BYTES else None


class PathLocks:
    """The path locks of one track, in ``directory`` (``StateDir.locks``)."""

    def __init__(
        self,
        directory: Path,
        *,
        notify: NotifyFn | None = None,
        lease_seconds: float | None = None,
        owner_pid: int | None = None,
        guard_timeout: float = 10.0,
    ) -> None:
        if lease_seconds is not None and lease_seconds <= 0:
            raise UserError(f"lease_seconds must be positive, not {lease_seconds}")
        self.directory = directory
        self.lease_seconds = lease_seconds
        self.owner_pid = owner_pid if owner_pid is not None else os.getpid()
        self.guard_timeout = guard_timeout
        self._notify = notify
        self._owner_start: float | None = None
        self._guard: filelock.FileLock | None = None
        self._guard_pid = 0

    # ----- queries (no guard: records are published whole) -----

    def holder(self, path: str) -> LockInfo | None:
        """Who holds ``path``, or None (also for an unreadable record, which is logged)."""
        path = check_repo_path(path, "lock path")
        self._check_dir()
        current = self._read(self._record(path))
        if isinstance(current, UnreadableRecord):
            log.warning("unreadable lock record", file=str(current.file), error=current.error)
            return None
        return current if current is not None and current.path == path else None

    def list(self) -> list[LockInfo]:
        """Every readable lock, sorted by path; unreadable records are logged and skipped."""
        infos: list[LockInfo] = []
        for current in self._scan():
            if isinstance(current, UnreadableRecord):
                log.warning("unreadable lock record", file=str(current.file), error=current.error)
            else:
                infos.append(current)
        return sorted(infos, key=lambda info: info.path)

    def scan(self) -> tuple[builtins.list[LockInfo], builtins.list[UnreadableRecord]]:
        """Readable locks (sorted by path) and unreadable records, without logging."""
        found = [current for _, current in self._scan_files()]
        infos = [c for c in found if isinstance(c, LockInfo)]
        bad = [c for c in found if isinstance(c, UnreadableRecord)]
        return sorted(infos, key=lambda info: info.path), bad

    def unreadable(self) -> builtins.list[UnreadableRecord]:
        """Records that cannot be parsed; acquire and ``break_dead`` break them."""
        return [rec for rec in self._scan() if isinstance(rec, UnreadableRecord)]

    # ----- changes (all under the guard) -----

    def acquire(self, path: str, *, worker: str, task: str, attempt: int) -> LockInfo:
        """Lock ``path`` for ``worker``; raises ``LockHeldError`` naming a live other holder.

        A dead holder's lock (or an unreadable record) is broken first, with ``LOCK_BROKEN``.
        Acquiring a path the same worker already holds returns its lock (lease renewed) and
        notifies nothing. A denial notifies ``LOCK_DENIED``.
        """
        info, holder = self._acquire(path, worker=worker, task=task, attempt=attempt)
        if info is None:
            assert holder is not None
            raise LockHeldError(f"'{holder.path}' is locked by {holder.describe()}")
        return info

    def try_acquire(self, path: str, *, worker: str, task: str, attempt: int) -> LockInfo | None:
        """Like ``acquire``, but a live other holder returns None (still notifies LOCK_DENIED)."""
        info, _ = self._acquire(path, worker=worker, task=task, attempt=attempt)
        return info

    def release(self, path: str, *, worker: str) -> bool:
        """Unlock ``path`` held by ``worker``; False if it was not locked.

        Raises ``UserError`` if another worker holds it: only the holder may release.
        """
        path = check_repo_path(path, "lock path")
        if not self._dir_exists():
            return False
        with self._guarded():
            file = self._record(path)
            current = self._read(file)
            if current is None:
                return False
            if isinstance(current, UnreadableRecord):
                log.warning(
                    "cannot release an unreadable lock record",
                    file=str(file),
                    error=current.error,
                    worker=worker,
                )
                return False
            if current.worker != worker:
                raise UserError(
                    f"worker {worker} cannot unlock a lock held by {current.worker} "
                    f"on '{current.path}'"
                )
            os.unlink(file)
            self._send(MessageType.FILE_UNLOCK, _payload(current))
            return True

    def release_all(self, worker: str) -> builtins.list[str]:
        """Unlock every path ``worker`` holds; returns those paths."""
        if not self._dir_exists():
            return []
        released: list[str] = []
        with self._guarded():
            for file, current in self._scan_files():
                if isinstance(current, LockInfo) and current.worker == worker:
                    os.unlink(file)
                    self._send(MessageType.FILE_UNLOCK, _payload(current))
                    released.append(current.path)
        return sorted(released)

    def break_lock(self, path: str, *, reason: str) -> LockInfo | None:
        """Break the lock on ``path`` whoever holds it (a person's decision); None if unlocked.

        An unreadable record at ``path`` is removed too (and None returned).
        """
        path = check_repo_path(path, "lock path")
        if not self._dir_exists():
            return None
        with self._guarded():
            file = self._record(path)
            current = self._read(file)
            if current is None:
                return None
            self._break(file, current, reason=reason)
            return current if isinstance(current, LockInfo) else None

    def break_dead(self) -> builtins.list[LockInfo]:
        """Break every lock whose holder is provably dead, and every unreadable record."""
        if not self._dir_exists():
            return []
        broken: list[LockInfo] = []
        with self._guarded():
            self._remove_stale_temporaries()
            now = utcnow()
            for file, current in self._scan_files():
                if isinstance(current, UnreadableRecord):
                    self._break(file, current, reason=f"unreadable record: {current.error}")
                    continue
                reason = dead_reason(current, now=now)
                if reason is not None:
                    self._break(file, current, reason=reason)
                    broken.append(current)
        return sorted(broken, key=lambda info: info.path)

    def break_worker(self, worker: str, *, reason: str) -> builtins.list[LockInfo]:
        """Break every lock held by ``worker`` (a lost worker, on resume)."""
        if not self._dir_exists():
            return []
        broken: list[LockInfo] = []
        with self._guarded():
            for file, current in self._scan_files():
                if isinstance(current, LockInfo) and current.worker == worker:
                    self._break(file, current, reason=reason)
                    broken.append(current)
        return sorted(broken, key=lambda info: info.path)

    # ----- internals -----

    def _acquire(
        self, path: str, *, worker: str, task: str, attempt: int
    ) -> tuple[LockInfo | None, LockInfo | None]:
        """``(new lock, None)`` on success, ``(None, holder)`` when a live other worker holds it."""
        path = check_repo_path(path, "lock path")
        check_name(worker, "worker id")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
            raise UserError(f"attempt must be a non-negative integer, not {attempt!r}")
        with self._guarded():
            file = self._record(path)
            current = self._read(file)
            if isinstance(current, UnreadableRecord):
                log.warning("breaking unreadable lock record", file=str(file), error=current.error)
                self._break(file, current, reason=f"unreadable record: {current.error}", by=worker)
            elif current is not None:
                if current.path != path:
                    raise StateError(
                        f"lock record {file.name} holds '{current.path}', not '{path}'", path=file
                    )
                reason = dead_reason(current)
                if reason is None and current.worker == worker:
                    return self._reacquire(file, current), None
                if reason is None:
                    self._send(
                        MessageType.LOCK_DENIED,
                        {
                            "path": path,
                            "worker": worker,
                            "task": task,
                            "attempt": attempt,
                            "holder": current.to_dict(),
                        },
                    )
                    return None, current
                self._break(file, current, reason=reason, by=worker)
            info = LockInfo(
                path=path,
                worker=worker,
                task=task,
                attempt=attempt,
                pid=self.owner_pid,
                host=HOST,
                pid_start=self._owner_start_time(),
                since=utcnow(),
                lease_expires=self._lease_end(),
            )
            try:
                write_atomic(file, _dump(info), replace=False)
            except FileExistsError as exc:
                raise StateError(
                    f"lock record {file} appeared while the guard was held: something writes "
                    "lock records without taking locks/.guard",
                    path=file,
                ) from exc
            try:
                self._send(MessageType.FILE_LOCK, _payload(info))
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file)
                raise
            return info, None

    def _reacquire(self, file: Path, current: LockInfo) -> LockInfo:
        if self.lease_seconds is None:
            return current
        renewed = dataclasses.replace(current, lease_expires=self._lease_end())
        write_atomic(file, _dump(renewed))
        return renewed

    def _break(
        self,
        file: Path,
        current: LockInfo | UnreadableRecord,
        *,
        reason: str,
        by: str | None = None,
    ) -> None:
        os.unlink(file)
        if isinstance(current, LockInfo):
            payload = _payload(current)
            payload["holder"] = current.to_dict()
        else:
            payload = {
                "path": current.path,
                "worker": None,
                "task": None,
                "attempt": None,
                "holder": None,
                "file": file.name,
            }
        payload["reason"] = reason
        payload["broken_by"] = by
        log.info("lock broken", path=payload["path"], holder=payload["worker"], reason=reason)
        self._send(MessageType.LOCK_BROKEN, payload)

    def _send(self, mtype: MessageType, payload: dict[str, Any]) -> None:
        if self._notify is not None:
            self._notify(mtype.value, payload)

    def _lease_end(self) -> datetime | None:
        if self.lease_seconds is None:
            return None
        return utcnow() + timedelta(seconds=self.lease_seconds)

    def _owner_start_time(self) -> float | None:
        if self._owner_start is None:
            from conductor.processes import process_alive, process_start_time

            start = process_start_time(self.owner_pid)
            if start is None and not process_alive(self.owner_pid):
                raise UserError(f"lock owner pid {self.owner_pid} is not a running process")
            self._owner_start = start
        return self._owner_start

    def _record(self, path: str) -> Path:
        file = self.directory / record_name(path)
        refuse_symlink(file)
        return file

    def _check_dir(self) -> None:
        refuse_symlink(self.directory)

    def _dir_exists(self) -> bool:
        self._check_dir()
        return self.directory.is_dir()

    def _read(self, file: Path) -> LockInfo | UnreadableRecord | None:
        try:
            raw = _read_regular(file)
        except FileNotFoundError:
            return None
        if raw is None:
            return self._unreadable(file, f"larger than {MAX_RECORD_BYTES} bytes")
        try:
            return LockInfo.from_dict(json.loads(raw))
        except (ValueError, UnicodeDecodeError) as exc:
            return self._unreadable(file, str(exc) or type(exc).__name__)

    def _unreadable(self, file: Path, error: str) -> UnreadableRecord:
        try:
            path = path_from_record_name(file.name)
        except UnicodeDecodeError:
            path = None
        return UnreadableRecord(file=file, path=path, error=error)

    def _scan_files(self) -> builtins.list[tuple[Path, LockInfo | UnreadableRecord]]:
        self._check_dir()
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        found: list[tuple[Path, LockInfo | UnreadableRecord]] = []
        for name in names:
            if name.startswith(".") or not name.endswith(_SUFFIX):
                continue
            file = self.directory / name
            current = self._read(file)
            if current is not None:
                found.append((file, current))
        return found

    def _scan(self) -> Iterator[LockInfo | UnreadableRecord]:
        for _, current in self._scan_files():
            yield current

    def _remove_stale_temporaries(self) -> None:
        """Remove temporary files left by writers killed mid-write (only guard holders write)."""
        for name in os.listdir(self.directory):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.directory / name)

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        import filelock

        ensure_dir(self.directory)
        guard_path = self.directory / GUARD_NAME
        refuse_symlink(guard_path)
        if self._guard is None or self._guard_pid != os.getpid():
            self._guard = filelock.FileLock(
                str(guard_path), mode=0o600, poll_interval=0.002, fallback_to_soft=False
            )
            self._guard_pid = os.getpid()
        guard = self._guard
        try:
            guard.acquire(timeout=self.guard_timeout)
        except filelock.Timeout as exc:
            raise StateError(
                f"timed out after {self.guard_timeout:g}s waiting for the locks guard; "
                "a process holding it is stuck",
                path=guard_path,
            ) from exc
        except OSError as exc:
            raise StateError(f"cannot take the locks guard: {exc}", path=guard_path) from exc
        try:
            yield
        finally:
            guard.release()


def _dump(info: LockInfo) -> str:
    return json.dumps(info.to_dict(), ensure_ascii=False, indent=2) + "\n"


def _payload(info: LockInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "worker": info.worker,
        "task": info.task,
        "attempt": info.attempt,
        "pid": info.pid,
        "host": info.host,
        "since": info.since.isoformat(),
        "lease_expires": info.lease_expires.isoformat() if info.lease_expires else None,
    }
