"""What a Claude worker did, as observed rather than as claimed.

A worker's ``report_complete`` is only a claim. Before the claim becomes an ``Outcome`` the
executor checks it against evidence gathered outside the model's control:

- **tool calls**: every tool call the session made (seen in the message stream and through
  the PreToolUse/PostToolUse hooks), apart from conductor's own reporting tools;
- **denials**: every write the file guard refused.

What the attempt's copy really changed is the rest of the evidence; the scheduler judges the
claim against it (``conductor.isolation``).

The file guard (``FileGuard``, used as a PreToolUse hook on Write, Edit, MultiEdit and
NotebookEdit) denies, with a reason the model sees:

- paths that leave the repository (``..``, absolute paths elsewhere, symlinks pointing out),
  and paths inside ``.git/`` or the conductor's state directory;
- paths outside the task's declared ``files`` globs. **A task that declares no ``files`` is
  unconfined**: it may write anywhere inside the repository;
- paths whose lock is held by another worker.

Shell commands (Bash) are not guarded here: they run in Claude Code's sandbox, which lets them
write only inside the copy, and their effects show up in the copy's diff.

The read guard (``ReadGuard``, a PreToolUse hook on Read, Grep, Glob, LS and NotebookRead)
keeps those tools out of conductor's state directory, which the sandbox hides from Bash only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from conductor.contract import TOOL_PREFIX
from conductor.globs import matches

GUARDED_TOOLS = ("Write", "Edit", "MultiEdit", "NotebookEdit")
"""Built-in tools whose target path the file guard checks."""

READ_TOOLS = ("Read", "Grep", "Glob", "LS", "NotebookRead")
"""Built-in tools that read files, whose targets the read guard (``ReadGuard``) checks."""

GUARDED_MATCHER = "|".join((*GUARDED_TOOLS, *READ_TOOLS))
"""The ``HookMatcher.matcher`` for the tools either guard checks."""

EXPECTS_CHANGE = frozenset({"code", "ui", "integration", "test", "tests", "bugfix", "refactor"})
"""Task types whose completion must change at least one file."""

EXPECTS_CHANGE_IF_FILES = frozenset({"docs", "doc", "config", "configuration"})
"""Task types that must change a file when they declare ``files``."""

NO_CHANGE_EXPECTED = frozenset(
    {"research", "review", "analysis", "analyse", "analyze", "investigation", "audit", "plan"}
)
"""Task types whose result is a report, not a diff."""

_SKIP_DIRS = frozenset({".git", ".conductor"})


# --------------------------------------------------------------------------- globs


matches_globs = matches
"""Whether a repository path matches any of a task's ``files`` globs (``conductor.globs``)."""


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class PathCheck:
    """Where a tool's target path lands."""

    rel: str | None
    """The path relative to the repository (POSIX), or None when it leaves it."""
    reason: str | None
    """Why the path is refused outright (outside the repository, inside .git...), or None."""


def repo_relative(repo: Path, raw: str, *, cwd: Path | None = None) -> PathCheck:
    """Normalise a tool's path argument against ``repo``.

    Relative paths are taken from ``cwd`` (default the repository); absolute paths inside the
    repository are accepted; symlinks are resolved so a link pointing out is caught.
    """
    if not raw or "\x00" in raw:
        return PathCheck(None, "empty or invalid path")
    root = repo.resolve()
    base = (cwd or repo).resolve()
    expanded = os.path.expanduser(raw)
    candidate = Path(expanded) if os.path.isabs(expanded) else base / expanded
    resolved = Path(os.path.realpath(os.path.normpath(candidate)))
    try:
        rel = resolved.relative_to(root)
    except ValueError:
        return PathCheck(None, f"{raw} is outside the repository {root}")
    rel_posix = rel.as_posix()
    if rel_posix in ("", "."):
        return PathCheck(None, f"{raw} is the repository root, not a file")
    if PurePosixPath(rel_posix).parts[0] in _SKIP_DIRS:
        return PathCheck(rel_posix, f"{rel_posix} is inside {PurePosixPath(rel_posix).parts[0]}/")
    return PathCheck(rel_posix, None)


