"""Attempts in their own copy: make the copy, judge it by its diff, land what is accepted.

The scheduler uses one ``Isolation`` per run for every attempt whose executor needs a copy
(Claude sessions always; shell tasks with ``isolation: copy``):

1. ``open``: snapshot the checkout and clone it into ``<state>/copies/<worker>/`` with a
   private temporary directory beside it (``conductor.copies``);
2. the executor works there (sandboxed: ``conductor.sandbox``);
3. ``judge``: what the copy's working tree changed against the snapshot is the evidence.
   Rejected, nothing applied: a file over 100 MiB; a name that is not valid UTF-8 or holds
   control characters; a change in conductor's state directory or outside the task's
   ``files``; a nested repository; a claim naming a file that did not change, or a change the
   claim does not name; no change when the task type expects one;
4. ``prepare_verify``: every ignored file the attempt left is removed (none were copied and
   none land), so ``verify`` sees exactly what would land;
5. ``land``: one commit on the checkout's ``HEAD`` (``conductor.landing``);
6. ``close``: the copy is removed; a failed attempt's copy is kept for inspection until the
   task's next attempt ends or the next run starts (``conductor status`` lists it).

Everything here is blocking (git and file system work); the scheduler calls it in a thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from conductor.copies import (
    MAX_CHANGE_BYTES,
    MAX_FILE_BYTES,
    Checkout,
    Copy,
    CopyState,
    GitError,
    PrivateGit,
    ignored_paths,
    make_copy,
    read_copy,
    remove_copy,
    remove_inside,
    take_snapshot,
)
from conductor.executors.evidence import expects_change
from conductor.globs import matches
from conductor.landing import (
    ATTEMPT_REFS,
    SNAPSHOT_REFS,
    TEMP_PREFIX,
    LandConflict,
    Landed,
    delete_ref,
    keep_commit,
    land,
)
from conductor.paths import StateDir
from conductor.track import Task


@dataclass(frozen=True)
class Workspace:
    """One attempt's copy and what goes with it."""

    worker: str
    """The attempt's worker id."""
    copy: Copy
    """The clone the attempt works in."""
    tmp: Path
    """Its private temporary directory."""

    @property
    def path(self) -> Path:
        """The copy's working tree."""
        return self.copy.path


@dataclass(frozen=True)
class Judgement:
    """What the copy changed, and whether that may be accepted."""

    state: CopyState
    """The copy's tree and its changes against the snapshot."""
    error: str | None
    """Why it is rejected (None: accepted so far; verify still to run)."""
    rejected: tuple[str, ...] = ()
    """The paths the rejection is about."""


