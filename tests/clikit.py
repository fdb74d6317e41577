"""``conductor`` invoked in-process, as the CLI tests invoke it."""

from __future__ import annotations

from click.testing import CliRunner, Result

from conductor.cli import main


def invoke(*args: str) -> Result:
    """``conductor ARGS`` through click's CliRunner; an exception the CLI does not handle
    propagates to the test."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)
