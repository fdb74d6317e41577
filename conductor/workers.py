"""Worker directories and worker identity.

A worker is one attempt at one task; its id is ``<task>.<attempt>`` (task ids never contain
``..`` and attempts are integers, so the id is unambiguous and safe as a path component).
Its directory ``<state>/workers/<worker_id>/`` exists only while the attempt runs and holds:

- ``worker.json``: task, attempt, pid of the conductor that dispatched it, and the SHA-256 of
  the secret handed to the worker in ``CONDUCTOR_WORKER_TOKEN``, which ``conductor bus post``
  checks so a worker cannot post as another worker or task;
- whatever the executor renders there (a Claude worker's ``SKILL.md``).

Resume removes directories left behind by a killed conductor.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from conductor.errors import StateError, UserError
from conductor.paths import check_name, refuse_symlink

RECORD_FILE = "worker.json"


def worker_id(task_id: str, attempt: int) -> str:
    """The id of attempt ``attempt`` at ``task_id``."""
    return f"{task_id}.{attempt}"


@dataclass(frozen=True)
class WorkerRecord:
    """What ``worker.json`` says about a live worker."""

    worker: str
    """The worker id."""
    task: str
    """Its task."""
    attempt: int
    """Its attempt number."""
    pid: int
    """The conductor process that dispatched it."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_worker_dir(workers_root: Path, task_id: str, attempt: int) -> tuple[Path, str]:
    """Make a fresh worker directory under an existing ``workers_root``; return it and the
    worker's secret token. A leftover directory of the same worker (from a killed conductor)
    is replaced.
    """
    wid = check_name(worker_id(task_id, attempt), "worker id")
    path = workers_root / wid
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        remove_worker_dir(path)
        os.mkdir(path, 0o700)
    token = secrets.token_hex(16)
    record = {
        "worker": wid,
        "task": task_id,
        "attempt": attempt,
        "pid": os.getpid(),
        "token_sha256": _hash(token),
    }
    _write_private(path / RECORD_FILE, json.dumps(record))
    return path, token


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def remove_worker_dir(path: Path) -> None:
    """Remove a worker directory (a planted symlink is unlinked, never followed)."""
    try:
        os.unlink(path / RECORD_FILE)
        os.rmdir(path)  # the common case: a shell worker leaves nothing else
        return
    except OSError:
        pass
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def leftover_workers(workers_root: Path) -> list[Path]:
    """Worker directories present on disk (after a crash these belong to nobody)."""
    if not workers_root.is_dir():
        return []
    return sorted(p for p in workers_root.iterdir() if not p.name.startswith("."))


def verify_token(workers_root: Path, wid: str, token: str) -> WorkerRecord:
    """Check that ``token`` belongs to live worker ``wid``; return its record.

    Raises ``UserError`` when the worker is unknown (not running) or the token is wrong.
    """
    check_name(wid, "worker id")
    path = workers_root / wid
    refuse_symlink(path)
    try:
        data = json.loads((path / RECORD_FILE).read_text())
        expected = str(data["token_sha256"])
    except FileNotFoundError as exc:
        raise UserError(f"worker {wid!r} is not running (no live worker directory)") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"worker {wid!r} has an unreadable record: {exc}", path=path) from exc
    if not token or not hmac.compare_digest(expected, _hash(token)):
        raise UserError(f"the token in CONDUCTOR_WORKER_TOKEN does not belong to worker {wid!r}")
    return WorkerRecord(
        worker=str(data["worker"]),
        task=str(data["task"]),
        attempt=int(data["attempt"]),
        pid=int(data["pid"]),
    )
