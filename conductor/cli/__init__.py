"""Command-line interface: thin wrappers over the library, one module per command group.

``console`` is the ``conductor`` command. It answers ``conductor --version`` and
``conductor --help`` without loading click (``conductor.cli.usage``) and hands everything else
to ``main``, the click group, which imports a command's module only when that command runs
(``usage.COMMANDS``). ``main`` itself is loaded on first use, so importing this package costs
nothing.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.cli.app import main as main

__all__ = ["console", "main"]


def console() -> None:
    """The ``conductor`` command.

    When the command is done, the objects it leaves are frozen out of the garbage collector
    (``gc.freeze``): the interpreter's exit then skips the collections it would run over every
    object of every module loaded, which for ``conductor run`` take a fifth of its whole time.
    The exit is otherwise the normal one: exit handlers run, files and streams are flushed and
    closed; only objects caught in reference cycles are left to the end of the process, as
    Python allows at exit anyway.
    """
    from conductor.cli import usage

    args = sys.argv[1:]
    if args == ["--version"]:
        _say(usage.version_text() + "\n")
        return
    if len(args) == 1 and args[0] in usage.HELP_FLAGS:
        _say(usage.render_help(usage.help_width()))
        return
    from conductor.cli.app import main

    try:
        main(prog_name="conductor")
    finally:
        gc.freeze()


def _say(text: str) -> None:
    """Print ``text``; when stdout cannot take it, exit 1 with the reason instead of a
    traceback (quietly when the reader has gone, as with ``conductor --help | head -1``)."""
    out = sys.stdout
    if out is None:  # started with stdout closed: there is no one to answer
        return
    try:
        out.write(text)
        out.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())  # nothing left to flush at exit
        sys.exit(1)
    except OSError as exc:
        sys.stderr.write(f"error: cannot write to stdout: {exc.strerror or exc}\n")
        sys.exit(1)


def __getattr__(name: str) -> Any:
    """``from conductor.cli import main``: the click group, loaded on first use."""
    if name == "main":
        from conductor.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
