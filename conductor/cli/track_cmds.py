"""``conductor validate`` and ``conductor plan``: check a track file and show how it would run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from conductor.cli.app import handle_errors, repo_option, state_dir_option
from conductor.errors import ConductorError, UserError

_TRACK_ARG = click.argument("track", type=click.Path(path_type=Path, dir_okay=True))


@click.command()
@_TRACK_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--adhoc",
    is_flag=True,
    help="Agents defined nowhere are inferred at run time (as `run --adhoc`), not errors.",
)
@repo_option
@state_dir_option
@handle_errors
def validate(
    track: Path, as_json: bool, adhoc: bool, repo: Path, state_dir: Path | None
) -> None:
    """Check a track file: YAML syntax, fields, dependencies, cycles, parallel groups,
    and the worker templates and agents its Claude tasks will use.

    TRACK is a track YAML file, or a directory holding track.yaml. Prints `ok: ...` and
    exits 0 when the track is valid; otherwise prints the file, line and field of the
    problem and exits 2. Notes (such as tasks naming agents the track does not define)
    are printed but are not errors.
    """
    from conductor.inference import notes as inference_notes
    from conductor.templates import check_templates
    from conductor.track import load_track

    try:
        loaded = load_track(track)
        if adhoc:
            loaded = loaded.model_copy(update={"adhoc": True})
        check_templates(loaded, repo)
    except ConductorError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), "line": exc.line}))
        raise
    notes = loaded.notes() if not loaded.adhoc else inference_notes(loaded, repo, state_dir)
    if as_json:
        result = {
            "ok": True,
            "track": loaded.id,
            "tasks": len(loaded.tasks),
            "agents": len(loaded.agents),
            "notes": notes,
        }
        click.echo(json.dumps(result, ensure_ascii=False))
        return
    tasks, agents = len(loaded.tasks), len(loaded.agents)
    click.echo(
        f"ok: {loaded.id}: {tasks} task{'s' if tasks != 1 else ''},"
        f" {agents} agent{'s' if agents != 1 else ''}"
    )
    for note in notes:
        click.echo(f"note: {note}")


FORMATS = ("text", "dot", "mermaid", "json")
"""``plan --format``: each is a ``render_FORMAT`` of ``conductor.plan``."""


@click.command()
@click.argument("track", type=click.Path(path_type=Path, dir_okay=True), required=False)
@click.option(
    "--goal",
    default=None,
    help="Plan a new track for this goal instead: a planner session reads the repository "
    "and writes a track file (checked, sent back up to 3 times if it has problems).",
)
@click.option(
    "--context",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="With --goal: a file the planner should read too (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="With --goal: where to write the track [default: tracks/ID/track.yaml].",
)
@click.option(
    "--no-questions",
    "no_questions",
    is_flag=True,
    help="With --goal: the planner assumes instead of asking (it asks only on a terminal).",
)
@click.option("--force", is_flag=True, help="With --goal: replace an existing track file.")
@click.option("--model", default=None, help="With --goal: the planner's model.")
@click.option(
    "--max-budget-usd",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --goal: the most one planner session may cost.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text for people, dot for Graphviz, mermaid for Markdown, json for tools.",
)
@click.option(
    "--show-prompt",
    "show_prompt",
    metavar="TASK",
    default=None,
    help="Print the system prompt (SKILL.md) and user prompt TASK's worker would get.",
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@repo_option
@state_dir_option
@handle_errors
def plan(
    track: Path | None,
    goal: str | None,
    context: tuple[Path, ...],
    out: Path | None,
    no_questions: bool,
    force: bool,
    model: str | None,
    max_budget_usd: float | None,
    fmt: str,
    show_prompt: str | None,
    as_json: bool,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """Show how TRACK would run, without running anything; or, with --goal, plan a new track.

    Lists the parallel levels (tasks in one level do not depend on each other), the
    critical path and its length, and pairs of tasks that never run together because
    their files overlap. Pipe `--format dot` into `dot -Tsvg` to draw the graph.

    With --goal "..." a planner session reads the repository (read-only) and writes a track
    file: tasks with dependencies, files, acceptance criteria, verify commands, and the
    specialist agents it invented. Plans with problems (cycles, overlapping files that are
    not ordered, tasks without verify or files, an agent nobody defined) go back to it, at
    most 3 rounds; nothing is written until one passes. Exit 2 when none does.
    """
    from conductor import plan as plans
    from conductor.track import load_track

    if goal is not None:
        if track is not None:
            raise UserError("give TRACK to show its plan, or --goal to plan a new one, not both")
        if as_json or fmt != "text" or show_prompt is not None:
            raise UserError(
                "--goal writes a track file: --json, --format and --show-prompt are for "
                "showing an existing TRACK"
            )
        from conductor.cli.planner_cmds import plan_from_goal

        plan_from_goal(
            goal,
            context=context,
            out=out,
            questions=not no_questions,
            force=force,
            model=model,
            max_budget_usd=max_budget_usd,
            repo=repo,
            state_dir=state_dir,
        )
        return
    if track is None:
        raise UserError("give TRACK (a track file or directory), or --goal to plan a new track")
    goal_only = {
        "--context": bool(context),
        "--out": out is not None,
        "--no-questions": no_questions,
        "--force": force,
        "--model": model is not None,
        "--max-budget-usd": max_budget_usd is not None,
    }
    given = [name for name, present in goal_only.items() if present]
    if given:  # silently ignored, they would mislead
        raise UserError(f"{', '.join(given)}: only with --goal, when planning a new track")

    if as_json:
        if fmt not in ("text", "json"):
            raise UserError(f"give --json or --format {fmt}, not both")
        fmt = "json"

    loaded = load_track(track)
    if show_prompt is not None:
        task = loaded.task(show_prompt)
        if task.run:
            click.echo(f"task {task.id} runs a shell command, not a Claude session:\n{task.run}")
            return
        from conductor.executors.claude import user_prompt
        from conductor.templates import preview_worker

        rendered = preview_worker(loaded, task, repo, feedback="")
        click.echo(f"# {rendered.path} (template {rendered.template})", err=True)
        click.echo(rendered.text.rstrip("\n"))
        click.echo("\n--- user prompt ---")
        click.echo(user_prompt(task.id, task.name))
        return
    render = getattr(plans, f"render_{fmt}")
    click.echo(render(loaded, plans.make_plan(loaded)), nl=False)
