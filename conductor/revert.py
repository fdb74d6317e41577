"""Undo one task's landed work: ``conductor revert TRACK TASK``.

The task's landing commit (the ``commit`` on its TASK_COMPLETE) is undone by a new commit on
``HEAD`` that puts back what it changed, under the same rules as a landing: every path must
be clean in the checkout and unchanged in ``HEAD`` since that commit, or nothing happens
(``LandConflict`` names the paths). The task is then reset on the bus (TASK_RESET), so the
track shows it pending again and the next ``conductor run`` would redo it; post ``SKIP`` for
it to leave it undone. Tasks that depend on it are left as they are. The track must not be
running: revert takes its run lock.

Crash safety: REVERTING (the revert commit and the paths) goes on the bus before ``HEAD``
moves. A revert killed before its TASK_RESET is finished by ``finish_revert``, which the
next ``conductor run`` and ``conductor revert`` of the track call: if the revert commit is
in ``HEAD`` (or the branch it moved) the working tree and index are brought up to date and
the TASK_RESET is written; otherwise nothing had happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conductor.bus import Bus
from conductor.copies import Checkout
from conductor.errors import UserError
from conductor.landing import (
    CHANGED_IN_HEAD,
    LandConflict,
    Landed,
    change_to_dict,
    commit_changes,
    commit_message,
    contains,
    finish_landing,
    inverse,
    land,
)
from conductor.locks import RunLock
from conductor.messages import MessageType
from conductor.paths import StateDir
from conductor.state import TaskStatus, replay


def finish_revert(checkout: Checkout, bus: Bus, task_id: str, payload: dict[str, Any]) -> bool:
    """Finish a revert a killed ``conductor revert`` began (its REVERTING ``payload``);
    True if it had moved ``HEAD`` (TASK_RESET is now written)."""
    if not finish_landing(checkout, payload):
        return False
    bus.post(
        MessageType.TASK_RESET,
        task=task_id,
        payload={
            "reason": "reverted by a person (the revert was finished after an interruption)",
            "reverted": payload.get("reverts"),
            "revert_commit": payload.get("commit"),
        },
    )
    return True


def revert_task(
    track_id: str, task_id: str, *, repo: Path, state_root: Path | None = None
) -> Landed:
    """Revert ``task_id``'s landed commit; return the new commit (see the module docstring)."""
    sd = StateDir.for_track(repo.resolve(), track_id, state_root)
    if not sd.bus.is_dir():
        raise UserError(f"track {track_id!r} has no run state under {sd.root}")
    with RunLock(sd, track_id), Bus.for_state(sd, track_id) as bus:
        checkout = Checkout.find(repo.resolve())
        state = replay(bus.read(), track_id)
        for tid, ts in state.tasks.items():
            if ts.reverting is not None and finish_revert(checkout, bus, tid, ts.reverting):
                state = replay(bus.read(), track_id)
        if task_id not in state.tasks:
            raise UserError(
                f"task {task_id!r} has no landed commit to revert: the bus of track "
                f"{track_id!r} has no record of it (not run yet, or not a task of this track)"
            )
        ts = state.task(task_id)
        if ts.status is not TaskStatus.COMPLETE or not ts.commit:
            why = "it landed no change" if ts.status is TaskStatus.COMPLETE else ts.status.value
            raise UserError(f"task {task_id!r} has no landed commit to revert ({why})")
        sha = ts.commit
        if not contains(checkout, "HEAD", sha):
            raise UserError(
                f"task {task_id!r} landed as commit {sha[:12]}, which is not in HEAD's history "
                "(rebased, amended, or another branch checked out); nothing was reverted"
            )
        subject = checkout.git("log", "-1", "--format=%s", sha).stdout.decode().strip()
        message = commit_message(
            f'Revert "{subject}"',
            f"This reverts commit {sha}.",
            {"Conductor-Track": track_id, "Conductor-Task": task_id, "Conductor-Reverts": sha},
        )
        changes = inverse(commit_changes(checkout, sha))

        def record(commit: str, parent: str | None, branch: str | None) -> None:
            bus.post(
                MessageType.REVERTING,
                task=task_id,
                payload={
                    "commit": commit,
                    "parent": parent,
                    "branch": branch,
                    "reverts": sha,
                    "changes": [change_to_dict(c) for c in changes],
                },
            )

        try:
            landed = land(
                checkout,
                changes,
                message=message,
                lock=sd.root.parent / ".land.lock",
                scratch=sd.root,
                before_move=record,
            )
        except LandConflict as exc:
            exc.message = exc.message.replace("cannot land", "cannot revert", 1).replace(
                CHANGED_IN_HEAD, "changed since the task's commit"
            )
            exc.args = (exc.message,)
            raise
        bus.post(
            MessageType.TASK_RESET,
            task=task_id,
            payload={
                "reason": f"reverted by a person: {landed.commit[:12]} undoes {sha[:12]}",
                "reverted": sha,
                "revert_commit": landed.commit,
                **({"warning": landed.incomplete} if landed.incomplete else {}),
            },
        )
        return landed
