"""``python -m conductor``."""

from conductor.cli import main

main()
