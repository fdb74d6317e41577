"""One question to Claude whose answer is JSON: how the planner, agent inference and reviews
ask.

The session is read-only: its tools are ``Read``, ``Grep`` and ``Glob`` (no edits, no Bash,
no web), it loads no settings files, it has its own config and temp directories, and it
answers through the SDK's structured output (``output_format`` with a JSON schema), so the
answer arrives as data in the result, never parsed out of prose. It runs through the same CLI
as task sessions (``CONDUCTOR_CLAUDE_CLI``, ``claude_executor_from_env``), so the offline fake
answers it too: a fake script's ``result: {structured_output: ...}`` step is the answer.

A session that fails, or answers with nothing, raises ``AskError`` carrying what it cost; the
caller decides what a failure means (a fallback, another round, a failed review).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conductor.errors import ConductorError

if TYPE_CHECKING:
    from conductor.executors.evidence import ReadGuard

READ_ONLY_TOOLS = ("Read", "Grep", "Glob")
"""The tools a question may use: it reads the repository, it changes nothing."""


class AskError(ConductorError):
    """A question got no usable answer (the session failed, or answered without data)."""

    def __init__(self, message: str, *, cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.cost_usd = cost_usd


@dataclass(frozen=True)
class Answer:
    """What a question returned."""

    data: Any
    """The structured answer (checked against the schema by the CLI, again by the caller)."""
    cost_usd: float = 0.0
    """What the session cost."""
    session_id: str | None = None
    """The session's id, for the record."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Token usage as the CLI reported it."""


async def ask(
    question: str,
    schema: dict[str, Any],
    *,
    system: str,
    cwd: Path,
    model: str | None = None,
    max_budget_usd: float | None = None,
    max_turns: int = 30,
    log_path: Path | None = None,
    state_root: Path | None = None,
) -> Answer:
    """Ask ``question`` in a read-only session working in ``cwd``; return its JSON answer.

    With ``state_root`` (conductor's state), the session's reads stay out of it
    (``evidence.ReadGuard``), apart from ``cwd`` itself when that lies inside (a reviewed
    attempt's copy).
    """
    from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKError, ResultMessage, query

    from conductor.executors.claude import claude_executor_from_env, isolated_env

    guard = None if state_root is None else _read_guard(state_root, cwd)
    executor = claude_executor_from_env()
    with tempfile.TemporaryDirectory(prefix="conductor-ask-") as scratch:
        config_dir = Path(scratch) / "claude-config"
        tmp_dir = Path(scratch) / "tmp"
        for d in (config_dir, tmp_dir):
            d.mkdir(mode=0o700)
        options = ClaudeAgentOptions(
            tools=list(READ_ONLY_TOOLS),
            allowed_tools=list(READ_ONLY_TOOLS),
            system_prompt=system,
            permission_mode="default",
            setting_sources=[],
            max_turns=max_turns,
            max_budget_usd=max_budget_usd,
            model=model,
            cwd=cwd,
            cli_path=executor.cli_path,
            env=isolated_env(executor.extra_env, config_dir, tmp_dir),
            output_format={"type": "json_schema", "schema": schema},
            stderr=_stderr_to(log_path),
            hooks=None if guard is None else {"PreToolUse": [_refusing(guard, cwd)]},
            disallowed_tools=[] if guard is None else guard.deny_rules(),
        )
        result: ResultMessage | None = None
        try:
            # Drained to the end: leaving the iterator early leaks the CLI process.
            async for message in query(prompt=question, options=options):
                if isinstance(message, ResultMessage):
                    result = message
        except ClaudeSDKError as exc:
            cost = float(result.total_cost_usd or 0.0) if result is not None else 0.0
            raise AskError(f"the session failed: {exc}", cost_usd=cost) from exc
    if result is None:
        raise AskError("the session ended without a result")
    cost = float(result.total_cost_usd or 0.0)
    if result.is_error or result.subtype != "success":
        why = result.result or result.subtype
        raise AskError(f"the session failed: {why}", cost_usd=cost)
    if result.structured_output is None:
        raise AskError("the session answered without structured output", cost_usd=cost)
    return Answer(
        data=result.structured_output,
        cost_usd=cost,
        session_id=result.session_id,
        usage=dict(result.usage or {}),
    )


def _read_guard(state_root: Path, cwd: Path) -> ReadGuard:
    """Reads kept out of ``state_root``, but ``cwd`` when it lies inside (a reviewed copy)."""
    from conductor.executors.evidence import ReadGuard

    inside = cwd.resolve().is_relative_to(state_root.resolve())
    return ReadGuard(hidden=(state_root,), open=(cwd,) if inside else ())


def _refusing(guard: ReadGuard, cwd: Path) -> Any:
    """A PreToolUse hook matcher refusing the reads ``guard`` refuses."""
    from claude_agent_sdk import HookMatcher

    from conductor.executors.evidence import GUARDED_MATCHER, denial

    async def refuse_state_reads(data: Any, _tool_use_id: str | None, _context: Any) -> Any:
        tool_input = data.get("tool_input")
        name = str(data.get("tool_name", ""))
        here = Path(data["cwd"]) if isinstance(data.get("cwd"), str) else cwd
        try:
            refused = guard.check(name, dict(tool_input), here) if tool_input else None
        except Exception as exc:  # fail closed
            refused = ("", f"conductor could not check this read ({exc})")
        return {} if refused is None else denial(refused[1])

    return HookMatcher(matcher=GUARDED_MATCHER, hooks=[refuse_state_reads])


def _stderr_to(log_path: Path | None) -> Any:
    if log_path is None:
        return None

    def write(line: str) -> None:
        with log_path.open("a", encoding="utf-8") as log:
            log.write(line.rstrip("\n") + "\n")

    return write
