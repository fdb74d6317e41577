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


COMMANDS: dict[str, tuple[str, str]] = {
    "agents": (
        "conductor.cli.template_cmds:agents_group",
        "Agents: the specialists tasks are done as (track agents:, .claude/agents, inferred).",
    ),
    "approve": (
        "conductor.cli.approve_cmds:approve",
        "Approve the run of TRACK that is waiting at its approval pause.",
    ),
    "bus": (
        "conductor.cli.bus_cmds:bus_group",
        "Read and write a track's message bus (one JSON file per message, in order).",
    ),
    "doctor": (
        "conductor.cli.setup_cmds:doctor",
        "Check what conductor needs on this machine, and say how to fix what is missing.",
    ),
    "hooks": (
        "conductor.cli.hook_cmds:hooks_group",
        "Git hooks that keep your commits and a running track out of each other's way.",
    ),
    "init": (
        "conductor.cli.setup_cmds:init",
        "Write a starter track and an offline script for it, ready to run.",
    ),
    "locks": (
        "conductor.cli.lock_cmds:locks_command",
        "List the path locks of TRACK (a track file or id), or of every track when omitted.",
    ),
    "logs": (
        "conductor.cli.report_cmds:logs",
        "Show what one attempt at TASK did.",
    ),
    "plan": (
        "conductor.cli.track_cmds:plan",
        "Show how TRACK would run, without running anything; or, with --goal, plan a new track.",
    ),
    "reject": (
        "conductor.cli.approve_cmds:reject",
        "Reject the run of TRACK that is waiting at its approval pause: it ends with exit 6.",
    ),
    "report": (
        "conductor.cli.report_cmds:report",
        "Report what happened in TRACK, task by task and attempt by attempt.",
    ),
    "resume": (
        "conductor.cli.run_cmds:resume",
        "Resume TRACK after a crash or Ctrl-C (the same as `conductor run`).",
    ),
    "revert": (
        "conductor.cli.run_cmds:revert",
        "Undo TASK's landed commit with a new commit, and mark the task pending again.",
    ),
    "run": (
        "conductor.cli.run_cmds:run",
        "Run TRACK, or resume it where the last run stopped.",
    ),
    "status": (
        "conductor.cli.run_cmds:status",
        "Show each task's state, attempts and duration, as the bus records them.",
    ),
    "templates": (
        "conductor.cli.template_cmds:templates_group",
        "Worker templates: the skill files Claude workers are specialised from.",
    ),
    "validate": (
        "conductor.cli.track_cmds:validate",
        "Check a track file: YAML syntax, fields, dependencies, cycles, parallel groups, "
        "and the worker templates and agents its Claude tasks will use.",
    ),
}
"""Each command: where it is defined, and its short help (the first sentence of its docstring,
which ``conductor --help`` lists). A command's module is imported only when that command runs;
tests/test_startup.py checks that each short help here is the command's own."""


class LazyGroup(click.Group):
    """A group whose commands are imported when they run; ``--help`` lists them from the table."""

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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, but a command not loaded yet is listed from the table, unloaded."""
        listed = [
            (name, self.commands.get(name) or click.Command(name, help=self.lazy[name][1]))
            for name in self.list_commands(ctx)
        ]
        rows = [(name, command) for name, command in listed if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])


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
    help="Log lines on stderr: console (human), json (one object a line), auto (console on a "
    "TTY, else JSON; during `run`, only warnings and errors, short: every line is in the "
    "track's logs/conductor.log).",
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
