"""What a Claude attempt did, kept for a person after its worker is gone.

Beside the attempt's log (``logs/<worker>.log``) conductor writes:

- ``logs/<worker>.transcript.jsonl``: every message of the attempt's sessions as the SDK
  delivered it (assistant text and tool calls, tool results, system messages, results), one
  JSON object per line, in order;
- ``logs/<worker>.tools.jsonl``: one line per tool call: ``tool``, ``target`` (the Bash
  command, the file path, the search pattern), ``status`` (``ok``, ``error`` or ``denied``)
  and, when it was refused, ``reason``.

Refusals reach the bus as TOOL_DENIED: conductor's own file guard posts its denials as it
makes them; this module adds the CLI's permission denials (``ResultMessage
.permission_denials``) and Bash commands the sandbox stopped (their result reports a
read-only file system or a refused operation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from conductor.errors import ConductorError
from conductor.messages import MessageType
from conductor.paths import open_state_file

SANDBOX_MARKERS = ("Read-only file system", "Operation not permitted", "Permission denied")
"""Text in a failed Bash result that says the sandbox stopped the command."""

_MAX_TARGET = 500


@dataclass
class ToolCall:
    """One tool call of the attempt."""

    id: str
    """The tool_use id."""
    tool: str
    """The tool's name."""
    target: str
    """What it acted on: a command, a path, a pattern."""
    status: str = "pending"
    """``ok``, ``error``, ``denied`` (or ``pending`` when no result came)."""
    reason: str | None = None
    """Why it was denied or failed."""


def target_of(tool: str, tool_input: dict[str, Any]) -> str:
    """The one thing a person wants to see of a tool call."""
    for key in ("command", "file_path", "notebook_path", "path", "pattern", "url", "query"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value[:_MAX_TARGET]
    return json.dumps(tool_input, ensure_ascii=False, default=str)[:_MAX_TARGET]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return ""


class Transcript:
    """Records one attempt's messages and tool calls (see the module docstring)."""

    def __init__(self, log_path: Path, post: Callable[..., Any]) -> None:
        stem = log_path.name.removesuffix(".log")
        self.path = log_path.with_name(f"{stem}.transcript.jsonl")
        """The transcript file."""
        self.tools_path = log_path.with_name(f"{stem}.tools.jsonl")
        """The tool-call list."""
        self.post = post
        self.calls: dict[str, ToolCall] = {}
        """Tool calls by id, in the order they were made."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A model's text may hold lone surrogates: keep them visible, never fail on them.
        fd = open_state_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._fh = open(  # noqa: SIM115 - closed in close()
            fd, "a", encoding="utf-8", errors="backslashreplace"
        )

    def record(self, message: Any) -> None:
        """Write ``message`` to the transcript and follow its tool calls and results."""
        with contextlib.suppress(OSError, ValueError):
            is_record = dataclasses.is_dataclass(message) and not isinstance(message, type)
            data = dataclasses.asdict(message) if is_record else message
            line = json.dumps(
                {"kind": type(message).__name__, "message": data}, default=str, ensure_ascii=False
            )
            self._fh.write(line + "\n")
            self._fh.flush()
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, ToolUseBlock) and block.id not in self.calls:
                    self.calls[block.id] = ToolCall(
                        block.id, block.name, target_of(block.name, block.input)
                    )
        elif isinstance(message, UserMessage) and isinstance(message.content, list):
            for block in message.content:
                if isinstance(block, ToolResultBlock):
                    self._result(block)
        elif isinstance(message, ResultMessage):
            for denial in message.permission_denials or []:
                self._cli_denial(denial)

    def denied(self, tool_use_id: str | None, tool: str, target: str, reason: str) -> None:
        """Conductor's own guard refused this call (it posted TOOL_DENIED itself)."""
        key = tool_use_id or f"hook-{len(self.calls)}"
        call = self.calls.setdefault(key, ToolCall(key, tool, target[:_MAX_TARGET]))
        call.status, call.reason = "denied", reason

    def _result(self, block: ToolResultBlock) -> None:
        call = self.calls.get(block.tool_use_id)
        if call is None or call.status == "denied":
            return
        if not block.is_error:
            text = _text(block.content)
            sandboxed = call.tool == "Bash" and any(m in text for m in SANDBOX_MARKERS[:2])
            call.status = "ok"
            if sandboxed:
                self._deny(call, "sandbox: " + _first_line(text, SANDBOX_MARKERS[:2]))
            return
        text = _text(block.content)
        if call.tool == "Bash" and any(m in text for m in SANDBOX_MARKERS):
            self._deny(call, "sandbox: " + _first_line(text, SANDBOX_MARKERS))
        else:
            call.status, call.reason = "error", text.strip()[:300] or None

    def _cli_denial(self, denial: Any) -> None:
        tool_use_id = getattr(denial, "tool_use_id", None)
        if isinstance(denial, dict):
            tool_use_id = denial.get("tool_use_id")
        call = self.calls.get(str(tool_use_id))
        if call is not None and call.status == "denied":
            return
        if call is None:
            tool = (denial.get("tool_name") if isinstance(denial, dict) else None) or "?"
            tool_input = denial.get("tool_input") if isinstance(denial, dict) else None
            target = target_of(str(tool), tool_input if isinstance(tool_input, dict) else {})
            call = ToolCall(str(tool_use_id), str(tool), target)
            self.calls[call.id] = call
        self._deny(call, "permission denied by Claude Code")

    def _deny(self, call: ToolCall, reason: str) -> None:
        call.status, call.reason = "denied", reason
        key = "command" if call.tool == "Bash" else "path"
        with contextlib.suppress(Exception):  # a denial stands even if the bus refuses it
            self.post(
                MessageType.TOOL_DENIED,
                payload={"tool": call.tool, key: call.target, "reason": reason},
            )

    def denials(self) -> list[dict[str, str]]:
        """The refused calls, for the attempt's outcome."""
        return [
            {"tool": c.tool, "target": c.target, "reason": c.reason or ""}
            for c in self.calls.values()
            if c.status == "denied"
        ]

    def close(self) -> None:
        """Write the tool-call list and close the transcript."""
        lines = []
        for call in self.calls.values():
            record = {"tool": call.tool, "target": call.target, "status": call.status}
            if call.reason:
                record["reason"] = call.reason
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        with contextlib.suppress(OSError, ConductorError):
            fd = open_state_file(self.tools_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with open(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
                fh.writelines(lines)
        with contextlib.suppress(OSError):
            self._fh.close()


def _first_line(text: str, markers: tuple[str, ...]) -> str:
    for line in text.splitlines():
        if any(m in line for m in markers):
            return line.strip()[:300]
    return text.strip()[:300]
