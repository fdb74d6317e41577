"""Landing accepted work in the person's checkout: one commit per accepted attempt.

Where the commits go: **on the branch the checkout has checked out** (or a detached
``HEAD``), one commit per accepted attempt, the way Aider commits each accepted change.
``git log`` is the track's history and ``conductor revert TRACK TASK`` undoes one task with a
new commit. A landing moves ``HEAD`` with a compare-and-swap (``git update-ref HEAD new old``)
and never runs the person's hooks.

Rules, checked under one kernel lock per state root so two tracks never land at once:

- every path the attempt changed must be clean in the checkout (working tree = index =
  ``HEAD``; no untracked or ignored file in the way), unchanged in ``HEAD`` since the
  snapshot the attempt started from, and a path it adds must not be one the checkout ignores
  (a copy whose ignore rules differ never writes into ignored places such as
  ``.conductor/``). Otherwise nothing is applied: the attempt fails naming the paths, and
  its work is kept as a commit on ``refs/conductor/<track>/attempts/<worker>`` for the
  person to cherry-pick;
- so the person's own uncommitted changes are never committed, overwritten or lost: a path
  they have touched is never landed on;
- the commit's tree is ``HEAD``'s with exactly those paths replaced; the files are then
  written into the working tree (each by rename, so a reader never sees half a file) and
  their index entries reset to the new ``HEAD``.

Crash safety: the caller records the commit on the bus (LANDING) before ``HEAD`` moves. A
conductor killed after the move and before the files are written is finished by
``finish_landing`` on resume; one killed before the move landed nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shlex
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from filelock import FileLock

from conductor.copies import (
    EMPTY_TREE,
    ZERO_OID,
    Change,
    Checkout,
    GitError,
    ignored_by,
    parse_raw_diff,
    read_blob,
    write_blob,
)
from conductor.errors import ConductorError

SNAPSHOT_REFS = "refs/conductor/{track}/snapshots/{worker}"
"""Keeps an attempt's snapshot commit alive while it runs."""

ATTEMPT_REFS = "refs/conductor/{track}/attempts/{worker}"
"""Where the work of an attempt that could not land is kept."""


class LandConflict(ConductorError):
    """The checkout changed where the attempt wants to land; nothing was applied."""

    def __init__(self, message: str, *, paths: Sequence[str]) -> None:
        super().__init__(message)
        self.paths = list(paths)


@dataclass(frozen=True)
class Landed:
    """A landing that happened."""

    commit: str
    """The new commit ``HEAD`` points at."""
    parent: str | None
    """``HEAD`` before it."""
    paths: list[str]
    """The paths it changed."""
    incomplete: str | None = None
    """Why the working tree could not be fully updated after ``HEAD`` moved, if it could not
    (the commit stands; ``git checkout -- PATH`` finishes the job)."""


def commit_message(title: str, body: str | None, trailers: dict[str, Any]) -> str:
    """A commit message: a title, an optional body, ``Key: value`` trailers."""
    parts = [title.strip()]
    if body and body.strip():
        parts.append(body.strip())
    lines = [f"{k}: {v}" for k, v in trailers.items() if v not in (None, "")]
    if lines:
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _identity(checkout: Checkout) -> dict[str, str]:
    """Commits are authored by conductor and committed by the person when git knows them."""
    env = {"GIT_AUTHOR_NAME": "conductor", "GIT_AUTHOR_EMAIL": "conductor@localhost"}
    name = checkout.git("config", "user.name", check=False).stdout.decode().strip()
    email = checkout.git("config", "user.email", check=False).stdout.decode().strip()
    env["GIT_COMMITTER_NAME"] = name or "conductor"
    env["GIT_COMMITTER_EMAIL"] = email or "conductor@localhost"
    return env


def keep_commit(
    checkout: Checkout, ref: str, tree: str, parent: str, message: str
) -> str:
    """Record ``tree`` as a commit on ``parent`` under ``ref`` (an attempt's unlanded work)."""
    commit = checkout.git(
        "commit-tree", tree, "-p", parent, "-m", message, env=_identity(checkout)
    ).stdout.decode().strip()
    checkout.git("update-ref", ref, commit)
    return commit


def delete_ref(checkout: Checkout, ref: str) -> None:
    """Remove ``ref`` if it exists."""
    checkout.git("update-ref", "-d", ref, check=False)


def _tree_entries(checkout: Checkout, rev: str | None, paths: Sequence[str]) -> dict[str, str]:
    """``path -> "mode oid"`` of ``paths`` present in ``rev`` (none for an unborn branch)."""
    if rev is None or not paths:
        return {}
    proc = checkout.git("ls-tree", "-r", "-z", "--full-tree", rev, "--", *paths)
    out: dict[str, str] = {}
    for entry in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, _kind, oid = meta.split(" ")
        out[path] = f"{mode} {oid}"
    return out