class Isolation:
    """Copies, verdicts and landings of one run of one track."""

    def __init__(self, repo: Path, sd: StateDir, track_id: str) -> None:
        self.repo = repo
        self.sd = sd
        self.track_id = track_id
        self.dir = sd.root / "copies"
        """Where the copies of this track live."""
        self._checkout: Checkout | None = None
        self._private: PrivateGit | None = None

    @property
    def checkout(self) -> Checkout:
        """The person's repository (``UserError`` if the checkout is not a git repository)."""
        if self._checkout is None:
            self._checkout = Checkout.find(self.repo)
        return self._checkout

    @property
    def private(self) -> PrivateGit:
        """Conductor's own git directory for reading copies."""
        if self._private is None:
            self._private = PrivateGit(self.sd.root / "git", self.checkout).ensure()
        return self._private

    def prepare(self) -> None:
        """Check the checkout is a git repository and set up conductor's git; raises
        ``UserError`` naming the problem."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        _ = self.private

    # ---- one attempt

    def open(self, worker: str) -> Workspace:
        """Snapshot the checkout and make ``worker``'s copy of it."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        path = self.dir / worker
        index = self.dir / f"{worker}.index"
        tmp = self.dir / f"{worker}.tmp"
        self.discard(worker)  # a leftover of the same worker
        with FileLock(str(self._land_lock)):  # never half of another attempt's landing
            snapshot = take_snapshot(
                self.checkout, self.dir, worker, exclude=self.sd.root.parent
            )
        self.checkout.git("update-ref", self._ref(SNAPSHOT_REFS, worker), snapshot.commit)
        copy = make_copy(self.private, snapshot, path, index, branch=f"conductor/{worker}")
        tmp.mkdir(mode=0o700)
        return Workspace(worker=worker, copy=copy, tmp=tmp)

    def judge(
        self, ws: Workspace, task: Task, claimed: Sequence[str] | None
    ) -> Judgement:
        """Read what the copy changed and check it against the task and the claim."""
        state = read_copy(self.private, ws.copy)
        if state.too_large:
            return Judgement(
                state,
                f"files over {MAX_FILE_BYTES // 2**20} MiB (or changes over "
                f"{MAX_CHANGE_BYTES // 2**20} MiB together) are not landed: "
                + _listing([printable(p) for p in state.too_large]),
                tuple(printable(p) for p in state.too_large),
            )
        paths = state.paths
        odd = [p for p in paths if not _plain_name(p)]
        if odd:
            return Judgement(
                state,
                "file names must be valid UTF-8 without control characters: "
                + _listing([ascii(p) for p in odd]),
                tuple(ascii(p) for p in odd),
            )
        private = [p for p in paths if self._in_state_dir(p) or _reserved(p)]
        if private:
            return Judgement(
                state, "wrote into conductor's state directory or reserved names: "
                + _listing(private),
                tuple(private),
            )
        if state.nested_repos:
            return Judgement(
                state,
                "nested git repositories are never landed: " + ", ".join(state.nested_repos),
                tuple(state.nested_repos),
            )
        if task.files:
            outside = [p for p in paths if not matches(p, task.files)]
            if outside:
                return Judgement(
                    state,
                    f"changed files outside the task's files ({', '.join(task.files)}): "
                    + _listing(outside),
                    tuple(outside),
                )
        if claimed is not None:
            problem = claim_mismatch(claimed, paths, ws.path)
            if problem is not None:
                return Judgement(state, problem[0], tuple(problem[1]))
            if not paths and expects_change(task.type, bool(task.files)):
                return Judgement(state, "no evidence: no file changed")
        return Judgement(state, None)

    def diff_text(self, ws: Workspace, state: CopyState, limit: int = 200_000) -> str:
        """What the attempt changed, as a unified diff against its snapshot (for a
        reviewer), cut at ``limit`` bytes with a note saying so."""
        proc = self.private.git(
            ws.path, ws.copy.index, "diff", "--no-color", "--no-ext-diff", "--no-renames",
            ws.copy.snapshot.tree, state.tree,
        )
        text = proc.stdout.decode("utf-8", "replace")
        if len(text) > limit:
            text = text[:limit] + f"\n[diff cut at {limit} bytes; read the files themselves]\n"
        return text

    def prepare_verify(self, ws: Workspace) -> list[str]:
        """Remove every ignored file the attempt left (none were copied, and none land), so
        verify sees exactly what would land; return what was removed."""
        removed = []
        for rel in ignored_paths(self.private, ws.copy):
            remove_inside(ws.path, rel)
            removed.append(printable(rel))
        return removed

    def land(
        self,
        ws: Workspace,
        state: CopyState,
        message: str,
        before_move: Callable[[str, str | None, str | None], None] | None = None,
    ) -> Landed:
        """Land the copy's changes as one commit; ``LandConflict`` when the checkout is in
        the way (the work is then kept on the attempt's ref, named in the error)."""
        try:
            return land(
                self.checkout,
                state.changes,
                message=message,
                lock=self._land_lock,
                scratch=self.dir,
                before_move=before_move,
            )
        except (LandConflict, GitError, OSError) as exc:
            # Nothing was applied (a failure after HEAD moved is a Landed.incomplete): keep
            # the work where the person can take it.
            conflict = (
                exc
                if isinstance(exc, LandConflict)
                else LandConflict(f"cannot land: {exc}", paths=state.paths)
            )
            ref = self._ref(ATTEMPT_REFS, ws.worker)
            sha = keep_commit(self.checkout, ref, state.tree, ws.copy.snapshot.commit, message)
            conflict.message = (
                f"{conflict.message}. The attempt's work is kept as commit {sha[:12]} ({ref})"
            )
            conflict.args = (conflict.message,)
            raise conflict from (None if conflict is exc else exc)

    def close(self, ws: Workspace, *, keep: bool) -> None:
        """End an attempt's copy: remove it, or keep it (without its temp dir) to inspect."""
        delete_ref(self.checkout, self._ref(SNAPSHOT_REFS, ws.worker))
        remove_copy(ws.tmp)
        if keep:
            ws.copy.index.unlink(missing_ok=True)
        else:
            remove_copy(ws.path, ws.copy.index)

    def discard(self, worker: str) -> bool:
        """Remove a kept or leftover copy of ``worker``; True if there was one."""
        path = self.dir / worker
        existed = os.path.lexists(path)
        remove_copy(path, self.dir / f"{worker}.index")
        remove_copy(self.dir / f"{worker}.tmp")
        return existed

    # ---- after a crash

    def leftovers(self) -> list[str]:
        """Workers whose copies are on disk (after a crash or kept from a failed attempt).

        Call only while no attempt of the track runs: temporary index files a killed
        conductor left here are removed on the way.
        """
        if not self.dir.is_dir():
            return []
        names = set()
        for entry in self.dir.iterdir():
            name = entry.name
            if name.startswith("."):
                remove_copy(entry)
                continue
            for suffix in (".index", ".tmp"):
                name = name.removesuffix(suffix)
            if not name.startswith(".") and "." in name:
                names.add(name)
        return sorted(names)

    def drop_snapshot_refs(self) -> None:
        """Delete the snapshot refs a killed run left (no attempt runs now)."""
        if self._checkout is None and not self.dir.is_dir():
            return
        prefix = f"refs/conductor/{self.track_id}/snapshots/"
        proc = self.checkout.git("for-each-ref", "--format=%(refname)", prefix, check=False)
        for ref in proc.stdout.decode().split():
            delete_ref(self.checkout, ref)

    @property
    def _land_lock(self) -> Path:
        """The kernel lock landings (and snapshots) of every track of this state root take."""
        return self.sd.root.parent / ".land.lock"

    def _in_state_dir(self, rel: str) -> bool:
        """Whether repository path ``rel`` lies in conductor's state directory."""
        try:
            root = self.sd.root.parent.resolve().relative_to(self.repo.resolve()).as_posix()
        except ValueError:
            root = ".conductor"  # outside the checkout: the default name is refused anyway
        return rel == root or rel.startswith(root + "/")

    def _ref(self, template: str, worker: str) -> str:
        return template.format(track=self.track_id, worker=worker)


