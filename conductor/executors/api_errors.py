"""Why a Claude session stopped on the API, read from what the CLI streamed.

Checked with the bundled CLI 2.1.33x against a local Messages API:

- **no credentials** ("Not logged in · Please run /login"): no request is made; a synthetic
  assistant message with ``error: authentication_failed``, then an error result (subtype
  ``success``, ``is_error``, ``terminal_reason: api_error``, ``api_error_status`` null), within
  a second;
- **a key the API refuses** (401 ``authentication_error``): the CLI retries it like an overload,
  ten times over ~3 minutes (``api_retry`` with ``error_status: 401``, ``error:
  authentication_failed``), then ends with "Invalid API key · Fix external API key" and
  ``api_error_status: 401``. conductor ends the session at the first such retry;
- **a usage limit** (a Claude subscription, 429 with ``anthropic-ratelimit-unified-status:
  rejected`` and ``anthropic-ratelimit-unified-reset: <epoch>``): no retry; a
  ``rate_limit_event`` with ``status: rejected`` and ``resetsAt``, then an assistant message
  with ``api_error: usage_limit_reached`` and the text "You've hit your 5-hour limit · resets
  3:33pm (UTC)"; older CLIs said "Claude AI usage limit reached|<epoch>";
- **a rate limit** (429 with ``retry-after``): retried after what ``retry-after`` says (plus up
  to a quarter), ten times; a ``retry-after`` of minutes is not retried at all. The result is
  "API Error: Request rejected (429) · ..." with ``api_error_status: 429``; the reset time
  itself is not in the stream, only the delay of each retry;
- **an overload** (529, or 5xx): retried ~10 times over a few minutes, then "API Error:
  Repeated 529 Overloaded errors..." with ``api_error_status: 529``.

``ApiWatch`` follows one session's messages and ``classify`` names the cause as an ``ApiStop``
(``auth``, ``billing``, ``usage_limit``, ``rate_limit``, ``overload``) with the CLI's own words
and, when known, the time the limit resets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from claude_agent_sdk import AssistantMessage, ResultMessage, SystemMessage, TextBlock

try:  # claude-agent-sdk 0.2.1xx; older releases have no such message
    from claude_agent_sdk import RateLimitEvent
except ImportError:  # pragma: no cover - depends on the installed SDK
    RateLimitEvent = None  # type: ignore[assignment,misc]

ApiKind = Literal["auth", "billing", "usage_limit", "rate_limit", "overload"]

CREDENTIALS_HINT = (
    "give conductor's environment ANTHROPIC_API_KEY (an Anthropic Console key) or "
    "CLAUDE_CODE_OAUTH_TOKEN (from `claude setup-token`); each session has its own config "
    "directory, so a `claude` login is not used"
)
"""What to do about an authentication failure."""

STOPS_RUN: frozenset[str] = frozenset({"auth", "billing"})
"""Kinds no waiting can fix: the run stops before other tasks spend anything."""

_AUTH_STATUSES = frozenset({401, 403})
_AUTH_TEXT = re.compile(
    r"not logged in|please run /login|invalid api key|authentication|"
    r"oauth token (?:has )?(?:expired|revoked)|x-api-key",
    re.IGNORECASE,
)
_BILLING_TEXT = re.compile(r"credit balance (?:is )?too low|billing", re.IGNORECASE)
_USAGE_TEXT = re.compile(r"usage limit reached|hit your (?:[\w-]+ )?limit", re.IGNORECASE)
_LEGACY_RESET = re.compile(r"\|(\d{9,11})\s*$")
_OVERLOAD_STATUSES = frozenset({500, 502, 503, 504, 529})


@dataclass(frozen=True)
class ApiStop:
    """A session ended because of the API, not because of the task."""

    kind: ApiKind
    """``auth``, ``billing``, ``usage_limit``, ``rate_limit`` or ``overload``."""
    message: str
    """What the CLI said (its result text), for the person."""
    status: int | None = None
    """The HTTP status, when known."""
    until: float | None = None
    """When the limit resets (Unix time), when the API said so."""

    @property
    def stops_run(self) -> bool:
        """No wait can fix it: the run must stop."""
        return self.kind in STOPS_RUN

    def describe(self) -> str:
        """One line for the bus and the person."""
        what = {
            "auth": "the API refused the credentials",
            "billing": "the account cannot pay for requests",
            "usage_limit": "usage limit reached",
            "rate_limit": "rate limited",
            "overload": "the API is overloaded",
        }[self.kind]
        text = f"{what}: {self.message}" if self.message else what
        return f"{text}; {CREDENTIALS_HINT}" if self.kind == "auth" else text

    def to_payload(self) -> dict[str, Any]:
        """The JSON-ready form (``until`` as Unix time)."""
        return {
            "kind": self.kind,
            "message": self.message,
            "status": self.status,
            "until": self.until,
        }

    @classmethod
    def from_payload(cls, data: Any) -> ApiStop | None:
        """Read ``to_payload``'s form back (None when it is not one)."""
        if not isinstance(data, dict) or data.get("kind") not in _KINDS:
            return None
        until = data.get("until")
        status = data.get("status")
        return cls(
            kind=data["kind"],
            message=str(data.get("message") or ""),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            until=float(until)
            if isinstance(until, int | float) and not isinstance(until, bool)
            else None,
        )


