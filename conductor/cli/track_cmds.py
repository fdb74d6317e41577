"""``conductor validate`` and ``conductor plan``: check a track file and show how it would run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from conductor.cli.app import handle_errors, repo_option
from conductor.errors import ConductorError

_TRACK_ARG = click.argument("track", type=click.Path(path_type=Path, dir_okay=True))


@click.command()
@_TRACK_ARG
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@repo_option
@handle_errors
def validate(track: Path, as_json: bool, repo: Path) -> None:
    """Check a track file: YAML syntax, fields, dependencies, cycles, parallel groups,
    and the worker templates and agents its Claude tasks will use.

    TRACK is a track YAML file, or a directory holding track.yaml. Prints `ok: ...` and
    exits 0 when the track is valid; otherwise prints the file, line and field of the
    problem and exits 2. Notes (such as tasks naming agents the track does not define)
    are printed but are not errors.
    """
    from conductor.templates import check_templates
    from conductor.track import load_track

    try:
        loaded = load_track(track)
        check_templates(loaded, repo)
    except ConductorError as exc:
        if as_json:
            click.echo(json.dumps({"ok": False, "error": str(exc), "line": exc.line}))
        raise
    notes = loaded.notes()
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
@_TRACK_ARG
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
@repo_option
@handle_errors
def plan(track: Path, fmt: str, show_prompt: str | None, repo: Path) -> None:
    """Show how a track would run, without running anything.

    Lists the parallel levels (tasks in one level do not depend on each other), the
    critical path and its length, and pairs of tasks that never run together because
    their files overlap. Pipe `--format dot` into `dot -Tsvg` to draw the graph.
    """
    from conductor import plan as plans
    from conductor.track import load_track

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
