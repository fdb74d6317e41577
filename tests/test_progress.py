"""The progress view: folding bus messages into rows and lines, renderers, following a run."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from viewkit import Feeder, make_track, view_at

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.progress import (
    Follower,
    RunView,
    pick_mode,
    reason,
    run_and_show,
    summary_lines,
)
from conductor.scheduler import RunOptions, RunResult
from conductor.testing.scripted import ScriptedExecutor, Step


def test_rows_show_what_runs_with_its_progress_cost_and_elapsed_time() -> None:
    """A dispatched task is a row (command or agent, attempt, elapsed, cost, latest progress)
    until it ends; the start is a line."""
    view = view_at(30)
    feed = Feeder(view)
    feed("TRACK_STARTED")
    lines = feed("TASK_DISPATCHED", "build", 1, executor="shell")
    assert [(line.kind, line.task, line.text) for line in lines] == [
        ("start", "build", "$ make all")
    ]
    feed("TASK_DISPATCHED", "docs", 1, executor="claude")
    feed("WORKER_STARTED", "docs", 1, agent="tech-writer", session_id="s")
    feed("PROGRESS", "docs", 1, source="session", cost_usd=0.25, turns=3, tokens_in=1000,
         tokens_out=200)
    feed("PROGRESS", "build", 1, text="compiling 3 of 9")
    build, docs = view.running["build"], view.running["docs"]
    assert (build.doing, build.attempt, build.progress) == ("$ make all", 1, "compiling 3 of 9")
    assert view.elapsed(build) == "28.0s"
    assert (docs.doing, docs.cost_usd, docs.figures) == (
        "agent tech-writer", 0.25, "turn 3, 1,200 tokens"
    )
    feed("PROGRESS", "docs", 1, source="worker", message="outline done", percent=40)
    assert view.running["docs"].progress == "40% outline done"
    assert view.spent() == pytest.approx(0.25)
    ended = feed("TASK_COMPLETE", "build", 1, duration=2.5, cost_usd=0.0, commit="abcdef0123456")
    assert "build" not in view.running
    assert [(line.kind, line.text) for line in ended] == [("complete", "2.5s, commit abcdef0123")]


def test_counts_and_status_line_follow_the_bus() -> None:
    """Counts are done/running/failed/blocked of the track's total; the spend is shown
    against budget_usd."""
    view = view_at(65)
    feed = Feeder(view)
    feed("TRACK_STARTED")
    feed("TASK_DISPATCHED", "build", 1)
    feed("TASK_DISPATCHED", "docs", 1)
    feed("PROGRESS", "docs", 1, cost_usd=0.5)
    feed("TASK_FAILED", "build", 1, error="command exited with status 2\nld: no such symbol",
         final=True, max_attempts=3, duration=1.0)
    blocked = feed("BLOCKED", "test", because="build")
    feed("BLOCKED", "ship", because="build")
    assert [(line.kind, line.text) for line in blocked] == [("blocked", "build failed")]
    assert view.counts() == {
        "done": 0, "running": 1, "failed": 1, "blocked": 2, "pending": 0, "total": 4
    }
    assert view.status_line() == (
        "0/4 done · 1 running · 1 failed · 2 blocked · $0.5000 of $5.00 budget · 1m04s"
    )
    feed("TASK_COMPLETE", "docs", 1, cost_usd=0.75, duration=3.0)
    assert view.counts()["done"] == 1 and view.spent() == pytest.approx(0.75)


def test_failure_lines_say_why_and_whether_it_is_retried() -> None:
    """A failure that will be retried is a retry line; a final one says why (first line and
    the last line of output) and when it was not retried."""
    view = view_at(10)
    feed = Feeder(view)
    feed("TASK_DISPATCHED", "ship", 1)
    retry = feed("TASK_FAILED", "ship", 1, error="command exited with status 1\nflaky",
                 final=False, max_attempts=3)
    feed("TASK_DISPATCHED", "ship", 2)
    final = feed(
        "TASK_FAILED", "ship", 2, final=True, max_attempts=3, cause="command not found",
        error="command not found (exit 127)\nsh: 1: ./ship.sh: not found", duration=0.01,
    )
    assert retry[0].kind == "retry"
    assert retry[0].text == "attempt 1 of 3 failed: command exited with status 1 — flaky; retrying"
    assert final[0].kind == "failed"
    assert final[0].text == (
        "command not found (exit 127) — sh: 1: ./ship.sh: not found "
        "(attempt 2 of 3, not retried, 0.0s)"
    )


def test_a_later_runs_failure_counts_its_tries_not_its_attempt_number() -> None:
    """Attempt numbers go on across runs; a failure in a later run says which of that run's
    tries it was, never `attempt 3 of 1`."""
    view = view_at(10)
    feed = Feeder(view)
    feed("TASK_DISPATCHED", "ship", 3)
    final = feed("TASK_FAILED", "ship", 3, error="command exited with status 1", final=True,
                 failures=1, max_attempts=1, duration=0.5)
    assert final[0].text == "command exited with status 1 (attempt 3, try 1 of 1, 0.5s)"
    feed("TASK_DISPATCHED", "ship", 4)
    early = feed("TASK_FAILED", "ship", 4, error="command not found (exit 127)", final=True,
                 failures=1, max_attempts=3)
    assert early[0].text == "command not found (exit 127) (attempt 4, try 1 of 3, not retried)"


def test_lost_skipped_budget_and_notes_are_lines() -> None:
    """An interrupted attempt, a person's skip or note, and a spent budget each print a line."""
    view = view_at(10)
    feed = Feeder(view)
    feed("TASK_DISPATCHED", "build", 1)
    lost = feed("WORKER_LOST", "build", 1, reason="interrupted")
    skipped = feed("SKIP", "docs")
    note = feed("NOTE", text="lunch break")
    budget = feed("BUDGET_EXCEEDED", budget_usd=5, spent_usd=5.2)
    assert view.running == {}
    assert [(line.kind, line.text) for line in lost + skipped + note + budget] == [
        ("lost", "interrupted"),
        ("skipped", "skipped by a person"),
        ("note", "lunch break"),
        ("budget", "budget spent: $5.20 of $5.00; no new attempt starts"),
    ]


