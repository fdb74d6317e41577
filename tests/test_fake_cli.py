"""The fake ``claude`` executable, driven by the real claude-agent-sdk (no network)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import yaml
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    HookMatcher,
    Message,
    PermissionResultAllow,
    PermissionResultDeny,
    ProcessError,
    ResultError,
    ResultMessage,
    SystemMessage,
    ToolPermissionContext,
    ToolResultBlock,
    UserMessage,
    create_sdk_mcp_server,
    query,
    tool,
)
from claude_agent_sdk._internal.transport.subprocess_cli import SubprocessCLITransport
from hypothesis import given, settings
from hypothesis import strategies as st

from conductor.errors import UserError
from conductor.testing import fake_cli_path, load_cli_script, read_fake_log
from conductor.testing.fake_cli import parse_args
from conductor.testing.script import match_text


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Fake:
    """A scripted fake CLI set up in a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.work = root / "work"
        self.work.mkdir()
        self.script = root / "script.yaml"
        self.log = root / "fake.jsonl"

    def write(self, script: dict[str, Any]) -> None:
        self.script.write_text(yaml.safe_dump(script))

    def options(self, **kwargs: Any) -> ClaudeAgentOptions:
        env = {"CONDUCTOR_FAKE_SCRIPT": str(self.script), "CONDUCTOR_FAKE_LOG": str(self.log)}
        env.update(kwargs.pop("env", {}))
        kwargs.setdefault("system_prompt", "You are the worker for task T1.")
        kwargs.setdefault("setting_sources", [])
        return ClaudeAgentOptions(cli_path=fake_cli_path(), cwd=self.work, env=env, **kwargs)

    def records(self, event: str) -> list[dict[str, Any]]:
        return [r for r in read_fake_log(self.log) if r["event"] == event]


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    return Fake(tmp_path)


async def run(
    prompt: str, options: ClaudeAgentOptions
) -> tuple[list[Message], BaseException | None]:
    """Drain a query to its end; return its messages and the exception it ended with."""
    messages: list[Message] = []
    try:
        async for message in query(prompt=prompt, options=options):
            messages.append(message)
    except Exception as exc:
        return messages, exc
    return messages, None


def result_of(messages: list[Message]) -> ResultMessage:
    results = [m for m in messages if isinstance(m, ResultMessage)]
    assert len(results) == 1, messages
    return results[0]


def tool_results(messages: list[Message]) -> list[ToolResultBlock]:
    return [
        block
        for m in messages
        if isinstance(m, UserMessage) and isinstance(m.content, list)
        for block in m.content
        if isinstance(block, ToolResultBlock)
    ]


def init_of(messages: list[Message]) -> dict[str, Any]:
    inits = [m for m in messages if isinstance(m, SystemMessage) and m.subtype == "init"]
    assert inits, messages
    return inits[0].data


# ----------------------------------------------------------------------------- sessions


@pytest.mark.anyio
async def test_text_reply_ends_with_scripted_cost(fake: Fake) -> None:
    """A text step becomes an AssistantMessage and the result carries the scripted cost."""
    fake.write({"sessions": [{"match": "T1", "steps": [{"text": "Hello there", "cost": 0.0123}]}]})
    messages, error = await run("Do it", fake.options(model="claude-haiku-4-5"))
    assert error is None
    texts = [b.text for m in messages if isinstance(m, AssistantMessage) for b in m.content]
    assert texts == ["Hello there"]
    result = result_of(messages)
    assert result.subtype == "success" and not result.is_error
    assert result.total_cost_usd == pytest.approx(0.0123)
    assert result.result == "Hello there"
    assert result.num_turns == 1
    assert result.usage is not None and result.usage["input_tokens"] > 0
    init = init_of(messages)
    assert init["model"] == "claude-haiku-4-5"
    assert init["fake_rule"] == "T1" and init["fake_attempt"] == 1


