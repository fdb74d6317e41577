"""Reading why a session stopped on the API, pricing streamed usage, and the limit gate."""

from __future__ import annotations

import time
from typing import Any

import pytest
from claude_agent_sdk import (
    AssistantMessage,
    RateLimitEvent,
    RateLimitInfo,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    TextBlock,
)

from conductor.errors import UserError
from conductor.executors.api_errors import CREDENTIALS_HINT, ApiStop, ApiWatch
from conductor.executors.claude import Meter
from conductor.executors.pricing import price, rate_for
from conductor.limits import MARGIN, LimitGate, backoff_from_env, utc_text
from conductor.messages import MessageType


def result(text: str, status: int | None, **kw: Any) -> ResultMessage:
    fields: dict[str, Any] = {
        "subtype": "success",
        "duration_ms": 1,
        "duration_api_ms": 0,
        "is_error": True,
        "num_turns": 1,
        "session_id": "s",
        "result": text,
        "api_error_status": status,
        "terminal_reason": "api_error",
    }
    fields.update(kw)
    return ResultMessage(**fields)


def api_error(text: str, error: str) -> AssistantMessage:
    return AssistantMessage(
        content=[TextBlock(text=text)],
        model="<synthetic>",
        error=error,  # type: ignore[arg-type]
    )


def retry(status: int, error: str, delay_ms: int = 500) -> SystemMessage:
    data = {"error_status": status, "error": error, "retry_delay_ms": delay_ms}
    return SystemMessage(subtype="api_retry", data=data)


def test_not_logged_in_is_an_auth_stop_naming_both_variables() -> None:
    """The CLI's "Not logged in" (no request made, no status) reads as refused credentials,
    and the description names ANTHROPIC_API_KEY and CLAUDE_CODE_OAUTH_TOKEN."""
    watch = ApiWatch()
    watch.observe(api_error("Not logged in · Please run /login", "authentication_failed"))
    stop = watch.classify(result("Not logged in · Please run /login", None))
    assert stop is not None and stop.kind == "auth" and stop.stops_run
    text = stop.describe()
    assert "Not logged in" in text and "ANTHROPIC_API_KEY" in text
    assert "CLAUDE_CODE_OAUTH_TOKEN" in text and CREDENTIALS_HINT in text


def test_a_401_retry_asks_to_end_the_session_at_once() -> None:
    """The first api_retry on a 401 asks for the session to end (the CLI would retry it for
    minutes), and the session reads as an auth stop without any result."""
    watch = ApiWatch()
    assert watch.observe(retry(529, "overloaded")) is False
    assert watch.observe(retry(401, "authentication_failed")) is True
    stop = watch.classify(None)
    assert stop is not None and stop.kind == "auth" and "401" in stop.message


def test_usage_limit_takes_the_reset_time_of_the_rate_limit_event() -> None:
    """A rejected rate_limit_event gives the reset time; the CLI's words are the message."""
    watch = ApiWatch()
    info = RateLimitInfo(status="rejected", resets_at=1_796_052_796, rate_limit_type="five_hour")
    watch.observe(RateLimitEvent(rate_limit_info=info, uuid="u", session_id="s"))
    text = "You've hit your 5-hour limit · resets 3:33pm (UTC)"
    watch.observe(api_error(text, "rate_limit"))
    stop = watch.classify(result(text, 429))
    assert stop == ApiStop("usage_limit", text, 429, 1_796_052_796.0)


def test_legacy_usage_limit_text_carries_its_reset_time() -> None:
    """Older CLIs' "Claude AI usage limit reached|<epoch>" is a usage limit until <epoch>."""
    stop = ApiWatch().classify(result("Claude AI usage limit reached|1762952400", 429))
    assert stop is not None and stop.kind == "usage_limit"
    assert stop.until == 1_762_952_400.0 and stop.message == "Claude AI usage limit reached"


@pytest.mark.parametrize(
    ("text", "status", "kind"),
    [
        ("API Error: Request rejected (429) · Rate limited", 429, "rate_limit"),
        ("API Error: Repeated 529 Overloaded errors.", 529, "overload"),
        ("API Error: 500 Internal server error", 500, "overload"),
        ("Invalid API key · Fix external API key", 401, "auth"),
        ("Credit balance is too low", 400, "billing"),
    ],
)
def test_final_api_errors_are_classified(text: str, status: int, kind: str) -> None:
    """The CLI's final error result maps to one kind of API stop."""
    stop = ApiWatch().classify(result(text, status))
    assert stop is not None and stop.kind == kind and stop.message == text