def _dirty(checkout: Checkout, paths: Sequence[str]) -> list[str]:
    """Paths under ``paths`` with uncommitted changes, untracked or ignored files."""
    proc = checkout.git(
        "status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all",
        "--ignored=matching", "--", *paths,
    )
    dirty: list[str] = []
    for entry in proc.stdout.decode("utf-8", "surrogateescape").split("\0"):
        if len(entry) > 3:
            dirty.append(entry[3:])
    return dirty


CHANGED_IN_HEAD = "HEAD has another version of it now"
"""The conflict a new attempt (built on the new HEAD) may get past."""

_IN_PROGRESS = {
    "MERGE_HEAD": "a merge",
    "CHERRY_PICK_HEAD": "a cherry-pick",
    "REVERT_HEAD": "a revert",
    "rebase-merge": "a rebase",
    "rebase-apply": "a rebase or am",
    "BISECT_LOG": "a bisect",
}
"""Files in the git directory that say an operation is half done."""


def _under_any(path: str, prefixes: set[str]) -> bool:
    """Whether one of ``path``'s parent directories is in ``prefixes``."""
    parts = PurePosixPath(path).parts
    return any("/".join(parts[:k]) in prefixes for k in range(1, len(parts)))


def conflicts(checkout: Checkout, head: str | None, changes: Sequence[Change]) -> list[str]:
    """Why each path cannot be landed on now, as ``path: reason`` lines (empty: it can)."""
    for name, what in _IN_PROGRESS.items():
        if (checkout.git_dir / name).exists():
            return [f"HEAD: your checkout is in the middle of {what}; finish or abort it first"]
    paths = [c.path for c in changes]
    problems = [f"{p}: has uncommitted changes in your checkout" for p in _dirty(checkout, paths)]
    replaced = {c.path for c in changes if c.deleted or c.status == "T"}
    added = [
        c.path
        for c in changes
        if c.old_mode == "000000" and not _under_any(c.path, replaced)
    ]
    problems += [f"{p}: is ignored in your checkout" for p in ignored_by(checkout, added)]
    current = _tree_entries(checkout, head, paths)
    for change in changes:
        before = None if change.old_mode == "000000" else f"{change.old_mode} {change.old_oid}"
        now = current.get(change.path)
        if now != before:
            problems.append(f"{change.path}: {CHANGED_IN_HEAD}")
    deleted = {c.path for c in changes if c.deleted}
    for change in changes:
        if change.deleted:
            continue
        parts = PurePosixPath(change.path).parts
        for k in range(1, len(parts)):
            prefix = "/".join(parts[:k])
            parent = checkout.root / prefix
            if os.path.islink(parent) and prefix not in deleted:
                problems.append(f"{change.path}: {prefix} is a symbolic link")
                break
            if os.path.lexists(parent) and not parent.is_dir() and prefix not in deleted:
                problems.append(f"{change.path}: {prefix} is a file in your checkout")
                break
    return sorted(set(problems))


TEMP_PREFIX = ".conductor-land-"
"""Name prefix of a file staged for a landing at the checkout's top (swept on resume). No
attempt may land a path with this prefix (``isolation`` rejects it)."""


def land(
    checkout: Checkout,
    changes: Sequence[Change],
    *,
    message: str,
    lock: Path,
    scratch: Path | None = None,
    before_move: Callable[[str, str | None, str | None], None] | None = None,
) -> Landed:
    """Apply ``changes`` to the checkout as one commit on ``HEAD`` (see the module docstring).

    ``before_move(commit, parent, branch)`` runs after the commit exists and before anything
    in the checkout changes (the caller records it; ``branch`` is the ref ``HEAD`` names, or
    None when it is detached). ``scratch`` is a private directory for a
    temporary index (default: beside ``lock``). Raises ``LandConflict`` when a rule fails;
    nothing is applied then.

    Order: the commit is made (objects only); the new files are staged at the top of the
    checkout under temporary names; ``HEAD`` moves (compare-and-swap); deletions are made
    and the staged files renamed into place; the index entries are reset.
    """
    if not changes:
        raise ConductorError("nothing to land")
    paths = [c.path for c in changes]
    with FileLock(str(lock)):
        head = checkout.head()
        problems = conflicts(checkout, head, changes)
        if problems:
            raise LandConflict(
                "cannot land: " + "; ".join(problems[:20]),
                paths=[p.split(":")[0] for p in problems],
            )
        tree = _tree_with(checkout, head, changes, scratch or lock.parent)
        parents = ["-p", head] if head else []
        commit = checkout.git(
            "commit-tree", tree, *parents, "-m", message, env=_identity(checkout)
        ).stdout.decode().strip()
        if before_move is not None:
            before_move(commit, head, current_branch(checkout))
        staged = stage_worktree(checkout, changes)
        try:
            subject = message.splitlines()[0]
            moved = checkout.git(
                "update-ref", "-m", subject, "HEAD", commit, head or ZERO_OID, check=False
            )
            if moved.returncode != 0:
                raise LandConflict("cannot land: HEAD moved while landing; try again", paths=paths)
        except BaseException:
            discard_staged(staged)
            raise
        try:
            apply_staged(checkout, changes, staged)
            reset_index(checkout, paths)
        except (OSError, GitError) as exc:  # HEAD moved: the landing stands regardless
            discard_staged(staged)
            return Landed(commit=commit, parent=head, paths=paths, incomplete=str(exc))
        return Landed(commit=commit, parent=head, paths=paths)


