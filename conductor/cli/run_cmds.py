"""``conductor run``, ``conductor resume``, ``conductor status`` and ``conductor revert``."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conductor.bus import Bus, Durability
from conductor.cli.app import (
    handle_errors,
    repo_option,
    require_state,
    resolve_outline,
    resolve_track,
    state_dir_option,
)
from conductor.errors import UserError
from conductor.state import load_state

if TYPE_CHECKING:
    from conductor.scheduler import RunOptions, RunResult
    from conductor.track import Track


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
                help="Show the plan and start nothing until a person approves this run (the "
                "prompt on a terminal, or `conductor approve TRACK` from another shell); "
                "`conductor reject TRACK -m WHY` ends it with exit 6.",
            ),
            click.option(
                "--adhoc",
                is_flag=True,
                help="Infer the agents tasks name but nobody defined (one batched question, "
                "kept on the bus) instead of failing; the same as `adhoc: true`.",
            ),
            click.option(
                "--agent-role",
                "agent_role",
                metavar="NAME=ROLE",
                multiple=True,
                help="With --adhoc: the role of inferred agent NAME (repeatable).",
            ),
            click.option(
                "--agent-goal",
                "agent_goal",
                metavar="NAME=GOAL",
                multiple=True,
                help="With --adhoc: the goal of inferred agent NAME (repeatable).",
            ),
            click.option(
                "--durability",
                type=click.Choice([d.value for d in Durability]),
                default=Durability.NONE.value,
                show_default=True,
                help="none: the bus survives kill -9; fsync: it also survives power loss (slower).",
            ),
            click.option(
                "--progress",
                type=click.Choice(["auto", "live", "plain", "none"]),
                default="auto",
                show_default=True,
                help="What the run shows while it goes: live (a table of the running tasks "
                "with their progress, cost and elapsed time), plain (a line per task start and "
                "end), none. auto: live on a terminal, plain otherwise (none with --json).",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
            click.option(
                "--executor",
                type=click.Choice(["local", "ray"]),
                default=None,
                help="Where attempts run: this machine, or a Ray cluster (needs `pip install "
                "'conductor[ray]'`; see docs/distributed.md) [default: the track's executor].",
            ),
            click.option(
                "--address",
                metavar="HOST:PORT",
                default=None,
                help="The Ray cluster to run on (implies --executor ray) [default: RAY_ADDRESS, "
                "else a Ray instance started on this machine].",
            ),
            repo_option,
            state_dir_option,
        ]
    ):
        fn = option(fn)
    return fn


@click.command()
@click.argument("track_file", metavar="TRACK", type=click.Path(path_type=Path))
@click.argument("tasks", nargs=-1, metavar="[TASK]...")
@click.option("--from", "from_task", metavar="TASK", help="Rerun TASK and everything downstream.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print which tasks would run, rerun (and why) or be skipped; run and write nothing.",
)
@_run_options
@handle_errors
def run(
    track_file: Path, tasks: tuple[str, ...], from_task: str | None, dry_run: bool, **kw: Any
) -> None:
    """Run TRACK, or resume it where the last run stopped.

    TRACK is a track file or a directory holding track.yaml. Completed tasks are skipped;
    attempts that were in flight when a previous conductor died are recorded as lost and run
    again; tasks whose definition or `inputs` changed rerun with everything downstream. Name
    TASKs to run only them and what they depend on. Exit codes: 0 complete, 1 failed, 2 bad
    input, 3 already running, 4 budget spent, 6 rejected at the approval pause,
    7 the API refused the credentials (set ANTHROPIC_API_KEY or CLAUDE_CODE_OAUTH_TOKEN),
    130 interrupted.
    """
    _run(track_file, from_task=from_task, only=tasks, dry_run=dry_run, **kw)


@click.command()
@click.argument("track_file", metavar="TRACK", type=click.Path(path_type=Path))
@_run_options
@handle_errors
def resume(track_file: Path, **kw: Any) -> None:
    """Resume TRACK after a crash or Ctrl-C (the same as `conductor run`)."""
    _run(track_file, from_task=None, **kw)


def _run(
    track_file: Path,
    *,
    from_task: str | None,
    only: tuple[str, ...] = (),
    dry_run: bool = False,
    jobs: int | None,
    wait_for_approval: bool,
    durability: str,
    as_json: bool,
    progress: str,
    repo: Path,
    state_dir: Path | None,
    executor: str | None = None,
    address: str | None = None,
    adhoc: bool = False,
    agent_role: tuple[str, ...] = (),
    agent_goal: tuple[str, ...] = (),
) -> None:
    from conductor.logs import ensure_logging
    from conductor.scheduler import RunOptions
    from conductor.track import load_track

    ensure_logging()  # the scheduler logs through structlog itself: configure it first
    track = load_track(track_file)
    overrides: dict[str, dict[str, str]] = {}
    if agent_role or agent_goal:
        from conductor.inference import parse_overrides

        overrides = parse_overrides(agent_role, agent_goal)
    if overrides and not (adhoc or track.adhoc):
        raise UserError("--agent-role and --agent-goal shape inferred agents: add --adhoc")
    if overrides:
        from conductor.inference import check_overrides

        check_overrides(overrides, track, repo)
    if adhoc:
        track = track.model_copy(update={"adhoc": True})
    if from_task is not None:
        track.task(from_task)  # unknown task: a clear error before anything starts
    if only or dry_run:
        track = _select(
            track, only, from_task, dry_run=dry_run, as_json=as_json, repo=repo, state_dir=state_dir
        )
    options = RunOptions(
        repo=repo,
        state_root=state_dir,
        max_parallel=jobs,
        from_task=from_task,
        only=only,
        durability=Durability(durability),
        wait_for_approval=wait_for_approval,
        approver=_ask_person,
        adhoc=adhoc,
        agent_overrides=overrides,
        executor="ray" if executor == "ray" or address else executor,  # type: ignore[arg-type]
        ray_address=address,
    )
    result = _run_shown(track, options, progress=progress, as_json=as_json)
    _print_result(result, as_json, repo)
    raise SystemExit(result.exit_code)


def _run_shown(track: Track, options: RunOptions, *, progress: str, as_json: bool) -> RunResult:
    """Run with the progress view (``conductor.progress``) on stdout (stderr with --json);
    structured log lines go to the track's logs/conductor.log (``conductor.logs``)."""
    import sys

    import anyio

    from conductor.logs import log_run_to
    from conductor.paths import StateDir
    from conductor.progress import VIEW_MODES, run_and_show

    sd = StateDir.for_track(options.repo, track.id, options.state_root)
    log_run_to(sd.logs / "conductor.log")
    mode = VIEW_MODES["none" if as_json and progress == "auto" else progress]
    stream = sys.stderr if as_json else sys.stdout
    try:
        return anyio.run(partial(run_and_show, track, options, mode=mode, stream=stream))
    except KeyboardInterrupt:
        # A second Ctrl-C (the first one stops the run cleanly), or one before it started.
        click.echo("\ninterrupted: stopped at once; `conductor run` resumes the track", err=True)
        raise SystemExit(130) from None


