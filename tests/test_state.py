"""Replay rules: what the bus says about each task."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from conductor.messages import Message, utcnow
from conductor.state import TaskStatus, TrackState, load_cache, replay, save_cache

_seq = itertools.count(1)


def msg(mtype: str, task: str | None = None, attempt: int | None = None, **payload: Any) -> Message:
    seq = next(_seq)
    return Message(
        seq=seq,
        id=f"id{seq}",
        type=mtype,
        ts=utcnow(),
        track="t",
        task=task,
        worker=f"{task}.{attempt}" if task and attempt else None,
        attempt=attempt,
        payload=payload,
    )


def test_dispatch_then_complete() -> None:
    """A dispatched task runs; TASK_COMPLETE records its hash and duration."""
    state = replay(
        [msg("TASK_DISPATCHED", "a", 1), msg("TASK_COMPLETE", "a", 1, hash="h1", duration=2.5)], "t"
    )
    ts = state.task("a")
    assert ts.status is TaskStatus.COMPLETE
    assert (ts.hash, ts.duration, ts.attempts, ts.in_flight, ts.completions) == (
        "h1",
        2.5,
        1,
        None,
        1,
    )


def test_failure_counts_and_final() -> None:
    """A non-final failure makes the task pending again and counts; a final one fails it."""
    state = replay(
        [
            msg("TASK_DISPATCHED", "a", 1),
            msg("TASK_FAILED", "a", 1, error="boom", final=False, feedback="boom\nlog"),
        ],
        "t",
    )
    assert state.task("a").status is TaskStatus.PENDING
    assert state.task("a").failures == 1
    assert state.task("a").feedback == "boom\nlog"
    replay(
        [msg("TASK_DISPATCHED", "a", 2), msg("TASK_FAILED", "a", 2, error="x", final=True)],
        "t",
        state,
    )
    assert state.task("a").status is TaskStatus.FAILED
    assert state.task("a").failures == 2
    assert state.task("a").attempts == 2


def test_worker_lost_is_not_a_failure() -> None:
    """WORKER_LOST returns the task to pending without counting a failure."""
    state = replay([msg("TASK_DISPATCHED", "a", 1), msg("WORKER_LOST", "a", 1)], "t")
    assert state.task("a").status is TaskStatus.PENDING
    assert state.task("a").failures == 0
    assert state.task("a").in_flight is None


def test_stale_worker_lost_ignored() -> None:
    """A WORKER_LOST for an older attempt does not disturb the running one."""
    state = replay(
        [
            msg("TASK_DISPATCHED", "a", 1),
            msg("TASK_DISPATCHED", "a", 2),
            msg("WORKER_LOST", "a", 1),
        ],
        "t",
    )
    assert state.task("a").status is TaskStatus.RUNNING
    assert state.task("a").in_flight == 2


def test_reset_clears_failures_and_hash() -> None:
    """TASK_RESET makes a task pending with a clean slate."""
    state = replay(
        [
            msg("TASK_DISPATCHED", "a", 1),
            msg("TASK_COMPLETE", "a", 1, hash="h"),
            msg("TASK_RESET", "a", reason="changed"),
        ],
        "t",
    )
    ts = state.task("a")
    assert (ts.status, ts.hash, ts.failures) == (TaskStatus.PENDING, None, 0)


def test_skip_sticks_until_reset() -> None:
    """A person's SKIP holds against later failures; it never undoes a completion."""
    state = replay(
        [
            msg("TASK_DISPATCHED", "a", 1),
            msg("SKIP", "a"),
            msg("TASK_FAILED", "a", 1, error="x", final=True),
            msg("SKIP", "b"),
            msg("TASK_COMPLETE", "c", 1, hash="h"),
            msg("SKIP", "c"),
        ],
        "t",
    )
    assert state.task("a").status is TaskStatus.SKIPPED
    assert state.task("b").status is TaskStatus.SKIPPED
    assert state.task("c").status is TaskStatus.COMPLETE


def test_worker_started_kept_for_reaping() -> None:
    """WORKER_STARTED of the running attempt is kept until the attempt ends."""
    state = replay([msg("TASK_DISPATCHED", "a", 1), msg("WORKER_STARTED", "a", 1, cli_pid=42)], "t")
    assert state.task("a").started == {"cli_pid": 42}
    replay([msg("WORKER_LOST", "a", 1)], "t", state)
    assert state.task("a").started is None


def test_approval_answers_only_the_request_it_follows() -> None:
    """An APPROVE before a run asks counts for nothing; the first answer after it decides."""
    state = replay([msg("APPROVE"), msg("APPROVAL_REQUESTED")], "t")
    assert state.approval == "pending"
    replay([msg("REJECT", reason="not today"), msg("APPROVE")], "t", state)
    assert state.approval == "rejected" and state.approval_reason == "not today"
    replay([msg("APPROVAL_REQUESTED"), msg("APPROVE")], "t", state)
    assert state.approval == "approved"


def test_track_end() -> None:
    """TRACK_STARTED clears the last end and counts runs."""
    state = replay([msg("TRACK_STARTED"), msg("TRACK_FAILED")], "t")
    assert state.ended == "TRACK_FAILED"
    assert state.runs == 1
    replay([msg("TRACK_STARTED")], "t", state)
    assert state.ended is None and state.runs == 2


