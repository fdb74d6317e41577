"""The bus message envelope and the message types conductor knows.

A message is immutable once published. Its file name (``bus.message_filename``) repeats the
sequence number, type, task and attempt so that ``ls`` reads as a log; the JSON content is the
truth.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class MessageType(StrEnum):
    """Message types with a meaning to conductor. The bus accepts any UPPER_SNAKE name."""

    TRACK_STARTED = "TRACK_STARTED"
    TASK_DISPATCHED = "TASK_DISPATCHED"
    WORKER_STARTED = "WORKER_STARTED"
    PROGRESS = "PROGRESS"
    FILE_LOCK = "FILE_LOCK"
    FILE_UNLOCK = "FILE_UNLOCK"
    LOCK_BROKEN = "LOCK_BROKEN"
    LOCK_DENIED = "LOCK_DENIED"
    BLOCKED = "BLOCKED"
    CLAIM_COMPLETE = "CLAIM_COMPLETE"
    CLAIM_FAILED = "CLAIM_FAILED"
    TOOL_DENIED = "TOOL_DENIED"
    API_RETRY = "API_RETRY"
    VERIFY_RESULT = "VERIFY_RESULT"
    REVIEW_RESULT = "REVIEW_RESULT"
    COPY_MADE = "COPY_MADE"
    COPY_REMOVED = "COPY_REMOVED"
    LANDING = "LANDING"
    REVERTING = "REVERTING"
    TASK_COMPLETE = "TASK_COMPLETE"
    TASK_FAILED = "TASK_FAILED"
    TASK_RETRY = "TASK_RETRY"
    TASK_RESET = "TASK_RESET"
    WORKER_LOST = "WORKER_LOST"
    TASK_DEFERRED = "TASK_DEFERRED"
    LIMIT_WAIT = "LIMIT_WAIT"
    BUDGET_EXCEEDED = "BUDGET_EXCEEDED"
    TRACK_COMPLETE = "TRACK_COMPLETE"
    TRACK_FAILED = "TRACK_FAILED"
    TRACK_INTERRUPTED = "TRACK_INTERRUPTED"
    # An agent a run with --adhoc inferred: {agent: definition, cost_usd, fallback?}
    AGENT_INFERRED = "AGENT_INFERRED"
    # A run with approval asks for it; payload: the plan shown to the person. Only an APPROVE
    # or REJECT posted after it (and before the next run asks) answers it.
    APPROVAL_REQUESTED = "APPROVAL_REQUESTED"
    # Written by a person (``conductor bus post``):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    SKIP = "SKIP"
    NOTE = "NOTE"
    # Written by the post-commit hook (``conductor hooks install``): {sha, subject, author, files}
    PERSON_COMMIT = "PERSON_COMMIT"


HUMAN_TYPES = frozenset(
    {MessageType.APPROVE, MessageType.REJECT, MessageType.SKIP, MessageType.NOTE}
)
"""Types a person may post by hand without a worker token."""

TYPE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")
"""A message type: UPPER_SNAKE, at most 32 characters."""


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""The encoder of ``Message.to_json``, made once (``json.dumps`` with options makes one a call)."""


def utcnow() -> datetime:
    """The current time, UTC and timezone-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Message:
    """One published bus message."""

    seq: int
    """Position in the bus, from 1, gapless."""
    id: str
    """A unique id: 32 hex digits (random per writer, then a counter)."""
    type: str
    """A ``MessageType`` value or another UPPER_SNAKE name."""
    ts: datetime
    """When it was written, UTC."""
    track: str
    """The track id."""
    task: str | None = None
    """The task it is about, if any."""
    worker: str | None = None
    """The worker (one attempt at one task) that wrote it or that it is about."""
    attempt: int | None = None
    """The attempt number, from 1."""
    payload: dict[str, Any] = field(default_factory=dict)
    """Type-specific data."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready envelope."""
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "ts": self.ts.isoformat(),
            "track": self.track,
            "task": self.task,
            "worker": self.worker,
            "attempt": self.attempt,
            "payload": self.payload,
        }

    def to_json(self) -> str:
        """One line of compact JSON, non-ASCII text kept as is; NaN and infinities refused."""
        return _JSON.encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        """Parse an envelope; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, dict):
            raise ValueError("message is not a JSON object")
        try:
            seq = data["seq"]
            mtype = data["type"]
            ts = datetime.fromisoformat(data["ts"])
            track = data["track"]
            msg_id = data["id"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"message lacks a valid field: {exc}") from exc
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("seq must be a positive integer")
        if not isinstance(mtype, str) or not TYPE_RE.match(mtype):
            raise ValueError("type must be an UPPER_SNAKE name")
        if not isinstance(track, str) or not isinstance(msg_id, str):
            raise ValueError("track and id must be strings")
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware")
        task = data.get("task")
        worker = data.get("worker")
        attempt = data.get("attempt")
        payload = data.get("payload") or {}
        if task is not None and not isinstance(task, str):
            raise ValueError("task must be a string or null")
        if worker is not None and not isinstance(worker, str):
            raise ValueError("worker must be a string or null")
        if attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)):
            raise ValueError("attempt must be an integer or null")
        if not isinstance(payload, dict):
            raise ValueError("payload must be an object")
        return cls(
            seq=seq,
            id=msg_id,
            type=mtype,
            ts=ts,
            track=track,
            task=task,
            worker=worker,
            attempt=attempt,
            payload=payload,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Message:
        """Parse one message file's content; raises ``ValueError`` if it is not a message."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not valid JSON: {exc}") from exc
        return cls.from_dict(data)
