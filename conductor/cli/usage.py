"""``conductor --help`` and ``conductor --version``, answered without loading click.

Loading click alone takes three and a half times the interpreter's own start, and these are
the two answers people and scripts ask for most. ``conductor.cli.console`` (the ``conductor``
command) answers exactly ``conductor --version`` and ``conductor --help`` (or ``-h``) from the
plain tables here; anything else goes to the click group, which renders its own ``--help`` with
``render_help`` as well, so there is one rendering of the top-level help
(tests/test_startup.py checks that both paths print the same).

The tables: ``COMMANDS`` (each command's module and short help) and ``OPTIONS`` (the group's
own options as ``--help`` lists them; ``conductor.cli.app`` declares them with the same help).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from conductor import __version__

DESCRIPTION = (
    "Run a track (a DAG of tasks in YAML) on this repository.",
    "Tasks run as shell commands or background Claude sessions, coordinated through an "
    "append-only message bus under .conductor/<track>/ that you can read with ls, cat and jq. "
    "Start with `conductor validate TRACK`, `conductor plan TRACK`, then `conductor run TRACK`.",
)
"""The paragraphs of the group's help."""

LOG_FORMATS = ("auto", "console", "json")
LOG_FORMAT_HELP = (
    "Log lines on stderr: console (human), json (one object a line), auto (console on a TTY, "
    "else JSON; during `run`, only warnings and errors, short: every line is in the track's "
    "logs/conductor.log)."
)
VERBOSE_HELP = "Also log debug lines."

OPTIONS: tuple[tuple[str, str], ...] = (
    ("--version", "Show the version and exit."),
    (f"--log-format [{'|'.join(LOG_FORMATS)}]", f"{LOG_FORMAT_HELP}  [default: auto]"),
    ("-v, --verbose", VERBOSE_HELP),
    ("-h, --help", "Show this message and exit."),
)
"""The group's options, as ``--help`` lists them."""

HELP_FLAGS = ("-h", "--help")

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


def version_text() -> str:
    """What ``conductor --version`` prints."""
    return f"conductor, version {__version__}"


def help_width() -> int:
    """The width help is wrapped to, as click finds it: the terminal's columns (``COLUMNS``
    first, else 80 off a terminal), at most 80, less 2, and at least 50."""
    columns = 0
    text = os.environ.get("COLUMNS", "")
    if text.isdigit():
        columns = int(text)
    if columns <= 0:
        try:
            columns = os.get_terminal_size(1).columns
        except OSError:
            columns = 80
    return max(min(columns or 80, 80) - 2, 50)


def render_help(width: int) -> str:
    """The top-level help, wrapped to ``width`` columns, ending in a newline."""
    import textwrap

    lines = ["Usage: conductor [OPTIONS] COMMAND [ARGS]...", ""]
    for paragraph in DESCRIPTION:
        lines += textwrap.wrap(paragraph, width, initial_indent="  ", subsequent_indent="  ")
        lines.append("")
    lines += ["Options:", *_definitions(OPTIONS, width), ""]
    names = sorted(COMMANDS)
    limit = width - 6 - max(len(name) for name in names)
    rows = [(name, _shorten(COMMANDS[name][1], limit)) for name in names]
    lines += ["Commands:", *_definitions(rows, width)]
    return "\n".join(lines) + "\n"


def _definitions(rows: Sequence[tuple[str, str]], width: int) -> list[str]:
    """Rows of a definition list, indented by 2: a term's text starts in the column after the
    longest term (at most 30 wide), or on the next line when the term is longer."""
    import textwrap

    column = min(max(len(term) for term, _ in rows), 30) + 2
    text_width = max(width - column - 2, 10)
    lines = []
    for term, text in rows:
        wrapped = textwrap.wrap(text, text_width) or [""]
        if len(term) <= column - 2:
            lines.append(f"  {term:<{column}}{wrapped[0]}".rstrip())
        else:
            lines += [f"  {term}", f"{'':{column + 2}}{wrapped[0]}"]
        lines += [f"{'':{column + 2}}{line}" for line in wrapped[1:]]
    return lines


def _shorten(text: str, limit: int) -> str:
    """``text`` cut after its last whole word that fits ``limit`` with ``...`` after it."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 3, 0) + 1].rsplit(" ", 1)[0].rstrip(" ,;:") + "..."
