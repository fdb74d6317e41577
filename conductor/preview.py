"""What a run would do: choosing tasks (``run TRACK TASK...``), what reruns, and ``--dry-run``.

- ``select_tasks(track, ids)`` narrows a track to the named tasks and everything they depend
  on, transitively. The result is a ``Track`` of those tasks only (file order kept, parallel
  groups cut down to them), so a run of it dispatches nothing else; tasks already complete
  among the dependencies are skipped as in any run.
- ``stale_reasons`` is the rule a run uses to decide what runs again: a completed task whose
  hash changed (its definition, or the content of its ``inputs``) reruns with everything
  downstream of it; ``--from TASK`` reruns TASK and what is downstream; a task that failed for
  good gets fresh attempts.
- ``dry_run`` applies that rule to the bus as it is and says, per task, whether a run would
  run it, rerun it (and why) or skip it. It only reads: a track that never ran has no state
  directory afterwards either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from conductor.inputs import task_hash
from conductor.paths import StateDir
from conductor.state import TaskStatus, TrackState
from conductor.track import Track

Action = Literal["run", "rerun", "skip"]


@dataclass(frozen=True)
class Selection:
    """The tasks a run was narrowed to."""

    track: Track
    """The track with only the selected tasks."""
    requested: list[str] = field(default_factory=list)
    """The tasks asked for, in file order."""
    dependencies: list[str] = field(default_factory=list)
    """Tasks added because a requested task depends on them, in file order."""


def select_tasks(track: Track, task_ids: list[str] | tuple[str, ...]) -> Selection:
    """Narrow ``track`` to ``task_ids`` and their transitive dependencies.

    Raises ``UserError`` (with a did-you-mean) for an id the track does not have.
    """
    wanted = [track.task(tid).id for tid in task_ids]
    keep: set[str] = set()
    stack = list(wanted)
    while stack:
        tid = stack.pop()
        if tid not in keep:
            keep.add(tid)
            stack.extend(track.task(tid).depends_on)
    order = track.task_ids()
    requested = set(wanted)
    groups = [
        group.model_copy(update={"tasks": [t for t in group.tasks if t in keep]})
        for group in track.parallel_groups
        if any(t in keep for t in group.tasks)
    ]
    fields = {name: getattr(track, name) for name in type(track).model_fields}
    fields["tasks"] = [t for t in track.tasks if t.id in keep]
    fields["parallel_groups"] = groups
    narrowed = Track.model_validate(fields)
    return Selection(
        track=narrowed,
        requested=[t for t in order if t in requested],
        dependencies=[t for t in order if t in keep and t not in requested],
    )


def stale_reasons(
    track: Track, state: TrackState, hashes: Mapping[str, str], from_task: str | None
) -> dict[str, str]:
    """Why each task that must run again does: changed hash (and downstream), ``--from``
    (and downstream), failed for good. Tasks not named need no reset."""
    reasons: dict[str, str] = {}
    for task in track.tasks:
        tid = task.id
        ts = state.task(tid)
        if ts.status is TaskStatus.COMPLETE and ts.hash != hashes[tid]:
            what = "definition or inputs" if task.inputs else "definition"
            reasons.setdefault(tid, f"{what} changed since it completed")
            for down in track.descendants(tid):
                reasons.setdefault(down, f"upstream task {tid} changed")
        elif ts.status is TaskStatus.FAILED:
            reasons.setdefault(tid, "failed in an earlier run; trying again")
    if from_task:
        start = track.task(from_task).id
        reasons[start] = "rerun requested with --from"
        for down in track.descendants(start):
            reasons.setdefault(down, f"downstream of --from {start}")
    return reasons


@dataclass(frozen=True)
class Step:
    """What a run would do with one task."""

    task: str
    """The task id."""
    action: Action
    """run (never completed), rerun (completed, but stale) or skip (complete or skipped)."""
    reason: str
    """Why, in a few words."""

    def to_dict(self) -> dict[str, str]:
        """The JSON shape of ``run --dry-run --json``."""
        return {"task": self.task, "action": self.action, "reason": self.reason}


def read_state(track_id: str, sd: StateDir) -> TrackState:
    """The state the bus records, read without writing anything (empty if it never ran)."""
    if not sd.bus.is_dir():
        return TrackState(track_id)
    from conductor.bus import Bus
    from conductor.state import load_state

    with Bus.for_state(sd, track_id) as bus:
        return load_state(bus, sd.cache, track_id)


def dry_run(
    track: Track, *, repo: Path, state_root: Path | None = None, from_task: str | None = None
) -> list[Step]:
    """What ``conductor run`` would do with each task of ``track`` now, in file order."""
    if from_task is not None:
        track.task(from_task)
    sd = StateDir.for_track(repo, track.id, state_root)
    state = read_state(track.id, sd)
    hashes = {tid: task_hash(track, tid, repo, (sd.root.parent,)) for tid in track.task_ids()}
    reasons = stale_reasons(track, state, hashes, from_task)
    steps: list[Step] = []
    for tid in track.task_ids():
        ts = state.task(tid)
        reason = reasons.get(tid)
        if ts.status is TaskStatus.SKIPPED and tid != from_task:
            steps.append(Step(tid, "skip", "skipped by a person"))
        elif reason is not None and ts.status is TaskStatus.COMPLETE:
            steps.append(Step(tid, "rerun", reason))
        elif reason is not None:
            steps.append(Step(tid, "run", reason))
        elif ts.status is TaskStatus.COMPLETE:
            steps.append(Step(tid, "skip", "complete and unchanged"))
        elif ts.status is TaskStatus.RUNNING:
            steps.append(Step(tid, "run", "in flight when the last run stopped"))
        elif ts.attempts:
            steps.append(Step(tid, "run", "not complete yet"))
        else:
            steps.append(Step(tid, "run", "never ran"))
    return steps

