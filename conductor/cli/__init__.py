"""Command-line interface: thin wrappers over the library, one module per command group."""

from conductor.cli import bus_cmds, hook_cmds, lock_cmds, run_cmds, template_cmds, track_cmds
from conductor.cli.app import main

__all__ = ["bus_cmds", "hook_cmds", "lock_cmds", "main", "run_cmds", "template_cmds", "track_cmds"]
