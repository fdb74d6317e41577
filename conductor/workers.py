"""Worker directories and worker identity.

A worker is one attempt at one task; its id is ``<task>.<attempt>`` (task ids never contain
``..`` and attempts are integers, so the id is unambiguous and safe as a path component).
Its directory ``<state>/workers/<worker_id>/`` exists only while the attempt runs and holds
whatever the executor renders there (a Claude worker's ``SKILL.md``); a shell worker's is
empty. Resume removes directories left behind by a killed conductor.

Tokens. Each run writes a fresh secret to ``<state>/workers/.secret`` (mode 0600, with the
conductor's pid). A worker's token, handed to it in ``CONDUCTOR_WORKER_TOKEN``, is the
HMAC-SHA256 of its worker id under that secret. ``conductor bus post`` recomputes it, so a
token for one worker cannot post as another worker or for another task, a token from an
earlier run is void, and a worker whose directory is gone (its attempt ended) cannot post.
Creating a worker costs one ``mkdir``, which matters with thousands of short tasks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conductor.atomic import TMP_PREFIX, write_atomic, writer_pid
from conductor.contract import TOKEN_ENV, WORKER_ENV, WORKER_TYPES
from conductor.errors import StateError, UserError
from conductor.messages import HUMAN_TYPES, MessageType
from conductor.paths import check_name, refuse_symlink

if TYPE_CHECKING:
    from conductor.track import Track

SECRET_FILE = ".secret"


def worker_id(task_id: str, attempt: int) -> str:
    """The id of attempt ``attempt`` at ``task_id``."""
    return f"{task_id}.{attempt}"


@dataclass(frozen=True)
class WorkerRecord:
    """Who a verified worker is."""

    worker: str
    """The worker id."""
    task: str
    """Its task."""
    attempt: int
    """Its attempt number."""
    pid: int
    """The conductor process that dispatched it."""


def new_secret(workers_root: Path) -> str:
    """Write a fresh run secret (voiding every earlier token); return it.

    Half-written secrets of conductors that died while writing theirs are removed.
    """
    from conductor.processes import process_alive  # psutil: `bus post` has no use for it

    # ``.secret.<pid>``: how earlier versions named a secret being written.
    for stale in [*workers_root.glob(f"{TMP_PREFIX}*"), *workers_root.glob(f"{SECRET_FILE}.*")]:
        pid = writer_pid(stale.name)
        if pid is None and stale.name[len(SECRET_FILE) + 1 :].isdigit():
            pid = int(stale.name[len(SECRET_FILE) + 1 :])
        if pid is not None and pid != os.getpid() and not process_alive(pid):
            stale.unlink(missing_ok=True)
    secret = secrets.token_hex(32)
    write_atomic(workers_root / SECRET_FILE, json.dumps({"secret": secret, "pid": os.getpid()}))
    return secret


def _read_secret(workers_root: Path) -> tuple[str, int] | None:
    try:
        fd = os.open(workers_root / SECRET_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read the worker secret: {exc}", path=workers_root) from exc
    with os.fdopen(fd) as fh:
        try:
            data = json.load(fh)
            return str(data["secret"]), int(data["pid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"the worker secret is unreadable: {exc}", path=workers_root / SECRET_FILE
            ) from exc


def token_for(secret: str, wid: str) -> str:
    """The token of worker ``wid`` under the run's ``secret``."""
    return hmac.new(secret.encode(), wid.encode(), hashlib.sha256).hexdigest()


def create_worker_dir(
    workers_root: Path, task_id: str, attempt: int, secret: str | None = None
) -> tuple[Path, str]:
    """Make a fresh worker directory under an existing ``workers_root``; return it and the
    worker's token. ``secret`` defaults to the current run secret (created if missing). A
    leftover directory of the same worker (from a killed conductor) is replaced.
    """
    wid = check_name(worker_id(task_id, attempt), "worker id")
    if secret is None:
        current = _read_secret(workers_root)
        secret = current[0] if current is not None else new_secret(workers_root)
    path = workers_root / wid
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        remove_worker_dir(path)
        os.mkdir(path, 0o700)
    return path, token_for(secret, wid)


def remove_worker_dir(path: Path) -> None:
    """Remove a worker directory (a planted symlink or file is unlinked, never followed)."""
    try:
        os.rmdir(path)  # the common case: a shell worker leaves nothing behind
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


SPARE_PREFIX = ".spare."
"""Name prefix of an empty worker directory kept for reuse (see ``WorkerDirs``)."""


