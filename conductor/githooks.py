"""Git hooks that let a person's commits and a running track see each other.

``install`` puts two small POSIX sh scripts into the repository's hooks directory (the one
``git rev-parse --git-path hooks`` names, so ``core.hooksPath`` and linked worktrees are
respected). Each starts with a ``# conductor-hook:`` line and calls ``conductor hooks run NAME``
(falling back to ``<python> -m conductor``, the interpreter recorded at install time, when no
``conductor`` is on PATH):

- **pre-commit** refuses a commit that stages a file a running task owns: one matched by a path
  lock (a literal path or a glob) held by a live holder in any track's state directory. It also
  validates every staged ``*.yaml``/``*.yml`` whose staged content (read from the index, not the
  working tree) has a top-level ``track:`` key, with conductor's own track loader.
- **post-commit** posts ``PERSON_COMMIT`` (``{sha, subject, author, files}``) on the bus of every
  track whose run lock is held right now. It never fails a commit.

A hook that was already there is moved aside to ``NAME.pre-conductor`` and run by ours after
conductor's check, with the same arguments and stdin; its failure still refuses the commit.
``uninstall`` removes our scripts and renames the originals back, so they come back byte for
byte with their mode.

A commit made inside a worker (``CONDUCTOR_WORKER`` set, as conductor sets it for shell tasks)
is not a person's: the pre-commit check ignores the locks that worker holds itself, and the
post-commit hook records nothing. A person who must commit anyway uses ``git commit
--no-verify``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from conductor.atomic import write_atomic
from conductor.errors import ConductorError, TrackError, UserError
from conductor.paths import STATE_ROOT_NAME, StateDir, check_name

if TYPE_CHECKING:
    from conductor.locks import LockInfo

HOOK_NAMES = ("pre-commit", "post-commit")
"""The git hooks conductor installs."""

MARKER = "# conductor-hook:"
"""Starts the second line of every hook script conductor writes; how ours are recognised."""

CHAINED_SUFFIX = ".pre-conductor"
"""An existing hook is kept as ``<hook>.pre-conductor`` and run after conductor's check."""

MAX_COMMIT_FILES = 1000
"""At most this many paths of one commit go into its ``PERSON_COMMIT`` payload."""

MAX_FILES_CHARS = 256 * 1024
"""... and at most this many characters of paths (a bus message is capped at 1 MiB)."""

HookState = Literal["installed", "missing", "foreign"]
HookAction = Literal["installed", "updated", "unchanged", "removed", "restored", "kept", "absent"]

_TRACK_KEY = re.compile(rb"^(?:track|\"track\"|'track')[ \t]*:", re.MULTILINE)
"""A top-level ``track:`` key (block style, column 0): the cheap test before parsing YAML."""

_YAML_SUFFIXES = (".yaml", ".yml")

_SCRIPT = """\
#!/bin/sh
{marker} {name} (from `conductor hooks install`; `conductor hooks uninstall` removes it)
# Runs conductor's {what}, then {name}{chained}, the hook it replaced, if any.
conductor_python={python}
if command -v conductor >/dev/null 2>&1; then
    conductor hooks run {name} "$@" </dev/null{on_fail}
elif [ -x "$conductor_python" ]; then
    "$conductor_python" -m conductor hooks run {name} "$@" </dev/null{on_fail}
else
    echo "conductor: warning: no conductor on PATH and $conductor_python is gone;" \\
        "{name} hook skipped" >&2
fi
chained="$(dirname "$0")/{name}{chained}"
if [ -x "$chained" ]; then
    exec "$chained" "$@"
fi
"""

_WHAT = {
    "pre-commit": "check",
    "post-commit": "record of the commit",
}


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> bytes:
    """Run ``git -C repo ARGS`` in this environment (a hook's GIT_INDEX_FILE included)."""
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("git is not installed (not found on PATH)") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise ConductorError(f"git {' '.join(args)} failed: {err or f'exit {proc.returncode}'}")
    return proc.stdout


def _require_repo(repo: Path) -> None:
    """Raise ``UserError`` unless ``repo`` is inside a git repository."""
    where = os.path.abspath(repo)
    if not repo.is_dir():
        raise UserError(f"{where} is not a directory")
    try:
        _git(repo, "rev-parse", "--git-dir")
    except UserError:
        raise
    except ConductorError:
        raise UserError(f"{where} is not in a git repository") from None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape").rstrip("\n")


