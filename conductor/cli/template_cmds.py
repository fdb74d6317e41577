"""``conductor templates list|show`` and ``conductor agents list``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from conductor.cli.app import handle_errors, repo_option, state_dir_option
from conductor.cli.tables import table

if TYPE_CHECKING:
    from conductor.agents import TrackSpec

_ANY_OTHER = "(any other)"


def load_track_file(path: Path) -> TrackSpec:
    """Load and validate a track file (``conductor.track.load_track``)."""
    track: TrackSpec = importlib.import_module("conductor.track").load_track(path)
    return track


def _track_option(fn: Any) -> Any:
    return click.option(
        "--track",
        "track_file",
        type=click.Path(path_type=Path),
        default=None,
        help="A track file (or its directory): its templates directory (templates:) takes "
        "precedence.",
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
    click.echo(table(("NAME", "LAYER", "TASK TYPES", "PATH"), rows))


@templates_group.command("show")
@click.argument("type_or_name", metavar="TYPE")
@repo_option
@_track_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object: name, layer, path, text."
)
@handle_errors
def templates_show(
    type_or_name: str, repo: Path, track_file: Path | None, as_json: bool
) -> None:
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
    included = []
    for line in templates.expand(name):
        if line.path != source and line.path not in included:
            included.append(line.path)
    if as_json:
        body = {
            "name": name,
            "layer": templates.layer_of(name),
            "path": str(source),
            "includes": [str(path) for path in included],
            "text": text,
        }
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(f"# {name}: {templates.layer_of(name)} template {source}", err=True)
    for path in included:
        click.echo(f"#   includes {path}", err=True)
    click.echo(text, nl=False)


@click.group("agents")
def agents_group() -> None:
    """Agents: the specialists tasks are done as (track agents:, .claude/agents, inferred)."""


@agents_group.command("list")
@click.argument("track_file", metavar="TRACK", type=click.Path(path_type=Path))
@repo_option
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@handle_errors
def agents_list(track_file: Path, repo: Path, state_dir: Path | None, as_json: bool) -> None:
    """Show the agent each task of TRACK is done as, and where that agent was defined.

    Sources: track (the track's agents:), claude-agents (REPO/.claude/agents/NAME.md),
    inferred (by a run with --adhoc, or, before one did, made up from the agent's name and
    the task), default (the task names no agent). Tasks with a run: command have no agent.
    """
    track = load_track_file(track_file)
    from conductor.agents import AgentRegistry
    from conductor.inference import inferred_on_bus
    from conductor.track import Agent

    earlier = inferred_on_bus(repo, track.id, state_dir)
    if earlier:
        agents = {name: Agent.model_validate(d) for name, d in earlier.items()}
        track = track.model_copy(update={"inferred_agents": agents})  # type: ignore[attr-defined]
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
    click.echo(table(("TASK", "AGENT", "SOURCE", "ROLE", "MODEL", "DEFINED IN"), rows))


@agents_group.command("promote")
@click.argument("track")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing .claude/agents/NAME.md.")
@repo_option
@state_dir_option
@handle_errors
def agents_promote(track: str, name: str, force: bool, repo: Path, state_dir: Path | None) -> None:
    """Keep agent NAME, inferred by a run of TRACK, as REPO/.claude/agents/NAME.md.

    The file is in Claude Code's own subagent format (frontmatter name, description, tools,
    model; the system prompt as its body), so Claude Code and later runs, with or without
    --adhoc, use it as a defined agent. Exit 2 when no run inferred NAME.
    """
    import difflib

    from conductor.cli.app import resolve_track
    from conductor.errors import UserError
    from conductor.inference import FALLBACK, inferred_on_bus, promote

    track_id, _ = resolve_track(track)
    inferred = inferred_on_bus(repo, track_id, state_dir)
    if name not in inferred:
        close = difflib.get_close_matches(name, list(inferred), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        known = ", ".join(sorted(inferred)) or "none"
        raise UserError(
            f"no run of {track_id!r} inferred an agent {name!r}{hint}; inferred: {known}"
        )
    path = promote(inferred[name], repo, force=force)
    click.echo(f"wrote {path}: tasks naming {name!r} now use it as a defined agent")
    if str(inferred[name].get("description") or "").startswith(FALLBACK):
        click.echo(
            f"note: {name!r} is the fallback made from its name (inference gave no usable "
            "answer): its role and prompt are generic, edit them",
            err=True,
        )


@agents_group.command("stats")
@click.argument("tracks", nargs=-1, metavar="[TRACK]...")
@repo_option
@state_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@handle_errors
def agents_stats(
    tracks: tuple[str, ...], repo: Path, state_dir: Path | None, as_json: bool
) -> None:
    """How each agent has done over every run on the buses of TRACKs (default: all tracks):
    tasks done, first-try rate, mean attempts, mean duration, cost, mean review score."""
    from conductor.agent_stats import stats_of
    from conductor.cli.app import require_state, resolve_track

    ids = []
    for track in tracks:
        track_id, definition = resolve_track(track)
        # A track named that never ran is an error (exit 2), as for every read-only command.
        require_state(track_id, repo, state_dir, named_by_file=definition is not None)
        ids.append(track_id)
    rows = stats_of(repo, ids, state_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no agent has run a task yet")
        return

    def shown(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows_shown = [
        (
            r["agent"],
            str(r["tasks_done"]),
            shown(r["first_try_rate"], ".0%"),
            shown(r["mean_attempts"], ".2f"),
            shown(r["mean_duration"], ".1f") + ("s" if r["mean_duration"] is not None else ""),
            f"${r['cost_usd']:.4f}",
            shown(r["mean_review_score"], ".1f"),
        )
        for r in rows
    ]
    headers = ("AGENT", "DONE", "FIRST TRY", "ATTEMPTS", "DURATION", "COST", "REVIEW")
    click.echo(table(headers, rows_shown))
