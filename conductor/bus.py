"""The append-only message bus: one immutable JSON file per message, in one directory.

Layout of a bus directory (``<state>/bus/``)::

    000000001.TRACK_STARTED.-.-.json         one file per message, named
    000000002.TASK_DISPATCHED.build.1.json   ``{seq:09d}.{TYPE}.{task|-}.{attempt|-}.json``
    ...                                       so that ``ls`` reads as a log
    .lock     kernel lock (``flock``) serialising writers
    .index    fixed-width records, one per sequence number (a rebuildable helper)
    .tmp/     where a writer prepares a message before publishing it

**The messages are the truth.** Each file holds ``Message.to_json() + "\\n"`` and is never
modified once it appears. The index only lets readers find the file of sequence number *n*
without listing the directory; it can always be rebuilt from the directory (see below).

Publishing (``Bus.post``). The envelope is serialised outside any lock, all but its leading
``{"seq":N``: the same bytes as ``Message.to_json`` (the tests pin it), assembled from the
JSON of the payload and the time stamp and pieces cached per (type, task, worker, attempt).
That saves about 10% of a post's CPU time against serialising a ``Message`` with ``to_json``
(``scripts/bench_bus_post.py`` measures both, side by side, each run). Then, holding the
kernel lock on ``.lock`` (``fcntl.flock`` on a descriptor the Bus keeps open, ~0.5 us a round
trip, where ``filelock.FileLock`` measured ~70 us as it opens the file each time; plus a
thread lock so threads of one process take turns; a process forked with an open Bus reopens
its descriptors, so parent and child never share the lock):

1. find the last published sequence number *n* from the index's last record (below; a
   writer that published the last message itself only checks the index's size and link
   count);
2. write ``{"seq":n+1`` and the serialised rest to ``.tmp/<pid>`` (``O_CREAT|O_EXCL|
   O_NOFOLLOW``, relative to the directory's descriptor) and, with ``fsync`` durability,
   fsync it;
3. write index record *n+1* naming the final file: an *intent*, written before the file
   exists;
4. ``os.link`` the temporary file to its final name. Linking never replaces a file: if the
   name exists, an invariant is broken and ``StateError`` is raised (nothing is overwritten);
5. unlink the temporary file; with ``fsync`` durability, fsync the directory and the index;
   release the lock.

A message therefore appears whole or not at all, and sequence number *n+1* is only ever
published after *n*: a writer killed at any point (``kill -9``) leaves either a complete
message or nothing, never a gap. The next writer reads the index's last record *n*: if its
file exists, *n* is published; if not, its writer died between steps 3 and 4 and slot *n*
is free again (its record is overwritten). A temporary file can only exist while its writer
holds the lock, so any file found in ``.tmp/`` by a lock holder is debris of a dead writer
and is removed.

Index records are ``RECORD_BYTES`` (256) bytes: ``{seq:09d} {file name}``, space-padded,
ending in ``"\\n"``; record *n* sits at offset ``(n-1) * 256``. A record whose file name is
``#quarantined`` marks a *hole*: the sequence number was used, but its file was invalid and
was moved to the quarantine directory (see below). If the index is missing, garbled,
truncated or behind the directory (files with higher sequence numbers than it records), it
is rebuilt from a directory listing under the lock, checking the files it did not record.
Every Bus checks this when it opens (one listing of the directory: ~70 ms for 100,000
messages), when the index shrinks or is replaced under it, and when a reader finds a bad
record before the end of the index.

Reading (``read``, ``iter_all``, ``get``, ``last_seq``) takes no lock in the common case:
one ``pread`` per 1,024 index records, then one open/read/close per message (~80,000
messages/s on a 2-core VM; ``last_seq`` is a stat, a pread and a stat). A message *n* is
published when record *n* is complete and valid, its file exists, and the file's JSON says
``seq`` *n* and matches its name. Anything less at the end of the index is "not published
yet" (a reader may see an index record half written, or the intent of a writer that has not
linked yet); readers never work out progress from directory listings, which can show *k+1*
before *k*.

Durability (``Durability``): ``none`` (the default) survives ``kill -9`` of any process,
writer or reader, since the data is in the kernel's page cache once ``post`` returns; it does
not promise anything across a power loss. ``fsync`` fsyncs the message before linking it and
the directory and index after: a ``post`` that returned survives a power loss.

Quarantine. ``Bus.rescan()`` lists the directory and moves every entry that is not a valid
published message (a bad name, not a regular file, a symlink, invalid JSON, a ``seq`` that
does not match its name, a message-like name the index does not record) to the quarantine
directory (``<state>/quarantine/`` by default), logging a warning; it never crashes on
them. A reader that meets an invalid file at a sequence position (someone overwrote or
truncated a message by hand) quarantines it the same way, marks the position as a hole in the
index and goes on: a hole is skipped by every reader and never reused by writers. A message
deleted by hand from the middle of the bus becomes a hole the same way.

Hostile input. The bus directory, ``.lock``, ``.index``, ``.tmp`` and the quarantine
directory are refused (``StateError``) when they are symbolic links; everything is opened
with ``O_NOFOLLOW`` relative to directory descriptors. A message whose serialised size
exceeds ``max_message_bytes`` (default 1 MiB) is refused with ``StateError``; a bad type,
task, worker, attempt or payload with ``UserError``.

Message ids are 32 hex digits: 64 random bits chosen when the Bus opens, then a counter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import os
import re
import secrets
import stat
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from conductor.errors import StateError, UserError
from conductor.logs import get_logger
from conductor.messages import TYPE_RE, Message
from conductor.paths import check_name, ensure_dir

if TYPE_CHECKING:
    from conductor.paths import StateDir

log = get_logger(__name__)

RECORD_BYTES: Final = 256
"""Width of one index record."""
SEQ_DIGITS: Final = 9
MAX_SEQ: Final = 10**SEQ_DIGITS - 1
MAX_NAME_BYTES: Final = RECORD_BYTES - SEQ_DIGITS - 2
"""Longest message file name (it must fit in an index record, and in 255 bytes)."""
MAX_ATTEMPT: Final = 10**9 - 1
DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20

LOCK_NAME: Final = ".lock"
INDEX_NAME: Final = ".index"
TMP_NAME: Final = ".tmp"
HOLE: Final = b"#quarantined"
"""File name recorded in the index for a sequence number whose file was quarantined."""

_W: Final = RECORD_BYTES
_FIRST_READ: Final = 16384
"""Bytes a reader asks for first; nearly every message is smaller, so one read is enough."""
_CHUNK: Final = 1024
"""Index records read per ``pread`` while iterating."""
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_RE: Final = re.compile(rb"^(\d{9})\.([A-Z][A-Z0-9_]{0,31})\.(.+)\.(\d+|-)\.json$", re.S)
_SPACES: Final = b" " * _W
_encode: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
"""Compact JSON, non-ASCII text kept as is, NaN and infinities refused (as ``to_json``)."""
_decode: Final = json.JSONDecoder().decode
_type_of = type
"""``type`` is shadowed by ``Bus.post``'s parameter of that name; this keeps the builtin."""