@pytest.mark.anyio
async def test_unmatched_session_gets_default_steps(fake: Fake) -> None:
    """A session no rule matches runs the script's default steps."""
    fake.write({"sessions": [{"match": "other-task", "steps": [{"text": "no"}]}],
                "default": [{"text": "default reply"}]})  # fmt: skip
    messages, error = await run("Do it", fake.options())
    assert error is None
    assert result_of(messages).result == "default reply"


@pytest.mark.anyio
async def test_rules_match_a_system_prompt_file(fake: Fake) -> None:
    """A system prompt given as a file is read for matching, like an inline one."""
    prompt_file = fake.root / "prompt.md"
    prompt_file.write_text("You are the worker for task from-file.")
    fake.write({"sessions": [{"match": "task from-file", "steps": [{"text": "matched"}]}]})
    options = fake.options(system_prompt={"type": "file", "path": str(prompt_file)})
    messages, error = await run("Do it", options)
    assert error is None
    assert result_of(messages).result == "matched"
    (start,) = fake.records("start")
    assert start["args"]["values"]["system-prompt-file"] == str(prompt_file)


@pytest.mark.anyio
async def test_mcp_step_calls_the_in_process_tool(fake: Fake) -> None:
    """An mcp step really calls the SDK server's tool; its result comes back as a tool result."""
    calls: list[dict[str, Any]] = []

    @tool("report_complete", "Report the task complete", {"summary": str})
    async def report_complete(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"content": [{"type": "text", "text": f"recorded: {args['summary']}"}]}

    server = create_sdk_mcp_server("conductor", tools=[report_complete])
    fake.write({"default": [{"mcp": {"tool": "report_complete", "input": {"summary": "done"}}}]})
    options = fake.options(
        mcp_servers={"conductor": server}, allowed_tools=["mcp__conductor__report_complete"]
    )
    messages, error = await run("Do it", options)
    assert error is None
    assert calls == [{"summary": "done"}]
    (block,) = tool_results(messages)
    assert block.content == [{"type": "text", "text": "recorded: done"}]
    assert not block.is_error
    assert "mcp__conductor__report_complete" in init_of(messages)["tools"]
    requests = [r["message"].get("request", {}) for r in fake.records("send")]
    sent = [r["message"]["method"] for r in requests if r.get("subtype") == "mcp_message"]
    assert sent == ["initialize", "notifications/initialized", "tools/list", "tools/call"]


@pytest.mark.anyio
async def test_mcp_tool_not_allowed_is_denied_without_a_call(fake: Fake) -> None:
    """An in-process tool that is not allowed is never called and is listed as denied."""
    calls: list[dict[str, Any]] = []

    @tool("report_complete", "Report", {"summary": str})
    async def report_complete(args: dict[str, Any]) -> dict[str, Any]:
        calls.append(args)
        return {"content": [{"type": "text", "text": "ok"}]}

    server = create_sdk_mcp_server("conductor", tools=[report_complete])
    fake.write({"default": [{"mcp": {"tool": "report_complete", "input": {"summary": "x"}}}]})
    messages, error = await run("Do it", fake.options(mcp_servers={"conductor": server}))
    assert error is None
    assert calls == []
    result = result_of(messages)
    assert not result.is_error
    assert [d["tool_name"] for d in result.permission_denials or []] == [
        "mcp__conductor__report_complete"
    ]
    (block,) = tool_results(messages)
    assert block.is_error and "haven't granted" in str(block.content)


@pytest.mark.anyio
async def test_pre_tool_use_hook_denies_a_write(fake: Fake) -> None:
    """A PreToolUse hook's deny stops the Write: no file, an error result, a denial."""
    seen: list[dict[str, Any]] = []

    async def guard(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        seen.append(hook_input)
        return {
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": "out.txt is not in this task's files",
            }
        }

    fake.write({"default": [{"write": {"path": "out.txt", "content": "x"}}, {"text": "tried"}]})
    options = fake.options(
        hooks={"PreToolUse": [HookMatcher(matcher="Write|Edit", hooks=[guard])]},
        permission_mode="acceptEdits",
    )
    messages, error = await run("Do it", options)
    assert error is None
    assert not (fake.work / "out.txt").exists()
    assert seen[0]["tool_name"] == "Write"
    assert seen[0]["tool_input"]["file_path"] == str(fake.work / "out.txt")
    (block,) = tool_results(messages)
    assert block.is_error and block.content == "out.txt is not in this task's files"
    result = result_of(messages)
    assert result.subtype == "success" and not result.is_error
    denials = result.permission_denials or []
    assert [(d["tool_name"], d["tool_input"]["file_path"]) for d in denials] == [
        ("Write", str(fake.work / "out.txt"))
    ]