def test_reason_is_one_line() -> None:
    """A failure's reason joins its first line with its last quoted line, clipped."""
    assert reason("exit 1\nfirst\nlast words") == "exit 1 — last words"
    assert reason(None) == "failed"
    assert len(reason("x" * 500, width=40)) == 40


def test_pick_mode_live_only_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto is plain for a file and live for a terminal (unless TERM=dumb); others as asked."""
    with open(tmp_path / "out.txt", "w") as fh:
        assert pick_mode("auto", fh) == "plain"
        assert pick_mode("live", fh) == "live"
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            monkeypatch.setenv("TERM", "xterm")
            assert pick_mode("auto", tty) == "live"
            monkeypatch.setenv("TERM", "dumb")
            assert pick_mode("auto", tty) == "plain"
    finally:
        os.close(master)
        os.close(slave)


def test_summary_lists_failures_with_their_output_and_the_logs() -> None:
    """The summary gives counts and cost, then each failed task with its reason lines."""
    result = RunResult(
        track="view",
        status="failed",
        completed=["build"],
        failed={"ship": "command not found (exit 127)\nsh: 1: ./ship.sh: not found"},
        blocked=["after"],
        cost_usd=0.0123,
        duration=3.25,
        state_dir=Path("/repo/.conductor/view"),
    )
    assert summary_lines(result, repo=Path("/repo")) == [
        "track view: failed in 3.2s — 1 complete, 1 failed, 1 blocked, $0.0123",
        "  failed   ship  command not found (exit 127)",
        "                 sh: 1: ./ship.sh: not found",
        "  blocked  after",
        "  logs: .conductor/view/logs/ (one per attempt, and conductor.log)",
    ]


def test_escape_sequences_from_a_task_never_reach_the_terminal() -> None:
    """A task's output quoted in a failure line, the summary or a progress line has its
    control characters shown as text, so it cannot clear the screen or set the title."""
    evil = "\x1b[2J\x1b[H\x1b]0;PWNED\x07\x1b[31mred"
    view = view_at(10)
    feed = Feeder(view)
    feed("TASK_DISPATCHED", "ship", 1)
    feed("PROGRESS", "ship", 1, text=f"50% {evil}")
    assert "\x1b" not in view.running["ship"].progress
    failed = feed("TASK_FAILED", "ship", 1, error=f"command exited with status 3\n{evil}",
                  final=True, max_attempts=1)
    result = RunResult(
        track="view", status="failed", completed=[], failed={"ship": f"exit 3\n{evil}\r\x9bK"},
        blocked=[], cost_usd=0.0, duration=1.0, state_dir=None,
    )
    shown = [failed[0].text, *summary_lines(result)]
    assert not any(ch in text for text in shown for ch in "\x1b\x07\x9b")
    assert "\\x1b]0;PWNED\\x07\\x1b[31mred" in failed[0].text


def test_an_interrupted_runs_summary_counts_unfinished_tasks_as_pending() -> None:
    """Tasks left to do after Ctrl-C (the interrupted one too) are `pending`, as status says,
    and the summary says how to resume."""
    result = RunResult(
        track="view", status="interrupted", completed=["b"], pending=["a", "c"],
        cost_usd=0.0, duration=2.0, state_dir=None,
    )
    assert summary_lines(result) == [
        "track view: interrupted in 2.0s — 1 complete, 2 pending",
        "  run `conductor run` again to resume",
    ]


class Recorder:
    """A renderer that keeps what it was shown, and says when it showed ``want``."""

    def __init__(self, want: tuple[str, str]) -> None:
        self.lines: list[tuple[str, str]] = []
        self.want = want
        self.seen = anyio.Event()
        self.closed = False

    def show(self, view: RunView, lines: list[Any]) -> None:
        self.lines.extend((line.kind, line.task) for line in lines)
        self.tick(view)

    def tick(self, view: RunView) -> None:
        if self.want in {(row.task, row.progress) for row in view.running.values()}:
            self.seen.set()

    def close(self, view: RunView) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_follower_reads_what_another_writer_posts(tmp_path: Path) -> None:
    """The follower sees messages another writer posts while it runs, and after ``stop``
    reads what is left before it ends."""
    track = make_track()
    sd = StateDir(tmp_path / "view").ensure()
    recorder = Recorder(want=("build", "step 1"))
    view = RunView(track)
    follower = Follower(sd, view, recorder, tick=0.05)
    with Bus.for_state(sd, "view") as bus:
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.run)
            bus.post("TRACK_STARTED")
            bus.post("TASK_DISPATCHED", task="build", worker="build.1", attempt=1)
            bus.post("PROGRESS", task="build", worker="build.1", attempt=1,
                     payload={"text": "step 1"})
            with anyio.fail_after(30):
                await recorder.seen.wait()
            bus.post("TASK_COMPLETE", task="build", worker="build.1", attempt=1,
                     payload={"duration": 1.0})
            bus.post("TRACK_COMPLETE")
            follower.stop()
    assert recorder.closed
    assert recorder.lines == [("start", "build"), ("complete", "build")]
    assert view.ended == "TRACK_COMPLETE"


@pytest.mark.anyio
async def test_run_and_show_prints_this_run_only(tmp_path: Path, repo: Path) -> None:
    """``run_and_show`` runs the track and prints its starts and ends; tasks completed by an
    earlier run count as done without a line."""
    track = make_track(
        """
        track: shown
        tasks:
          - {id: a, run: "true"}
          - {id: b, run: "true", depends_on: [a]}
        """
    )
    executor = ScriptedExecutor(default=Step(delay=0.05))
    options = RunOptions(
        repo=repo,
        state_root=Path(os.environ["CONDUCTOR_STATE_DIR"]),
        handle_signals=False,
        executors=lambda task: executor,
    )
    first = io.StringIO()
    result = await run_and_show(track, options, mode="plain", stream=first)
    assert result.status == "complete"
    words = [line.split()[1:3] for line in first.getvalue().splitlines()]
    assert words == [["start", "a"], ["done", "a"], ["start", "b"], ["done", "b"]]
    again = io.StringIO()
    result = await run_and_show(track, options, mode="plain", stream=again)
    assert result.status == "complete" and again.getvalue() == ""
    quiet = io.StringIO()
    await run_and_show(track, options, mode="none", stream=quiet)
    assert quiet.getvalue() == ""


@pytest.mark.anyio
async def test_follower_shows_only_the_run_of_its_own_conductor(tmp_path: Path) -> None:
    """Messages of another conductor's run (a run that could not start) are not shown; the
    view starts showing at the TRACK_STARTED carrying its own pid."""
    track = make_track()
    sd = StateDir(tmp_path / "view").ensure()
    recorder = Recorder(want=("docs", ""))
    follower = Follower(sd, RunView(track), recorder, tick=0.05, pid=os.getpid())
    with Bus.for_state(sd, "view") as bus:
        async with anyio.create_task_group() as tg:
            tg.start_soon(follower.run)
            bus.post("TRACK_STARTED", payload={"pid": os.getpid() + 100000})
            bus.post("TASK_DISPATCHED", task="build", worker="build.1", attempt=1)
            bus.post("TRACK_STARTED", payload={"pid": os.getpid()})
            bus.post("TASK_DISPATCHED", task="docs", worker="docs.1", attempt=1)
            with anyio.fail_after(30):
                await recorder.seen.wait()
            follower.stop()
    assert recorder.lines == [("start", "docs")]


@pytest.mark.anyio
async def test_a_deleted_state_directory_ends_the_view_not_the_run(repo: Path) -> None:
    """When a task deletes the state directory, the run still ends with its own StateError
    (exit 5), not an error from the view beside it."""
    from conductor.errors import StateError

    root = Path(os.environ["CONDUCTOR_STATE_DIR"])
    track = make_track(
        f"""
        track: gone
        max_parallel: 2
        tasks:
          - {{id: a, run: "sleep 0.5"}}
          - {{id: b, run: "rm -rf {root / 'gone'}"}}
          - {{id: c, run: "true", depends_on: [a, b]}}
        """
    )
    options = RunOptions(repo=repo, state_root=root, handle_signals=False)
    with pytest.raises(StateError, match="state became unusable") as info:
        await run_and_show(track, options, mode="plain", stream=io.StringIO())
    assert info.value.exit_code == 5
