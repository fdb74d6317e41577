"""The run-state directory of a track and the rules for names that become paths.

Layout of ``<repo>/.conductor/<track>/`` (the default state directory)::

    bus/            one JSON file per message (``ls`` reads as a log); .index, .lock, .tmp/ hidden
    quarantine/     files found in bus/ that were not valid messages
    locks/          one JSON record per locked repository path, plus the .guard kernel lock
    run.lock        kernel lock held by the one conductor running this track; run.json says who
    workers/        ephemeral worker directories, one per live attempt
    logs/           per-attempt logs: logs/<task>.<attempt>.log (the worker id)
    cache/          rebuildable summaries (status snapshot); deleting it loses nothing

``.conductor/`` holds a ``.gitignore`` containing ``*``, so the state is ignored by git
without touching the repository's own ignore files.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conductor.errors import StateError, UserError

STATE_ROOT_NAME = ".conductor"

_FORBIDDEN_CHARS = ("\x00", "\n", "\r", "/", "\\")


def find_root(start: Path | None = None) -> Path:
    """The repository root that ``start`` (default: the current directory) is in.

    It is ``git rev-parse --show-toplevel`` run from ``start``. Where git is not installed,
    or ``start`` is not in a git work tree, it is the nearest of ``start`` and its parents
    that holds a ``.conductor/`` directory or a ``.git``; failing both, ``start`` itself. So a
    command run from a subdirectory finds the same ``.conductor/`` as one run at the top, and
    never makes a second one. The result is absolute.
    """
    here = Path(os.path.abspath(start if start is not None else Path.cwd()))
    try:
        proc = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--show-toplevel"],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError:  # no git
        proc = None
    if proc is not None and proc.returncode == 0:
        top = os.fsdecode(proc.stdout.rstrip(b"\n"))
        if top:
            return Path(top)
    for candidate in (here, *here.parents):
        if (candidate / STATE_ROOT_NAME).is_dir() or (candidate / ".git").exists():
            return candidate
    return here


TRACK_FILE_NAMES = ("track.yaml", "track.yml")
"""What a track directory's track file is called, in order of preference."""


def track_file(path: Path) -> Path:
    """``path`` itself, or for a directory its ``track.yaml`` (else ``track.yml``; if it has
    neither, ``track.yaml``, for the error to name)."""
    if not path.is_dir():
        return path
    for name in TRACK_FILE_NAMES:
        if (path / name).is_file():
            return path / name
    return path / TRACK_FILE_NAMES[0]


def state_root(repo: Path, state_root: Path | None = None) -> Path:
    """The root of every track's state directory: ``state_root``, else ``repo/.conductor``."""
    return state_root if state_root is not None else repo / STATE_ROOT_NAME


def known_tracks(root: Path) -> list[str]:
    """Ids of the tracks with run state (a ``bus/`` directory) under the state root ``root``."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    ids: list[str] = []
    for entry in entries:
        if entry.name.startswith(".") or entry.is_symlink():
            continue
        if os.path.isdir(os.path.join(entry.path, "bus")):
            ids.append(entry.name)
    return ids


def unknown_track(track_id: str, root: Path) -> UserError:
    """The error for a track id that has no run state under ``root``, with a did-you-mean."""
    known = known_tracks(root)
    match = difflib.get_close_matches(track_id, known, n=1, cutoff=0.6)
    if match:
        hint = f" (did you mean {match[0]!r}?)"
    elif known:
        hint = f"; tracks with run state: {', '.join(known[:10])}"
    else:
        hint = "; no track has run here yet"
    return UserError(f"no track {track_id!r} has run state under {root}{hint}")


def check_name(value: str, what: str) -> str:
    """Check that ``value`` is safe as one path component (an id, a worker name).

    Refuses empty names, ``.``/``..``, names starting with ``.`` or ``-``, NUL, newlines,
    slashes and anything over 128 characters. Raises ``UserError`` naming ``what``.
    """
    if not value:
        raise UserError(f"{what} must not be empty")
    if len(value) > 128:
        raise UserError(f"{what} {value[:40]!r}... is longer than 128 characters")
    if any(ch in value for ch in _FORBIDDEN_CHARS) or value in (".", ".."):
        raise UserError(f"{what} {value!r} contains a path separator, NUL or newline")
    if value.startswith((".", "-")) or ".." in value:
        raise UserError(f"{what} {value!r} must not start with '.' or '-' or contain '..'")
    if not value.isprintable():
        raise UserError(f"{what} {value!r} contains control characters")
    return value


def check_repo_path(value: str, what: str) -> str:
    """Check that ``value`` is a relative path (or glob) that stays inside the repository.

    Refuses absolute paths, ``..`` components, NUL and newlines. Returns it normalised
    (POSIX separators, no ``./`` prefix).
    """
    if not value or any(ch in value for ch in ("\x00", "\n", "\r")):
        raise UserError(f"{what} {value!r} is empty or contains NUL or a newline")
    if value.startswith(("/", "\\", "~")) or (len(value) > 1 and value[1] == ":"):
        raise UserError(f"{what} {value!r} is absolute; paths are relative to the repository")
    parts = PurePosixPath(value.replace("\\", "/")).parts
    if ".." in parts:
        raise UserError(f"{what} {value!r} climbs out of the repository with '..'")
    return str(PurePosixPath(*parts)) if parts else value


def refuse_symlink(path: Path) -> None:
    """Raise ``StateError`` if ``path`` exists and is a symlink (a planted redirect)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise StateError(f"refusing to use {path}: it is a symbolic link", path=path)