class Durability(StrEnum):
    """How hard ``Bus.post`` works to keep a message it has published."""

    NONE = "none"
    """Survives kill -9 of any process (page cache); not a power loss. The default."""
    FSYNC = "fsync"
    """fsync the message, the directory and the index: survives a power loss."""


def message_filename(seq: int, type: str, task: str | None, attempt: int | None) -> str:
    """The file name of a message: ``{seq:09d}.{TYPE}.{task or '-'}.{attempt or '-'}.json``.

    A task id too long for the name (over ``MAX_NAME_BYTES`` in all) is cut at a character
    boundary and marked with ``~``; the JSON content keeps the full id.
    """
    tail = _name_tail(type, task, attempt)
    return f"{seq:09d}{tail.decode()}"


def _name_tail(type: str, task: str | None, attempt: int | None) -> bytes:
    """Everything of a file name after the sequence number, encoded."""
    att = "-" if attempt is None else str(attempt)
    tail = f".{type}.{'-' if task is None else task}.{att}.json".encode()
    if len(tail) + SEQ_DIGITS > MAX_NAME_BYTES and task is not None:
        fixed = len(tail) - len(task.encode())
        room = MAX_NAME_BYTES - SEQ_DIGITS - fixed - 1
        cut = task.encode()[:room].decode(errors="ignore")
        tail = f".{type}.{cut}~.{att}.json".encode()
    return tail


def _write_all(fd: int, data: bytes) -> None:
    """Write ``data`` to an empty file whose first write came up short, from offset 0."""
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)


_SCALARS: Final = frozenset({str, int, float, bool, type(None)})


def _is_plain_json(value: Any) -> bool:
    """True if ``value`` comes back from its JSON as an equal object of the same types."""
    cls = value.__class__
    if cls is dict:
        for key, item in value.items():
            if key.__class__ is not str:
                return False
            if item.__class__ not in _SCALARS and not _is_plain_json(item):
                return False
        return True
    if cls is list:
        for item in value:
            if item.__class__ not in _SCALARS and not _is_plain_json(item):
                return False
        return True
    return cls in _SCALARS


def _top_seq(entries: list[str]) -> int:
    """The highest sequence number named by a message-like file name among ``entries``."""
    numbered = [e for e in entries if e[:9].isdigit()]
    numbered.sort(reverse=True)  # zero-padded: the largest name has the largest seq
    for entry in numbered:
        if _NAME_RE.match(os.fsencode(entry)):
            return int(entry[:9])
    return 0


def _record(seq: int, name: bytes) -> bytes:
    """Index record ``seq`` naming ``name`` (or ``HOLE``)."""
    head = b"%09d %s" % (seq, name)
    return head + _SPACES[: _W - 1 - len(head)] + b"\n"


