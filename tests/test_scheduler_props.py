"""Property tests of the scheduler: random DAGs with random outcomes keep its promises."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.plan import files_overlap
from conductor.scheduler import RunOptions, run_track
from conductor.testing.scripted import ScriptedExecutor, Step
from conductor.track import Task, Track


@st.composite
def scenarios(draw: Any) -> tuple[Track, dict[str, list[bool]], int]:
    n = draw(st.integers(min_value=1, max_value=12))
    tasks = []
    outcomes: dict[str, list[bool]] = {}
    for i in range(n):
        deps = draw(st.sets(st.integers(min_value=0, max_value=i - 1), max_size=3)) if i else set()
        files = draw(
            st.sets(st.sampled_from(["a.txt", "b.txt", "src/*.py", "src/x.py"]), max_size=2)
        )
        attempts = draw(st.integers(min_value=1, max_value=3))
        tasks.append(
            Task(
                id=f"t{i}",
                depends_on=[f"t{d}" for d in sorted(deps)],
                files=sorted(files),
                max_attempts=attempts,
            )
        )
        outcomes[f"t{i}"] = draw(st.lists(st.booleans(), min_size=1, max_size=4))
    parallel = draw(st.integers(min_value=1, max_value=4))
    return Track(id="props", tasks=tasks, max_parallel=parallel), outcomes, parallel


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenario=scenarios())
def test_random_runs_keep_the_scheduler_promises(scenario: Any, tmp_path_factory: Any) -> None:
    """Dependencies before dependents, at most max_parallel at once, never two overlapping
    file sets at once, at most one completion per task, failures block exactly downstream,
    and a second run retries what failed and redoes nothing that completed."""
    track, outcomes, parallel = scenario
    repo = tmp_path_factory.mktemp("repo")
    state_root = tmp_path_factory.mktemp("state")
    executor = ScriptedExecutor(default=Step(ok=True))
    for tid, results in outcomes.items():
        executor.enqueue(tid, *(Step(ok=r, error=None if r else "no") for r in results))
    options = RunOptions(
        repo=repo, state_root=state_root, executors=lambda task: executor, handle_signals=False
    )
    result = anyio.run(run_track, track, options)
    sd = StateDir.for_track(repo, "props", state_root)
    with Bus.for_state(sd, "props") as bus:
        msgs = bus.read()
    by_id = {t.id: t for t in track.tasks}
    completed_at: dict[str, int] = {}
    running: dict[str, list[str]] = {}
    for m in msgs:
        if m.type == "TASK_DISPATCHED":
            assert m.task not in running
            for dep in by_id[m.task].depends_on:
                assert dep in completed_at, f"{m.task} started before {dep} completed"
            for other in running:
                assert not files_overlap(by_id[m.task].files, by_id[other].files)
            running[m.task] = by_id[m.task].files
            assert len(running) <= parallel
        elif m.type in ("TASK_COMPLETE", "TASK_FAILED"):
            running.pop(m.task)
            if m.type == "TASK_COMPLETE":
                assert m.task not in completed_at, f"{m.task} completed twice"
                completed_at[m.task] = m.seq
    failed = set(result.failed)
    downstream = set().union(*(track.descendants(t) for t in failed)) if failed else set()
    assert set(result.blocked) == downstream - failed
    assert set(result.completed) == set(completed_at)
    assert set(result.completed) | failed | set(result.blocked) == set(by_id)
    for tid in failed:
        assert (
            sum(1 for m in msgs if m.type == "TASK_FAILED" and m.task == tid)
            == by_id[tid].max_attempts
        )
    # A second run redoes nothing that completed.
    again = anyio.run(run_track, track, options)
    with Bus.for_state(sd, "props") as bus:
        later = bus.read(after=len(msgs))
    redone = {m.task for m in later if m.type == "TASK_DISPATCHED"}
    assert not redone & set(completed_at)
    assert failed <= redone <= failed | set(result.blocked)  # failed tasks get fresh attempts
    assert again.status in ("complete", "failed")
