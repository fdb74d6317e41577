"""Helpers for the progress view's tests: a track, and messages fed a second apart."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

from conductor.messages import Message
from conductor.progress import Line, RunView
from conductor.track import Track, parse_track

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

TRACK = """
track: view
budget_usd: 5
tasks:
  - {id: build, run: make all}
  - {id: docs, type: docs, agent: tech-writer, instructions: Write docs.}
  - {id: test, run: make test, depends_on: [build]}
  - {id: ship, run: ./ship.sh, depends_on: [test]}
"""


def make_track(text: str = TRACK) -> Track:
    """The track of ``text`` (default: the ``view`` track above)."""
    return parse_track(textwrap.dedent(text))


class Feeder:
    """Builds messages in sequence, a second apart."""

    def __init__(self, view: RunView) -> None:
        self.view = view
        self.seq = 0

    def __call__(
        self, mtype: str, task: str | None = None, attempt: int | None = None, **payload: Any
    ) -> list[Line]:
        self.seq += 1
        msg = Message(
            seq=self.seq,
            id=f"{self.seq:032x}",
            type=mtype,
            ts=T0 + timedelta(seconds=self.seq),
            track="view",
            task=task,
            worker=f"{task}.{attempt}" if task and attempt else None,
            attempt=attempt,
            payload=payload,
        )
        return self.view.feed(msg)


def view_at(seconds: float) -> RunView:
    """A view of the ``view`` track whose clock reads ``seconds`` after ``T0``."""
    return RunView(make_track(), clock=lambda: T0.timestamp() + seconds)


def message(seq: int, mtype: str, task: str | None = None, **payload: Any) -> Message:
    """A message of the ``view`` track written at ``T0``."""
    return Message(seq=seq, id=f"{seq:032x}", type=mtype, ts=T0, track="view", task=task,
                   payload=payload)