@pytest.mark.anyio
async def test_allowed_write_and_edit_change_files(fake: Fake) -> None:
    """Allowed Write and Edit steps change files under cwd; PostToolUse hooks see them."""
    post: list[str] = []

    async def allow(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        return {
            "hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "allow"}
        }

    async def after(hook_input: Any, tool_use_id: str | None, context: Any) -> Any:
        post.append(f"{hook_input['tool_name']}:{hook_input['tool_input']['file_path']}")
        return {}

    fake.write(
        {
            "default": [
                {"write": {"path": "src/a.py", "content": "x = 1\n"}},
                {"edit": {"path": "src/a.py", "old_string": "1", "new_string": "2"}},
                {"edit": {"path": "src/a.py", "old_string": "missing", "new_string": "3"}},
            ]
        }
    )
    hooks = {
        "PreToolUse": [HookMatcher(matcher="Write", hooks=[allow])],
        "PostToolUse": [HookMatcher(matcher=None, hooks=[after])],
    }
    messages, error = await run("Do it", fake.options(hooks=hooks, allowed_tools=["Edit"]))
    assert error is None
    assert (fake.work / "src/a.py").read_text() == "x = 2\n"
    written, edited, failed = tool_results(messages)
    assert not written.is_error and not edited.is_error
    assert failed.is_error and "String to replace not found" in str(failed.content)
    path = str(fake.work / "src/a.py")
    assert post == [f"Write:{path}", f"Edit:{path}"]


@pytest.mark.anyio
async def test_write_without_permission_is_refused(fake: Fake) -> None:
    """With no rule, hook or callback allowing it, a Write is refused like the real CLI does."""
    fake.write({"default": [{"write": {"path": "out.txt", "content": "x"}}]})
    messages, error = await run("Do it", fake.options())
    assert error is None
    assert not (fake.work / "out.txt").exists()
    (block,) = tool_results(messages)
    assert block.is_error
    assert block.content == (
        f"Claude requested permissions to write to {fake.work / 'out.txt'}, "
        "but you haven't granted it yet."
    )


@pytest.mark.anyio
async def test_can_use_tool_callback_decides(fake: Fake) -> None:
    """can_use_tool is asked for tools no rule allows; its deny and allow are honoured."""
    asked: list[str] = []

    async def decide(name: str, tool_input: dict[str, Any], ctx: ToolPermissionContext) -> Any:
        asked.append(name)
        if name == "Bash":
            return PermissionResultDeny(message="no shell for you")
        return PermissionResultAllow()

    fake.write(
        {"default": [{"bash": "touch ran.txt"}, {"write": {"path": "w.txt", "content": "w"}}]}
    )

    async def prompts() -> Any:
        yield {"type": "user", "message": {"role": "user", "content": "Do it"}}

    messages: list[Message] = []
    async for message in query(prompt=prompts(), options=fake.options(can_use_tool=decide)):
        messages.append(message)
    assert asked == ["Bash", "Write"]
    assert not (fake.work / "ran.txt").exists()
    assert (fake.work / "w.txt").read_text() == "w"
    denied, allowed = tool_results(messages)
    assert denied.is_error and denied.content == "no shell for you"
    assert not allowed.is_error


@pytest.mark.anyio
async def test_bash_step_runs_in_cwd_with_session_env(fake: Fake) -> None:
    """A Bash step runs in the session's cwd with its env; output and exit code come back."""
    fake.write({"default": [{"bash": "echo $PWD $CONDUCTOR_WORKER; exit 3"}]})
    options = fake.options(allowed_tools=["Bash"], env={"CONDUCTOR_WORKER": "T1.1"})
    messages, error = await run("Do it", options)
    assert error is None
    (block,) = tool_results(messages)
    assert block.is_error
    assert block.content == f"Exit code 3\n{fake.work} T1.1"


@pytest.mark.anyio
async def test_bash_step_timeout_kills_the_command(fake: Fake) -> None:
    """A Bash step past its timeout is killed and reported as timed out."""
    fake.write({"default": [{"bash": {"command": "echo started; sleep 30", "timeout": 0.3}}]})
    messages, error = await run("Do it", fake.options(allowed_tools=["Bash"]))
    assert error is None
    (block,) = tool_results(messages)
    assert block.is_error
    assert block.content == "Command timed out after 0.3s\nstarted"


@pytest.mark.anyio
async def test_disallowed_tool_is_not_available(fake: Fake) -> None:
    """A tool outside --tools / in --disallowedTools does not exist for the session."""
    fake.write({"default": [{"bash": "true"}, {"tool": {"name": "Read", "result": "contents"}}]})
    options = fake.options(
        tools=["Read", "Write"], disallowed_tools=["Write"], permission_mode="bypassPermissions"
    )
    messages, error = await run("Do it", options)
    assert error is None
    bash, read = tool_results(messages)
    assert bash.is_error and "No such tool available: Bash" in str(bash.content)
    assert read.content == "contents" and not read.is_error
    assert init_of(messages)["tools"] == ["Read"]


# ----------------------------------------------------------------------------- failures


@pytest.mark.anyio
async def test_error_step_reports_api_error_then_raises(fake: Fake) -> None:
    """An error step ends like exhausted retries: is_error result, then ResultError."""
    fake.write(
        {
            "default": [
                {"api_retry": {"attempt": 1, "status": 529}},
                {"error": {"message": "Overloaded", "api_error_status": 529}},
            ]
        }
    )
    messages, error = await run("Do it", fake.options())
    assert isinstance(error, ResultError)
    assert error.exit_code == 1
    retries = [m for m in messages if isinstance(m, SystemMessage) and m.subtype == "api_retry"]
    assert [r.data["error_status"] for r in retries] == [529]
    assistant = [m for m in messages if isinstance(m, AssistantMessage)]
    assert assistant[-1].error == "server_error"
    result = result_of(messages)
    assert result.subtype == "success" and result.is_error
    assert result.api_error_status == 529 and result.terminal_reason == "api_error"


@pytest.mark.anyio
async def test_exit_step_exits_with_its_code(fake: Fake) -> None:
    """exit: N emits an error result and the SDK reports exit code N."""
    fake.write({"default": [{"text": "bye"}, {"exit": 3}]})
    messages, error = await run("Do it", fake.options())
    assert isinstance(error, ProcessError) and error.exit_code == 3
    assert result_of(messages).is_error


@pytest.mark.anyio
async def test_crash_step_ends_without_result(fake: Fake) -> None:
    """crash: the process dies without a result; the SDK raises ProcessError."""
    fake.write({"default": [{"text": "about to crash"}, {"crash": 7}]})
    messages, error = await run("Do it", fake.options())
    assert isinstance(error, ProcessError) and not isinstance(error, ResultError)
    assert error.exit_code == 7
    assert not any(isinstance(m, ResultMessage) for m in messages)


@pytest.mark.anyio
async def test_max_turns_and_budget_are_enforced(fake: Fake) -> None:
    """--max-turns and --max-budget-usd end the session with the CLI's error subtypes."""
    fake.write({"default": [{"text": "1"}, {"text": "2"}, {"text": "3", "cost": 0.5}]})
    messages, error = await run("Do it", fake.options(max_turns=2))
    assert isinstance(error, ResultError)
    result = result_of(messages)
    assert (result.subtype, result.num_turns, result.is_error) == ("error_max_turns", 3, True)

    messages, error = await run("Do it", fake.options(max_budget_usd=0.25))
    assert isinstance(error, ResultError)
    result = result_of(messages)
    assert result.subtype == "error_max_budget_usd"
    assert result.total_cost_usd == pytest.approx(0.5)


@pytest.mark.anyio
async def test_invalid_script_surfaces_as_error_result(fake: Fake) -> None:
    """A script with a typo ends the session with an error naming file, line and field."""
    fake.script.write_text("default:\n  - text: ok\n  - wrte: {path: a}\n")
    messages, error = await run("Do it", fake.options())
    assert isinstance(error, ProcessError) and error.exit_code == 2
    result = result_of(messages)
    assert result.is_error
    assert f"{fake.script}:3: default[1].wrte: unknown field" in (result.result or "")


# ----------------------------------------------------------------------------- processes


@pytest.mark.anyio
async def test_cancelled_hanging_session_is_reaped(fake: Fake) -> None:
    """Cancelling a hung session leaves no process behind, background Bash jobs included."""
    fake.write(
        {
            "default": [
                {"bash": "sleep 60 >/dev/null 2>&1 & echo $! > sleep.pid"},
                {"text": "working"},
                {"hang": True},
            ]
        }
    )
    pids, scope = await _cancel_once_hanging(fake, fake.options(allowed_tools=["Bash"]))
    assert scope.cancelled_caught
    assert pids and not psutil.pid_exists(pids[0])
    background = int((fake.work / "sleep.pid").read_text())
    # SIGKILL is delivered asynchronously: the job may take a moment to die on a busy machine.
    with anyio.fail_after(120):
        while _running(background):  # noqa: ASYNC110 - polling another process
            await anyio.sleep(0.05)
    assert [r["code"] for r in fake.records("exit")] == [143]


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def _cancel_once_hanging(
    fake: Fake, options: ClaudeAgentOptions
) -> tuple[list[int], anyio.CancelScope]:
    """Run a query, cancel it once the fake logs that it hangs (a generous deadline, not a
    fixed delay); the pids its init messages named, and the cancelled scope."""
    pids: list[int] = []
    scope = anyio.CancelScope()

    async def consume() -> None:
        with scope:
            async for message in query(prompt="Do it", options=options):
                if isinstance(message, SystemMessage) and message.subtype == "init":
                    pids.append(message.data["fake_pid"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        with anyio.fail_after(120):
            while not fake.records("hang"):  # noqa: ASYNC110 - polling the fake's log
                await anyio.sleep(0.05)
        scope.cancel()
    return pids, scope


@pytest.mark.anyio
async def test_hang_until_eof_ends_when_client_disconnects(fake: Fake) -> None:
    """hang: eof ends as soon as the SDK closes stdin (ClaudeSDKClient disconnect)."""
    fake.write({"default": [{"hang": "eof"}]})
    async with ClaudeSDKClient(fake.options()) as client:
        info = await client.get_server_info()
        assert info is not None
        pid = int(info["pid"])
        await client.query("Do it")
        with anyio.move_on_after(0.3):
            async for _ in client.receive_response():
                pass
    assert not psutil.pid_exists(pid)
    assert [r["code"] for r in fake.records("exit")] == [0]  # its own exit, not a SIGTERM


@pytest.mark.slow
@pytest.mark.anyio
async def test_unkillable_hang_is_killed(fake: Fake) -> None:
    """A session that ignores EOF and SIGTERM is still SIGKILLed by the SDK's close()."""
    fake.write({"default": [{"hang": "unkillable"}]})
    pids, scope = await _cancel_once_hanging(fake, fake.options())
    assert scope.cancelled_caught
    assert pids and not psutil.pid_exists(pids[0])


@pytest.mark.anyio
async def test_client_session_serves_several_prompts(fake: Fake) -> None:
    """ClaudeSDKClient: each prompt picks its rule; cost accumulates; pid is the fake's."""
    fake.write(
        {
            "sessions": [
                {"match": "first", "steps": [{"text": "one", "cost": 0.01}]},
                {"match": "second", "steps": [{"text": "two", "cost": 0.02}]},
            ]
        }
    )
    results: list[ResultMessage] = []
    async with ClaudeSDKClient(fake.options()) as client:
        info = await client.get_server_info()
        assert info is not None and psutil.pid_exists(int(info["pid"]))
        for prompt in ("first prompt", "second prompt"):
            await client.query(prompt)
            async for message in client.receive_response():
                if isinstance(message, ResultMessage):
                    results.append(message)
    assert [r.result for r in results] == ["one", "two"]
    assert [r.total_cost_usd for r in results] == [pytest.approx(0.01), pytest.approx(0.03)]
    assert results[0].session_id == results[1].session_id


@pytest.mark.anyio
async def test_interrupt_cuts_a_sleep_short(fake: Fake) -> None:
    """ClaudeSDKClient.interrupt() ends a sleeping turn at once with an aborted result."""
    fake.write({"default": [{"text": "thinking"}, {"sleep": 30}, {"text": "never"}]})
    async with ClaudeSDKClient(fake.options()) as client:
        await client.query("Do it")
        result: ResultMessage | None = None
        async for message in client.receive_response():
            if isinstance(message, AssistantMessage):
                await client.interrupt()
            if isinstance(message, ResultMessage):
                result = message
    assert result is not None
    assert result.subtype == "error_during_execution"
    assert result.terminal_reason == "aborted_streaming"
    assert result.is_error and result.result is None


@pytest.mark.anyio
async def test_attempts_are_counted_across_processes(fake: Fake) -> None:
    """attempts: the 1st, 2nd and 3rd matching sessions get attempt 1, 2, then 2 again."""
    fake.write(
        {
            "sessions": [
                {
                    "match": "/task T\\d/",
                    "attempts": [[{"text": "first try"}], [{"text": "second try"}]],
                }
            ]
        }
    )
    replies = []
    for _ in range(3):
        messages, error = await run("Do it", fake.options())
        assert error is None
        replies.append((result_of(messages).result, init_of(messages)["fake_attempt"]))
    assert replies == [("first try", 1), ("second try", 2), ("second try", 3)]
    state = json.loads(fake.script.with_name("script.yaml.state.json").read_text())
    assert list(state.values()) == [3]


def test_attempt_counter_is_exact_under_concurrent_processes(tmp_path: Path) -> None:
    """Eight processes bumping one counter at once each get a distinct attempt number."""
    code = (
        "import sys; from pathlib import Path; "
        "from conductor.testing.fake_cli import _next_attempt; "
        "print(_next_attempt(Path(sys.argv[1]), 'rule'))"
    )
    state = tmp_path / "state.json"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(state)], stdout=subprocess.PIPE)
        for _ in range(8)
    ]
    outputs = sorted(int(p.communicate()[0]) for p in procs)
    assert outputs == list(range(1, 9))
    assert json.loads(state.read_text()) == {"rule": 8}


