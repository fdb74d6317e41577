"""Command-line interface: thin wrappers over the library, one module per command group.

``main`` imports a command's module only when that command runs (``app.COMMANDS``).
"""

from conductor.cli.app import main

__all__ = ["main"]
