"""``conductor templates list|show`` and ``conductor agents list``."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conductor.cli.app import handle_errors, repo_option

if TYPE_CHECKING:
    from conductor.agents import TrackSpec

_ANY_OTHER = "(any other)"


def load_track_file(path: Path) -> TrackSpec:
    """Load and validate a track file (``conductor.track.load_track``)."""
    track: TrackSpec = importlib.import_module("conductor.track").load_track(path)
    return track


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _track_option(fn: Any) -> Any:
    return click.option(
        "--track",
        "track_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="A track file: its templates directory (templates:) takes precedence.",
    )(fn)


@click.group("templates")
def templates_group() -> None:
    """Worker templates: the skill files Claude workers are specialised from.

    Templates are looked up in the track's templates directory, then REPO/worker_templates/,
    then the ones shipped with conductor. A task of type T uses T-worker.md when one exists,
    else task-worker.md.
    """


@templates_group.command("list")
@repo_option
@_track_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@handle_errors
def templates_list(repo: Path, track_file: Path | None, as_json: bool) -> None:
    """List every template: its name, layer, file, and the task types that use it."""
    track = load_track_file(track_file) if track_file is not None else None
    from conductor.templates import BASE_TEMPLATE, TemplateSet

    templates = TemplateSet(repo, track)
    used_types = [t.type for t in track.tasks if t.type] if track is not None else []
    entries: list[dict[str, Any]] = []
    for name in templates.names():
        types = templates.types_of(name, used_types)
        if name == BASE_TEMPLATE:
            types.append(_ANY_OTHER)
        entries.append(
            {
                "name": name,
                "layer": templates.layer_of(name),
                "types": types,
                "path": str(templates.source_of(name)),
            }
        )
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    rows = [(e["name"], e["layer"], ", ".join(e["types"]) or "-", e["path"]) for e in entries]
    click.echo(_table(("NAME", "LAYER", "TASK TYPES", "PATH"), rows))


@templates_group.command("show")
@click.argument("type_or_name", metavar="TYPE")
@repo_option
@_track_option
@handle_errors
def templates_show(type_or_name: str, repo: Path, track_file: Path | None) -> None:
    """Print the template tasks of TYPE use (or the template named TYPE), includes expanded.

    The template goes to stdout with its placeholders untouched, so it can be saved as a
    starting point for an override; where it came from goes to stderr.
    """
    track = load_track_file(track_file) if track_file is not None else None
    from conductor.templates import TemplateSet

    templates = TemplateSet(repo, track)
    name = type_or_name if type_or_name in templates.names() else None
    name = name or templates.template_for(type_or_name)
    text = templates.raw_text(name)
    source = templates.source_of(name)
    click.echo(f"# {name}: {templates.layer_of(name)} template {source}", err=True)
    included = []
    for line in templates.expand(name):
        if line.path != source and line.path not in included:
            included.append(line.path)
    for path in included:
        click.echo(f"#   includes {path}", err=True)
    click.echo(text, nl=False)


@click.group("agents")
def agents_group() -> None:
    """Agents: the specialists tasks are done as (track agents:, .claude/agents, inferred)."""


@agents_group.command("list")
@click.argument("track_file", metavar="TRACK", type=click.Path(dir_okay=False, path_type=Path))
@repo_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@handle_errors
def agents_list(track_file: Path, repo: Path, as_json: bool) -> None:
    """Show the agent each task of TRACK is done as, and where that agent was defined.

    Sources: track (the track's agents:), claude-agents (REPO/.claude/agents/NAME.md),
    inferred (made up from the agent's name and the task), default (the task names no agent).
    Tasks with a run: command have no agent.
    """
    track = load_track_file(track_file)
    from conductor.agents import AgentRegistry

    registry = AgentRegistry(track, repo)
    entries: list[dict[str, Any]] = []
    for task in track.tasks:
        if task.run:
            entries.append({"task": task.id, "agent": None, "source": "run"})
            continue
        agent = registry.resolve(task)
        entries.append(
            {
                "task": task.id,
                "agent": agent.name,
                "source": agent.source,
                "role": agent.role,
                "goal": agent.goal,
                "tools": agent.tools,
                "model": agent.model,
                "origin": str(agent.origin) if agent.origin is not None else None,
            }
        )
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    rows = [
        (
            e["task"],
            e["agent"] or "-",
            e["source"] if e["agent"] else "(shell command)",
            e.get("role") or "-",
            e.get("model") or "-",
            e.get("origin") or "-",
        )
        for e in entries
    ]
    click.echo(_table(("TASK", "AGENT", "SOURCE", "ROLE", "MODEL", "DEFINED IN"), rows))