def printable(path: str) -> str:
    """A repository path as text the bus can carry (undecodable bytes as ``\\xNN``)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _reserved(path: str) -> bool:
    """A name conductor's landing uses for its own temporary files."""
    return any(part.startswith(TEMP_PREFIX) for part in PurePosixPath(path).parts)


def _plain_name(path: str) -> bool:
    """Valid UTF-8 and free of control characters (a newline, a tab, an escape)."""
    return printable(path) == path and not any(ord(ch) < 32 or ord(ch) == 127 for ch in path)


def _listing(paths: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _normalise_claim(entry: str, root: Path) -> str:
    text = entry.strip().replace("\\", "/")
    if os.path.isabs(text):
        try:
            text = Path(os.path.normpath(text)).relative_to(root).as_posix()
        except ValueError:
            return text
    while text.startswith("./"):
        text = text[2:]
    return str(PurePosixPath(text)) if text else text


def claim_mismatch(
    claimed: Sequence[str], changed: Sequence[str], root: Path
) -> tuple[str, list[str]] | None:
    """How a worker's claimed files differ from what changed, or None when they agree.

    A claimed directory names everything under it; every claimed entry must name a change.
    """
    entries = [e for e in (_normalise_claim(c, root) for c in claimed) if e]
    if "." in entries:  # "everything I changed"
        entries = [e for e in entries if e != "."] + list(changed)
    unnamed = [
        p for p in changed if not any(p == e or p.startswith(e.rstrip("/") + "/") for e in entries)
    ]
    unchanged = [
        e for e in entries if not any(p == e or p.startswith(e.rstrip("/") + "/") for p in changed)
    ]
    if unchanged:
        return (
            "the claim names files that did not change: " + _listing(unchanged)
            + (f" (changed: {_listing(list(changed))})" if changed else " (nothing changed)"),
            unchanged,
        )
    if unnamed:
        return (
            "changed files the claim does not name: " + _listing(unnamed)
            + "; report every file you changed",
            unnamed,
        )
    return None


