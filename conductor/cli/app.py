"""The ``conductor`` click group, shared options, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conductor.errors import ConductorError
from conductor.logs import configure_logging

if TYPE_CHECKING:
    from conductor.track import Track

F = TypeVar("F", bound=Callable[..., Any])

RAISE_ENV = "CONDUCTOR_RAISE_ERRORS"
"""Set to 1 to let conductor errors propagate with their traceback (debugging)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conductor")
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
    from conductor.track import load_track

    path = Path(arg)
    if path.is_file() or arg.endswith((".yaml", ".yml")):
        track = load_track(path)
        return track.id, track
    return check_name(arg, "track id"), None
