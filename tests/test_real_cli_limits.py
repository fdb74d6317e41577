"""The real bundled CLI refused by the API, through the scheduler, offline.

The fake Messages API answers with what the real API says for a missing or refused key, a
subscription's usage limit with a reset time, a rate limit with ``retry-after`` and an
overload that outlasts the CLI's own retries; the real CLI turns them into its stream, and
conductor must read that stream right: stop the run on credentials, wait out limits without
counting attempts, and price cost while sessions stream.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conductor.bus import Bus
from conductor.executors.claude import ClaudeExecutor
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.testing.fake_api import (
    Credentials,
    FakeMessagesAPI,
    bundled_cli_path,
    real_cli_env,
)
from conductor.track import parse_track

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.real_cli,
    pytest.mark.skipif(bundled_cli_path() is None, reason="no bundled Claude Code CLI"),
]


def task(tid: str, **kw: Any) -> dict[str, Any]:
    return {
        "id": tid,
        "type": "code",
        "files": [f"{tid}.txt"],
        "instructions": f"Write {tid}.txt.",
        **kw,
    }


def writes(path: str, *, usage: dict[str, int] | None = None, delay: float = 0.0) -> list[Any]:
    first: dict[str, Any] = {
        "text": f"Writing {path}.",
        "tool_use": {"name": "Write", "input": {"file_path": path, "content": "ok\n"}},
    }
    if usage:
        first["usage"] = usage
    report: dict[str, Any] = {
        "tool_use": {
            "name": "mcp__conductor__report_complete",
            "input": {"summary": f"wrote {path}", "files_changed": [path]},
        }
    }
    if delay:
        report["delay"] = delay
    return [first, report, {"text": "Done."}]


def match(tid: str) -> str:
    return f"Carry out task {tid} ("


async def run(
    repo: Path,
    tmp_path: Path,
    track: dict[str, Any],
    script: dict[str, Any],
    *,
    credentials: Credentials = "api_key",
    env: dict[str, str] | None = None,
) -> tuple[RunResult, list[Any], FakeMessagesAPI]:
    parsed = parse_track(yaml.safe_dump(track))
    state_root = Path(os.environ["CONDUCTOR_STATE_DIR"])
    with FakeMessagesAPI(script) as api:
        cli_env = real_cli_env(api.base_url, tmp_path / "unused", credentials=credentials)
        for key in ("CLAUDE_CONFIG_DIR", "TMPDIR"):
            cli_env.pop(key, None)  # every session gets its own under its worker dir
        cli_env.update(env or {})
        executor = ClaudeExecutor(
            cli_path=bundled_cli_path(), extra_env=cli_env, api_backoff=0.01, api_retries=0
        )
        result = await run_track(
            parsed,
            RunOptions(
                repo=repo,
                state_root=state_root,
                executors=lambda _task: executor,
                handle_signals=False,
            ),
        )
    sd = StateDir.for_track(repo, parsed.id, state_root)
    with Bus.for_state(sd, parsed.id) as bus:
        messages = bus.read()
    return result, messages, api


def of(messages: list[Any], mtype: str) -> list[Any]:
    return [m for m in messages if m.type == mtype]


async def test_real_cli_without_credentials_stops_the_run(repo: Path, tmp_path: Path) -> None:
    """No key: the CLI says "Not logged in" without a request; the run stops (auth, exit 7)
    naming both variables, no other task is dispatched, and the attempt log keeps the CLI's
    words."""
    track = {"track": "nokey", "max_parallel": 1, "tasks": [task("a"), task("b")]}
    result, messages, api = await run(
        repo, tmp_path, track, {"default": [{"text": "OK."}]}, credentials="none"
    )
    assert result.status == "auth" and result.exit_code == 7
    assert "Not logged in" in result.reason
    assert "ANTHROPIC_API_KEY" in result.reason and "CLAUDE_CODE_OAUTH_TOKEN" in result.reason
    assert api.requests == [], "nothing was sent, nothing was paid"
    assert len(of(messages, "TASK_DISPATCHED")) == 1
    assert of(messages, "TASK_DEFERRED") and not of(messages, "TASK_FAILED")
    sd = StateDir.for_track(repo, "nokey", Path(os.environ["CONDUCTOR_STATE_DIR"]))
    assert "Not logged in · Please run /login" in (sd.logs / "a.1.log").read_text()


async def test_real_cli_invalid_key_is_cut_at_the_first_retry(repo: Path, tmp_path: Path) -> None:
    """A 401 the CLI would retry ten times over minutes: conductor ends the session at the
    first retry and stops the run."""
    track = {"track": "badkey", "tasks": [task("a")]}
    script = {"default": [{"status": 401, "times": 50, "message": "invalid x-api-key"}]}
    result, messages, api = await run(repo, tmp_path, track, script)
    assert result.status == "auth", result
    assert "401" in result.reason and "ANTHROPIC_API_KEY" in result.reason
    assert len(api.requests) < 5, "the CLI's own retries were cut short"
    assert [m.payload["status"] for m in of(messages, "API_RETRY")] == [401]


async def test_real_cli_usage_limit_is_waited_out(repo: Path, tmp_path: Path) -> None:
    """A subscription's usage limit: the CLI streams a rejected rate_limit_event with the
    reset time; conductor defers the attempt (max_attempts 1 still completes), posts
    LIMIT_WAIT with that time, and dispatches again only after it."""
    track = {"track": "usage", "tasks": [task("a", max_attempts=1)]}
    script = {
        "conversations": [
            {
                "match": match("a"),
                "attempts": [
                    [{"status": 429, "resets_in": 2, "message": "limit"}, {"text": "never"}],
                    writes("a.txt"),
                ],
            }
        ]
    }
    result, messages, _ = await run(repo, tmp_path, track, script, credentials="oauth")
    assert result.status == "complete", result
    (wait,) = of(messages, "LIMIT_WAIT")
    assert wait.payload["kind"] == "usage_limit" and wait.payload["announced"] is True
    assert "limit" in of(messages, "TASK_DEFERRED")[0].payload["error"]
    second = [m for m in of(messages, "TASK_DISPATCHED") if m.attempt == 2]
    assert second and second[0].ts.timestamp() >= wait.payload["until"]
    assert not of(messages, "TASK_FAILED")


async def test_real_cli_overload_and_rate_limit_never_count(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overload that outlasts the CLI's retries, then a rate limit whose retry-after the
    CLI will not wait for: both are deferred and waited out; max_attempts 1 completes."""
    monkeypatch.setenv("CONDUCTOR_LIMIT_BACKOFF", "0.2")
    track = {"track": "busy", "tasks": [task("a", max_attempts=1)]}
    script = {
        "conversations": [
            {
                "match": match("a"),
                "attempts": [
                    [{"status": 529, "times": 20}, {"text": "never"}],
                    [{"status": 429, "retry_after": 600, "times": 20}, {"text": "never"}],
                    writes("a.txt"),
                ],
            }
        ]
    }
    result, messages, _ = await run(
        repo, tmp_path, track, script, env={"CLAUDE_CODE_MAX_RETRIES": "1"}
    )
    assert result.status == "complete", result
    kinds = [m.payload["kind"] for m in of(messages, "LIMIT_WAIT")]
    assert kinds == ["overload", "rate_limit"]
    assert len(of(messages, "TASK_DEFERRED")) == 2 and not of(messages, "TASK_FAILED")