_KINDS = frozenset({"auth", "billing", "usage_limit", "rate_limit", "overload"})


def _epoch(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    seconds = float(value)
    return seconds / 1000 if seconds > 1e11 else seconds  # milliseconds, from some CLIs


@dataclass
class ApiWatch:
    """What one session's stream said about the API."""

    clock: Any = time.time
    """Wall clock (tests replace it)."""
    assistant_error: str | None = None
    """The last ``AssistantMessage.error`` (``authentication_failed``, ``rate_limit``...)."""
    assistant_text: str = ""
    """That message's text."""
    status: int | None = None
    """The last HTTP error status seen (a retry or the final error)."""
    resets_at: float | None = None
    """When the limit resets, from a rejected ``rate_limit_event``."""
    limit_rejected: bool = False
    """A ``rate_limit_event`` said ``rejected``."""
    retry_until: float | None = None
    """When the CLI's last announced retry was due (now + its delay)."""
    retries: list[int] = field(default_factory=list)
    """Statuses of the CLI's own retries."""

    def observe(self, message: Any) -> bool:
        """Take one message; True when the session should be ended now (credentials refused:
        the CLI would otherwise retry them for minutes)."""
        if isinstance(message, SystemMessage) and message.subtype == "api_retry":
            data = message.data
            status = data.get("error_status")
            if isinstance(status, int) and not isinstance(status, bool):
                self.status = status
                self.retries.append(status)
            delay = data.get("retry_delay_ms")
            if isinstance(delay, int | float) and not isinstance(delay, bool):
                self.retry_until = self.clock() + float(delay) / 1000
            if self.status in _AUTH_STATUSES or data.get("error") == "authentication_failed":
                self.assistant_error = "authentication_failed"
                self.assistant_text = f"the API answered {self.status} to the credentials"
                return True
            return False
        if RateLimitEvent is not None and isinstance(message, RateLimitEvent):
            info = message.rate_limit_info
            if info.status == "rejected":
                self.limit_rejected = True
                self.resets_at = _epoch(info.resets_at) or self.resets_at
            return False
        if isinstance(message, AssistantMessage) and message.error:
            self.assistant_error = message.error
            self.assistant_text = " ".join(
                b.text for b in message.content if isinstance(b, TextBlock)
            ).strip()
            return False
        return False

    def classify(self, result: ResultMessage | None) -> ApiStop | None:
        """Why the session stopped on the API, or None when it did not."""
        text = ""
        status = self.status
        if result is not None:
            if not result.is_error:
                return None
            text = (result.result or "").strip()
            if result.api_error_status is not None:
                status = result.api_error_status
            api_failure = result.terminal_reason == "api_error" or result.api_error_status
            if not api_failure and not self.assistant_error:
                return None
        elif not self.assistant_error:
            return None
        text = text or self.assistant_text
        error = self.assistant_error
        if (
            error == "authentication_failed"
            or status in _AUTH_STATUSES
            or (status is None and _AUTH_TEXT.search(text))
        ):
            return ApiStop("auth", text or "authentication failed", status)
        if error == "billing_error" or status == 402 or _BILLING_TEXT.search(text):
            return ApiStop("billing", text or "billing error", status)
        legacy = _LEGACY_RESET.search(text)
        if self.limit_rejected or _USAGE_TEXT.search(text):
            until = self.resets_at or (float(legacy.group(1)) if legacy else None)
            return ApiStop("usage_limit", _LEGACY_RESET.sub("", text), status or 429, until)
        if status == 429 or error == "rate_limit":
            return ApiStop("rate_limit", text, 429, self.resets_at)
        if status in _OVERLOAD_STATUSES or error == "server_error" or "overloaded" in text.lower():
            return ApiStop("overload", text, status or 529)
        if result is not None and result.terminal_reason == "api_error" and status is None:
            return ApiStop("overload", text, status)  # no answer at all (a connection error)
        return None  # another 4xx (a request too large, invalid): the task's failure