def test_cost_summed() -> None:
    """Costs of completed and failed attempts add up per task and per track."""
    state = replay(
        [
            msg("TASK_FAILED", "a", 1, error="x", cost_usd=0.25),
            msg("TASK_COMPLETE", "a", 2, hash="h", cost_usd=0.5),
            msg("TASK_COMPLETE", "b", 1, hash="h", cost_usd=True),
        ],
        "t",
    )
    assert state.task("a").cost_usd == 0.75
    assert state.cost_usd == 0.75


def test_view_marks_blocked_transitively() -> None:
    """Pending tasks below a failed task show as blocked, transitively."""
    state = replay([msg("TASK_FAILED", "a", 1, error="x", final=True)], "t")
    deps = {"a": [], "b": ["a"], "c": ["b"], "d": []}
    view = state.view(deps, deps.__getitem__)
    assert view == {
        "a": TaskStatus.FAILED,
        "b": TaskStatus.BLOCKED,
        "c": TaskStatus.BLOCKED,
        "d": TaskStatus.PENDING,
    }


def test_transition_callback() -> None:
    """The transition callback sees each status change once."""
    seen: list[tuple[str, TaskStatus, TaskStatus]] = []
    state = TrackState("t")
    from conductor.state import apply

    for m in [
        msg("TASK_DISPATCHED", "a", 1),
        msg("PROGRESS", "a", 1),
        msg("TASK_COMPLETE", "a", 1, hash="h"),
    ]:
        apply(state, m, lambda *args: seen.append(args))
    assert seen == [
        ("a", TaskStatus.PENDING, TaskStatus.RUNNING),
        ("a", TaskStatus.RUNNING, TaskStatus.COMPLETE),
    ]


def test_cache_round_trip(tmp_path: Path) -> None:
    """The status cache saves and loads the same state; garbage reads as no cache."""
    state = replay([msg("TASK_DISPATCHED", "a", 1), msg("TASK_COMPLETE", "a", 1, hash="h")], "t")
    save_cache(tmp_path, state)
    loaded = load_cache(tmp_path, "t")
    assert loaded == state
    assert load_cache(tmp_path, "other") is None
    (tmp_path / "state.json").write_text('{"version": 1, "track": "t", "tasks": ')
    assert load_cache(tmp_path, "t") is None


def test_load_state_refreshes_a_stale_cache(tmp_path: Path) -> None:
    """A cache that no longer matches the bus is ignored and, when asked, rewritten."""
    from conductor.state import load_state

    class FakeBus:
        def __init__(self, messages: list[Message]) -> None:
            self.messages = messages

        def get(self, seq: int) -> Message | None:
            return self.messages[seq - 1] if 0 < seq <= len(self.messages) else None

        def read(self, after: int = 0, limit: int | None = None) -> list[Message]:
            return self.messages[after : after + limit if limit else None]

    def renumbered(ms: list[Message]) -> list[Message]:
        return [Message(**{**m.__dict__, "seq": i + 1}) for i, m in enumerate(ms)]

    bus = FakeBus(
        renumbered([msg("TASK_DISPATCHED", "a", 1), msg("TASK_COMPLETE", "a", 1, hash="h")])
    )
    stale = replay(renumbered([msg("TASK_DISPATCHED", "b", 1), msg("TASK_FAILED", "b", 1)]), "t")
    save_cache(tmp_path, stale)
    state = load_state(bus, tmp_path, "t", refresh_cache=True)
    assert state.task("a").status is TaskStatus.COMPLETE and "b" not in state.tasks
    assert load_cache(tmp_path, "t") == state
    again = load_state(bus, tmp_path, "t", batch=1)
    assert again == state


def test_a_fifo_planted_as_the_cache_is_ignored_not_waited_on(tmp_path: Path) -> None:
    """A FIFO (or symlink) where the status cache goes is treated as no cache: reading it
    neither blocks nor follows the link."""
    import os

    cache = tmp_path / "cache"
    cache.mkdir()
    os.mkfifo(cache / "state.json")
    assert load_cache(cache, "t") is None
    os.unlink(cache / "state.json")
    (tmp_path / "real.json").write_text("{}")
    (cache / "state.json").symlink_to(tmp_path / "real.json")
    assert load_cache(cache, "t") is None


def test_rows_show_what_status_prints() -> None:
    """rows() gives each task's status (blocked below a failure), attempts and the error of a
    failed task only, in the order asked."""
    state = replay(
        [
            msg("TASK_DISPATCHED", "a", 1),
            msg("TASK_COMPLETE", "a", 1, hash="h", duration=1.5),
            msg("TASK_DISPATCHED", "b", 1),
            msg("TASK_FAILED", "b", 1, error="exit 3", final=True),
        ],
        "t",
    )
    deps = {"b": ["a"], "c": ["b"]}
    rows = state.rows(["a", "b", "c"], lambda tid: deps.get(tid, []))
    assert [(r["task"], r["status"], r["attempts"]) for r in rows] == [
        ("a", "complete", 1),
        ("b", "failed", 1),
        ("c", "blocked", 0),
    ]
    assert rows[0]["duration"] == 1.5 and rows[0]["error"] is None
    assert rows[1]["error"] == "exit 3" and rows[1]["failures"] == 1
