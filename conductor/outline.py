"""A track file's outline (its id, task ids and dependencies), kept for read-only commands.

``conductor status TRACK_FILE`` needs only the outline, yet validating a track builds its
pydantic models, which takes longer than the rest of the command together. So after a track
file has been validated in full (``load_track``), its outline is saved in the track's state
directory (``cache/outline.json``) with the sha256 of the exact bytes it was read from; a later
read of the same bytes, by the same conductor version, uses the saved outline. Any other bytes
(an edited file, a file never validated, one that does not validate) are validated again, as
``load_track`` does it, raising the same ``TrackError`` as always; the bytes hashed are the
bytes validated (the file is read once).

The file's ``track:`` line is read with a regular expression only to find the state directory
the outline would be saved in; whether the outline is used rests on the bytes' hash alone.
``conductor run`` and ``conductor validate`` always validate in full.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conductor import __version__
from conductor.atomic import write_atomic
from conductor.errors import StateError, UserError
from conductor.paths import StateDir, open_state_file

if TYPE_CHECKING:
    from conductor.track import Track

OUTLINE_NAME = "outline.json"
"""The outline's file in a track's cache directory."""

_TRACK_LINE = re.compile(
    rb"""^track[ \t]*:[ \t]*(["']?)([A-Za-z0-9][A-Za-z0-9_.-]*)\1[ \t]*(?:\#.*)?\r?$""",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Outline:
    """What a read-only command needs of a valid track file."""

    track: str
    """The track id."""
    tasks: list[str]
    """Task ids in file order."""
    depends_on: dict[str, list[str]]
    """Each task's direct dependencies."""


def read_outline(path: Path, repo: Path, state_root: Path | None = None) -> Outline:
    """The outline of the track file at ``path``: saved, if these exact bytes were validated
    before, else validated now as ``load_track`` does (raising its ``TrackError`` for a bad
    file), then saved.

    ``repo`` and ``state_root`` locate state directories as ``StateDir.for_track`` does; the
    outline is saved only in a state directory that exists already.
    """
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        from conductor.track import load_track

        return _outline(load_track(path))  # the loader says what is wrong with the file
    digest = hashlib.sha256(raw).hexdigest()
    found = _TRACK_LINE.search(raw.removeprefix(b"\xef\xbb\xbf"))
    if found is not None:
        saved = _load(_state(repo, found[2].decode(), state_root), digest)
        if saved is not None:
            return saved
    from conductor.track import parse_track

    outline = _outline(parse_track(text, source=Path(path)))  # the bytes hashed, no re-read
    state = _state(repo, outline.track, state_root)
    if state is not None and state.root.is_dir():
        _save(state, digest, outline)
    return outline


def _outline(track: Track) -> Outline:
    return Outline(track.id, track.task_ids(), {t.id: list(t.depends_on) for t in track.tasks})


def _state(repo: Path, track_id: str, state_root: Path | None) -> StateDir | None:
    try:
        return StateDir.for_track(repo, track_id, state_root)
    except UserError:
        return None


def _load(state: StateDir | None, digest: str) -> Outline | None:
    """The saved outline when it was made from bytes with this sha256 by this version."""
    if state is None:
        return None
    try:
        fd = open_state_file(state.cache / OUTLINE_NAME, os.O_RDONLY)
        with os.fdopen(fd) as fh:
            data = json.load(fh)
        if data["sha256"] != digest or data["conductor"] != __version__:
            return None
        outline = Outline(data["track"], data["tasks"], data["depends_on"])
    except (OSError, ValueError, TypeError, KeyError, StateError):
        return None
    shaped = isinstance(outline.tasks, list) and isinstance(outline.depends_on, dict)
    return outline if shaped and outline.track == state.root.name else None


def _save(state: StateDir, digest: str, outline: Outline) -> None:
    """Write the outline aside, then rename it into place; failing to is never an error."""
    data = {"sha256": digest, "conductor": __version__, **outline.__dict__}
    with contextlib.suppress(OSError):
        state.cache.mkdir(mode=0o700, exist_ok=True)
        write_atomic(state.cache / OUTLINE_NAME, json.dumps(data, separators=(",", ":")))
