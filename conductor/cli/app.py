"""The ``conductor`` click group, shared options, and the one place errors become exit codes."""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from conductor import __version__
from conductor.cli.usage import (
    COMMANDS,
    HELP_FLAGS,
    LOG_FORMAT_HELP,
    LOG_FORMATS,
    VERBOSE_HELP,
    render_help,
    version_text,
)
from conductor.errors import ConductorError, UserError
from conductor.logs import configure_logging

if TYPE_CHECKING:
    from pathlib import Path  # imported where used: it costs `--version` a tenth of its start

    from conductor.outline import Outline
    from conductor.paths import StateDir
    from conductor.track import Track

F = TypeVar("F", bound=Callable[..., Any])

RAISE_ENV = "CONDUCTOR_RAISE_ERRORS"
"""Set to 1 to let conductor errors propagate with their traceback (debugging)."""


class LazyGroup(click.Group):
    """A group whose commands are imported when they run; its ``--help`` is
    ``conductor.cli.usage.render_help``, which lists them from the table."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attr = self.lazy[cmd_name][0].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The same help ``conductor --help`` prints without click (``conductor.cli.usage``)."""
        formatter.write(render_help(formatter.width))


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": list(HELP_FLAGS)},
)
@click.version_option(__version__, prog_name="conductor", message=version_text())
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="auto",
    show_default=True,
    help=LOG_FORMAT_HELP,
)
@click.option("-v", "--verbose", is_flag=True, help=VERBOSE_HELP)
def main(log_format: str, verbose: bool) -> None:
    """The ``conductor`` group: configures logging, then runs the command (its help is
    ``conductor.cli.usage.DESCRIPTION``)."""
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


def _find_root(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path:
    """``--repo`` as given, else the root of the repository the current directory is in."""
    if value is not None:
        return value
    from conductor.paths import find_root

    return find_root()


def repo_option(fn: F) -> F:
    """``--repo DIR``: the repository checkout (default: the root of the one the current
    directory is in, ``conductor.paths.find_root``)."""
    from pathlib import Path

    return click.option(
        "--repo",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        callback=_find_root,
        help="Repository checkout the track runs in [default: the top of the git work tree "
        "the current directory is in].",
    )(fn)


def state_dir_option(fn: F) -> F:
    """``--state-dir DIR``: root of run-state directories (default: REPO/.conductor)."""
    from pathlib import Path

    from conductor.contract import STATE_DIR_ENV  # loads the message types: not for --version

    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar=STATE_DIR_ENV,
        help="Root of run-state directories [default: REPO/.conductor; env CONDUCTOR_STATE_DIR].",
    )(fn)


def resolve_track(arg: str) -> tuple[str, Track | None]:
    """A TRACK argument is a track file or a directory holding ``track.yaml`` (either loaded
    and validated; relative to the current directory), or a bare track id."""
    from conductor.paths import check_name

    path = _track_path(arg)
    if path is not None:
        from conductor.track import load_track

        track = load_track(path)
        return track.id, track
    return check_name(arg, "track id"), None


def _track_path(arg: str) -> Path | None:
    """The track file a TRACK argument names (a directory means its ``track.yaml``), or None
    when the argument is a bare track id. ``hello`` is a directory only when it holds a track
    file; ``tracks/hello``, ``.`` and anything ending in ``.yaml``/``.yml`` are paths."""
    from pathlib import Path

    from conductor.paths import TRACK_FILE_NAMES, track_file

    path = Path(arg)
    if path.is_file() or arg.endswith((".yaml", ".yml")):
        return path
    if path.is_dir() and (
        "/" in arg or arg in (".", "..") or any((path / n).is_file() for n in TRACK_FILE_NAMES)
    ):
        return track_file(path)
    return None


def require_state(
    track_id: str, repo: Path, state_dir: Path | None, *, named_by_file: bool
) -> StateDir:
    """The state directory of a track a read-only command reads; ``UserError`` (exit 2) if
    it has none, with a did-you-mean for a bare track id. Nothing is created."""
    from conductor.paths import StateDir, state_root, unknown_track

    sd = StateDir.for_track(repo, track_id, state_dir)
    if sd.bus.is_dir():
        return sd
    if not named_by_file:
        raise unknown_track(track_id, state_root(repo, state_dir))
    raise UserError(f"track {track_id!r} has no run state under {sd.root}; run it first")


def resolve_outline(arg: str, repo: Path, state_dir: Path | None) -> tuple[str, Outline | None]:
    """``resolve_track`` for a command that needs only a track file's ids and dependencies:
    it skips building the track's models when the file is unchanged since its last full
    validation (``conductor.outline``)."""
    from conductor.paths import check_name

    path = _track_path(arg)
    if path is not None:
        from conductor.outline import read_outline

        outline = read_outline(path, repo, state_dir)
        return outline.track, outline
    return check_name(arg, "track id"), None