@pytest.mark.anyio
async def test_log_records_what_the_sdk_sent(fake: Fake) -> None:
    """CONDUCTOR_FAKE_LOG records argv and parsed options, stdin messages and the exit."""
    fake.write({"default": [{"text": "ok"}]})
    options = fake.options(
        system_prompt={"type": "preset", "preset": "claude_code", "append": "Task T1 rules"},
        model="claude-opus-4-1",
        tools=["Read", "Edit"],
        allowed_tools=["Edit"],
        max_turns=7,
        max_budget_usd=1.5,
        permission_mode="acceptEdits",
        setting_sources=["project"],
    )
    messages, error = await run("the prompt text", options)
    assert error is None
    (start,) = fake.records("start")
    args = start["args"]
    assert args["append_system_prompt"] == "Task T1 rules"
    assert args["system_prompt"] is None
    assert args["model"] == "claude-opus-4-1"
    assert args["tools"] == ["Read", "Edit"]
    assert args["allowed_tools"] == ["Edit"]
    assert (args["max_turns"], args["max_budget_usd"]) == (7, 1.5)
    assert args["permission_mode"] == "acceptEdits"
    assert args["setting_sources"] == ["project"]
    assert start["cwd"] == str(fake.work)
    assert start["env"]["CONDUCTOR_FAKE_SCRIPT"] == str(fake.script)
    received = [r["message"] for r in fake.records("recv")]
    assert received[0]["request"]["subtype"] == "initialize"
    assert received[1]["message"]["content"] == "the prompt text"
    assert [r["code"] for r in fake.records("exit")] == [0]
    assert init_of(messages)["fake_pid"] == start["pid"]


