"""Command-line interface: thin wrappers over the library, one module per command group.

``console`` is the ``conductor`` command. It answers ``conductor --version`` and
``conductor --help`` without loading click (``conductor.cli.usage``) and hands everything else
to ``main``, the click group, which imports a command's module only when that command runs
(``usage.COMMANDS``). ``main`` itself is loaded on first use, so importing this package costs
nothing.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.cli.app import main as main

__all__ = ["console", "main"]


def console() -> None:
    """The ``conductor`` command."""
    from conductor.cli import usage

    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(usage.version_text() + "\n")
        return
    if len(args) == 1 and args[0] in usage.HELP_FLAGS:
        sys.stdout.write(usage.render_help(usage.help_width()))
        return
    from conductor.cli.app import main

    main(prog_name="conductor")


def __getattr__(name: str) -> Any:
    """``from conductor.cli import main``: the click group, loaded on first use."""
    if name == "main":
        from conductor.cli.app import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