def test_task_failures_are_not_api_stops() -> None:
    """A session that failed on its own (turn limit, success, a request the API calls
    invalid) is no API stop."""
    watch = ApiWatch()
    assert watch.classify(result("API Error: 400 prompt is too long", 400)) is None
    assert watch.classify(result("API Error: 413 Request too large", 413)) is None
    assert watch.classify(result("done", None, is_error=False, terminal_reason=None)) is None
    turns = result("", None, subtype="error_max_turns", terminal_reason="max_turns")
    assert watch.classify(turns) is None


def test_api_stop_payload_round_trips() -> None:
    """An ApiStop survives its JSON form; something else reads back as None."""
    stop = ApiStop("rate_limit", "slow down", 429, 12.5)
    assert ApiStop.from_payload(stop.to_payload()) == stop
    assert ApiStop.from_payload({"kind": "weather"}) is None


def test_prices_match_the_cli_per_model() -> None:
    """A million tokens of each kind cost what the bundled CLI charges for them."""
    million = 1_000_000
    assert price("claude-sonnet-4-5", {"input_tokens": million}) == pytest.approx(3.0)
    assert price("claude-sonnet-4-5", {"output_tokens": million}) == pytest.approx(15.0)
    assert price("claude-sonnet-4-5", {"cache_creation_input_tokens": million}) == 3.75
    assert price("claude-sonnet-4-5", {"cache_read_input_tokens": million}) == pytest.approx(0.3)
    assert price("claude-opus-4-5-20251101", {"output_tokens": million}) == pytest.approx(25.0)
    assert price("claude-haiku-4-5", {"input_tokens": million}) == pytest.approx(1.0)
    assert price("claude-3-5-haiku-20241022", {"output_tokens": million}) == pytest.approx(4.0)
    assert price("claude-opus-5-5", {"output_tokens": million}) == pytest.approx(20.0)
    assert rate_for("some-future-model") == rate_for("claude-opus-4-5")
    assert price("claude-sonnet-4-5", None) == 0.0


def stream(event: dict[str, Any]) -> StreamEvent:
    return StreamEvent(uuid="u", session_id="s", event=event)


def test_meter_prices_a_response_while_it_streams() -> None:
    """The stream's message_delta carries the final output tokens: the attempt's cost and
    a PROGRESS with it appear at once, before any result; the result's figure replaces it."""
    posted: list[dict[str, Any]] = []
    clock = [0.0]
    meter = Meter(lambda _t, payload: posted.append(payload), clock=lambda: clock[0])
    start = {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 1000}}
    meter.on_stream(stream({"type": "message_start", "message": start}))
    meter.on_stream(stream({"type": "message_delta", "usage": {"output_tokens": 40_000}}))
    assert meter.cost == pytest.approx(0.603)
    assert posted[-1]["cost_usd"] == pytest.approx(0.603), "posted within the interval"
    repeat = AssistantMessage(
        content=[TextBlock(text="x")],
        model="claude-sonnet-4-5",
        usage={"input_tokens": 1000, "output_tokens": 1},
        message_id="msg_1",
    )
    meter.on_assistant(repeat)
    assert meter.cost == pytest.approx(0.603), "one response is counted once"
    meter.on_result(result("", None, is_error=False, total_cost_usd=0.7, terminal_reason=None))
    assert meter.cost == pytest.approx(0.7)
    assert posted[-1]["cost_usd"] == pytest.approx(0.7)


def test_meter_throttles_small_changes() -> None:
    """Changes under a cent within the interval wait for the next PROGRESS."""
    posted: list[str] = []
    meter = Meter(lambda mtype, payload: posted.append(mtype), clock=lambda: 5.0)
    for n in range(5):
        message = AssistantMessage(
            content=[TextBlock(text="x")],
            model="claude-haiku-4-5",
            usage={"input_tokens": 10, "output_tokens": 10},
            message_id=f"m{n}",
        )
        meter.on_assistant(message)
    assert posted == [MessageType.PROGRESS]


def test_gate_waits_for_an_announced_reset() -> None:
    """A reset time from the API is waited out whole (plus a margin)."""
    now = [1000.0]
    gate = LimitGate(backoff=30, clock=lambda: now[0])
    until = gate.hit(ApiStop("usage_limit", "limit", 429, 5000.0))
    assert until == 5000.0 + MARGIN and gate.remaining() == pytest.approx(4000 + MARGIN)
    now[0] = 6000.0
    assert gate.remaining() == 0.0 and gate.until is None