def _parse_record(rec: bytes, seq: int) -> bytes | None:
    """The file name (or ``HOLE``) in record ``seq``; None if the record is incomplete or bad."""
    if len(rec) != _W or rec[-1] != 10 or rec[9] != 32:
        return None
    prefix = b"%09d" % seq
    if rec[:9] != prefix:
        return None
    name = rec[10:-1].rstrip(b" ")
    if name == HOLE:
        return HOLE
    if not name.endswith(b".json") or name[:10] != prefix + b"." or b"/" in name:
        return None
    return name


@dataclass(frozen=True)
class _Invalid:
    """A file at a sequence position that is not the message it should be."""

    name: bytes
    reason: str


class _Missing:
    """The record names a file that does not exist (not linked yet, or deleted)."""


class _BadRecord:
    """The index record is incomplete, garbled or absent."""


_MISSING: Final = _Missing()
_BAD_RECORD: Final = _BadRecord()
_FixedKey = tuple[str, str | None, str | None, int | None]
_State = Message | bytes | _Invalid | _Missing | _BadRecord
"""What a reader finds at one position: a message, ``HOLE``, or a problem."""


def _open_error(exc: OSError, path: Path | str, what: str) -> StateError:
    if exc.errno == errno.ELOOP:
        return StateError(f"refusing to use {what} {path}: it is a symbolic link", path=path)
    if exc.errno == errno.ENOTDIR:
        return StateError(f"{what} {path} is not a directory", path=path)
    return StateError(f"cannot open {what} {path}: {exc.strerror}", path=path)


_OPEN_BUSES: weakref.WeakSet[Bus] = weakref.WeakSet()
"""Every Bus of this process, so that a forked child knows to reopen their descriptors."""


def _after_fork_in_child() -> None:
    for bus in list(_OPEN_BUSES):
        bus._stale = True


os.register_at_fork(after_in_child=_after_fork_in_child)


