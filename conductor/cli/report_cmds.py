"""``conductor logs`` and ``conductor report``: what an attempt and a track did."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from pathlib import Path

import click

from conductor.atomic import write_atomic
from conductor.bus import Bus
from conductor.cli.app import (
    handle_errors,
    repo_option,
    require_state,
    resolve_track,
    state_dir_option,
)
from conductor.errors import UserError
from conductor.paths import StateDir, check_name


def _await_state(sd: StateDir, track_id: str) -> None:
    """Wait, creating nothing, until the first run of a track gives it a bus."""
    import time

    if sd.bus.is_dir():
        return
    click.echo(f"waiting for the first run of track {track_id}… (Ctrl-C to stop)", err=True)
    while not sd.bus.is_dir():
        time.sleep(0.2)


@click.command("logs")
@click.argument("track")
@click.argument("task")
@click.option(
    "--attempt",
    "-n",
    type=click.IntRange(min=1),
    default=None,
    help="Which attempt [default: the latest].",
)
@click.option(
    "-f",
    "--follow",
    is_flag=True,
    help="Print output as it is written until the attempt ends (waits for it to start).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the attempt as one JSON object (not with -f)."
)
@repo_option
@state_dir_option
@handle_errors
def logs(
    track: str,
    task: str,
    attempt: int | None,
    follow: bool,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """Show what one attempt at TASK did.

    TRACK is a track file or a track id. A shell attempt shows its output; a Claude attempt
    shows its transcript for a person: the assistant's text, each tool call with its Bash
    command or file path, failed and denied calls with the reason, and each session's
    turns, cost and tokens. Then come the verify results, the denied tool calls and the
    attempt's outcome. With -f, output is printed as it is written until the attempt ends.
    """
    from conductor.liveness import runner
    from conductor.logview import attempt_data, find_attempt, follow_attempt, render_attempt
    from conductor.state import load_state

    if follow and as_json:
        raise UserError("--json prints a finished view: use it without -f")
    track_id, definition = resolve_track(track)
    check_name(task, "task id")
    if definition is not None:
        definition.task(task)  # an unknown task is a clear error naming the track file
    if follow and definition is not None:
        # Following a track file may start before its first run: wait for its bus.
        sd = StateDir.for_track(repo, track_id, state_dir)
        try:
            _await_state(sd, track_id)
        except KeyboardInterrupt:
            return
    else:
        sd = require_state(track_id, repo, state_dir, named_by_file=definition is not None)
    with Bus.for_state(sd, track_id) as bus:
        if definition is None:  # a misspelt task is an error: -f would wait for it forever
            from conductor.known import check_task

            check_task(bus, sd, repo, task)

        def who() -> str:
            state = load_state(bus, sd.cache, track_id)
            return runner(sd, track_id, runs=state.runs, ended=state.ended).status

        if follow:
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends a follow normally
                info = follow_attempt(
                    bus,
                    sd,
                    task,
                    attempt,
                    click.echo,
                    alive=lambda: who() == "running",
                    waiting=lambda text: click.echo(text, err=True),
                )
                if info is None:
                    click.echo(
                        f"the conductor running track {track_id} stopped before task {task} "
                        "started",
                        err=True,
                    )
            return
        info = find_attempt(bus, sd, task, attempt)
        if info is None:
            if attempt is not None:
                raise UserError(f"task {task!r} has no attempt {attempt} yet")
            raise UserError(f"task {task!r} has not run yet on track {track_id!r}")
        gone = who() == "gone"
        if as_json:
            click.echo(json.dumps(attempt_data(info, gone=gone), indent=2, ensure_ascii=False))
            return
        for line in render_attempt(info, gone=gone):
            click.echo(line)


@click.command("report")
@click.argument("track")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Also write the report as one self-contained HTML page (Gantt chart, DAG, tables).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@repo_option
@state_dir_option
@handle_errors
def report(
    track: str, html_file: Path | None, as_json: bool, repo: Path, state_dir: Path | None
) -> None:
    """Report what happened in TRACK, task by task and attempt by attempt.

    Per task: its attempts, their durations, cost, tokens, denied tool calls, verify results
    and why they failed; then cost per agent and a timeline of the attempts.

    TRACK is a track file (its DAG is drawn with its edges) or a track id. With --html FILE
    the report is also written as one HTML file that loads nothing from anywhere: a Gantt
    chart of attempts over time, the DAG coloured by outcome, and the tables.
    """
    from conductor.liveness import runner
    from conductor.report import build_report, render_text
    from conductor.state import load_state

    track_id, definition = resolve_track(track)
    sd = require_state(track_id, repo, state_dir, named_by_file=definition is not None)
    with Bus.for_state(sd, track_id) as bus:
        state = load_state(bus, sd.cache, track_id)
        who = runner(sd, track_id, runs=state.runs, ended=state.ended)
        result = build_report(bus.iter_all(), track_id, who, definition)
        if definition is None:
            from conductor.known import recorded_file_shown

            result.source = recorded_file_shown(bus, repo)
        else:
            result.source = track
    now = datetime.now(UTC)
    if html_file is not None:
        from conductor.report_html import render_html

        _write_file(html_file, render_html(result, now=now))
    if as_json:
        data = result.to_dict()
        if html_file is not None:
            data["html"] = str(html_file)
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(render_text(result, now=now))
    if html_file is not None:
        click.echo(f"\nwrote {html_file}")


def _write_file(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all (aside, then renamed into place)."""
    if path.is_dir():
        raise UserError(f"{path} is a directory; give --html a file name")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is not a directory")
    try:
        write_atomic(path, text, mode=0o644)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}", path=path) from exc
