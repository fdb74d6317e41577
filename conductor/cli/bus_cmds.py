"""``conductor bus ls|show|tail|post``: read and write a track's message bus."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from conductor.bus import Bus
from conductor.cli.app import (
    handle_errors,
    repo_option,
    require_state,
    resolve_track,
    state_dir_option,
)
from conductor.contract import TRACK_ENV
from conductor.errors import UserError
from conductor.messages import Message, MessageType
from conductor.paths import StateDir, check_name
from conductor.terminal import visible


def _json_option(fn: Any) -> Any:
    option = click.option("--json", "as_json", is_flag=True, help="Print JSON, one object a line.")
    return option(fn)


def _open_bus(track: str, repo: Path, state_dir: Path | None) -> Bus:
    """The bus of a track that has run state; an unknown track is an error and creates nothing."""
    track_id, definition = resolve_track(track)
    state = require_state(track_id, repo, state_dir, named_by_file=definition is not None)
    return Bus.for_state(state, track_id)


def _summary(payload: dict[str, Any], width: int = 70) -> str:
    """A one-line summary of a payload: its text if it has one, else compact JSON."""
    for key in ("text", "message", "summary", "error", "reason"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            rest = {k: v for k, v in payload.items() if k != key}
            line = value if not rest else f"{value} {json.dumps(rest, ensure_ascii=False)}"
            break
    else:
        line = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload else ""
    line = " ".join(visible(line).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _line(msg: Message) -> str:
    when = msg.ts.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{msg.seq:>6}  {when}  {msg.type:<16} {msg.task or '-':<14} {msg.worker or '-':<14} "
        f"{_summary(msg.payload)}"
    ).rstrip()


def _echo(messages: Iterable[Message], as_json: bool) -> None:
    for msg in messages:
        click.echo(msg.to_json() if as_json else _line(msg))


@click.group("bus")
def bus_group() -> None:
    """Read and write a track's message bus (one JSON file per message, in order).

    TRACK is a track file (or its directory) or a track id. The bus lives in
    .conductor/<track>/bus/; `ls` and `jq` work on it directly too. Reading a track that has
    no run state, or posting to a track id that has none, is an error (exit 2) that creates
    nothing; `post` with a track file may start the bus of a track that has not run yet.
    """


@bus_group.command("ls")
@click.argument("track")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Only this type (repeatable).")
@click.option("--task", "tasks", multiple=True, metavar="TASK", help="Only this task (repeatable).")
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=0,
    metavar="SEQ",
    help="Only messages after sequence number SEQ.",
)
@_json_option
@repo_option
@state_dir_option
@handle_errors
def bus_ls(
    track: str,
    types: tuple[str, ...],
    tasks: tuple[str, ...],
    since: int,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """List messages: seq, time (UTC), type, task, worker and a payload summary."""
    wanted_types = {t.upper() for t in types}
    with _open_bus(track, repo, state_dir) as bus:
        selected = (
            m
            for m in _after(bus, since)
            if (not wanted_types or m.type in wanted_types) and (not tasks or m.task in tasks)
        )
        _echo(selected, as_json)


def _after(bus: Bus, since: int) -> Iterator[Message]:
    """Messages after ``since``, read in batches."""
    while True:
        batch = bus.read(after=since, limit=2000)
        if not batch:
            return
        yield from batch
        since = batch[-1].seq


@bus_group.command("show")
@click.argument("track")
@click.argument("seq", type=click.IntRange(min=1))
@_json_option
@repo_option
@state_dir_option
@handle_errors
def bus_show(track: str, seq: int, as_json: bool, repo: Path, state_dir: Path | None) -> None:
    """Print message SEQ in full (pretty JSON; --json: one line)."""
    with _open_bus(track, repo, state_dir) as bus:
        msg = bus.get(seq)
        if msg is None:
            last = bus.last_seq()
            raise UserError(f"no message {seq} on the bus of {bus.track!r} (last is {last})")
    if as_json:
        click.echo(msg.to_json())
    else:  # for a person: C1 controls, which JSON leaves as they are, are made visible too
        click.echo(visible(json.dumps(msg.to_dict(), ensure_ascii=False, indent=2)))


@bus_group.command("tail")
@click.argument("track")
@click.option(
    "-n",
    "count",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the last messages to print.",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Print new messages as they arrive, until the run ends (TRACK_COMPLETE, "
    "TRACK_FAILED or TRACK_INTERRUPTED) or Ctrl-C.",
)
@click.option(
    "--forever",
    is_flag=True,
    help="With -f: go on following after a run ends (the next runs too), until Ctrl-C.",
)
@_json_option
@repo_option
@state_dir_option
@handle_errors
def bus_tail(
    track: str,
    count: int,
    follow: bool,
    forever: bool,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """Print the last messages; with -f, follow the bus as messages arrive.

    -f ends with the end of the run: the first TRACK_COMPLETE, TRACK_FAILED or
    TRACK_INTERRUPTED after the messages printed first. Started when no run is going, it
    waits for the next run and follows that one to its end; given a track file that never
    ran, it waits for its first run.
    """
    if forever and not follow:
        raise UserError("--forever goes with -f/--follow")
    first_run = False
    if follow:
        track_id, definition = resolve_track(track)
        sd = StateDir.for_track(repo, track_id, state_dir)
        if definition is not None and not sd.bus.is_dir():
            from conductor.cli.report_cmds import _await_state

            first_run = True  # then follow that run from its first message
            try:
                _await_state(sd, track_id)
            except KeyboardInterrupt:
                return
    with _open_bus(track, repo, state_dir) as bus:
        last = 0 if first_run else bus.last_seq()
        shown = bus.read(after=max(0, last - count)) if count and not first_run else []
        _echo(shown, as_json)
        if not follow:
            return
        cursor = shown[-1].seq if shown else last
        import anyio

        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a follow normally
            anyio.run(_follow, bus, cursor, as_json, forever)


RUN_ENDS = frozenset(
    {MessageType.TRACK_COMPLETE, MessageType.TRACK_FAILED, MessageType.TRACK_INTERRUPTED}
)
"""Messages that end a run (and ``bus tail -f``)."""


async def _follow(bus: Bus, cursor: int, as_json: bool, forever: bool = False) -> None:
    from conductor.watch import BusWatcher

    async with BusWatcher(bus) as watcher:
        while True:
            await watcher.wait(cursor)
            printed = False
            for msg in _after(bus, cursor):
                click.echo(msg.to_json() if as_json else _line(msg))
                cursor = msg.seq
                printed = True
                if not forever and msg.type in RUN_ENDS:
                    return
            if not printed:
                # Published positions but nothing to read: quarantined holes. Step over them
                # (reading again after taking last_seq, so no message in between is skipped).
                last = bus.last_seq()
                if not bus.read(after=cursor, limit=1):
                    cursor = max(cursor, last)


@bus_group.command("post")
@click.argument("args", nargs=-1, required=True, metavar="[TRACK] TYPE")
@click.option("--task", default=None, metavar="TASK", help="The task the message is about.")
@click.option("--payload", default=None, metavar="JSON", help="Payload: a JSON object.")
@click.option(
    "--message",
    "-m",
    "text",
    default=None,
    metavar="TEXT",
    help='Payload {"text": TEXT} (instead of --payload).',
)
@click.option(
    "--worker",
    default=None,
    metavar="WORKER",
    help="The worker the message is about (a worker posting is always itself).",
)
@_json_option
@repo_option
@state_dir_option
@handle_errors
def bus_post(
    args: tuple[str, ...],
    task: str | None,
    payload: str | None,
    text: str | None,
    worker: str | None,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """Post a message of TYPE on TRACK's bus (TRACK defaults to $CONDUCTOR_TRACK).

    A person may post APPROVE, REJECT, SKIP (with --task) and NOTE. Inside a worker's shell
    (CONDUCTOR_WORKER and CONDUCTOR_WORKER_TOKEN set) the message is signed by that worker and
    may be PROGRESS, NOTE, BLOCKED, CLAIM_COMPLETE or CLAIM_FAILED, about its own task only.
    """
    if len(args) == 2:
        track, mtype = args
        known = {t.value for t in MessageType}
        if track.upper() in known and mtype.upper() not in known:
            raise UserError(f"the track comes first: conductor bus post {mtype} {track.upper()}")
    elif len(args) == 1 and os.environ.get(TRACK_ENV):
        track, mtype = os.environ[TRACK_ENV], args[0]
    elif len(args) == 1:
        raise UserError(f"give the track and the type: conductor bus post TRACK {args[0]}")
    else:
        raise UserError(f"expected [TRACK] TYPE, got {len(args)} arguments: {' '.join(args)}")
    track_id, definition = resolve_track(track)
    mtype = mtype.upper()
    if mtype not in {t.value for t in MessageType}:
        raise UserError(
            f"unknown message type {mtype}: a person posts APPROVE, NOTE, REJECT or SKIP"
        )
    body = _payload(payload, text)
    state = StateDir.for_track(repo, track_id, state_dir)
    from conductor.workers import authorize_post

    author = authorize_post(
        state.workers, mtype, task=task, worker=worker, environ=os.environ, track=definition
    )
    if definition is None:  # a bare id must have run already; a track file may start its bus
        require_state(track_id, repo, state_dir, named_by_file=False)
    with Bus.for_state(state, track_id) as bus:
        if definition is None and task is not None:
            from conductor.known import check_task

            advice = "; name the track by its file to post about a task that has not run yet"
            check_task(bus, state, repo, check_name(task, "task id"), advice)
        msg = bus.post(
            mtype, task=author.task, worker=author.worker, attempt=author.attempt, payload=body
        )
        path = bus.path_of(msg.seq)
    if as_json:
        click.echo(msg.to_json())
    else:
        click.echo(f"posted {msg.seq}: {path.name if path else msg.type}")


def _payload(payload: str | None, text: str | None) -> dict[str, Any]:
    if payload is not None and text is not None:
        raise UserError("give --payload or --message, not both")
    if text is not None:
        return {"text": text}
    if payload is None:
        return {}
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise UserError(f"--payload is not valid JSON: {exc}", field="payload") from exc
    if not isinstance(data, dict):
        raise UserError('--payload must be a JSON object, e.g. \'{"reason": "..."}\'')
    return data
