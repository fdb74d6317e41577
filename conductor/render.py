"""How a ``RunView`` (``conductor.progress``) is drawn.

- ``LiveRenderer`` (a terminal) keeps a table of the running tasks and a counts line at the
  bottom of the screen (``rich``), refreshed a few times a second, and prints a line above it
  for each task that ends. It appears with the first dispatched task (so a prompt before that,
  such as ``--approve``'s, is left alone) and is removed at the end, leaving the end lines.
  rich is imported only when a live view is made.
- ``PlainRenderer`` (a pipe, a file, CI) prints one line per start and one per end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TextIO

from conductor.progress import money

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

    from conductor.progress import Line, LineKind, RunView


class Renderer(Protocol):
    """Shows a ``RunView``."""

    def show(self, view: RunView, lines: list[Line]) -> None:
        """New messages were read: print ``lines`` and redraw."""
        ...

    def tick(self, view: RunView) -> None:
        """Time passed: redraw what moves with it."""
        ...

    def close(self, view: RunView) -> None:
        """The run ended: leave the screen clean."""
        ...


_PLAIN_WORDS: dict[LineKind, str] = {
    "start": "start",
    "complete": "done",
    "failed": "failed",
    "retry": "retry",
    "lost": "stopped",
    "blocked": "blocked",
    "skipped": "skipped",
    "budget": "budget",
    "note": "note",
}


def plain_line(line: Line, width: int = 0) -> str:
    """``14:02:11 done     build  2.1s, $0.0123``: local time, what, task (padded to
    ``width``), detail."""
    when = line.ts.astimezone().strftime("%H:%M:%S")
    return f"{when} {_PLAIN_WORDS[line.kind]:<8} {line.task:<{width}}  {line.text}".rstrip()


def middle_clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` in its middle (``build-…-linux-arm64``): ids that share a
    long prefix, as tasks of one track often do, stay told apart by their ends."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[: width - 1] + "…"
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


class PlainRenderer:
    """One line per start and per end, for a pipe or a file."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def show(self, view: RunView, lines: list[Line]) -> None:
        """Print each line."""
        if lines:
            width = view.task_width
            self.stream.write("".join(plain_line(line, width) + "\n" for line in lines))
            self.stream.flush()

    def tick(self, view: RunView) -> None:
        """Nothing moves in plain output."""

    def close(self, view: RunView) -> None:
        """Nothing to clean."""


_MARKS: dict[LineKind, tuple[str, str]] = {
    "complete": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "retry": ("↻", "yellow"),
    "lost": ("■", "yellow"),
    "blocked": ("·", "dim"),
    "skipped": ("»", "dim"),
    "budget": ("$", "bold yellow"),
    "note": ("✎", "cyan"),
}


class LiveRenderer:
    """A table of running tasks and a counts line, kept at the bottom of a terminal."""

    def __init__(self, stream: TextIO, *, console: Console | None = None) -> None:
        from rich.console import Console

        self.console = console or Console(file=stream, highlight=False, soft_wrap=False)
        self._live: Live | None = None

    def show(self, view: RunView, lines: list[Line]) -> None:
        """Print the end lines above the table; start the table with the first dispatch."""
        from rich.text import Text

        width = view.task_width
        for line in lines:
            if line.kind == "start":
                continue  # the table shows what runs
            mark, style = _MARKS[line.kind]
            task = f"{line.task:<{width}}"
            text = Text.assemble((f"{mark} ", style), (task, "bold"), "  ", line.text)
            self.console.print(text, overflow="ellipsis", no_wrap=True, crop=True)
        if self._live is None and view.dispatched and view.ended is None:
            from rich.live import Live

            self._live = Live(
                self._render(view),
                console=self.console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=True,
            )
            self._live.start()
        self.tick(view)

    def tick(self, view: RunView) -> None:
        """Redraw the table (elapsed times, the counts line)."""
        if self._live is not None:
            self._live.update(self._render(view), refresh=True)

    def close(self, view: RunView) -> None:
        """Remove the table; the printed end lines stay."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

    def _render(self, view: RunView) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        # The figures keep their width; task, command and progress give way on a narrow screen.
        table = Table(box=None, pad_edge=False, show_edge=False, expand=True)
        rows = list(view.running.values())
        longest = max((len(row.task) for row in rows), default=4)
        room = self.console.size.width
        task_width = max(4, min(longest, 28, room // 5))
        table.add_column("task", style="bold", no_wrap=True, overflow="ellipsis",
                         width=task_width)
        table.add_column("doing", no_wrap=True, overflow="ellipsis", ratio=3, min_width=5,
                         max_width=40)
        table.add_column("try", justify="right", no_wrap=True, min_width=3)
        table.add_column("elapsed", justify="right", no_wrap=True, min_width=7)
        table.add_column("cost", justify="right", no_wrap=True, min_width=7)
        table.add_column("progress", no_wrap=True, overflow="ellipsis", style="dim", ratio=5,
                         min_width=8)
        lines = max(3, self.console.size.height - 4)
        shown = rows if len(rows) <= lines else rows[: lines - 1]
        for row in shown:
            # Text cells: a command or progress line is never read as rich markup.
            table.add_row(
                Text(middle_clip(row.task, task_width)),
                Text(row.doing),
                Text(str(row.attempt or "")),
                Text(view.elapsed(row)),
                Text(money(row.cost_usd) if row.cost_usd else ""),
                Text(row.progress or row.figures),
            )
        parts: list[RenderableType] = [table] if rows else []
        if len(shown) < len(rows):
            parts.append(Text(f"… and {len(rows) - len(shown)} more running", style="dim"))
        parts.append(Text(view.status_line(), style="bold", no_wrap=True, overflow="ellipsis"))
        return Group(*parts)