def test_log_masks_secrets(fake: Fake) -> None:
    """Secrets in the environment never reach the log."""
    fake.write({"default": [{"text": "ok"}]})
    env = dict(os.environ, CONDUCTOR_FAKE_LOG=str(fake.log), ANTHROPIC_API_KEY="sk-secret")
    subprocess.run(
        [str(fake_cli_path()), "--input-format", "stream-json", "--output-format", "stream-json"],
        input=b"",
        env=env,
        check=True,
        timeout=30,
    )
    (start,) = fake.records("start")
    assert start["env"]["ANTHROPIC_API_KEY"] == "***"
    assert "sk-secret" not in fake.log.read_text()


def test_fake_cli_path_writes_a_wrapper_when_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the console script on hand, fake_cli_path() writes a working wrapper."""
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    path = fake_cli_path(cache_dir=tmp_path / "cache")
    assert path.parent == tmp_path / "cache"
    assert fake_cli_path(cache_dir=tmp_path / "cache") == path
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert "Claude Code" in out.stdout


# ----------------------------------------------------------------------------- scripts


def test_script_errors_name_file_line_and_field(tmp_path: Path) -> None:
    """A bad script raises UserError with the file, the line and the field."""
    path = tmp_path / "s.yaml"
    path.write_text(
        "sessions:\n  - match: a\n    steps:\n      - text: hi\n        write: {path: a}\n"
    )
    with pytest.raises(UserError) as info:
        load_cli_script(path)
    assert (info.value.line, info.value.field) == (5, "sessions[0].steps[0].write")
    assert "missing required field 'content'" in str(info.value)
    path.write_text("sessions:\n  - match: a\n    steps:\n      - text: hi\n        bash: ls\n")
    with pytest.raises(UserError) as info:
        load_cli_script(path)
    assert info.value.path == path
    assert info.value.line == 4
    assert "a step does one thing" in str(info.value)

    path.write_text("sessions:\n  - match: a\n")
    with pytest.raises(UserError, match="exactly one of 'steps' or 'attempts'"):
        load_cli_script(path)

    path.write_text("sessions: [\n")
    with pytest.raises(UserError, match="invalid YAML") as info:
        load_cli_script(path)
    assert info.value.line is not None


def test_step_shorthands() -> None:
    """bash: str, hang: true and crash: true expand to their full forms."""
    script = load_cli_script(
        {"default": [{"bash": "ls"}, {"hang": True}, {"crash": True}, {"cost": 0.1}]}
    )
    bash, hang, crash, cost = script.default or []
    assert bash.bash is not None and bash.bash.command == "ls"
    assert hang.hang == "forever"
    assert crash.crash == 1
    assert cost.action == "cost"


@pytest.mark.parametrize(
    ("pattern", "text", "hit"),
    [
        ("T1", "task T1", True),
        ("t1", "task T1", False),
        ("/T\\d+/", "task T42", True),
        ("/task t42/i", "TASK T42", True),
        ("/^T1$/", "xT1", False),
        ("/", "a/b", True),
    ],
)
def test_match_patterns(pattern: str, text: str, hit: bool) -> None:
    """match is a substring, or a regex when written /.../ or /.../i."""
    assert match_text(pattern, text) is hit


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40
)
_tool_name = st.from_regex(r"[A-Z][A-Za-z]{1,10}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(
    system_prompt=_text,
    model=st.one_of(st.none(), st.from_regex(r"claude-[a-z0-9-]{1,20}", fullmatch=True)),
    allowed=st.lists(_tool_name, max_size=4),
    tools=st.one_of(st.none(), st.lists(_tool_name, max_size=4)),
    max_turns=st.one_of(st.none(), st.integers(1, 500)),
    sources=st.one_of(st.none(), st.lists(st.sampled_from(["user", "project", "local"]))),
)
def test_parse_args_reads_what_the_sdk_builds(
    system_prompt: str,
    model: str | None,
    allowed: list[str],
    tools: list[str] | None,
    max_turns: int | None,
    sources: list[str] | None,
) -> None:
    """parse_args recovers the options from the exact argv the SDK's transport builds."""
    options = ClaudeAgentOptions(
        cli_path="/fake",
        system_prompt=system_prompt,
        model=model,
        allowed_tools=allowed,
        tools=tools,
        max_turns=max_turns,
        setting_sources=sources,  # type: ignore[arg-type]
        extra_args={"some-future-flag": None, "another-future": "value"},
    )
    argv = SubprocessCLITransport(prompt="", options=options)._build_command()[1:]
    args = parse_args(argv)
    assert args.system_prompt == system_prompt
    assert args.model == model
    assert args.allowed_tools == allowed
    assert args.tools == tools
    assert args.max_turns == max_turns
    assert args.setting_sources == sources
    assert (args.get("input-format"), args.get("output-format")) == ("stream-json",) * 2
    assert "--some-future-flag" in args.unknown


