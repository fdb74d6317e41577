"""The task ids a track named by its bare id stands for, from its run state alone.

``conductor bus post hello SKIP --task greet-de`` names the track by id, not by file, yet a
task id it does not have must be an error, never a message about nothing. Each run records
its track file on TRACK_STARTED (``source``, relative to the checkout when inside it); the
task ids are those of that file, if it still loads as the same track, together with every
task the bus mentions.
"""

from __future__ import annotations

import contextlib
import difflib
import os
from pathlib import Path

from conductor.bus import Bus
from conductor.errors import ConductorError, UserError
from conductor.messages import MessageType
from conductor.paths import StateDir
from conductor.state import load_state

_STARTED = f".{MessageType.TRACK_STARTED}."


def recorded_source(bus: Bus, repo: Path) -> Path | None:
    """The track file the newest run recorded on TRACK_STARTED, or None."""
    try:
        names = [name for name in os.listdir(bus.directory) if _STARTED in name]
    except OSError:
        return None
    for name in sorted(names, reverse=True):
        head = name.split(".", 1)[0]
        if not head.isdigit():
            continue
        msg = bus.get(int(head))
        if msg is None or msg.type != MessageType.TRACK_STARTED:
            continue
        source = msg.payload.get("source")
        if isinstance(source, str) and source:
            return repo / source
        return None
    return None


def recorded_file_shown(bus: Bus, repo: Path) -> str | None:
    """The track file the newest run recorded, as a person would type it here (relative to
    the current directory when under it), or None: what `conductor run` resumes the track by."""
    source = recorded_source(bus, repo)
    if source is None:
        return None
    try:
        return str(source.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(source)


def known_task_ids(bus: Bus, state: StateDir, repo: Path) -> set[str]:
    """Task ids of the track: its recorded track file's, and every task its bus mentions.

    The file is read through its outline (``conductor.outline``): an unchanged file that was
    validated before is not validated again.
    """
    ids = set(load_state(bus, state.cache, bus.track).tasks)
    source = recorded_source(bus, repo)
    if source is not None:
        from conductor.outline import read_outline

        with contextlib.suppress(ConductorError, OSError):
            outline = read_outline(source, repo, state.root.parent)
            if outline.track == bus.track:
                ids.update(outline.tasks)
    return ids


def check_task(bus: Bus, state: StateDir, repo: Path, task_id: str, advice: str = "") -> None:
    """Raise ``UserError`` (with a did-you-mean, then ``advice``) unless the track knows
    ``task_id``."""
    known = known_task_ids(bus, state, repo)
    if task_id in known:
        return
    match = difflib.get_close_matches(task_id, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {match[0]!r}?)" if match else ""
    raise UserError(f"track {bus.track!r} has no task {task_id!r}{hint}{advice}", task_id=task_id)