class Bus:
    """One track's message bus in ``directory``; safe for many threads and processes.

    Creates the directory, its ``.tmp`` and the quarantine directory (mode 0700) as needed;
    refuses any of them, ``.lock`` or ``.index`` when it is a symbolic link.
    """

    def __init__(
        self,
        directory: Path,
        track: str,
        *,
        durability: Durability = Durability.NONE,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        quarantine_dir: Path | None = None,
    ) -> None:
        check_name(track, "track id")
        try:
            self.durability = Durability(durability)
        except ValueError as exc:
            raise UserError(f"durability must be 'none' or 'fsync', not {durability!r}") from exc
        if max_message_bytes < 64:
            raise UserError(f"max_message_bytes must be at least 64, not {max_message_bytes}")
        self.directory = Path(directory)
        self.track = track
        self.max_message_bytes = max_message_bytes
        self.quarantine_dir = (
            Path(quarantine_dir) if quarantine_dir is not None
            else self.directory.parent / "quarantine"
        )
        self._fsync = self.durability is Durability.FSYNC
        self._track_json = json.dumps(track, ensure_ascii=False)
        self._closed = False
        self._stale_fds: list[int] = []
        self._tails: dict[tuple[str, str | None, int | None], bytes] = {}
        """File name tails by (type, task, attempt), for checking names while reading."""
        self._quarantined: list[Path] = []
        """Where this instance moved strays (``rescan`` returns its share)."""
        self._tlock = threading.Lock()
        self._fixed: dict[_FixedKey, tuple[str, str, str, bytes]] = {}
        """Validated envelope fields -> (type, JSON around the timestamp, file name tail)."""
        self._max_body = max_message_bytes - len(b'{"seq":1')
        self._fds: list[int] = []
        self._open_all()

    # -- descriptors ------------------------------------------------------------------------

    def _open_all(self) -> None:
        """Open the directory, quarantine, .tmp, .lock and .index descriptors."""
        ensure_dir(self.directory)
        ensure_dir(self.quarantine_dir)
        fds: list[int] = []
        try:
            dfd = self._open_dir(None, self.directory, "bus directory")
            fds.append(dfd)
            qfd = self._open_dir(None, self.quarantine_dir, "quarantine directory")
            fds.append(qfd)
            with contextlib.suppress(FileExistsError):
                os.mkdir(TMP_NAME, 0o700, dir_fd=dfd)
            tfd = self._open_dir(dfd, TMP_NAME, "bus temporary directory")
            fds.append(tfd)
            lfd = self._open_file(dfd, LOCK_NAME, "bus lock file")
            fds.append(lfd)
            ifd = self._open_file(dfd, INDEX_NAME, "bus index")
            fds.append(ifd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._dfd, self._qfd, self._tfd, self._lfd, self._ifd = fds
        self._fds = fds
        st = os.fstat(ifd)
        self._index_id = (st.st_dev, st.st_ino)
        self._pid = os.getpid()
        self._stale = False
        """True when ``_check_open`` must run: closed, or inherited across ``os.fork``."""
        self._id_prefix = secrets.token_hex(8)
        self._id_count = itertools.count(1)
        """Message ids are 32 hex digits: 64 random bits of this Bus (and process), a counter."""
        _OPEN_BUSES.add(self)
        self._verified = False
        """True once this instance has checked the index against the directory."""
        self._known_size = 0
        """Largest index size this instance has seen; a smaller one means a damaged index."""
        self._last_posted = 0
        """Sequence number of this instance's last post, while it is still the index's last."""
        self._tmp = b"%d" % self._pid
        """This process's temporary file name in ``.tmp`` (it exists only under the lock)."""
        fcntl.flock(self._lfd, fcntl.LOCK_EX)
        try:
            self._verify_locked()
        finally:
            fcntl.flock(self._lfd, fcntl.LOCK_UN)

    def _open_dir(self, dir_fd: int | None, path: Path | str, what: str) -> int:
        try:
            return os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            shown = self.directory / path if dir_fd is not None else path
            if exc.errno == errno.ENOTDIR:  # O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR
                with contextlib.suppress(OSError):
                    if stat.S_ISLNK(os.lstat(path, dir_fd=dir_fd).st_mode):
                        exc.errno = errno.ELOOP
            raise _open_error(exc, shown, what) from exc

    def _open_file(self, dir_fd: int, name: str, what: str) -> int:
        path = self.directory / name
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
        except OSError as exc:
            raise _open_error(exc, path, what) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StateError(f"{what} {path} is not a regular file", path=path)
        return fd

    def _check_open(self) -> None:
        if self._closed:
            raise StateError(f"the bus at {self.directory} is closed", path=self.directory)
        if os.getpid() != self._pid:
            # A forked child shares the parent's open file descriptions, and with them the
            # flock: give the child its own descriptors and a fresh thread lock.
            self._tlock = threading.Lock()
            self._stale_fds.extend(self._fds)
            self._open_all()

    def _index_stat(self) -> os.stat_result | None:
        """Stat ``.index`` by name; None if it is missing. Refuses a planted symlink."""
        try:
            st = os.stat(INDEX_NAME, dir_fd=self._dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            path = self.directory / INDEX_NAME
            raise StateError(f"refusing to use bus index {path}: not a regular file", path=path)
        return st

    def _refresh_index(self) -> int:
        """Make sure ``_ifd`` is the index on disk; return the index size.

        A replaced or deleted index is reopened (recreated) and checked against the directory
        under the lock.
        """
        st = self._index_stat()
        if st is not None and (st.st_dev, st.st_ino) == self._index_id:
            return st.st_size
        self._check_open()
        with self._tlock:
            fcntl.flock(self._lfd, fcntl.LOCK_EX)
            try:
                st = self._index_stat()
                if st is None or (st.st_dev, st.st_ino) != self._index_id:
                    self._reopen_index()
                    self._verify_locked()
            finally:
                fcntl.flock(self._lfd, fcntl.LOCK_UN)
            return os.fstat(self._ifd).st_size

    def _reopen_index(self) -> None:
        """Open ``.index`` again (creating it); the thread lock is held.

        The old descriptor stays open until ``close`` so that a concurrent reader never
        preads a descriptor number that was recycled for another file.
        """
        self._stale_fds.append(self._ifd)
        self._ifd = self._open_file(self._dfd, INDEX_NAME, "bus index")
        self._fds[4] = self._ifd
        ist = os.fstat(self._ifd)
        self._index_id = (ist.st_dev, ist.st_ino)
        self._verified = False
        self._known_size = 0
        self._last_posted = 0

    # -- writing ----------------------------------------------------------------------------

    def post(
        self,
        type: str,
        *,
        task: str | None = None,
        worker: str | None = None,
        attempt: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Message:
        """Publish one message; return it with its sequence number.

        Safe from many threads and processes at once. Raises ``UserError`` for a bad type,
        task, worker, attempt or payload, ``StateError`` when the message is too large or the
        bus is damaged in a way it cannot repair. The returned payload is the published one
        (what every reader gets back: tuples become lists, and so on).
        """
        if attempt is not None and attempt.__class__ is not int:
            raise UserError(f"attempt must be an integer, not {attempt!r}")
        fixed = self._fixed.get((type, task, worker, attempt))
        if fixed is None:
            fixed = self._prepare(type, task, worker, attempt)
        mtype, before_ts, after_ts, tail = fixed
        if payload:
            if not isinstance(payload, dict):
                raise UserError(f"payload must be a JSON object, not {_type_of(payload).__name__}")
            try:
                payload_json = _encode(payload)
            except (TypeError, ValueError, RecursionError) as exc:
                raise UserError(f"payload is not JSON: {exc}") from exc
            # Return what readers will get: the caller's dict if JSON gives it back unchanged.
            published = payload if _is_plain_json(payload) else _decode(payload_json)
        elif payload is None or isinstance(payload, dict):
            payload_json, published = "{}", {}
        else:
            raise UserError(f"payload must be a JSON object, not {_type_of(payload).__name__}")
        msg_id = f"{self._id_prefix}{next(self._id_count):016x}"  # next() is thread-safe
        ts = datetime.now(UTC)
        # Message.to_json() + "\n" without its leading '{"seq":N', which is known under the lock.
        try:
            body = f',"id":"{msg_id}{before_ts}{ts.isoformat()}{after_ts}{payload_json}}}\n'
            body_bytes = body.encode()
        except UnicodeEncodeError as exc:
            raise UserError(f"payload contains text that is not valid Unicode: {exc}") from exc
        if len(body_bytes) > self._max_body:
            raise self._too_large(len(body_bytes) + 8)
        seq = self._publish(body_bytes, tail)
        return Message(
            seq=seq, id=msg_id, type=mtype, ts=ts, track=self.track, task=task,
            worker=worker, attempt=attempt, payload=published,
        )

    def _prepare(
        self, type: str, task: str | None, worker: str | None, attempt: int | None
    ) -> tuple[str, str, str, bytes]:
        """Validate the envelope fields of a post and precompute what depends only on them."""
        mtype = str(type)
        if not TYPE_RE.match(mtype):
            raise UserError(f"message type {mtype!r} is not an UPPER_SNAKE name (max 32 chars)")
        if task is not None:
            check_name(task, "task id")
        if worker is not None:
            check_name(worker, "worker id")
        if attempt is not None and not 0 <= attempt <= MAX_ATTEMPT:
            raise UserError(f"attempt must be from 0 to {MAX_ATTEMPT}, not {attempt}")
        before_ts = f'","type":"{mtype}","ts":"'
        after_ts = "".join((
            '","track":', self._track_json,
            ',"task":', "null" if task is None else _encode(task),
            ',"worker":', "null" if worker is None else _encode(worker),
            ',"attempt":', "null" if attempt is None else str(attempt),
            ',"payload":',
        ))
        fixed = (mtype, before_ts, after_ts, _name_tail(mtype, task, attempt))
        if len(self._fixed) >= 4096:
            self._fixed.clear()
        self._fixed[(type, task, worker, attempt)] = fixed
        return fixed

    def _too_large(self, size: int) -> StateError:
        return StateError(
            f"message is {size} bytes, over the bus limit of {self.max_message_bytes} bytes "
            "(max_message_bytes); put large data in a file and post its path",
            path=self.directory,
        )

    def _publish(self, body: bytes, tail: bytes) -> int:
        """Steps 1-5 of the module docstring, under the lock; return the new seq."""
        if self._stale:
            self._check_open()
        with self._tlock:
            lfd = self._lfd
            fcntl.flock(lfd, fcntl.LOCK_EX)
            try:
                ifd = self._ifd
                st = os.fstat(ifd)
                last = self._last_posted
                if not last or st.st_size != last * _W or st.st_nlink == 0:
                    last = self._last_locked(st)
                    ifd = self._ifd  # reopened if the index was replaced
                seq = last + 1
                if seq > MAX_SEQ:
                    raise StateError(f"the bus is full ({MAX_SEQ} messages)", path=self.directory)
                head = b'{"seq":%d' % seq
                if len(head) + len(body) > self.max_message_bytes:
                    raise self._too_large(len(head) + len(body))
                name = b"%09d" % seq + tail
                tfd = self._tfd
                tmp = self._tmp
                try:
                    fd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=tfd)
                except FileExistsError:
                    # Debris of a dead writer with our pid: we hold the lock, so it is stale.
                    os.unlink(tmp, dir_fd=tfd)
                    fd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=tfd)
                try:
                    try:
                        data = head + body
                        if os.write(fd, data) != len(data):
                            _write_all(fd, data)
                        if self._fsync:
                            os.fsync(fd)
                    finally:
                        os.close(fd)
                    os.pwrite(ifd, (b"%09d %s" % (seq, name)).ljust(_W - 1) + b"\n", last * _W)
                    try:
                        os.link(tmp, name, src_dir_fd=tfd, dst_dir_fd=self._dfd,
                                follow_symlinks=False)
                    except FileExistsError:
                        os.ftruncate(ifd, last * _W)  # withdraw the intent record
                        self._verified = False
                        self._last_posted = 0
                        path = self.directory / os.fsdecode(name)
                        raise StateError(
                            f"{path} already exists although the index says seq {seq} is free; "
                            "the bus index is inconsistent (it is checked again on the next post)",
                            path=path,
                        ) from None
                finally:
                    os.unlink(tmp, dir_fd=tfd)
                if self._fsync:
                    os.fsync(self._dfd)
                    os.fdatasync(ifd)
                self._last_posted = seq
                if seq * _W > self._known_size:
                    self._known_size = seq * _W
                return seq
            finally:
                fcntl.flock(lfd, fcntl.LOCK_UN)

    def _last_locked(self, st: os.stat_result) -> int:
        """The last published seq, with the lock held (repairs the index if it must).

        ``st`` is the index descriptor's fstat: a link count of 0 means the index was deleted
        or replaced, so it is reopened and checked against the directory.
        """
        self._last_posted = 0
        if st.st_nlink == 0:  # deleted or replaced by hand
            self._reopen_index()
            return self._verify_locked()
        size = st.st_size
        if not self._verified or size % _W or size < self._known_size:
            return self._verify_locked()
        if size > self._known_size:
            self._known_size = size
        return self._tail_locked(size // _W)

    def _tail_locked(self, n: int) -> int:
        """Given an index of ``n`` records, the last published seq (under the lock)."""
        last = self._tail(n)
        return self._rebuild_locked("the last index record is garbled") if last is None else last

    def _tail(self, n: int) -> int | None:
        """Given an index of ``n`` records, the last published seq; None if the last record is
        garbled. A record whose file is missing is an unfinished post: its writer died between
        writing the record and linking, so that slot is free."""
        if n == 0:
            return 0
        name = _parse_record(os.pread(self._ifd, _W, (n - 1) * _W), n)
        if name is None:
            return None
        if name == HOLE:
            return n
        try:
            os.stat(name, dir_fd=self._dfd, follow_symlinks=False)
        except FileNotFoundError:
            return n - 1
        return n

    def _verify_locked(self) -> int:
        """Check the index against the directory, rebuilding it if behind; return the last seq."""
        self._clean_tmp_locked()
        size = os.fstat(self._ifd).st_size
        if size % _W:
            last = self._rebuild_locked(f"the index ends with a partial record ({size} bytes)")
        else:
            last = self._tail_locked(size // _W)
            top = _top_seq(os.listdir(self._dfd))
            if top > last:
                last = self._rebuild_locked(
                    f"the directory holds seq {top} but the index ends at {last}"
                )
        self._verified = True
        self._known_size = os.fstat(self._ifd).st_size
        self._last_posted = 0
        return last

    def _clean_tmp_locked(self) -> int:
        """Remove debris of dead writers from ``.tmp`` (under the lock nobody else has any)."""
        removed = 0
        for entry in os.listdir(self._tfd):
            try:
                st = os.stat(entry, dir_fd=self._tfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    self._move_to_quarantine(self._tfd, entry, "a directory in the bus .tmp")
                else:
                    os.unlink(entry, dir_fd=self._tfd)
                removed += 1
            except FileNotFoundError:
                continue
        if removed:
            log.info("bus temporary files removed", bus=str(self.directory), count=removed)
        return removed

    def _rebuild_locked(self, reason: str) -> int:
        """Rewrite the index from the directory listing (under the lock); return the last seq.

        A file whose name claims a sequence number is checked (unless the old index already
        names it) and quarantined if invalid. Several files claiming one seq keep the one the
        old index named, else the first valid one. Positions up to the last valid message (or
        the last hole the old index recorded) without a valid file become holes.
        """
        by_seq: dict[int, list[bytes]] = {}
        for entry in os.listdir(self._dfd):
            raw = os.fsencode(entry)
            if _NAME_RE.match(raw):
                by_seq.setdefault(int(raw[:9]), []).append(raw)
        old_size = os.fstat(self._ifd).st_size
        old_data = os.pread(self._ifd, old_size, 0) if old_size else b""
        old: dict[int, bytes] = {}
        for i in range(len(old_data) // _W):
            got = _parse_record(old_data[i * _W : (i + 1) * _W], i + 1)
            if got is not None:
                old[i + 1] = got
        holes = [s for s, got in old.items() if got == HOLE]
        # A bus has no more positions than files plus holes: a file claiming a seq far beyond
        # that is a stray, not a reason to write a huge index.
        bound = len(by_seq) + len(holes) + 1000
        chosen: dict[int, bytes] = {}
        for s in sorted(by_seq):
            cands = by_seq[s]
            if s < 1 or s > bound:
                for raw in cands:
                    self._move_to_quarantine(self._dfd, os.fsdecode(raw), "seq beyond the end")
                continue
            prev = old.get(s)
            if len(cands) == 1 and prev == cands[0]:
                chosen[s] = prev
                continue
            valid: list[bytes] = []
            for cand in sorted(cands):
                loaded = self._load_file(s, cand)
                if isinstance(loaded, Message):
                    valid.append(cand)
                elif isinstance(loaded, str):
                    self._move_to_quarantine(self._dfd, os.fsdecode(cand), loaded, s)
            if not valid:
                continue
            keep = prev if prev in valid else valid[0]
            chosen[s] = keep
            for cand in valid:
                if cand != keep:
                    self._move_to_quarantine(
                        self._dfd, os.fsdecode(cand), f"another file holds seq {s}", s
                    )
        top = max([*chosen, *holes], default=0)
        records = [_record(s, chosen.get(s, HOLE)) for s in range(1, top + 1)]
        data = b"".join(records)
        if data != old_data:
            if data:
                os.pwrite(self._ifd, data, 0)
            os.ftruncate(self._ifd, len(data))
            if self._fsync:
                os.fdatasync(self._ifd)
        new_holes = [s for s in range(1, top + 1) if s not in chosen and old.get(s) != HOLE]
        for s in new_holes[:100]:
            log.warning("bus message missing", bus=str(self.directory), seq=s)
        log.warning(
            "bus index rebuilt", bus=str(self.directory), reason=reason, last_seq=top,
            new_holes=len(new_holes),
        )
        self._known_size = len(data)
        self._last_posted = 0
        return top

    def _move_to_quarantine(
        self, dir_fd: int, name: str, reason: str, seq: int | None = None
    ) -> Path | None:
        """Move ``name`` (relative to ``dir_fd``) into the quarantine directory; log it."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        base = name.lstrip(".") or "entry"
        dest = f"{stamp}-{secrets.token_hex(3)}-{base}"[:250]
        try:
            os.rename(name, dest, src_dir_fd=dir_fd, dst_dir_fd=self._qfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"cannot move {name!r} out of the bus into {self.quarantine_dir}: {exc.strerror}",
                path=self.directory,
            ) from exc
        path = self.quarantine_dir / dest
        self._quarantined.append(path)
        log.warning(
            "bus entry quarantined", bus=str(self.directory), entry=name, seq=seq,
            reason=reason, moved_to=str(path),
        )
        return path

    # -- reading ----------------------------------------------------------------------------

    def last_seq(self) -> int:
        """The highest published sequence number (0 if none); a stat, a pread and a stat."""
        self._check_open()
        n = self._refresh_index() // _W
        last = self._tail(n)
        return n - 1 if last is None else last  # readers never repair: count it unpublished

    def get(self, seq: int) -> Message | None:
        """Message ``seq``; None if it is not (yet) published or is a quarantined hole."""
        self._check_open()
        if seq < 1 or seq > MAX_SEQ:
            return None
        self._refresh_index()
        got = self._resolve(seq, os.pread(self._ifd, _W, (seq - 1) * _W))
        return got if isinstance(got, Message) else None

    def path_of(self, seq: int) -> Path | None:
        """The file of message ``seq`` if it is published (its content is not checked)."""
        self._check_open()
        if seq < 1 or seq > MAX_SEQ:
            return None
        self._refresh_index()
        name = _parse_record(os.pread(self._ifd, _W, (seq - 1) * _W), seq)
        if name is None or name == HOLE:
            return None
        try:
            os.stat(name, dir_fd=self._dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        return self.directory / os.fsdecode(name)

    def read(self, after: int = 0, limit: int | None = None) -> list[Message]:
        """Published messages with seq > ``after``, in order, up to ``limit``.

        Contiguous: stops at the first sequence number not published yet (holes are skipped).
        """
        if limit is not None and limit <= 0:
            return []
        return list(islice(self._iter(max(0, after), limit), limit))

    def iter_all(self) -> Iterator[Message]:
        """Every published message, in order, streaming."""
        return self._iter(0, None)

    def _iter(self, after: int, limit: int | None) -> Iterator[Message]:
        self._check_open()
        self._refresh_index()
        n = after + 1
        want = _CHUNK if limit is None else min(_CHUNK, limit)
        while True:
            buf = os.pread(self._ifd, want * _W, (n - 1) * _W)
            count = len(buf) // _W
            if count == 0:
                return
            restart = False
            for i in range(count):
                got: Message | bytes | None
                found = self._evaluate(n, buf[i * _W : (i + 1) * _W])
                if isinstance(found, (Message, bytes)):
                    got = found
                else:
                    got = self._slow(n)
                    restart = True
                if got is None:
                    return
                if isinstance(got, Message):
                    yield got
                n += 1
                if restart:
                    break
            want = _CHUNK

    def _resolve(self, n: int, rec: bytes) -> Message | bytes | None:
        """What position ``n`` holds: a message, ``HOLE``, or None if not published yet."""
        got = self._evaluate(n, rec)
        if isinstance(got, (Message, bytes)):
            return got
        return self._slow(n)

    def _evaluate(self, n: int, rec: bytes) -> _State:
        name = _parse_record(rec, n)
        if name is None:
            return _BAD_RECORD
        if name == HOLE:
            return HOLE
        got = self._load_file(n, name)
        if got is None:
            return _MISSING
        if isinstance(got, str):
            return _Invalid(name, got)
        return got

    def _load_file(self, n: int, name: bytes) -> Message | str | None:
        """The message in file ``name`` if it is valid message ``n``; None if there is no such
        file; otherwise why it is invalid."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=self._dfd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "it is a symbolic link"
            return f"it cannot be opened: {exc.strerror}"
        try:
            data = os.read(fd, _FIRST_READ)
            if len(data) == _FIRST_READ:  # a large message (a short read is the end of a file)
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    return "it is not a regular file"
                if st.st_size > 64 * self.max_message_bytes:
                    return f"it is {st.st_size} bytes, far over any message"
                chunks = [data]
                while more := os.read(fd, max(st.st_size - len(data), 1 << 16)):
                    chunks.append(more)
                data = b"".join(chunks)
        except OSError as exc:
            return f"it cannot be read: {exc.strerror}"
        finally:
            os.close(fd)
        try:
            msg = Message.from_dict(_decode(data.decode()))
        except (ValueError, TypeError, RecursionError) as exc:  # incl. JSON and UTF-8 errors
            return f"it is not a valid message: {exc}"
        if msg.seq != n:
            return f"its JSON says seq {msg.seq}"
        key = (msg.type, msg.task, msg.attempt)
        tail = self._tails.get(key)
        if tail is None:
            if len(self._tails) >= 4096:
                self._tails.clear()
            tail = self._tails[key] = _name_tail(*key)
        if tail != name[9:]:
            return "its name does not match its content"
        return msg

    def _slow(self, n: int) -> Message | bytes | None:
        """Position ``n`` looked wrong in a bulk read: look again, repairing if it must."""
        size = self._refresh_index()
        got = self._evaluate(n, os.pread(self._ifd, _W, (n - 1) * _W))
        if isinstance(got, (Message, bytes)):
            return got
        if not isinstance(got, _Invalid) and size // _W <= n:
            return None  # the end of the index: a writer in flight (or dead); not published
        self._check_open()
        with self._tlock:
            fcntl.flock(self._lfd, fcntl.LOCK_EX)
            try:
                return self._repair_locked(n)
            finally:
                fcntl.flock(self._lfd, fcntl.LOCK_UN)

    def _repair_locked(self, n: int) -> Message | bytes | None:
        """Settle position ``n`` for good, holding the lock (no writer is in flight)."""
        for attempt in range(2):
            size = os.fstat(self._ifd).st_size
            got = self._evaluate(n, os.pread(self._ifd, _W, (n - 1) * _W))
            if isinstance(got, (Message, bytes)):
                return got
            if isinstance(got, _Invalid):
                self._move_to_quarantine(self._dfd, os.fsdecode(got.name), got.reason, n)
                self._mark_hole_locked(n)
                return HOLE
            if size // _W <= n:
                return None  # the last record: its writer died before linking; slot n is free
            if attempt == 0:
                what = "garbled" if got is _BAD_RECORD else "names a missing file"
                self._rebuild_locked(f"index record {n} {what}")
        # Still missing after a rebuild and not at the end: a message was deleted by hand.
        log.warning("bus message missing", bus=str(self.directory), seq=n)
        self._mark_hole_locked(n)
        return HOLE

    def _mark_hole_locked(self, n: int) -> None:
        os.pwrite(self._ifd, _record(n, HOLE), (n - 1) * _W)
        if self._fsync:
            os.fdatasync(self._ifd)

    # -- housekeeping -----------------------------------------------------------------------

    def rescan(self) -> list[Path]:
        """Quarantine every directory entry that is not a valid published message.

        Also repairs the index against the directory and removes debris from ``.tmp``.
        Returns where the quarantined entries went.
        """
        self._check_open()
        first = len(self._quarantined)
        with self._tlock:
            fcntl.flock(self._lfd, fcntl.LOCK_EX)
            try:
                self._verify_locked()
            finally:
                fcntl.flock(self._lfd, fcntl.LOCK_UN)
        entries = os.listdir(self._dfd)  # list first, then read the index (see docstring)
        size = self._refresh_index()
        index = os.pread(self._ifd, size - size % _W, 0) if size >= _W else b""
        suspects: list[tuple[str, str, bool]] = []
        """(entry, why, whether it is a stray only while the index does not record it)"""
        for entry in entries:
            if entry in (LOCK_NAME, INDEX_NAME, TMP_NAME):
                continue
            try:
                st = os.stat(entry, dir_fd=self._dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            raw = os.fsencode(entry)
            if stat.S_ISLNK(st.st_mode):
                suspects.append((entry, "it is a symbolic link", False))
                continue
            if not stat.S_ISREG(st.st_mode):
                suspects.append((entry, "it is not a regular file", False))
                continue
            if not _NAME_RE.match(raw):
                suspects.append((entry, "its name is not a message file name", False))
                continue
            seq = int(raw[:9])
            rec = index[(seq - 1) * _W : seq * _W] if seq >= 1 else b""
            if _parse_record(rec, seq) != raw:
                suspects.append((entry, f"the index does not record it as seq {seq}", True))
                continue
            got = self._load_file(seq, raw)
            if isinstance(got, str):
                suspects.append((entry, got, False))
        if not suspects:
            return self._quarantined[first:]
        with self._tlock:
            fcntl.flock(self._lfd, fcntl.LOCK_EX)
            try:
                for entry, reason, unless_indexed in suspects:
                    raw = os.fsencode(entry)
                    at = None
                    if _NAME_RE.match(raw):
                        s = int(raw[:9])
                        if s >= 1 and _parse_record(
                            os.pread(self._ifd, _W, (s - 1) * _W), s
                        ) == raw:
                            at = s
                    if unless_indexed and at is not None:
                        continue  # published since we looked (a writer linked it)
                    path = self._move_to_quarantine(self._dfd, entry, reason, at)
                    if path is not None and at is not None:
                        self._mark_hole_locked(at)
            finally:
                fcntl.flock(self._lfd, fcntl.LOCK_UN)
        return self._quarantined[first:]

    @classmethod
    def for_state(cls, state: StateDir, track: str, **kw: Any) -> Bus:
        """The bus of a track's state directory (quarantine in ``state.quarantine``)."""
        kw.setdefault("quarantine_dir", state.quarantine)
        return cls(state.bus, track, **kw)

    def close(self) -> None:
        """Close the descriptors; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stale = True
        for fd in [*self._fds, *self._stale_fds]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._stale_fds = []

    def __enter__(self) -> Bus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Bus({str(self.directory)!r}, {self.track!r}, durability={self.durability.value})"