def hooks_dir(repo: Path) -> Path:
    """The directory git runs hooks from (``core.hooksPath`` if set), absolute."""
    _require_repo(repo)
    out = _text(_git(repo, "rev-parse", "--git-path", "hooks"))
    return Path(os.path.abspath(repo / out))


def toplevel(repo: Path) -> Path:
    """The top of the work tree ``repo`` is in; ``UserError`` for a bare repository (or no
    repository). One git process when all is well: a hook runs this on every commit."""
    try:
        top = _text(_git(repo, "rev-parse", "--show-toplevel"))
    except UserError:
        raise
    except ConductorError:
        top = ""
    if not top:
        _require_repo(repo)  # says what is missing: the directory, or the repository
        raise UserError(f"{os.path.abspath(repo)} has no work tree (a bare repository)")
    return Path(top)


def _nul_split(raw: bytes) -> list[str]:
    return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0") if part]


def staged_changes(repo: Path) -> list[tuple[str, str]]:
    """``(status letter, path)`` of each path the index changes against HEAD (renames split)."""
    fields = _nul_split(_git(repo, "diff", "--cached", "--name-status", "--no-renames", "-z"))
    return list(zip(fields[::2], fields[1::2], strict=True))


# --------------------------------------------------------------------------- install


@dataclass(frozen=True)
class HookStatus:
    """Where one hook stands in a repository."""

    name: str
    """``pre-commit`` or ``post-commit``."""
    path: Path
    """The hook file."""
    state: HookState
    """``installed`` (ours), ``missing``, or ``foreign`` (someone else's hook)."""
    chained: Path | None
    """The original hook ours runs after its own check, if one is kept."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "path": str(self.path),
            "state": self.state,
            "chained": str(self.chained) if self.chained is not None else None,
        }


@dataclass(frozen=True)
class HookChange:
    """What ``install`` or ``uninstall`` did to one hook."""

    name: str
    """The hook."""
    path: Path
    """The hook file."""
    action: HookAction
    """What happened: kept means a foreign hook was left alone, absent that none was there."""
    chained: Path | None = None
    """The original hook kept aside (install) or put back (uninstall), if any."""


def _exists(path: Path) -> bool:
    return path.is_symlink() or path.exists()


def is_ours(path: Path) -> bool:
    """Whether ``path`` is a hook script conductor wrote (a regular file with our marker)."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return MARKER.encode() in head


def _status_of(directory: Path, name: str) -> HookStatus:
    path = directory / name
    chained = directory / (name + CHAINED_SUFFIX)
    state: HookState = "missing"
    if is_ours(path):
        state = "installed"
    elif _exists(path):
        state = "foreign"
    return HookStatus(name, path, state, chained if _exists(chained) else None)


def status(repo: Path) -> list[HookStatus]:
    """The state of each of conductor's hooks in ``repo``."""
    directory = hooks_dir(repo)
    return [_status_of(directory, name) for name in HOOK_NAMES]


def hook_script(name: str, python: str) -> str:
    """The sh script installed as hook ``name``; ``python`` runs ``-m conductor`` as fallback."""
    return _SCRIPT.format(
        marker=MARKER,
        name=name,
        what=_WHAT[name],
        chained=CHAINED_SUFFIX,
        python=shlex.quote(python),
        on_fail=" || exit $?" if name == "pre-commit" else " || :",
    )


def install(repo: Path, *, python: str | None = None) -> list[HookChange]:
    """Install both hooks, keeping any existing hook aside and chained; idempotent.

    ``python`` (default: this interpreter) is recorded as the fallback when no ``conductor``
    is on PATH. Raises ``UserError`` before changing anything if a foreign hook and a kept
    original are both present (moving one aside would overwrite the other).
    """
    directory = hooks_dir(repo)
    interpreter = os.path.abspath(python or sys.executable)
    current = [_status_of(directory, name) for name in HOOK_NAMES]
    for hook in current:
        if hook.state == "foreign" and hook.chained is not None:
            raise UserError(
                f"{hook.path} is not conductor's hook and {hook.chained.name} (the hook "
                "conductor chains) is there too; move one of them away and install again",
                path=hook.path,
            )
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        return [_install_one(hook, hook_script(hook.name, interpreter)) for hook in current]


def _install_one(hook: HookStatus, script: str) -> HookChange:
    chained = hook.chained
    action: HookAction = "installed"
    if hook.state == "installed":
        if hook.path.read_text(errors="replace") == script:
            return HookChange(hook.name, hook.path, "unchanged", chained)
        action = "updated"
    elif hook.state == "foreign":
        chained = hook.path.with_name(hook.name + CHAINED_SUFFIX)
        os.rename(hook.path, chained)
    _write_script(hook.path, script)
    return HookChange(hook.name, hook.path, action, chained)


