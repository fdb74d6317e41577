"""A task's ``inputs:``: the files whose content is part of the task's hash.

A task that completed reruns when its hash changes (``conductor.scheduler``), and the hash is
the task's definition (``Track.task_hash``) plus, for a task with ``inputs``, the content of
the files its input globs match. That is make's promise: change an input, and the task (and
everything downstream) runs again; change nothing, and nothing reruns.

Rules:

- ``inputs`` is a list of globs in the dialect of ``files`` (``conductor.globs``), relative to
  the repository root. A glob naming a directory covers everything under it.
- Every file on disk counts, git-ignored or not (a build output is a fine input), except
  what is under a ``.git`` directory and the state directory (``.conductor/``).
- The digest covers the sorted set of matched paths and each one's content (a symbolic link
  counts as its target text, never followed), so adding, removing or renaming a matched file
  changes it, while the order of the globs, the order the file system lists files in, file
  modes and modification times do not. A glob that matches nothing is allowed: the file may
  be made by a task upstream.
- A task without ``inputs`` has exactly its definition hash, so adding this feature changed
  no existing task's hash.
- The hash is taken when the run starts (to decide what reruns) and again when the task is
  dispatched, after its dependencies have finished, so it records the inputs the attempt
  actually saw.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from conductor.globs import matches, overlap
from conductor.paths import STATE_ROOT_NAME

if TYPE_CHECKING:
    from conductor.track import Track

_SKIP_DIRS = frozenset({".git"})
_CHUNK = 1 << 20
_GLOB_CHARS = "*?[]\\"


def _literal(name: str) -> str:
    """``name`` with glob characters made ordinary."""
    return "".join("\\" + ch if ch in _GLOB_CHARS else ch for ch in name)


def input_files(patterns: Sequence[str], repo: Path, exclude: Iterable[Path] = ()) -> list[str]:
    """Repository paths (POSIX, sorted) of the files ``patterns`` match under ``repo``.

    Directories under ``repo`` that no pattern can reach are not walked. ``exclude`` names
    more directories to leave out (a state directory kept inside the repository).
    """
    if not patterns:
        return []
    root = Path(os.path.abspath(repo))
    skipped = {os.path.abspath(p) for p in exclude} | {str(root / STATE_ROOT_NAME)}
    found: list[str] = []
    for top, dirs, files in os.walk(root):
        rel_top = os.path.relpath(top, root)
        prefix = "" if rel_top == "." else rel_top.replace(os.sep, "/") + "/"
        keep: list[str] = []
        for name in dirs:
            full = os.path.join(top, name)
            rel = prefix + name
            if name in _SKIP_DIRS or full in skipped:
                continue
            if os.path.islink(full):  # a link to a directory is an entry, never followed
                if matches(rel, patterns):
                    found.append(rel)
                continue
            literal = _literal(rel)
            if any(overlap(p, literal + "/**") for p in patterns):
                keep.append(name)
        dirs[:] = keep
        found.extend(prefix + name for name in files if matches(prefix + name, patterns))
    return sorted(found, key=lambda p: p.encode("utf-8", "surrogateescape"))


def _file_digest(path: Path) -> str:
    """sha256 of a file's content, of a link's target text, or a stable marker when unreadable."""
    try:
        if path.is_symlink():
            target = os.readlink(path)
            return "link:" + hashlib.sha256(os.fsencode(target)).hexdigest()
        h = hashlib.sha256()
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest()
    except OSError as exc:  # unreadable, or gone since the walk: part of the state it is in
        return f"error:{exc.errno}"


def inputs_digest(patterns: Sequence[str], repo: Path, exclude: Iterable[Path] = ()) -> str:
    """sha256 over the sorted matched paths and their contents (see the module docstring)."""
    h = hashlib.sha256()
    root = Path(repo)
    for rel in input_files(patterns, root, exclude):
        h.update(rel.encode("utf-8", "surrogateescape"))
        h.update(b"\0")
        h.update(_file_digest(root / rel).encode())
        h.update(b"\n")
    return h.hexdigest()


def task_hash(track: Track, task_id: str, repo: Path, exclude: Iterable[Path] = ()) -> str:
    """The hash a task completes under: ``track.task_hash`` alone for a task without
    ``inputs``, else that and the digest of its inputs hashed together."""
    task = track.task(task_id)
    definition = track.task_hash(task_id)
    if not task.inputs:
        return definition
    digest = inputs_digest(task.inputs, repo, exclude)
    return hashlib.sha256(f"{definition}\0inputs\0{digest}".encode()).hexdigest()