def _tree_with(
    checkout: Checkout, head: str | None, changes: Sequence[Change], scratch: Path
) -> str:
    """``HEAD``'s tree with ``changes`` applied; checked to differ from it in exactly them."""
    index = scratch / f".land.{os.getpid()}.index"
    index.unlink(missing_ok=True)
    try:
        if head is not None:
            checkout.git("read-tree", head, index=index)
        else:
            checkout.git("read-tree", "--empty", index=index)
        records = []
        for change in changes:
            if change.deleted:
                records.append(f"0 {ZERO_OID}\t{change.path}")
            else:
                records.append(f"{change.new_mode} {change.new_oid}\t{change.path}")
        checkout.git(
            "update-index", "-z", "--index-info", index=index,
            stdin=("\0".join(records) + "\0").encode("utf-8", "surrogateescape"),
        )
        tree = checkout.git("write-tree", index=index).stdout.decode().strip()
    finally:
        index.unlink(missing_ok=True)
    base = f"{head}^{{tree}}" if head is not None else EMPTY_TREE
    proc = checkout.git("diff-tree", "-r", "-z", "--no-renames", "--name-only", base, tree)
    differ = {p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p}
    if differ != {c.path for c in changes}:
        raise GitError(
            "the landing commit would change other paths than the attempt's: "
            + ", ".join(sorted(differ ^ {c.path for c in changes}))[:500]
        )
    return tree


INDEX_WAIT = 10.0
"""Seconds to wait for another git (an editor's, the person's) to let go of the index."""


def current_branch(checkout: Checkout) -> str | None:
    """The ref ``HEAD`` names (``refs/heads/main``), or None when it is detached."""
    proc = checkout.git("symbolic-ref", "-q", "HEAD", check=False)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def contains(checkout: Checkout, rev: str, commit: str) -> bool:
    """Whether ``commit`` is in the history of ``rev``."""
    return (
        checkout.git("merge-base", "--is-ancestor", commit, rev, check=False).returncode == 0
    )


def reset_index(checkout: Checkout, paths: Sequence[str], *, wait: float | None = None) -> None:
    """Make the index entries of ``paths`` those of ``HEAD``; ``GitError`` (naming the command
    that finishes the job) when the index stays locked for ``wait`` seconds."""
    if not paths:
        return
    deadline = time.monotonic() + (INDEX_WAIT if wait is None else wait)
    while True:
        proc = checkout.git("reset", "-q", "HEAD", "--", *paths, check=False)
        if proc.returncode == 0:
            return
        if time.monotonic() >= deadline:
            shown = " ".join(shlex.quote(p) for p in paths[:20])
            raise GitError(
                f"could not update your index ({proc.stderr.decode(errors='replace').strip()}); "
                f"run `git reset -q -- {shown}` to match it to HEAD"
            )
        time.sleep(0.1)


def stage_worktree(checkout: Checkout, changes: Sequence[Change]) -> dict[str, Path]:
    """Write the new content of ``changes`` at the top of the checkout under temporary
    names nobody can guess; return path → staged file. Nothing is left behind when it fails.
    Contents are streamed from the object store, never held in memory."""
    root = checkout.root
    token = secrets.token_hex(8)
    staged: dict[str, Path] = {}
    try:
        for number, change in enumerate(sorted(changes, key=lambda c: c.path)):
            if change.deleted:
                continue
            tmp = root / f"{TEMP_PREFIX}{os.getpid()}-{token}-{number}"
            if change.new_mode == "120000":
                target = read_blob(checkout, change.new_oid)
                os.symlink(target.decode("utf-8", "surrogateescape"), tmp)
            else:
                mode = 0o777 if change.new_mode == "100755" else 0o666
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
                staged[change.path] = tmp
                try:
                    write_blob(checkout, change.new_oid, fd)
                finally:
                    os.close(fd)
            staged[change.path] = tmp
    except BaseException:
        discard_staged(staged)
        raise
    return staged