def test_gate_backs_off_while_limits_repeat() -> None:
    """Without a reset time the waits double while limits repeat, and start over once an
    attempt gets through."""
    now = [0.0]
    gate = LimitGate(backoff=10, clock=lambda: now[0])
    waits = []
    for _ in range(3):
        waits.append(gate.hit(ApiStop("overload", "busy", 529)) - now[0])
        now[0] += 1000
    assert waits == [10, 20, 40]
    gate.ok()
    assert gate.hit(ApiStop("rate_limit", "slow", 429)) - now[0] == 10
    payload = gate.payload(ApiStop("rate_limit", "slow", 429), "t")
    assert payload["announced"] is False and payload["until_utc"] == utc_text(now[0] + 10)


def test_backoff_from_env_is_checked() -> None:
    """CONDUCTOR_LIMIT_BACKOFF must be a non-negative number of seconds."""
    assert backoff_from_env({}) == 30.0
    assert backoff_from_env({"CONDUCTOR_LIMIT_BACKOFF": "0.5"}) == 0.5
    with pytest.raises(UserError, match="CONDUCTOR_LIMIT_BACKOFF"):
        backoff_from_env({"CONDUCTOR_LIMIT_BACKOFF": "soon"})


def _post(base_url: str) -> tuple[int, dict[str, str]]:
    import json
    import urllib.error
    import urllib.request

    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"{base_url}/v1/messages", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_fake_api_sends_rate_and_usage_limit_headers() -> None:
    """An injected 429 carries retry-after and the reset headers of a rate limit, or the
    unified headers of a usage limit with its reset time, plus any headers given."""
    from conductor.testing.fake_api import FakeMessagesAPI

    script = {
        "default": [
            {"status": 429, "retry_after": 30, "headers": {"x-extra": "1"}},
            {"status": 429, "resets_in": 3600},
            {"text": "OK."},
        ]
    }
    with FakeMessagesAPI(script) as api:
        status, rate = _post(api.base_url)
        _, usage = _post(api.base_url)
        ok, _ = _post(api.base_url)
    assert status == 429 and rate["retry-after"] == "30" and rate["x-extra"] == "1"
    assert rate["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert usage["anthropic-ratelimit-unified-status"] == "rejected"
    reset = int(usage["anthropic-ratelimit-unified-reset"])
    assert 3000 < reset - time.time() <= 3600
    assert ok == 200


def test_limit_fields_belong_to_error_turns() -> None:
    """retry_after, resets_in and headers on a turn that is not an error are refused."""
    from conductor.testing.script import load_api_script

    with pytest.raises(UserError, match="only apply to an error turn"):
        load_api_script({"default": [{"text": "hi", "retry_after": 5}]})


def test_replay_counts_deferrals_apart_and_sums_spend_per_definition() -> None:
    """TASK_DEFERRED leaves the failure count alone but charges its cost; spend is summed per
    definition hash; LIMIT_WAIT records when dispatch may go on."""
    from datetime import UTC, datetime

    from conductor.messages import Message
    from conductor.state import TaskStatus, replay

    def msg(seq: int, mtype: str, attempt: int | None, **payload: Any) -> Message:
        return Message(
            seq=seq,
            id=f"{seq:032x}",
            type=mtype,
            ts=datetime.now(UTC),
            track="t",
            task="a",
            worker=f"a.{attempt}" if attempt else None,
            attempt=attempt,
            payload=payload,
        )

    state = replay(
        [
            msg(1, "TASK_DISPATCHED", 1, hash="h1"),
            msg(2, "TASK_FAILED", 1, error="no", cost_usd=0.3, final=False),
            msg(3, "TASK_DISPATCHED", 2, hash="h1"),
            msg(4, "TASK_DEFERRED", 2, error="limit", cost_usd=0.1, counted=False),
            msg(5, "LIMIT_WAIT", None, until=1234.5, kind="usage_limit"),
            msg(6, "TASK_DISPATCHED", 3, hash="h2"),
            msg(7, "TASK_FAILED", 3, error="no", cost_usd=0.05, final=False),
        ],
        "t",
    )
    ts = state.task("a")
    assert ts.failures == 2 and ts.status is TaskStatus.PENDING and ts.attempts == 3
    assert ts.spent_by_hash == pytest.approx({"h1": 0.4, "h2": 0.05})
    assert state.cost_usd == pytest.approx(0.45) and state.limit_until == 1234.5