def test_version_flag() -> None:
    """-v prints a version like the real CLI's."""
    out = subprocess.run(
        [str(fake_cli_path()), "-v"], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.startswith("2.")


DOC = Path(__file__).resolve().parents[1] / "docs" / "offline-testing.md"


def doc_yaml(index: int) -> dict[str, Any]:
    """The index-th YAML example of docs/offline-testing.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    data: dict[str, Any] = yaml.safe_load(blocks[index])
    return data


@pytest.mark.anyio
async def test_documented_example_behaves_as_described(fake: Fake) -> None:
    """The guide's fake CLI script: attempt 1 reports failure, attempt 2 fixes and completes."""
    reports: list[tuple[str, dict[str, Any]]] = []

    @tool("report_failed", "Report failure", {"reason": str})
    async def report_failed(args: dict[str, Any]) -> dict[str, Any]:
        reports.append(("failed", args))
        return {"content": [{"type": "text", "text": "noted"}]}

    @tool("report_complete", "Report completion", {"summary": str})
    async def report_complete(args: dict[str, Any]) -> dict[str, Any]:
        reports.append(("complete", args))
        return {"content": [{"type": "text", "text": "noted"}]}

    fake.write(doc_yaml(0))
    server = create_sdk_mcp_server("conductor", tools=[report_failed, report_complete])
    options = fake.options(
        system_prompt="You are the worker for task build-api.",
        mcp_servers={"conductor": server},
        allowed_tools=["Write", "Edit", "Bash", "mcp__conductor"],
    )
    first, error = await run("Do it", options)
    assert error is None
    import_check = tool_results(first)[1]
    assert import_check.is_error and str(import_check.content).startswith("Exit code 1")
    second, error = await run("Do it", options)
    assert error is None
    assert (fake.work / "api.py").read_text() == "def handler():\n"
    assert reports == [
        ("failed", {"reason": "api.py does not import"}),
        ("complete", {"summary": "handler fixed"}),
    ]
    costs = [result_of(first).total_cost_usd, result_of(second).total_cost_usd]
    assert costs == [pytest.approx(0.02), pytest.approx(0.01)]
    assert result_of(second).result == "Done."


def test_module_docstring_example_is_valid() -> None:
    """The script in fake_cli's docstring validates."""
    from conductor.testing import fake_cli

    block = (fake_cli.__doc__ or "").split("::\n\n", 1)[1].split("\n\n", 1)[0]
    script = load_cli_script(yaml.safe_load(textwrap.dedent(block)))
    assert [rule.match for rule in script.sessions] == ["task: build-api", "/docs-\\d+/"]
