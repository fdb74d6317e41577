"""``conductor run``, ``conductor resume``, ``conductor status`` and ``conductor revert``."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conductor.bus import Bus, Durability
from conductor.cli.app import handle_errors, repo_option, resolve_track, state_dir_option
from conductor.errors import UserError
from conductor.paths import StateDir
from conductor.state import TaskStatus, load_state

if TYPE_CHECKING:
    from conductor.scheduler import RunResult


def _run_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "-j",
                "--jobs",
                type=click.IntRange(min=1),
                default=None,
                help="Run at most this many tasks at once [default: the track's max_parallel].",
            ),
            click.option(
                "--approve",
                "wait_for_approval",
                is_flag=True,
                help="Wait for a person to post APPROVE (conductor bus post TRACK APPROVE) first.",
            ),
            click.option(
                "--durability",
                type=click.Choice([d.value for d in Durability]),
                default=Durability.NONE.value,
                show_default=True,
                help="none: the bus survives kill -9; fsync: it also survives power loss (slower).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
            repo_option,
            state_dir_option,
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.argument("track_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--from", "from_task", metavar="TASK", help="Rerun TASK and everything downstream.")
@_run_options
@handle_errors
def run(track_file: Path, from_task: str | None, **kw: Any) -> None:
    """Run TRACK_FILE, or resume it where the last run stopped.

    Completed tasks are skipped; attempts that were in flight when a previous conductor died
    are recorded as lost and run again; tasks whose definition changed rerun with everything
    downstream. Exit codes: 0 complete, 1 failed, 2 bad input, 3 already running,
    4 budget spent, 130 interrupted.
    """
    _run(track_file, from_task=from_task, **kw)


@click.command()
@click.argument("track_file", type=click.Path(dir_okay=False, path_type=Path))
@_run_options
@handle_errors
def resume(track_file: Path, **kw: Any) -> None:
    """Resume TRACK_FILE after a crash or Ctrl-C (the same as `conductor run`)."""
    _run(track_file, from_task=None, **kw)


def _run(
    track_file: Path,
    *,
    from_task: str | None,
    jobs: int | None,
    wait_for_approval: bool,
    durability: str,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    import anyio

    from conductor.logs import ensure_logging
    from conductor.scheduler import RunOptions, run_track
    from conductor.track import load_track

    ensure_logging()  # the scheduler logs through structlog itself: configure it first
    track = load_track(track_file)
    if from_task is not None:
        track.task(from_task)  # unknown task: a clear error before anything starts
    if any(not task.run for task in track.tasks):
        from conductor.templates import check_templates

        check_templates(track, repo)  # a bad template or agent fails before anything runs
    options = RunOptions(
        repo=repo,
        state_root=state_dir,
        max_parallel=jobs,
        from_task=from_task,
        durability=Durability(durability),
        wait_for_approval=wait_for_approval,
    )
    result = anyio.run(partial(run_track, track, options))
    _print_result(result, as_json)
    raise SystemExit(result.exit_code)


def _print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        data = {k: v for k, v in result.__dict__.items() if k != "state_dir"}
        data["state_dir"] = str(result.state_dir)
        data["exit_code"] = result.exit_code
        click.echo(json.dumps(data, indent=2))
        return
    parts = [f"{len(result.completed)} complete"]
    for label, items in (
        ("skipped", result.skipped),
        ("failed", result.failed),
        ("blocked", result.blocked),
        ("not started", result.pending),
    ):
        if items:
            parts.append(f"{len(items)} {label}")
    cost = f", ${result.cost_usd:.4f}" if result.cost_usd else ""
    click.echo(
        f"track {result.track}: {result.status} in {result.duration:.1f}s — "
        f"{', '.join(parts)}{cost}"
    )
    for tid, error in result.failed.items():
        click.echo(f"  failed   {tid}: {error.splitlines()[0] if error else 'failed'}")
    for tid in result.blocked:
        click.echo(f"  blocked  {tid}")
    if result.status == "interrupted":
        click.echo("  run `conductor run` again to resume")
    if result.status == "budget":
        click.echo("  the track's budget_usd is spent; raise it to continue")


@click.command()
@click.argument("track")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@repo_option
@state_dir_option
@handle_errors
def status(track: str, as_json: bool, repo: Path, state_dir: Path | None) -> None:
    """Show each task's state, attempts and duration, as the bus records them.

    TRACK is a track file (all its tasks are listed) or a track id (tasks seen on the bus).
    """
    track_id, definition = resolve_track(track)
    sd = StateDir.for_track(repo, track_id, state_dir)
    if not sd.bus.is_dir():
        raise UserError(f"track {track_id!r} has no run state under {sd.root}; run it first")
    with Bus.for_state(sd, track_id) as bus:
        state = load_state(bus, sd.cache, track_id, refresh_cache=True)
    if definition is not None:
        ids = definition.task_ids()
        deps = {t.id: t.depends_on for t in definition.tasks}
    else:
        ids = list(state.tasks)
        deps = {}
    view = state.view(ids, lambda tid: deps.get(tid, []))
    rows = []
    for tid in ids:
        ts = state.task(tid)
        rows.append(
            {
                "task": tid,
                "status": view[tid].value,
                "attempts": ts.attempts,
                "failures": ts.failures,
                "duration": ts.duration,
                "cost_usd": round(ts.cost_usd, 6),
                "commit": ts.commit,
                "denials": ts.denials,
                "kept_copy": ts.kept_copy,
                "error": ts.last_error
                if view[tid] in (TaskStatus.FAILED, TaskStatus.PENDING)
                else None,
            }
        )
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1
    if as_json:
        click.echo(
            json.dumps(
                {
                    "track": track_id,
                    "last_seq": state.last_seq,
                    "runs": state.runs,
                    "ended": state.ended,
                    "cost_usd": round(state.cost_usd, 6),
                    "counts": counts,
                    "tasks": rows,
                },
                indent=2,
            )
        )
        return
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    ended = f", last run: {state.ended}" if state.ended else ""
    click.echo(f"track {track_id}: {summary} ({state.last_seq} messages{ended})")
    width = max((len(r["task"]) for r in rows), default=4)  # type: ignore[arg-type]
    for row in rows:
        duration = f"{row['duration']:.1f}s" if row["duration"] is not None else "-"
        line = (
            f"  {row['task']:<{width}}  {row['status']:<8}  attempts {row['attempts']}  {duration}"
        )
        if row["commit"]:
            line += f"  commit {str(row['commit'])[:12]}"
        if row["denials"]:
            line += f"  {row['denials']} denied"
        if row["error"]:
            line += f"  {str(row['error']).splitlines()[0][:80]}"
        click.echo(line)
        if row["kept_copy"]:
            click.echo(f"  {'':<{width}}  failed attempt's copy kept: {row['kept_copy']}")


@click.command()
@click.argument("track")
@click.argument("task")
@repo_option
@state_dir_option
@handle_errors
def revert(track: str, task: str, repo: Path, state_dir: Path | None) -> None:
    """Undo TASK's landed commit with a new commit, and mark the task pending again.

    TRACK is a track file or a track id. Every path the task changed must be clean in your
    checkout and unchanged since; otherwise nothing is changed and the paths are named. The
    next `conductor run` would redo the task: post SKIP for it to leave it undone.
    """
    from conductor.revert import revert_task

    track_id, _ = resolve_track(track)
    landed = revert_task(track_id, task, repo=repo, state_root=state_dir)
    click.echo(
        f"reverted task {task}: commit {landed.commit[:12]} undoes it "
        f"({len(landed.paths)} file{'s' if len(landed.paths) != 1 else ''})"
    )
    click.echo(
        f"task {task} is pending again; to leave it undone: "
        f"conductor bus post {track_id} SKIP --task {task}"
    )
