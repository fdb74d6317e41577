"""Questions to a person on the terminal from inside a running event loop.

The approval pause of ``conductor run`` and the planner's questions of ``conductor plan
--goal`` ask while other work goes on (the bus is watched, a timeout runs). The line is read
from standard input without a thread: a thread blocked reading the terminal cannot be
stopped, so Ctrl-C would print that the run stopped and then hang until Enter, and a second
Ctrl-C would abort the interpreter. Here the wait is an ordinary cancellable wait on the
file descriptor; the terminal's own line editing (canonical mode) delivers whole lines.
"""

from __future__ import annotations

import os
import sys

import anyio
import click

_pending = bytearray()
"""Bytes read past the last line (several lines pasted at once), for the next question."""


async def read_line(prompt: str) -> str:
    """Show ``prompt`` on stderr and return the next line of standard input, without its end.

    Raises ``click.Abort`` at end of input (Ctrl-D), as ``click.prompt`` does.
    """
    sys.stderr.write(prompt)
    sys.stderr.flush()
    fd = sys.stdin.fileno()
    while b"\n" not in _pending:
        await anyio.wait_readable(fd)
        chunk = os.read(fd, 4096)
        if not chunk:
            if _pending:  # a last line without its newline
                break
            sys.stderr.write("\n")
            raise click.Abort()
        _pending.extend(chunk)
    line, _, rest = bytes(_pending).partition(b"\n")
    _pending[:] = rest
    return line.decode("utf-8", "replace").rstrip("\r")


async def ask(question: str, *, default: str | None = None) -> str:
    """Ask until the answer is not empty (``default`` stands for an empty one when given)."""
    shown = f"{question} [{default}]: " if default else f"{question}: "
    while True:
        answer = (await read_line(shown)).strip()
        if answer:
            return answer
        if default is not None:
            return default


async def confirm(question: str) -> bool:
    """Ask yes/no, default no: True only for y or yes (any case)."""
    while True:
        answer = (await read_line(f"{question} [y/N]: ")).strip().lower()
        if answer in ("", "n", "no"):
            return False
        if answer in ("y", "yes"):
            return True
        sys.stderr.write("Error: invalid input\n")