async def test_real_cli_streamed_cost_stops_dispatch(repo: Path, tmp_path: Path) -> None:
    """Cost is priced while sessions stream: with a $1 track budget, task a's first response
    ($0.60) is counted while a still runs, so when b ends ($0.60) nothing more starts."""
    expensive = {"input_tokens": 100, "output_tokens": 40_000}  # $0.60 on Sonnet
    track = {
        "track": "stream",
        "budget_usd": 1.0,
        "max_parallel": 2,
        "tasks": [task("a"), task("b"), task("c")],
    }
    script = {
        "conversations": [
            {"match": match("a"), "turns": writes("a.txt", usage=expensive, delay=6)},
            {
                "match": match("b"),
                "turns": [
                    {
                        "text": "Thinking.",
                        "delay": 2,
                        "usage": expensive,
                        "tool_use": {
                            "name": "Write",
                            "input": {"file_path": "b.txt", "content": "ok\n"},
                        },
                    },
                    *writes("b.txt")[1:],
                ],
            },
            {"match": match("c"), "turns": writes("c.txt")},
        ]
    }
    result, messages, _ = await run(
        repo, tmp_path, track, script, env={"ANTHROPIC_MODEL": "claude-sonnet-4-5"}
    )
    assert result.status == "budget", result
    assert "c" in result.pending
    assert {m.task for m in of(messages, "TASK_DISPATCHED")} == {"a", "b"}
    b_end = next(
        m for m in messages if m.type in ("TASK_COMPLETE", "TASK_FAILED") and m.task == "b"
    )
    streamed = [
        m
        for m in of(messages, "PROGRESS")
        if m.task == "a" and m.seq < b_end.seq and m.payload["cost_usd"] >= 0.5
    ]
    assert streamed, "a's cost was known before b ended"
