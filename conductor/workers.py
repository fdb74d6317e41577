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
from dataclasses import dataclass
from pathlib import Path

from conductor.errors import StateError, UserError
from conductor.paths import check_name, refuse_symlink

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
    for stale in workers_root.glob(f"{SECRET_FILE}.*"):
        pid = stale.name.rsplit(".", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            stale.unlink(missing_ok=True)
    secret = secrets.token_hex(32)
    tmp = workers_root / f"{SECRET_FILE}.{os.getpid()}"
    refuse_symlink(tmp)
    tmp.unlink(missing_ok=True)
    _write_private(tmp, json.dumps({"secret": secret, "pid": os.getpid()}))
    os.replace(tmp, workers_root / SECRET_FILE)
    return secret


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


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
        raise UserError(f"the token in CONDUCTOR_WORKER_TOKEN does not belong to worker {wid!r}")
    return WorkerRecord(worker=wid, task=task, attempt=int(attempt_text), pid=pid)