def _select(
    track: Track,
    only: tuple[str, ...],
    from_task: str | None,
    *,
    dry_run: bool,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> Track:
    """The track narrowed to what ``run TRACK TASK...`` selected (saying what it selected);
    for ``--dry-run``, print what a run would do and exit 0 without writing anything."""
    from conductor.preview import dry_run as preview
    from conductor.preview import select_tasks

    selected = track
    if only:
        selection = select_tasks(track, only)
        selected = selection.track
        if from_task is not None and from_task not in selected.task_ids():
            raise UserError(
                f"--from {from_task} is not among the selected tasks "
                f"({', '.join(selected.task_ids())})",
                task_id=from_task,
            )
        deps = f" (+ dependencies: {', '.join(selection.dependencies)})"
        click.echo(
            f"selected: {', '.join(selection.requested)}{deps if selection.dependencies else ''}",
            err=True,
        )
    if not dry_run:
        return selected
    steps = preview(selected, repo=repo, state_root=state_dir, from_task=from_task)
    if as_json:
        body = {
            "track": track.id,
            "dry_run": True,
            "selected": selected.task_ids() if only else None,
            "tasks": [step.to_dict() for step in steps],
        }
        click.echo(json.dumps(body, indent=2))
        raise SystemExit(0)
    click.echo(f"track {track.id}: dry run, nothing is started or written")
    width = max((len(step.task) for step in steps), default=4)
    for step in steps:
        click.echo(f"  {step.action:<5}  {step.task:<{width}}  {step.reason}")
    counts = {a: sum(1 for st in steps if st.action == a) for a in ("run", "rerun", "skip")}
    click.echo(f"would run {counts['run']}, rerun {counts['rerun']}, skip {counts['skip']}")
    raise SystemExit(0)


def _print_result(result: RunResult, as_json: bool, repo: Path) -> None:
    if as_json:
        data = {k: v for k, v in result.__dict__.items() if k != "state_dir"}
        data["state_dir"] = str(result.state_dir)
        data["exit_code"] = result.exit_code
        click.echo(json.dumps(data, indent=2))
        return
    from conductor.progress import summary_lines

    for line in summary_lines(result, repo=repo):
        click.echo(line)


@click.command()
@click.argument("track")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@repo_option
@state_dir_option
@handle_errors
def status(track: str, as_json: bool, repo: Path, state_dir: Path | None) -> None:
    """Show each task's state, attempts and duration, as the bus records them.

    TRACK is a track file (all its tasks are listed) or a track id (tasks seen on the bus).
    Each task also shows its cost, landed commit and denied tool calls; a line says which
    conductor is running the track, or that the one that ran it is gone (killed before it
    recorded the end of its run: `conductor run` resumes it), and then the tasks it was
    running show as unfinished.
    """
    track_id, outline = resolve_outline(track, repo, state_dir)
    sd = require_state(track_id, repo, state_dir, named_by_file=outline is not None)
    resume_as = track  # what `conductor run` needs to resume: the track file
    with Bus.for_state(sd, track_id) as bus:
        state = load_state(bus, sd.cache, track_id, refresh_cache=True)
        if outline is None:
            from conductor.known import recorded_file_shown

            resume_as = recorded_file_shown(bus, repo) or f"the file of {track}"
    from conductor.liveness import runner
    from conductor.terminal import visible

    who = runner(sd, track_id, runs=state.runs, ended=state.ended)
    if outline is not None:
        ids = outline.tasks
        deps = outline.depends_on
    else:
        ids = list(state.tasks)
        deps = {}
    rows = state.rows(ids, lambda tid: deps.get(tid, []))
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row["status"])] = counts.get(str(row["status"]), 0) + 1

    def shown(row: dict[str, Any]) -> str:
        """A task's state for a person: an attempt whose conductor is gone (the bus still
        says running) is unfinished, as `conductor report` says; --json keeps the bus's
        word beside ``runner.status``."""
        if row["status"] == "running" and who.status == "gone":
            return "unfinished"
        return str(row["status"])

    if as_json:
        click.echo(
            json.dumps(
                {
                    "track": track_id,
                    "last_seq": state.last_seq,
                    "runs": state.runs,
                    "ended": state.ended,
                    "runner": who.to_dict(),
                    "approval": state.approval if who.status == "running" else None,
                    "cost_usd": round(state.cost_usd, 6),
                    "counts": counts,
                    "tasks": rows,
                },
                indent=2,
            )
        )
        return
    seen: dict[str, int] = {}
    for row in rows:
        seen[shown(row)] = seen.get(shown(row), 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(seen.items()))
    ended = f", last run: {state.ended}" if state.ended else ""
    cost = f", ${state.cost_usd:.4f}" if state.cost_usd else ""
    click.echo(f"track {track_id}: {summary} ({state.last_seq} messages{ended}{cost})")
    said = who.describe(resume_as)
    if said:
        click.echo(f"  {said}")
    if who.status == "running" and state.approval == "pending":
        click.echo(
            f"  waiting for approval: conductor approve {track_id} / "
            f"conductor reject {track_id} -m WHY"
        )
    width = max((len(r["task"]) for r in rows), default=4)
    for row in rows:
        duration = f"{row['duration']:.1f}s" if row["duration"] is not None else "-"
        line = (
            f"  {row['task']:<{width}}  {shown(row):<8}  attempts {row['attempts']}  {duration}"
        )
        if row["cost_usd"]:
            line += f"  ${row['cost_usd']:.4f}"
        if row["commit"]:
            line += f"  commit {str(row['commit'])[:12]}"
        if row["denials"]:
            line += f"  {row['denials']} denied"
        if row["review_score"] is not None:
            line += f"  review {row['review_score']:.0f} (round {row['review_rounds']})"
        if row["error"]:
            line += f"  {visible(str(row['error']).splitlines()[0][:80])}"
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


async def _ask_person(plan_text: str, plan: dict[str, Any]) -> tuple[bool, str]:
    """The approval pause: show the plan; on a terminal ask y/n (and why for no; end of input
    answers no), otherwise wait for ``conductor approve`` / ``conductor reject`` from another
    shell."""
    import sys

    import anyio

    click.echo(plan_text, err=True)
    track = plan.get("track", "TRACK")
    hint = f"answer from another shell: conductor approve {track} / conductor reject {track} -m WHY"
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        click.echo(hint, err=True)
        await anyio.sleep_forever()
    click.echo(f"({hint})", err=True)
    from conductor.cli.prompting import ask, confirm

    try:
        if await confirm("Approve this run?"):
            return True, ""
        return False, await ask("Why not", default="rejected at the prompt")
    except click.Abort:  # end of input (Ctrl-D) is the prompt's default: no
        return False, "rejected at the prompt (end of input)"
