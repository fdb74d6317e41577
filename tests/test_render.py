"""Drawing the progress view: the live table on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console
from viewkit import Feeder, message, view_at

from conductor.progress import RunView
from conductor.render import LiveRenderer, PlainRenderer, plain_line


def test_plain_renderer_prints_one_line_per_start_and_end() -> None:
    """Plain output: time, what happened, the task padded to the longest id, the detail."""
    view = view_at(5)
    out = io.StringIO()
    renderer = PlainRenderer(out)
    feed = Feeder(view)
    renderer.show(view, feed("TASK_DISPATCHED", "build", 1))
    renderer.tick(view)
    renderer.show(view, feed("PROGRESS", "build", 1, text="halfway"))
    renderer.show(view, feed("TASK_COMPLETE", "build", 1, duration=1.25))
    renderer.close(view)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split(None, 1)[1] == "start    build  $ make all"
    assert lines[1].split(None, 1)[1] == "done     build  1.2s"
    assert plain_line(view.feed(message(99, "BLOCKED", "ship", because="test"))[0]).endswith(
        "blocked  ship  test failed"
    )


def live(view: RunView, *, width: int, height: int) -> tuple[io.StringIO, LiveRenderer, Feeder]:
    """A live renderer on a ``width`` x ``height`` terminal writing into the returned
    buffer, and a feeder of ``view`` whose track has started."""
    out = io.StringIO()
    console = Console(
        file=out, force_terminal=True, width=width, height=height, color_system=None
    )
    renderer = LiveRenderer(out, console=console)
    feed = Feeder(view)
    feed("TRACK_STARTED")
    return out, renderer, feed


def test_live_renderer_draws_the_running_table_and_prints_end_lines() -> None:
    """The live table lists each running task with its progress and the counts line; an end
    prints a line above it; closing removes the table."""
    view = view_at(12)
    out, renderer, feed = live(view, width=120, height=30)
    renderer.show(view, feed("TASK_DISPATCHED", "build", 1))
    renderer.show(view, feed("PROGRESS", "build", 1, text="linking the binary"))
    screen = out.getvalue()
    assert "linking the binary" in screen and "$ make all" in screen
    assert "0/4 done · 1 running · 0 failed · 0 blocked · $0.0000 of $5.00 budget" in screen
    renderer.show(view, feed("TASK_COMPLETE", "build", 1, duration=4.0))
    renderer.close(view)
    assert "✓ build  4.0s" in out.getvalue()


def test_a_narrow_terminal_keeps_the_figures_and_shortens_the_text() -> None:
    """On a narrow screen, attempt, elapsed time and cost stay whole; the command and the
    progress line are shortened with an ellipsis; no line is wider than the screen."""
    view = view_at(75)
    out, renderer, feed = live(view, width=60, height=20)
    renderer.show(view, feed("TASK_DISPATCHED", "docs", 2))
    renderer.show(view, feed("PROGRESS", "docs", 2, cost_usd=1.5,
                             message="drafting the chapter about configuration files"))
    frame = out.getvalue().split("\x1b[2K")[-1]
    rows = [line for line in frame.splitlines() if line.startswith("docs")]
    renderer.close(view)
    assert len(rows) == 1
    cells = rows[0].split()
    assert cells[:2] == ["docs", "agent"] and "2" in cells and "1m13s" in cells
    assert "$1.50" in cells and rows[0].rstrip().endswith("…")
    assert all(len(line) <= 60 for line in frame.splitlines())


def test_tasks_sharing_a_long_prefix_stay_told_apart_in_a_narrow_table() -> None:
    """Running tasks whose ids share a long prefix are cut in the middle, so each row still
    shows the end that tells it apart."""
    from viewkit import T0, make_track

    from conductor.render import middle_clip

    ids = [f"integration-tests-for-the-module-{n}" for n in ("alpha", "beta")]
    track = make_track(
        "track: view\ntasks:\n" + "".join(f"  - {{id: {tid}, run: 'true'}}\n" for tid in ids)
    )
    view = RunView(track, clock=lambda: T0.timestamp() + 5)
    out, renderer, feed = live(view, width=80, height=20)
    for tid in ids:
        renderer.show(view, feed("TASK_DISPATCHED", tid, 1))
    frame = out.getvalue().split("\x1b[2K")[-1]
    renderer.close(view)
    names = [line.split()[0] for line in frame.splitlines() if line.startswith("integ")]
    assert len(names) == 2 and names[0] != names[1]
    assert names[0].endswith("-alpha") and names[1].endswith("-beta") and "…" in names[1]
    assert middle_clip("abcdefghij", 7) == "abc…hij" and middle_clip("short", 9) == "short"


def test_progress_and_commands_are_never_read_as_markup() -> None:
    """A progress line or command holding rich markup (an unmatched closing tag, a link) is
    drawn as the text it is, instead of failing the view or styling it."""
    view = view_at(3)
    out, renderer, feed = live(view, width=120, height=30)
    renderer.show(view, feed("TASK_DISPATCHED", "build", 1))
    renderer.show(view, feed("PROGRESS", "build", 1, text="[/bold] and [link=http://x]y[/link]"))
    renderer.close(view)
    assert "[/bold] and [link=http://x]y[/link]" in out.getvalue()
