"""How each agent has done, over every run recorded on the buses (``conductor agents stats``).

Per agent: tasks done (TASK_COMPLETE), how many of those were done at the first try (no
failed attempt since the task was last dispatched afresh), mean attempts per task done, mean
duration of the completing attempt, cost of every attempt it made (failed ones too) and the
mean score reviewers gave its attempts (a review that could not be done is left out). A
task's agent is the one its TASK_COMPLETE or TASK_FAILED names; shell tasks have none and are
left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conductor.messages import Message, MessageType


@dataclass
class AgentStats:
    """One agent's record."""

    agent: str
    """The agent's name."""
    done: int = 0
    """Tasks it completed."""
    first_try: int = 0
    """Of those, completed without a failed attempt before."""
    attempts: int = 0
    """Attempts spent on the tasks it completed."""
    failed_attempts: int = 0
    """Attempts of its that failed."""
    duration: float = 0.0
    """Seconds of the completing attempts, summed."""
    cost_usd: float = 0.0
    """Cost of all its attempts."""
    scores: list[float] = field(default_factory=list)
    """Review scores its attempts got."""

    def row(self) -> dict[str, Any]:
        """The record as JSON-ready figures."""
        return {
            "agent": self.agent,
            "tasks_done": self.done,
            "first_try_rate": round(self.first_try / self.done, 3) if self.done else None,
            "mean_attempts": round(self.attempts / self.done, 2) if self.done else None,
            "mean_duration": round(self.duration / self.done, 1) if self.done else None,
            "failed_attempts": self.failed_attempts,
            "cost_usd": round(self.cost_usd, 4),
            "mean_review_score": (
                round(sum(self.scores) / len(self.scores), 1) if self.scores else None
            ),
        }


def collect(
    messages: Iterable[Message], into: dict[str, AgentStats] | None = None
) -> dict[str, AgentStats]:
    """Add what ``messages`` (one track's bus, in order) say to per-agent records."""
    stats = into if into is not None else {}
    failures: dict[str, int] = {}
    scores: dict[str, float] = {}
    for msg in messages:
        if msg.task is None:
            continue
        if msg.type == MessageType.TASK_RESET:
            failures[msg.task] = 0
        elif msg.type == MessageType.REVIEW_RESULT and msg.worker:
            score = msg.payload.get("score")
            # A review that could not be done (its 0 carries an error) says nothing of the agent.
            if isinstance(score, int | float) and not msg.payload.get("error"):
                scores[msg.worker] = float(score)
        elif msg.type in (MessageType.TASK_COMPLETE, MessageType.TASK_FAILED):
            name = msg.payload.get("agent")
            if not isinstance(name, str) or not name:
                continue
            record = stats.setdefault(name, AgentStats(name))
            cost = msg.payload.get("cost_usd")
            record.cost_usd += float(cost) if isinstance(cost, int | float) else 0.0
            if msg.worker in scores:
                record.scores.append(scores.pop(msg.worker))
            if msg.type == MessageType.TASK_FAILED:
                record.failed_attempts += 1
                failures[msg.task] = failures.get(msg.task, 0) + 1
                continue
            before = failures.pop(msg.task, 0)
            record.done += 1
            record.first_try += before == 0
            record.attempts += before + 1
            duration = msg.payload.get("duration")
            record.duration += float(duration) if isinstance(duration, int | float) else 0.0
    return stats


def stats_of(
    repo: Path, track_ids: list[str], state_root: Path | None = None
) -> list[dict[str, Any]]:
    """Per-agent rows over the buses of ``track_ids`` (every track with a bus when empty),
    most tasks done first."""
    from conductor.bus import Bus
    from conductor.paths import STATE_ROOT_NAME, StateDir

    if not track_ids:
        root = state_root if state_root is not None else repo / STATE_ROOT_NAME
        track_ids = [
            entry.name
            for entry in (sorted(root.iterdir()) if root.is_dir() else [])
            if not entry.is_symlink() and (entry / "bus").is_dir()
        ]
    stats: dict[str, AgentStats] = {}
    for track_id in track_ids:
        sd = StateDir.for_track(repo, track_id, state_root)
        if not sd.bus.is_dir():
            continue
        with Bus.for_state(sd, track_id) as bus:
            collect(bus.iter_all(), stats)
    return [s.row() for s in sorted(stats.values(), key=lambda s: (-s.done, s.agent))]