def open_state_file(path: Path, flags: int) -> int:
    """``os.open`` a file of the state directory: never through a symlink, never blocking
    on a FIFO (or device) planted under its name; only a regular file is accepted.

    Returns the descriptor (blocking again); raises ``StateError`` for anything else.
    """
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateError(f"refusing to use {path}: it is a symbolic link", path=path) from exc
        if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing
            raise StateError(
                f"refusing to use {path}: it is not a regular file", path=path
            ) from exc
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StateError(f"refusing to use {path}: it is not a regular file", path=path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if missing; refuse it if it is a symlink or not a directory."""
    refuse_symlink(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise StateError(f"{path} exists and is not a directory", path=path) from exc
    refuse_symlink(path)
    if not path.is_dir():
        raise StateError(f"{path} exists and is not a directory", path=path)
    return path


@dataclass(frozen=True)
class StateDir:
    """The run-state directory of one track."""

    root: Path
    """``<repo>/.conductor/<track>`` unless overridden."""

    @classmethod
    def for_track(cls, repo: Path, track_id: str, state_root: Path | None = None) -> StateDir:
        """The state directory of ``track_id`` under ``state_root`` (default repo/.conductor)."""
        check_name(track_id, "track id")
        base = state_root if state_root is not None else repo / STATE_ROOT_NAME
        return cls(base / track_id)

    @property
    def bus(self) -> Path:
        """Message directory."""
        return self.root / "bus"

    @property
    def quarantine(self) -> Path:
        """Where invalid files found in the bus are moved."""
        return self.root / "quarantine"

    @property
    def locks(self) -> Path:
        """Path-lock records."""
        return self.root / "locks"

    @property
    def run_lock(self) -> Path:
        """Kernel lock of the running conductor."""
        return self.root / "run.lock"

    @property
    def run_info(self) -> Path:
        """Who holds the run lock (pid, host, start time)."""
        return self.root / "run.json"

    @property
    def workers(self) -> Path:
        """Ephemeral worker directories."""
        return self.root / "workers"

    @property
    def logs(self) -> Path:
        """Per-attempt logs."""
        return self.root / "logs"

    @property
    def cache(self) -> Path:
        """Rebuildable caches."""
        return self.root / "cache"

    def ensure(self) -> StateDir:
        """Create the layout, refusing symlinks anywhere in it; write the ignore file."""
        parent = self.root.parent
        ensure_dir(parent)
        if parent.name == STATE_ROOT_NAME:
            ignore = parent / ".gitignore"
            refuse_symlink(ignore)
            if not ignore.exists():
                ignore.write_text("# conductor run state: never committed\n*\n")
        ensure_dir(self.root)
        for sub in (self.bus, self.quarantine, self.locks, self.workers, self.logs, self.cache):
            ensure_dir(sub)
        return self
