"""The fake Messages API: its wire format, its scripted model, and the real CLI against it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    HookMatcher,
    Message,
    ResultMessage,
    SystemMessage,
    ToolResultBlock,
    UserMessage,
    create_sdk_mcp_server,
    query,
    tool,
)

from conductor.errors import UserError
from conductor.testing import FakeMessagesAPI, bundled_cli_path, load_api_script, real_cli_env
from conductor.testing.fake_api import FAKE_API_KEY


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def post(
    api: FakeMessagesAPI,
    body: dict[str, Any],
    *,
    path: str = "/v1/messages",
    session: str = "s1",
) -> tuple[int, bytes]:
    """POST a JSON body; return the status and the raw response."""
    request = urllib.request.Request(
        api.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Claude-Code-Session-Id": session},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent-event stream into (event, data) pairs."""
    events = []
    for chunk in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def assemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Rebuild the message a client sees from its stream events, as the SDKs do."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for name, data in events:
        if name == "message_start":
            message = data["message"]
        elif name == "content_block_start":
            message["content"].append(data["content_block"])
        elif name == "content_block_delta":
            block, delta = message["content"][data["index"]], data["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message["stop_reason"] = data["delta"]["stop_reason"]
            message["usage"]["output_tokens"] = data["usage"]["output_tokens"]
    return message


def body(prompt: str = "Do task T1", assistant_turns: int = 0, **extra: Any) -> dict[str, Any]:
    """A request like the CLI's: system, first user message, earlier turns, tools."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "text", "text": prompt}]}
    ]
    for i in range(assistant_turns):
        messages.append({"role": "assistant", "content": [{"type": "text", "text": f"t{i}"}]})
        messages.append({"role": "user", "content": [{"type": "text", "text": "go on"}]})
    return {
        "model": "claude-sonnet-4-5",
        "system": [{"type": "text", "text": "You are a worker."}],
        "messages": messages,
        "tools": [{"name": "Write"}],
        "max_tokens": 1000,
        "stream": True,
        **extra,
    }


SCRIPT: dict[str, Any] = {
    "conversations": [
        {
            "match": "task T1",
            "turns": [
                {
                    "text": "Writing the file now, in several chunks of streamed text.",
                    "tool_use": [
                        {"name": "Write", "input": {"file_path": "a.txt", "content": "x" * 150}},
                        {"name": "mcp__conductor__report", "input": {"summary": "done"}},
                    ],
                    "usage": {"input_tokens": 1234, "output_tokens": 56},
                },
                {"text": "All done."},
            ],
        },
        {
            "match": "/task T[2-9]/",
            "attempts": [
                [{"status": 529, "times": 2}, {"text": "first attempt"}],
                [{"text": "second attempt"}],
            ],
        },
    ]
}


# ----------------------------------------------------------------------------- wire format


def test_streams_text_and_tool_use_events() -> None:
    """A turn streams as message_start, text and input_json deltas, message_delta, stop."""
    with FakeMessagesAPI(SCRIPT) as api:
        status, raw = post(api, body())
    assert status == 200
    events = sse(raw)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == names.count("content_block_stop") == 3
    assert names.count("content_block_delta") > 3  # text and JSON arrive in pieces
    message = assemble(events)
    text, write, report = message["content"]
    assert text["text"] == "Writing the file now, in several chunks of streamed text."
    assert write["name"] == "Write" and write["input"]["content"] == "x" * 150
    assert report["input"] == {"summary": "done"}
    assert write["id"].startswith("toolu_") and write["id"] != report["id"]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 1234 and message["usage"]["output_tokens"] == 56


def test_non_streaming_request_gets_json() -> None:
    """stream: false gets the whole message as JSON."""
    with FakeMessagesAPI(SCRIPT) as api:
        status, raw = post(api, body(assistant_turns=1, stream=False))
    assert status == 200
    message = json.loads(raw)
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": "All done."}]
    assert message["stop_reason"] == "end_turn"


def test_progress_comes_from_the_request_so_retries_repeat() -> None:
    """The reply is the turn after the assistant turns already in the request."""
    with FakeMessagesAPI(SCRIPT) as api:
        first = [post(api, body(stream=False))[1] for _ in range(2)]
        second = post(api, body(assistant_turns=1, stream=False))[1]
        beyond = post(api, body(assistant_turns=5, stream=False))[1]
        assert len(api.requests) == 4
        assert api.requests[2]["messages"][1]["role"] == "assistant"
    contents = [json.loads(raw)["content"] for raw in first]
    assert contents[0][0] == contents[1][0]  # same text both times
    assert json.loads(second)["content"][0]["text"] == "All done."
    assert json.loads(beyond)["content"] == [{"type": "text", "text": "OK."}]


def test_injected_errors_then_success_per_session() -> None:
    """status: 529, times: 2 fails two requests of a session, then the turn is served."""
    with FakeMessagesAPI(SCRIPT) as api:
        statuses = [post(api, body("task T2", stream=False), session="a")[0] for _ in range(3)]
        _, raw = post(api, body("task T2", stream=False), session="a")
        assert [c["status"] for c in api.calls] == [529, 529, 200, 200]
    assert statuses == [529, 529, 200]
    assert json.loads(raw)["content"][0]["text"] == "first attempt"


def test_error_body_is_anthropic_shaped() -> None:
    """An injected 529 answers with Anthropic's overloaded_error JSON."""
    with FakeMessagesAPI({"default": [{"status": 529, "message": "busy"}, {"text": "ok"}]}) as api:
        status, raw = post(api, body())
    assert status == 529
    error = json.loads(raw)
    assert error["type"] == "error"
    assert error["error"] == {"type": "overloaded_error", "message": "busy"}


def test_attempts_follow_the_order_of_sessions() -> None:
    """attempts: the first session matching a rule gets attempt 1, the next attempt 2."""
    with FakeMessagesAPI(SCRIPT) as api:
        for _ in range(2):
            post(api, body("task T3", stream=False), session="first")
        first = json.loads(post(api, body("task T3", stream=False), session="first")[1])
        second = json.loads(post(api, body("task T3", stream=False), session="second")[1])
        again = json.loads(post(api, body("task T3", stream=False), session="first")[1])
    assert first["content"][0]["text"] == "first attempt"
    assert second["content"][0]["text"] == "second attempt"
    assert again["content"][0]["text"] == "first attempt"


def test_unmatched_and_side_requests_get_short_answers() -> None:
    """No matching rule: a short text; a title request (JSON schema, no tools): JSON."""
    title = body("task T1", tools=[], stream=False)
    title["output_config"] = {
        "format": {
            "type": "json_schema",
            "schema": {
                "type": "object",
                "properties": {"title": {"type": "string"}},
                "required": ["title"],
            },
        }
    }
    with FakeMessagesAPI(SCRIPT) as api:
        unmatched = json.loads(post(api, body("something else", stream=False))[1])
        titled = json.loads(post(api, title)[1])
    assert unmatched["content"] == [{"type": "text", "text": "OK."}]
    assert unmatched["stop_reason"] == "end_turn"
    assert json.loads(titled["content"][0]["text"]) == {"title": "Offline session"}


def test_other_endpoints_answer_harmlessly() -> None:
    """count_tokens, HEAD/GET /api/hello, unknown paths and bad JSON never break the server."""
    with FakeMessagesAPI(SCRIPT) as api:
        status, raw = post(api, body(), path="/v1/messages/count_tokens")
        assert status == 200 and json.loads(raw)["input_tokens"] > 0
        head = urllib.request.Request(api.base_url + "/api/hello", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(api.base_url + "/api/hello", timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(api.base_url + "/v1/models", timeout=10)
        assert missing.value.code == 404
        bad = urllib.request.Request(
            api.base_url + "/v1/messages", data=b"{not json", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as invalid:
            urllib.request.urlopen(bad, timeout=10)
        assert invalid.value.code == 400
        assert post(api, body(), path="/v1/other")[0] == 404
        assert post(api, body())[0] == 200  # still serving
        assert api.requests == [body()]


def test_script_is_validated(tmp_path: Path) -> None:
    """A bad API script raises UserError naming the file, line and field."""
    path = tmp_path / "api.yaml"
    path.write_text(
        "conversations:\n  - match: x\n    turns:\n      - status: 529\n        text: hi\n"
    )
    with pytest.raises(UserError) as info:
        FakeMessagesAPI(path)
    assert info.value.path == path and info.value.line == 4
    assert info.value.field == "conversations[0].turns[0]"
    with pytest.raises(UserError, match="unknown field 'txt' \\(did you mean 'text'\\?\\)"):
        FakeMessagesAPI({"default": [{"txt": "typo"}]})


def test_console_script_serves_a_script_file(tmp_path: Path) -> None:
    """conductor-fake-api --script FILE --port 0 serves until stopped; a bad script exits 2."""
    script = tmp_path / "api.yaml"
    script.write_text(yaml.safe_dump({"default": [{"text": "from the console script"}]}))
    command = [sys.executable, "-m", "conductor.testing.fake_api", "--script", str(script)]
    proc = subprocess.Popen([*command, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        request = urllib.request.Request(
            url + "/v1/messages",
            data=json.dumps(body(stream=False)).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            reply = json.loads(response.read())
        assert reply["content"][0]["text"] == "from the console script"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    script.write_text("default: [{bogus: 1}]\n")
    bad = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")


def test_real_cli_env_points_only_at_the_local_server(tmp_path: Path) -> None:
    """real_cli_env: local base URL, fake key, no other credentials, own config and tmp dirs."""
    env = real_cli_env("http://127.0.0.1:9", tmp_path / "cfg", tmp_dir=tmp_path / "tmp")
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
    assert env["ANTHROPIC_API_KEY"] == FAKE_API_KEY
    assert env["ANTHROPIC_AUTH_TOKEN"] == env["CLAUDE_CODE_OAUTH_TOKEN"] == ""
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert env["ENABLE_TOOL_SEARCH"] == "false"
    assert env["CLAUDE_CONFIG_DIR"] == str(tmp_path / "cfg") and (tmp_path / "cfg").is_dir()
    assert env["TMPDIR"] == str(tmp_path / "tmp") and (tmp_path / "tmp").is_dir()


# ----------------------------------------------------------------------------- the real CLI

CLI = bundled_cli_path()
needs_cli = pytest.mark.skipif(
    CLI is None, reason="claude-agent-sdk has no bundled Claude Code binary on this platform"
)


def cli_options(api: FakeMessagesAPI, tmp_path: Path, **kwargs: Any) -> ClaudeAgentOptions:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = real_cli_env(api.base_url, tmp_path / "claude-config", tmp_dir=tmp_path / "tmp")
    env["CLAUDE_CODE_MAX_RETRIES"] = "2"
    return ClaudeAgentOptions(
        cli_path=CLI,
        cwd=work,
        env=env,
        setting_sources=[],
        model="claude-sonnet-4-5",
        max_turns=6,
        **kwargs,
    )


async def drain(prompt: str, options: ClaudeAgentOptions) -> list[Message]:
    return [message async for message in query(prompt=prompt, options=options)]


@needs_cli
@pytest.mark.real_cli
@pytest.mark.anyio
async def test_real_cli_runs_tools_hooks_and_cost(tmp_path: Path) -> None:
    """The real CLI writes a file, calls an in-process tool, obeys a hook, and prices the run."""
    calls: list[dict[str, Any]] = []
    hook_saw: list[str] = []

    @tool("report_complete", "Report the task complete", {"summary": str})
    async def report_complete(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"content": [{"type": "text", "text": "recorded"}]}

    async def no_shell(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        hook_saw.append(hook_input["tool_input"]["command"])
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "no shell in this task",
            }
        }

    script = {
        "conversations": [
            {
                "match": "You are the worker for task T1",
                "turns": [
                    {
                        "text": "Working.",
                        "tool_use": [
                            {"name": "Write", "input": {"file_path": "out.txt", "content": "hi\n"}},
                            {
                                "name": "mcp__conductor__report_complete",
                                "input": {"summary": "wrote out.txt"},
                            },
                            {"name": "Bash", "input": {"command": "rm -rf build"}},
                        ],
                    },
                    {"text": "Finished."},
                ],
            }
        ]
    }
    with FakeMessagesAPI(script) as api:
        options = cli_options(
            api,
            tmp_path,
            system_prompt="You are the worker for task T1.",
            mcp_servers={"conductor": create_sdk_mcp_server("conductor", tools=[report_complete])},
            allowed_tools=["Write", "Bash", "mcp__conductor__report_complete"],
            hooks={"PreToolUse": [HookMatcher(matcher="Bash", hooks=[no_shell])]},
        )
        messages = await drain("Do the task.", options)
        first_tools = [t["name"] for t in api.requests[0]["tools"]]
        last_request = api.requests[-1]
    assert (tmp_path / "work" / "out.txt").read_text() == "hi\n"
    assert calls == [{"summary": "wrote out.txt"}]
    assert hook_saw == ["rm -rf build"]
    assert "mcp__conductor__report_complete" in first_tools
    results = [
        block
        for m in messages
        if isinstance(m, UserMessage) and isinstance(m.content, list)
        for block in m.content
        if isinstance(block, ToolResultBlock)
    ]
    assert [bool(r.is_error) for r in results] == [False, False, True]
    assert "no shell in this task" in str(results[2].content)
    sent_back = [block["type"] for block in last_request["messages"][-1]["content"]]
    assert sent_back.count("tool_result") == 3
    result = next(m for m in messages if isinstance(m, ResultMessage))
    assert result.subtype == "success" and not result.is_error
    assert result.result == "Finished."
    assert result.total_cost_usd is not None and result.total_cost_usd > 0
    assert [d["tool_name"] for d in result.permission_denials or []] == ["Bash"]
    assert len(api.requests) == 2


@needs_cli
@pytest.mark.real_cli
@pytest.mark.anyio
async def test_real_cli_retries_an_injected_529(tmp_path: Path) -> None:
    """A 529 injected once is retried by the real CLI (api_retry), then the session succeeds."""
    script = {"default": [{"status": 529, "times": 1}, {"text": "Recovered."}]}
    with FakeMessagesAPI(script) as api:
        messages = await drain("Hello", cli_options(api, tmp_path, system_prompt="Worker."))
        statuses = [c["status"] for c in api.calls if c["path"].startswith("/v1/messages")]
    retries = [m for m in messages if isinstance(m, SystemMessage) and m.subtype == "api_retry"]
    assert [r.data["error_status"] for r in retries] == [529]
    assert statuses == [529, 200]
    texts = [b.text for m in messages if isinstance(m, AssistantMessage) for b in m.content]
    assert texts == ["Recovered."]
    result = next(m for m in messages if isinstance(m, ResultMessage))
    assert result.subtype == "success" and not result.is_error
    assert result.total_cost_usd is not None and result.total_cost_usd > 0
    assert not os.listdir(tmp_path / "work")


def test_documented_scripts_are_valid() -> None:
    """The API script in docs/offline-testing.md and in fake_api's docstring validate."""
    from conductor.testing import fake_api

    doc = Path(__file__).resolve().parents[1] / "docs" / "offline-testing.md"
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    script = load_api_script(yaml.safe_load(blocks[1]))
    assert [rule.match for rule in script.conversations] == ["task build-api", "/task T[0-9]+/"]
    block = (fake_api.__doc__ or "").split("::\n\n")[2].split("\n\n", 1)[0]
    script = load_api_script(yaml.safe_load(textwrap.dedent(block)))
    assert script.conversations[0].turns is not None
    assert script.conversations[0].turns[0].status == 529
