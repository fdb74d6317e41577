"""Waiting out the API's limits instead of failing tasks on them.

When an attempt stops on the API rather than on its task (``Outcome.api_stop``, read from the
session by ``conductor.executors.api_errors``), the scheduler:

- records the attempt as TASK_DEFERRED: the task is pending again and the attempt never counts
  toward ``max_attempts`` (the next one has the next attempt number, so logs and copies of
  both stay apart);
- for a usage limit, a rate limit or an overload, posts LIMIT_WAIT with ``until`` (Unix time)
  and ``until_utc``, dispatches nothing new before then and logs the time it waits for. The
  reset time is the API's when it gave one (a usage limit's ``resetsAt``); otherwise conductor
  waits ``backoff`` seconds, doubling with each limit in a row up to ``MAX_WAIT``
  (``CONDUCTOR_LIMIT_BACKOFF`` sets the first wait, 30 s by default). Attempts already
  running go on; the wait ends early only by reaching ``until``;
- for refused credentials or an unpaid account, stops the run (status ``auth``, exit 7,
  its reason naming ``ANTHROPIC_API_KEY`` and ``CLAUDE_CODE_OAUTH_TOKEN``): running attempts
  are ended and nothing else starts, so no other task spends money.

LIMIT_WAIT is on the bus, so the wait survives the conductor: Ctrl-C during a wait ends the
run like any interruption (exit 130), and a later ``conductor run`` waits for whatever is left
of it, or goes straight on when the reset time has passed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from conductor.errors import UserError

if TYPE_CHECKING:
    from conductor.executors.api_errors import ApiStop

BACKOFF_ENV = "CONDUCTOR_LIMIT_BACKOFF"
"""Seconds to wait after a limit that names no reset time (doubling while they repeat)."""

DEFAULT_BACKOFF = 30.0
"""The first wait after a limit with no reset time."""

MAX_WAIT = 3600.0
"""Longest wait conductor picks by itself (a reset time the API gives is waited out whole)."""

MARGIN = 2.0
"""Seconds added to an announced reset time, so the first request after it is not early."""


def backoff_from_env(environ: dict[str, str] | None = None) -> float:
    """``CONDUCTOR_LIMIT_BACKOFF`` as seconds (the default when unset)."""
    env = os.environ if environ is None else environ
    value = env_number(env, BACKOFF_ENV, float, what="a number of seconds")
    return DEFAULT_BACKOFF if value is None else float(value)


def env_number(
    env: Mapping[str, str], name: str, kind: type[float] | type[int], *, what: str = "a number"
) -> Any:
    """``env[name]`` as a non-negative ``kind``; None when unset or blank. A setting of how
    long or how often to wait on the API (here and ``conductor.executors.claude``)."""
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise UserError(f"{name}={raw!r} is not {what}") from None
    if value < 0:
        raise UserError(f"{name}={raw!r} must not be negative")
    return value


def utc_text(when: float) -> str:
    """``when`` (Unix time) as a person reads it: ``2026-11-30 15:33:16 UTC``."""
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class LimitGate:
    """Holds dispatch until the API's limit resets."""

    backoff: float = DEFAULT_BACKOFF
    """First wait after a limit with no reset time."""
    clock: Callable[[], float] = time.time
    """Wall clock (reset times are wall-clock times)."""
    until: float | None = None
    """Dispatch nothing before this (Unix time)."""
    streak: int = 0
    """Limits in a row without a reset time: the backoff's exponent."""

    def hit(self, stop: ApiStop) -> float:
        """A limit stopped an attempt: when to go on (Unix time, never earlier than now)."""
        now = self.clock()
        if stop.until is not None and stop.until > now:
            until = stop.until + MARGIN
        else:
            until = now + min(self.backoff * 2**self.streak, MAX_WAIT)
            self.streak += 1
        self.until = max(until, self.until or 0.0)
        return self.until

    def ok(self) -> None:
        """An attempt got through to the end: the next limit waits ``backoff`` again."""
        self.streak = 0

    def remaining(self) -> float:
        """Seconds until dispatch may go on (0 when it may now)."""
        if self.until is None:
            return 0.0
        left = self.until - self.clock()
        if left <= 0:
            self.until = None
            return 0.0
        return left

    def payload(self, stop: ApiStop, task: str) -> dict[str, Any]:
        """The LIMIT_WAIT payload for the current wait."""
        assert self.until is not None
        return {
            "kind": stop.kind,
            "until": round(self.until, 3),
            "until_utc": utc_text(self.until),
            "seconds": round(max(self.until - self.clock(), 0.0), 3),
            "announced": stop.until is not None,
            "reason": stop.describe(),
            "task": task,
        }