def discard_staged(staged: dict[str, Path]) -> None:
    """Remove staged files that were not renamed into place."""
    for tmp in staged.values():
        tmp.unlink(missing_ok=True)


def apply_staged(checkout: Checkout, changes: Sequence[Change], staged: dict[str, Path]) -> None:
    """Delete what the changes delete, then rename the staged files into place."""
    root = checkout.root
    for change in sorted((c for c in changes if c.deleted), key=lambda c: c.path, reverse=True):
        target = root / change.path
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            target.unlink()
        _prune_empty(root, target.parent)
    for change in sorted((c for c in changes if not c.deleted), key=lambda c: c.path):
        target = root / change.path
        _make_parents(root, target.parent)
        if os.path.isdir(target) and not os.path.islink(target):
            os.rmdir(target)  # an empty directory a deletion above left behind
        os.replace(staged.pop(change.path), target)


def write_worktree(checkout: Checkout, changes: Sequence[Change]) -> None:
    """Write the new side of ``changes`` into the checkout's working tree."""
    apply_staged(checkout, changes, stage_worktree(checkout, changes))


_STAGED_RE = re.compile(rf"^{re.escape(TEMP_PREFIX)}(\d+)-[0-9a-f]{{16}}-\d+$")


def sweep_staged(checkout: Checkout) -> None:
    """Remove files a killed landing staged and never renamed into place: plain files and
    links named as ``stage_worktree`` names them, of a process that is gone (another
    conductor may be landing in the same checkout). Nothing else is touched."""
    from conductor.processes import process_alive

    for name in os.listdir(checkout.root):
        match = _STAGED_RE.match(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and process_alive(pid):
            continue
        path = checkout.root / name
        with contextlib.suppress(OSError):
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                path.unlink()


def _make_parents(root: Path, directory: Path) -> None:
    rel = directory.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise GitError(f"cannot create {current}: a file or link is in the way")


def _prune_empty(root: Path, directory: Path) -> None:
    while directory != root and root in directory.parents:
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = directory.parent


def finish_landing(checkout: Checkout, payload: dict[str, Any]) -> bool:
    """Complete a landing a killed conductor began (its LANDING ``payload``).

    True when its commit is in ``HEAD``'s history (the landing happened; the working tree is
    brought up to date wherever the person has not changed a path since) or in the branch it
    moved (``payload["branch"]``, when the person has switched branches since); False when
    neither holds it (nothing was landed).
    """
    with contextlib.suppress(OSError):
        sweep_staged(checkout)
    commit = payload.get("commit")
    if not isinstance(commit, str):
        return False
    branch = payload.get("branch")
    if not contains(checkout, "HEAD", commit):
        # The person may have switched branches since: the landing still happened if the
        # branch it moved holds it (the working tree now belongs to the other branch).
        return isinstance(branch, str) and contains(checkout, branch, commit)
    changes = [change_from_dict(c) for c in payload.get("changes", [])]
    if not changes:
        return True
    paths = [c.path for c in changes]
    differs = set(
        checkout.git("diff-files", "--name-only", "-z", "--", *paths)
        .stdout.decode("utf-8", "surrogateescape")
        .split("\0")
    )
    todo: list[Change] = []
    for change in changes:
        target = checkout.root / change.path
        exists = os.path.lexists(target)
        tracked_before = change.old_mode != "000000"
        if tracked_before and change.path not in differs:
            todo.append(change)  # still as it was before the landing
        elif not tracked_before and not exists:
            todo.append(change)
    write_worktree(checkout, todo)
    reset_index(checkout, paths)
    return True


def change_to_dict(change: Change) -> dict[str, str]:
    """A ``Change`` for a bus payload."""
    return dataclasses.asdict(change)


def change_from_dict(data: dict[str, Any]) -> Change:
    """A ``Change`` back from a bus payload."""
    return Change(**{f.name: str(data[f.name]) for f in dataclasses.fields(Change)})


def commit_changes(checkout: Checkout, commit: str) -> list[Change]:
    """What ``commit`` changed against its first parent (the whole tree for a root commit)."""
    proc = checkout.git(
        "diff-tree", "-r", "-z", "--no-renames", "--raw", "--root", "--no-commit-id", commit
    )
    return parse_raw_diff(proc.stdout)


def inverse(changes: Sequence[Change]) -> list[Change]:
    """The changes that undo ``changes``."""
    flip = {"A": "D", "D": "A"}
    return [
        Change(
            c.path, flip.get(c.status, c.status), c.new_mode, c.old_mode, c.new_oid, c.old_oid
        )
        for c in changes
    ]