class WorkerDirs:
    """The worker directories of one run, recycling the empty ones.

    Removing a directory frees its inode. On ext4 without a journal (common on CI machines and
    VMs) the allocator then skips every inode freed in the last few minutes, one buffer lookup
    each, on every later create in that block group, so a run that freed an inode per attempt
    made each later bus message and log file slower to create than the last. So an ended
    worker's directory, when it is still an empty, private, real directory, is renamed aside
    to ``.spare.<n>`` and renamed into place for the next worker; anything else is removed as
    before. At most ``max_parallel`` spares exist; ``close`` removes them, and a new
    ``WorkerDirs`` removes any a killed conductor left.
    """

    def __init__(self, root: Path, secret: str) -> None:
        self.root = root
        self.secret = secret
        self._spares: list[str] = []
        self._made = 0
        for path in root.glob(SPARE_PREFIX + "*"):
            remove_worker_dir(path)

    def create(self, task_id: str, attempt: int) -> tuple[Path, str]:
        """Make worker ``<task_id>.<attempt>``'s empty directory; return it and its token."""
        wid = check_name(worker_id(task_id, attempt), "worker id")
        path = self.root / wid
        if self._spares:
            spare = self.root / self._spares.pop()
            try:
                os.rename(spare, path)  # an empty leftover of the same worker is replaced
                return path, token_for(self.secret, wid)
            except OSError:
                remove_worker_dir(spare)
        return create_worker_dir(self.root, task_id, attempt, self.secret)

    def remove(self, wid: str) -> None:
        """Remove worker ``wid``'s directory, keeping it as a spare if it is clean and empty."""
        path = self.root / wid
        name = f"{SPARE_PREFIX}{self._made}"
        try:
            os.rename(path, self.root / name)
        except FileNotFoundError:
            return
        except OSError:
            remove_worker_dir(path)
            return
        self._made += 1
        if _clean_empty_dir(self.root / name):
            self._spares.append(name)
        else:
            remove_worker_dir(self.root / name)

    def close(self) -> None:
        """Remove the spares."""
        while self._spares:
            remove_worker_dir(self.root / self._spares.pop())


def _clean_empty_dir(path: Path) -> bool:
    """Is ``path`` a real (not symlinked), empty directory of mode 0700 owned by us?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        return (
            stat.S_IMODE(st.st_mode) == 0o700
            and st.st_uid == os.getuid()
            and not os.listdir(fd)
        )
    finally:
        os.close(fd)


def leftover_workers(workers_root: Path) -> list[Path]:
    """Worker directories present on disk (after a crash these belong to nobody)."""
    if not workers_root.is_dir():
        return []
    return sorted(p for p in workers_root.iterdir() if not p.name.startswith("."))


def verify_token(workers_root: Path, wid: str, token: str) -> WorkerRecord:
    """Check that ``token`` belongs to live worker ``wid``; return who it is.

    Raises ``UserError`` when the worker is not running or the token is not its token.
    """
    check_name(wid, "worker id")
    task, _, attempt_text = wid.rpartition(".")
    if not task or not attempt_text.isdigit():
        raise UserError(f"{wid!r} is not a worker id (<task>.<attempt>)")
    path = workers_root / wid
    refuse_symlink(path)
    current = _read_secret(workers_root)
    if current is None or not path.is_dir():
        raise UserError(f"worker {wid!r} is not running (no live worker directory)")
    secret, pid = current
    if not token or not hmac.compare_digest(token, token_for(secret, wid)):
        raise UserError(f"the token in {TOKEN_ENV} does not belong to worker {wid!r}")
    return WorkerRecord(worker=wid, task=task, attempt=int(attempt_text), pid=pid)


@dataclass(frozen=True)
class Author:
    """Who a message posted from outside the conductor is posted as."""

    task: str | None
    """The task it is about."""
    worker: str | None
    """The worker it is signed by or about."""
    attempt: int | None
    """That worker's attempt (None for a person's message)."""


def authorize_post(
    workers_root: Path,
    mtype: str,
    *,
    task: str | None,
    worker: str | None,
    environ: Mapping[str, str],
    track: Track | None = None,
) -> Author:
    """Decide whether a message of ``mtype`` may be posted by whoever runs in ``environ``;
    return what it is posted as, or raise ``UserError`` saying why not.

    With ``TOKEN_ENV`` set, the poster is the worker ``WORKER_ENV`` names, if the token is
    its own and it is running: it may post ``WORKER_TYPES``, about its own task only, and
    the message is signed by it whatever ``task`` and ``worker`` say. Otherwise the poster
    is a person, who may post ``HUMAN_TYPES`` (SKIP with a task, which must be one of
    ``track``'s when it is given).
    """
    token = environ.get(TOKEN_ENV)
    if token:
        wid = environ.get(WORKER_ENV)
        if not wid:
            raise UserError(f"{TOKEN_ENV} is set but {WORKER_ENV} (the worker id) is not")
        record = verify_token(workers_root, wid, token)
        if mtype not in WORKER_TYPES:
            allowed = ", ".join(sorted(WORKER_TYPES))
            raise UserError(f"a worker may post only {allowed}; {mtype} is the conductor's")
        if task is not None and task != record.task:
            raise UserError(
                f"worker {wid!r} works on task {record.task!r} and cannot post about {task!r}",
                task_id=task,
            )
        if worker is not None and worker != record.worker:
            raise UserError(f"worker {wid!r} cannot post as worker {worker!r}")
        return Author(task=record.task, worker=record.worker, attempt=record.attempt)
    if mtype not in HUMAN_TYPES:
        allowed = ", ".join(sorted(HUMAN_TYPES))
        raise UserError(
            f"a person may post only {allowed}; {mtype} is written by the conductor or a "
            f"worker (workers post with {WORKER_ENV} and {TOKEN_ENV} set)"
        )
    if mtype == MessageType.SKIP and task is None:
        raise UserError("SKIP needs --task: the task to skip")
    if mtype in (MessageType.APPROVE, MessageType.REJECT) and task is not None:
        # It would be posted and then count for nothing: only a whole-track answer does.
        raise UserError(
            f"{mtype} answers a run's approval, for the whole track: leave out --task "
            "(SKIP --task stops one task)"
        )
    if task is not None and track is not None:
        track.task(task)  # raises UserError naming the track and a suggestion
    return Author(task=task, worker=worker, attempt=None)
