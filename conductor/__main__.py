"""``python -m conductor``."""

from conductor.cli import console

console()