def guarded_path(tool_input: dict[str, Any]) -> str | None:
    """The target path argument of a guarded tool call, if any."""
    for key in ("file_path", "notebook_path", "path"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    return None


# --------------------------------------------------------------------------- the record


@dataclass
class Claim:
    """What the worker said it did, through report_complete / report_failed."""

    complete: bool
    """True for report_complete, False for report_failed."""
    summary: str = ""
    """The worker's summary (report_complete) or reason (report_failed)."""
    files_changed: list[str] = field(default_factory=list)
    """Files the worker says it changed."""
    notes: str | None = None
    """Free-form notes for reviewers."""


@dataclass
class Evidence:
    """Everything observed about one attempt, filled in while its sessions run."""

    tool_use_ids: set[str] = field(default_factory=set)
    """Ids of the work tool calls seen (conductor's own tools excluded)."""
    tool_counts: dict[str, int] = field(default_factory=dict)
    """Work tool calls by tool name."""
    denials: list[dict[str, str]] = field(default_factory=list)
    """Each refused write: ``{tool, path, reason}``."""
    claim: Claim | None = None
    """The latest claim, if the worker made one."""

    def record_tool_use(self, tool_name: str, tool_use_id: str | None) -> None:
        """Count one tool call once, however many times it is observed."""
        if tool_name.startswith(TOOL_PREFIX):
            return
        key = tool_use_id or f"anon-{len(self.tool_use_ids)}"
        if key in self.tool_use_ids:
            return
        self.tool_use_ids.add(key)
        self.tool_counts[tool_name] = self.tool_counts.get(tool_name, 0) + 1

    @property
    def tool_calls(self) -> int:
        """Number of distinct work tool calls."""
        return len(self.tool_use_ids)


def expects_change(task_type: str | None, has_files: bool) -> bool:
    """Whether a completed task of this type must have changed at least one file."""
    kind = (task_type or "").strip().lower()
    if kind in NO_CHANGE_EXPECTED:
        return False
    if kind in EXPECTS_CHANGE:
        return True
    if kind in EXPECTS_CHANGE_IF_FILES:
        return has_files
    return has_files


@dataclass(frozen=True)
class Verdict:
    """The judgement of a finished session's claim against its evidence."""

    ok: bool
    """The claim stands."""
    error: str | None
    """Why not."""
    summary: str | None
    """The claim's summary, if any."""


def judge(evidence: Evidence) -> Verdict:
    """Turn a claim and the session's evidence into a verdict (session errors are judged by
    the caller, and what the copy really changed by ``conductor.isolation``)."""
    claim = evidence.claim
    if claim is None:
        return Verdict(False, "session ended without reporting completion", None)
    if not claim.complete:
        return Verdict(False, f"worker reported failure: {claim.summary}", claim.summary)
    if evidence.tool_calls == 0:
        return Verdict(False, "no evidence: no tool calls", claim.summary)
    return Verdict(True, None, claim.summary)


# --------------------------------------------------------------------------- the guard


LocksFn = Callable[[str], Iterable[Any]]
"""``covering(path) -> [LockInfo...]``: the locks whose path or pattern covers a path."""


def locks_covering(locks: Any) -> LocksFn:
    """A ``LocksFn`` over a ``PathLocks``: exact records and glob records that match."""

    def covering(rel: str) -> list[Any]:
        return [
            info for info in locks.list() if info.path == rel or matches_globs(rel, [info.path])
        ]

    return covering


@dataclass
class FileGuard:
    """Decides whether a write by this worker may go ahead (see the module docstring)."""

    repo: Path
    """The repository checkout."""
    globs: tuple[str, ...]
    """The task's ``files``; empty means unconfined."""
    worker: str
    """This worker's id: its own locks never block it."""
    locks: LocksFn | None = None
    """Lock lookup, when the run has path locks."""
    extra_forbidden: tuple[Path, ...] = ()
    """More directories no write may enter (the state directory)."""

    def check(self, raw_path: str, *, cwd: Path | None = None) -> tuple[str | None, str | None]:
        """``(relative path, denial reason)``; the reason is None when the write may go ahead."""
        where = repo_relative(self.repo, raw_path, cwd=cwd)
        if where.reason is not None:
            return where.rel, where.reason
        assert where.rel is not None
        target = (self.repo.resolve() / where.rel).resolve()
        for forbidden in self.extra_forbidden:
            try:
                target.relative_to(forbidden.resolve())
            except ValueError:
                continue
            return where.rel, f"{where.rel} is inside conductor's state directory"
        if self.globs and not matches_globs(where.rel, self.globs):
            allowed = ", ".join(self.globs)
            return where.rel, (
                f"{where.rel} is outside this task's files ({allowed}); "
                "change only the files your task declares"
            )
        if self.locks is not None:
            for info in self.locks(where.rel):
                other = getattr(info, "worker", None)
                if other is not None and other != self.worker:
                    task = getattr(info, "task", None)
                    return where.rel, (
                        f"{where.rel} is locked by worker {other}"
                        + (f" (task {task})" if task else "")
                        + "; wait for it or work on other files"
                    )
        return where.rel, None


# --------------------------------------------------------------------------- reads

_SEARCH_TOOLS = frozenset({"Grep", "Glob", "LS"})
_GLOB_CHARS = frozenset("*?[{")


@dataclass(frozen=True)
class ReadGuard:
    """Keeps a session's reading tools out of conductor's state directory.

    Claude Code's sandbox hides the state from Bash, but Read, Grep and Glob run in the CLI
    itself, outside that sandbox (its ``denyRead`` does not reach them). Two layers keep them
    out of the state (other attempts' transcripts, logs and copies, the bus, the workers'
    secret), apart from the ``open`` directories inside it (the attempt's own copy, temporary
    and worker directories):

    - ``deny_rules``: Claude Code permission rules (``Read(//path/**)``) for everything in the
      state but the open directories, as it stands when the session starts. The CLI applies
      them to Read and leaves what they cover out of Grep's and Glob's results, ignore files
      or not;
    - ``check``, a PreToolUse hook: a call naming a path inside the state is refused, however
      it is written (``..``, symlinks: both the path as the CLI normalises it and the file it
      really is are judged), and so is a search rooted above the working directory that
      would walk into the state.

    A read may go anywhere else, as Bash may. Both layers judge a path when the tool is
    called: a symlink swapped between that check and the read itself can still win, so the
    state is kept from agents as far as a hook can keep it, not by the operating system.
    """

    hidden: tuple[Path, ...]
    """Directories no read may enter (conductor's state root)."""
    open: tuple[Path, ...] = ()
    """Directories inside ``hidden`` that stay readable (the attempt's copy and temp dir)."""

    def check(self, tool: str, tool_input: dict[str, Any], cwd: Path) -> tuple[str, str] | None:
        """``(path, reason)`` when the call must be refused, else None."""
        search = tool in _SEARCH_TOOLS
        for raw in _read_targets(tool, tool_input):
            reason = self._refusal(raw, cwd, search)
            if reason is not None:
                return raw, reason
        return None

    def deny_rules(self) -> list[str]:
        """Claude Code ``Read`` deny rules for everything under ``hidden`` but ``open``.

        A path whose text a rule could misread (glob or rule characters in it) gets no rule;
        the hook still guards it.
        """
        opened = [Path(os.path.realpath(d)) for d in self.open]
        rules: list[str] = []

        def deny(path: Path, directory: bool) -> None:
            if _ruled(path):
                rules.append(f"Read(/{path}/**)" if directory else f"Read(/{path})")

        def walk(directory: Path) -> None:
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError:
                return
            for entry in entries:
                path = Path(entry.path)
                if path in opened:
                    continue
                if any(path in o.parents for o in opened):
                    walk(path)
                else:
                    deny(path, entry.is_dir(follow_symlinks=False))

        for hidden in self.hidden:
            root = Path(os.path.realpath(hidden))
            if any(root in o.parents for o in opened):
                walk(root)
            else:
                deny(root, True)
        return rules

    def _refusal(self, raw: str, cwd: Path, search: bool) -> str | None:
        here = Path(os.path.realpath(cwd))
        forms: set[Path] = set()
        # The CLI trims the path and normalises `..` by the text; the file system follows
        # links: judge every reading.
        for text in {raw, raw.strip(_TRIMMED)}:
            written = os.path.join(here, _home(text))
            for form in (written, os.path.normpath(written)):
                forms.add(Path(os.path.realpath(form)))
        opened = [Path(os.path.realpath(d)) for d in self.open]
        for target in forms:
            if any(_within(target, o) for o in opened):
                continue
            for hidden in self.hidden:
                state = Path(os.path.realpath(hidden))
                if _within(target, state):
                    return f"{raw} is inside conductor's state directory; read your own files"
                # A search of the working directory may hold the state (a question asked in
                # the checkout) only when Claude Code's rules leave the state out of results.
                ruled = _ruled(state) and _within(target, here)
                if search and _within(state, target) and not ruled:
                    return (
                        f"searching {raw} would reach into conductor's state directory; search "
                        "inside the repository"
                    )
        return None


_RULE_UNSAFE = frozenset("*?[]{}()\\")
_TRIMMED = "".join(chr(c) for c in range(0x3000 + 1) if chr(c).isspace()) + "\ufeff"
"""Characters the CLI trims from a path (JavaScript's whitespace, and more)."""


def _ruled(path: Path) -> bool:
    """Whether a Claude Code rule can name ``path`` (no glob or rule characters in it)."""
    return not _RULE_UNSAFE & set(str(path))


def _home(raw: str) -> str:
    """``raw`` with a leading ``~`` or ``~/`` made the home directory, as the CLI reads it
    (``~name`` is a file name to it, not that user's home)."""
    if raw == "~" or raw.startswith("~/"):
        return os.path.expanduser("~") + raw[1:]
    return raw


def denial(reason: str) -> dict[str, Any]:
    """A PreToolUse hook's answer refusing the tool call, with ``reason`` for the model."""
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": "deny",
            "permissionDecisionReason": f"conductor: {reason}",
        }
    }


def _read_targets(tool: str, tool_input: dict[str, Any]) -> list[str]:
    """What a read tool call reads under: the file it names, or the directory it searches
    (``.``, the working directory, when it names none) joined with the fixed leading part of
    a Glob pattern (``../../x/**`` reads under ``../../x``)."""
    targets = [
        value
        for key in ("file_path", "notebook_path")
        if isinstance(value := tool_input.get(key), str) and value
    ]
    if tool in _SEARCH_TOOLS:
        root = tool_input.get("path")
        root = root if isinstance(root, str) and root else "."
        targets.append(root)
        pattern = tool_input.get("pattern")
        if tool == "Glob" and isinstance(pattern, str) and pattern:
            fixed = []
            for part in PurePosixPath(pattern).parts:
                if _GLOB_CHARS & set(part):
                    break
                fixed.append(part)
            if fixed:
                targets.append(str(PurePosixPath(root, *fixed)))
    return targets


def _within(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents
