"""What a response costs, priced from its token usage while the session still runs.

The CLI reports a session's cost (``total_cost_usd``) only in its result, at the end of the
session; a budget that waits for it lets every running session spend unseen. conductor prices
each assistant message's ``usage`` as it streams with the same per-model rates the bundled CLI
uses (checked against CLI 2.1.33x: its cost for a million tokens of each kind, per model), so
the track's budget sees the money as it goes. The result's own figure replaces the estimate
when the session ends.

Rates are US dollars per million tokens. Cache writes cost 1.25 × the input rate (2 × for the
one-hour cache), cache reads 0.1 ×. A model the table does not know is priced like the most
expensive current family of its kind (``opus``, ``sonnet``, ``haiku``), and anything else like
Opus: an estimate that errs high stops dispatch early rather than late.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rate:
    """Dollars per million tokens for one model family."""

    input: float
    """Uncached input tokens."""
    output: float
    """Output tokens (thinking included)."""


RATES: tuple[tuple[str, Rate], ...] = (
    ("claude-opus-5", Rate(4.0, 20.0)),
    ("claude-opus-4-5", Rate(5.0, 25.0)),
    ("claude-opus-4-6", Rate(5.0, 25.0)),
    ("claude-opus-4", Rate(15.0, 75.0)),
    ("claude-3-opus", Rate(15.0, 75.0)),
    ("claude-sonnet", Rate(3.0, 15.0)),
    ("claude-3-7-sonnet", Rate(3.0, 15.0)),
    ("claude-3-5-sonnet", Rate(3.0, 15.0)),
    ("claude-haiku-4", Rate(1.0, 5.0)),
    ("claude-3-5-haiku", Rate(0.8, 4.0)),
    ("claude-3-haiku", Rate(0.25, 1.25)),
)
"""Model-name prefixes and their rates, most specific first."""

_FAMILY = (("opus", Rate(5.0, 25.0)), ("sonnet", Rate(3.0, 15.0)), ("haiku", Rate(1.0, 5.0)))
_UNKNOWN = Rate(5.0, 25.0)


def rate_for(model: str | None) -> Rate:
    """The rate of ``model`` (a name such as ``claude-sonnet-4-5-20250929``)."""
    name = (model or "").lower()
    for prefix, rate in RATES:
        if name.startswith(prefix):
            return rate
    for word, rate in _FAMILY:
        if word in name:
            return rate
    return _UNKNOWN


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(int(value), 0)


def price(model: str | None, usage: dict[str, Any] | None) -> float:
    """Dollars one response's ``usage`` costs on ``model``."""
    if not usage:
        return 0.0
    rate = rate_for(model)
    written = _count(usage, "cache_creation_input_tokens")
    hour = 0
    detail = usage.get("cache_creation")
    if isinstance(detail, dict):
        hour = min(_count(detail, "ephemeral_1h_input_tokens"), written)
    dollars = (
        _count(usage, "input_tokens") * rate.input
        + _count(usage, "output_tokens") * rate.output
        + (written - hour) * rate.input * 1.25
        + hour * rate.input * 2.0
        + _count(usage, "cache_read_input_tokens") * rate.input * 0.1
    )
    return dollars / 1_000_000
