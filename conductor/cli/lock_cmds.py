"""``conductor locks``: who holds which repository path, and breaking a lock by hand."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from conductor.cli.app import (
    handle_errors,
    repo_option,
    require_state,
    resolve_track,
    state_dir_option,
)
from conductor.cli.tables import table
from conductor.errors import UserError
from conductor.locks import (
    LockInfo,
    NotifyFn,
    PathLocks,
    UnreadableRecord,
    bus_notifier,
    liveness,
)
from conductor.paths import STATE_ROOT_NAME, StateDir, check_name

DEFAULT_REASON = "broken by hand (conductor locks --break)"


@click.command("locks")
@click.argument("track", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--break",
    "break_path",
    metavar="PATH",
    help="Break the lock on PATH (a repository path or pattern) whoever holds it.",
)
@click.option(
    "--reason",
    default=DEFAULT_REASON,
    show_default=True,
    help="Why the lock is broken; recorded in the LOCK_BROKEN message.",
)
@repo_option
@state_dir_option
@handle_errors
def locks_command(
    track: str | None,
    as_json: bool,
    break_path: str | None,
    reason: str,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """List the path locks of TRACK (a track file or id), or of every track when omitted.

    Each lock shows the path, the worker and task holding it, the holder's pid and host, since
    when, and whether the holder is alive. A lock whose holder died is broken automatically
    the next time the path is wanted; use --break PATH to free a path by hand (for example a
    holder on another machine that is gone). Breaking posts a LOCK_BROKEN message on the bus.
    """
    if break_path is not None:
        if track is None:
            raise UserError("--break needs a TRACK: conductor locks TRACK --break PATH")
        _break(repo, state_dir, track, break_path, reason, as_json=as_json)
        return
    if track is not None:
        tracks = [_track_id(track, repo, state_dir)]
    else:
        tracks = _all_tracks(repo, state_dir)
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    for track_id in tracks:
        infos, unreadable = PathLocks(StateDir.for_track(repo, track_id, state_dir).locks).scan()
        rows.extend(_row(track_id, info) for info in infos)
        bad.extend(_bad_row(track_id, rec) for rec in unreadable)
    if as_json:
        click.echo(json.dumps({"locks": rows, "unreadable": bad}, indent=2))
        return
    _print_table(rows, bad, show_track=track is None)
    if not rows and not bad:
        click.echo("no locks" + (f" in track {tracks[0]}" if track is not None else ""))


def _track_id(arg: str, repo: Path, state_dir: Path | None) -> str:
    """The id TRACK names; a bare id without run state is an error (a did-you-mean), while a
    track file that never ran simply has no locks."""
    track_id, definition = resolve_track(arg)
    if definition is None:
        require_state(track_id, repo, state_dir, named_by_file=False)
    return track_id


def _all_tracks(repo: Path, state_dir: Path | None) -> list[str]:
    """Ids of the tracks that have a locks directory under the state root."""
    root = state_dir if state_dir is not None else repo / STATE_ROOT_NAME
    if not root.is_dir():
        return []
    ids: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.is_symlink() or not (entry / "locks").is_dir():
            continue
        with contextlib.suppress(UserError):
            ids.append(check_name(entry.name, "track id"))
    return ids


def _row(track_id: str, info: LockInfo) -> dict[str, Any]:
    alive, why = liveness(info)
    return {"track": track_id, **info.to_dict(), "alive": alive, "dead_reason": why}


def _bad_row(track_id: str, rec: UnreadableRecord) -> dict[str, Any]:
    return {"track": track_id, "file": str(rec.file), "path": rec.path, "error": rec.error}


def _alive_text(row: dict[str, Any]) -> str:
    if row["alive"] is None:
        return "unknown (other host)"
    return "yes" if row["alive"] else f"no: {row['dead_reason']}"


def _print_table(
    rows: list[dict[str, Any]], bad: list[dict[str, Any]], *, show_track: bool
) -> None:
    header = ["PATH", "WORKER", "TASK", "PID", "HOST", "SINCE", "ALIVE"]
    lines = [
        [
            row["path"],
            row["worker"],
            row["task"],
            str(row["pid"]),
            row["host"],
            row["since"][:19].replace("T", " "),
            _alive_text(row),
        ]
        for row in rows
    ]
    if show_track:
        header.insert(0, "TRACK")
        for line, row in zip(lines, rows, strict=True):
            line.insert(0, row["track"])
    if lines:
        click.echo(table(header, lines))
    for row in bad:
        where = f"{row['track']}: " if show_track else ""
        click.echo(
            f"{where}unreadable lock record {row['file']} "
            f"(path {row['path'] or '?'}): {row['error']}; the next acquire or --break removes it"
        )


def _break(
    repo: Path, state_dir: Path | None, track: str, path: str, reason: str, *, as_json: bool
) -> None:
    track_id = _track_id(track, repo, state_dir)
    state = StateDir.for_track(repo, track_id, state_dir)
    with _notifier(state, track_id) as notify:
        locks = PathLocks(state.locks, notify=notify)
        unreadable = [rec for rec in locks.unreadable() if rec.path == path]
        broken = locks.break_lock(path, reason=reason)
    if broken is None and unreadable:
        click.echo(f"removed the unreadable lock record {unreadable[0].file}")
        return
    if broken is None:
        raise UserError(f"track {track_id} has no lock on {path!r}")
    alive, _ = liveness(broken)
    if as_json:
        click.echo(json.dumps({"track": track_id, "broken": broken.to_dict(), "reason": reason}))
    else:
        click.echo(f"broke the lock on '{broken.path}' held by {broken.describe()}")
    if alive:
        click.echo(
            f"warning: its holder (pid {broken.pid}) is still alive and may go on writing "
            f"'{broken.path}'",
            err=True,
        )


@contextlib.contextmanager
def _notifier(state: StateDir, track_id: str) -> Iterator[NotifyFn | None]:
    """A notify function posting lock notices on the track's bus (None if there is no bus)."""
    from conductor.bus import Bus

    if not state.root.is_dir():
        yield None
        return
    with Bus.for_state(state, track_id) as bus:
        yield bus_notifier(bus)
