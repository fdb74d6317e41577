"""The ``conductor`` click group, shared options, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conductor import __version__
from conductor.errors import ConductorError
from conductor.logs import configure_logging

if TYPE_CHECKING:
    from conductor.track import Track

F = TypeVar("F", bound=Callable[..., Any])

RAISE_ENV = "CONDUCTOR_RAISE_ERRORS"
"""Set to 1 to let conductor errors propagate with their traceback (debugging)."""
TRACK_ENV = "CONDUCTOR_TRACK"
"""The track a worker's shell belongs to: ``bus post`` uses it when TRACK is left out."""
WORKER_ENV = "CONDUCTOR_WORKER"
"""The worker id a worker's shell runs as."""
TOKEN_ENV = "CONDUCTOR_WORKER_TOKEN"
"""The worker's secret; its presence makes ``bus post`` post as that worker."""


COMMANDS = {
    "agents": "conductor.cli.template_cmds:agents_group",
    "bus": "conductor.cli.bus_cmds:bus_group",
    "hooks": "conductor.cli.hook_cmds:hooks_group",
    "locks": "conductor.cli.lock_cmds:locks_command",
    "plan": "conductor.cli.track_cmds:plan",
    "resume": "conductor.cli.run_cmds:resume",
    "revert": "conductor.cli.run_cmds:revert",
    "run": "conductor.cli.run_cmds:run",
    "status": "conductor.cli.run_cmds:status",
    "templates": "conductor.cli.template_cmds:templates_group",
    "validate": "conductor.cli.track_cmds:validate",
}
"""Each command and where it is defined: a command's module is imported only when it runs."""


class LazyGroup(click.Group):
    """A group whose commands are imported when they run (or when ``--help`` lists them)."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="conductor")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    show_default=True,
    help="Log lines on stderr: console (human), json (one object a line), auto (console on a TTY).",
)
@click.option("-v", "--verbose", is_flag=True, help="Also log debug lines.")
def main(log_format: str, verbose: bool) -> None:
    """Run a track (a DAG of tasks in YAML) on this repository.

    Tasks run as shell commands or background Claude sessions, coordinated through an
    append-only message bus under .conductor/<track>/ that you can read with ls, cat and jq.
    Start with `conductor validate TRACK`, `conductor plan TRACK`, then `conductor run TRACK`.
    """
    configure_logging(log_format, verbose=verbose)  # type: ignore[arg-type]


def handle_errors(fn: F) -> F:
    """Turn ``ConductorError`` into ``error: ...`` on stderr and its documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConductorError as exc:
            if os.environ.get(RAISE_ENV):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def repo_option(fn: F) -> F:
    """``--repo DIR``: the repository checkout (default: the current directory)."""
    return click.option(
        "--repo",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=Path("."),
        show_default=True,
        help="Repository checkout the track runs in.",
    )(fn)


def state_dir_option(fn: F) -> F:
    """``--state-dir DIR``: root of run-state directories (default: REPO/.conductor)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar="CONDUCTOR_STATE_DIR",
        help="Root of run-state directories [default: REPO/.conductor; env CONDUCTOR_STATE_DIR].",
    )(fn)


def resolve_track(arg: str) -> tuple[str, Track | None]:
    """A TRACK argument is a track file (loaded and validated) or a bare track id."""
    from conductor.paths import check_name

    path = Path(arg)
    if path.is_file() or arg.endswith((".yaml", ".yml")):
        from conductor.track import load_track

        track = load_track(path)
        return track.id, track
    return check_name(arg, "track id"), None
