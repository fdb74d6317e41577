"""Text that came from a task, a model or the bus, made safe to print on a terminal.

A task's output, a failure's reason or a progress line can hold escape sequences (a colour,
a cursor move, a window title, a screen clear). Printed as they are they would drive the
reader's terminal, so every view that prints such text passes it through ``visible``.
"""

from __future__ import annotations


def visible(text: str) -> str:
    """``text`` with control characters (escape sequences) shown, newlines and tabs kept."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in "\n\t" else ch.encode("unicode_escape").decode()
        for ch in text
    )