@contextlib.contextmanager
def _writing(directory: Path) -> Iterator[None]:
    """Turn a failure to change the hooks directory into a ``UserError`` naming it."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot change the hooks in {directory}: {exc}") from exc


def _write_script(path: Path, script: str) -> None:
    """Write an executable script at ``path`` whole, durably (a person's hook)."""
    write_atomic(path, script, mode=0o755, durable=True)


def uninstall(repo: Path) -> list[HookChange]:
    """Remove conductor's hooks and put back the originals they chained, exactly."""
    hooks = status(repo)
    with _writing(hooks[0].path.parent):
        return [_uninstall_one(hook) for hook in hooks]


def _uninstall_one(hook: HookStatus) -> HookChange:
    if hook.state == "foreign":
        return HookChange(hook.name, hook.path, "kept", hook.chained)
    if hook.state == "installed":
        hook.path.unlink()
    if hook.chained is not None:
        os.rename(hook.chained, hook.path)
        return HookChange(hook.name, hook.path, "restored", hook.chained)
    return HookChange(hook.name, hook.path, "removed" if hook.state == "installed" else "absent")


# --------------------------------------------------------------------------- pre-commit


@dataclass(frozen=True)
class OwnedFile:
    """A staged path that a running task owns."""

    path: str
    """The staged repository path."""
    track: str
    """The track of the task."""
    lock: LockInfo
    """The lock record matching it (a literal path or a glob)."""

    def message(self) -> str:
        """One line for the person committing."""
        return (
            f"conductor: {self.path} is being changed by task {self.lock.task} "
            f"(track {self.track}); wait for it or stop the track"
        )


def state_root(repo: Path, state_dir: Path | None) -> Path:
    """The root of the tracks' state directories, as ``StateDir.for_track`` resolves it."""
    return state_dir if state_dir is not None else repo / STATE_ROOT_NAME


def _track_dirs(root: Path, needs: Callable[[StateDir], Path]) -> list[tuple[str, StateDir]]:
    """``(track id, state)`` of each track under ``root`` whose ``needs(state)`` exists."""
    if not root.is_dir():
        return []
    found: list[tuple[str, StateDir]] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not _exists(needs(StateDir(entry))):
            continue
        with contextlib.suppress(UserError):
            found.append((check_name(entry.name, "track id"), StateDir(entry)))
    return found


def owned_files(
    repo: Path,
    state_dir: Path | None,
    paths: Sequence[str],
    *,
    worker: tuple[str, str] | None = None,
) -> list[OwnedFile]:
    """Which of ``paths`` a live lock holder owns, in any track under the state root.

    ``worker`` is ``(track, worker id)`` of a worker committing its own work: its own locks
    do not count. A holder on another host without a lease counts as live (it may be).
    """
    tracks = _track_dirs(state_root(repo, state_dir), lambda s: s.locks) if paths else []
    if not tracks:
        return []
    from conductor.globs import matches
    from conductor.locks import PathLocks, dead_reason

    owned: list[OwnedFile] = []
    for track_id, state in tracks:
        live = [
            info
            for info in PathLocks(state.locks).scan()[0]
            if (track_id, info.worker) != worker and dead_reason(info) is None
        ]
        for path in paths:
            for info in live:
                if info.path == path or matches(path, [info.path]):
                    owned.append(OwnedFile(path, track_id, info))
                    break
    return owned


def staged_track_errors(repo: Path, changes: Iterable[tuple[str, str]]) -> list[TrackError]:
    """Problems in staged track files, read from the index (one error per bad file)."""
    candidates: list[tuple[str, bytes]] = []
    for status_letter, path in changes:
        if status_letter == "D" or not path.endswith(_YAML_SUFFIXES):
            continue
        raw = _git(repo, "show", f":{path}")
        if _TRACK_KEY.search(raw.removeprefix(b"\xef\xbb\xbf")):
            candidates.append((path, raw))
    if not candidates:
        return []
    from conductor.track import parse_track

    errors: list[TrackError] = []
    for path, raw in candidates:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            errors.append(TrackError("the file is not valid UTF-8", path=path, line=line))
            continue
        if not _is_track(text):
            continue
        try:
            parse_track(text, source=Path(path))
        except TrackError as exc:
            errors.append(exc)
    return errors


def _is_track(text: str) -> bool:
    """A mapping with a top-level ``track:`` key; YAML too broken to tell counts as one."""
    import yaml

    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        return True  # its `track:` line says it is meant to be one: let the loader say where
    return isinstance(data, dict) and "track" in data


@dataclass(frozen=True)
class PreCommitResult:
    """What the pre-commit check found; the commit goes ahead only when both are empty."""

    owned: list[OwnedFile] = field(default_factory=list)
    """Staged paths a running task owns."""
    track_errors: list[TrackError] = field(default_factory=list)
    """Problems in staged track files."""

    @property
    def ok(self) -> bool:
        """Whether the commit may go ahead."""
        return not self.owned and not self.track_errors


def pre_commit(
    repo: Path,
    state_dir: Path | None,
    *,
    owned: bool = True,
    tracks: bool = True,
    worker: tuple[str, str] | None = None,
) -> PreCommitResult:
    """Check what the index is about to commit: owned files (``owned``), track files (``tracks``).

    ``state_dir`` is the state root (None: ``<top>/.conductor``); ``worker`` as in
    ``owned_files``.
    """
    top = toplevel(repo)
    changes = staged_changes(top)
    return PreCommitResult(
        owned=owned_files(top, state_dir, [p for _, p in changes], worker=worker) if owned else [],
        track_errors=staged_track_errors(top, changes) if tracks else [],
    )


# --------------------------------------------------------------------------- post-commit


@dataclass(frozen=True)
class Commit:
    """A commit, as ``PERSON_COMMIT`` records it."""

    sha: str
    """The full commit id."""
    subject: str
    """The first line of its message."""
    author: str
    """``Name <email>``."""
    files: list[str]
    """Paths it changed against its first parent (all of them for a root commit)."""
    files_omitted: int = 0
    """Paths left out of ``files`` to keep the message small."""

    def payload(self) -> dict[str, Any]:
        """The ``PERSON_COMMIT`` payload."""
        body: dict[str, Any] = {
            "sha": self.sha,
            "subject": self.subject,
            "author": self.author,
            "files": self.files,
        }
        if self.files_omitted:
            body["files_omitted"] = self.files_omitted
        return body


def read_commit(repo: Path, rev: str = "HEAD") -> Commit:
    """Read ``rev``'s id, subject, author and changed paths."""
    fmt = "--format=%H%x00%P%x00%an <%ae>%x00%s"
    raw = _git(repo, "log", "-1", "--no-show-signature", fmt, rev, "--")
    sha, parents, author, subject = _text(raw).split("\0", 3)
    against = [parents.split()[0], sha] if parents else ["--root", "--no-commit-id", sha]
    paths = _nul_split(_git(repo, "diff-tree", "-r", "-z", "--name-only", "--no-renames", *against))
    kept: list[str] = []
    size = 0
    for path in paths:
        size += len(path)
        if len(kept) >= MAX_COMMIT_FILES or size > MAX_FILES_CHARS:
            break
        kept.append(path)
    return Commit(sha, subject, author, kept, len(paths) - len(kept))


@dataclass(frozen=True)
class Posted:
    """Where ``record_commit`` posted, or why it could not."""

    track: str
    """The running track."""
    seq: int | None
    """The ``PERSON_COMMIT`` message's sequence number; None when posting failed."""
    error: str | None = None
    """Why posting failed."""


def record_commit(
    repo: Path, state_dir: Path | None, rev: str = "HEAD"
) -> tuple[Commit | None, list[Posted]]:
    """Post ``PERSON_COMMIT`` for ``rev`` on the bus of every running track (as a person).

    A track is running when its run lock is held; when none is, the commit is not even read
    (``None``). A failure on one track is reported in its ``Posted`` and does not stop the
    others.
    """
    from conductor.locks import RunLock

    top = toplevel(repo)
    commit: Commit | None = None
    posted: list[Posted] = []
    for track_id, state in _track_dirs(state_root(top, state_dir), lambda s: s.run_lock):
        try:
            if RunLock(state, track_id).holder() is None:
                continue
            from conductor.bus import Bus  # loaded only when a track is running
            from conductor.messages import MessageType

            commit = commit or read_commit(top, rev)
            with Bus.for_state(state, track_id) as bus:
                msg = bus.post(MessageType.PERSON_COMMIT, payload=commit.payload())
        except (ConductorError, OSError) as exc:
            posted.append(Posted(track_id, None, str(exc)))
        else:
            posted.append(Posted(track_id, msg.seq))
    return commit, posted
