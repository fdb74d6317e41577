"""The tools conductor serves to a Claude worker, in-process, as the MCP server ``conductor``.

The model sees them as ``mcp__conductor__<name>``; all are auto-allowed for the session:

- ``report_progress(message, percent?)``: a PROGRESS message on the bus;
- ``lock_file(path)`` / ``unlock_file(path)``: take or give back this worker's lock on a
  repository path (a refusal comes back as an error result; locks post LOCK_DENIED);
- ``read_messages(since_seq?)``: messages a person or the conductor addressed to this task or
  to the whole track (NOTE, APPROVE, SKIP, GUIDANCE, BLOCKED), as text;
- ``report_complete(summary, files_changed, notes?)``: a CLAIM_COMPLETE. Only a claim: the
  executor checks it against observed evidence and the conductor runs ``verify``;
- ``report_failed(reason)``: a CLAIM_FAILED.

Every tool acts as the one worker it was built for (``WorkerBinding``): nothing the model
passes can name another worker, task or attempt.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from claude_agent_sdk import McpSdkServerConfig, SdkMcpTool, create_sdk_mcp_server, tool

from conductor.contract import (
    LOCK_FILE,
    READ_MESSAGES,
    READABLE_TYPES,
    REPORT_COMPLETE,
    REPORT_FAILED,
    REPORT_PROGRESS,
    SERVER_KEY,
    UNLOCK_FILE,
)
from conductor.errors import ConductorError
from conductor.executors.evidence import Claim, Evidence, matches_globs, repo_relative
from conductor.messages import Message, MessageType

_MAX_READ = 50
_MAX_TEXT = 4000


@dataclass
class WorkerBinding:
    """The one worker a server's tools act for."""

    worker: str
    """Worker id (``<task>.<attempt>``)."""
    task: str
    """Its task id."""
    attempt: int
    """Its attempt number."""
    repo: Path
    """The repository checkout."""
    globs: tuple[str, ...]
    """The task's ``files`` (empty: unconfined)."""
    post: Callable[..., Message]
    """Posts a message as this worker."""
    evidence: Evidence
    """Where claims are recorded."""
    locks: Any | None = None
    """The track's ``PathLocks``, when the run has them."""
    bus: Any | None = None
    """The track's ``Bus`` (for ``read_messages``), when the run has one."""
    cursor: int = 0
    """Last sequence number ``read_messages`` returned."""


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["is_error"] = True
    return result


def _clip(value: Any, limit: int = _MAX_TEXT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    # Lone surrogates from a model cannot go on the bus: show them, escaped.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [_clip(str(v), 1000) for v in value if isinstance(v, str | int | float)]
    return []


def format_message(msg: Message) -> str:
    """One bus message as a line the model can read."""
    payload = dict(msg.payload)
    body = payload.pop("text", None) or payload.pop("message", None) or payload.pop("reason", None)
    who = payload.pop("author", None) or msg.worker or "person"
    scope = f"task {msg.task}" if msg.task else "whole track"
    line = f"#{msg.seq} {msg.type} ({scope}, from {who})"
    if body:
        line += f": {_clip(body)}"
    if payload:
        line += f" {_clip(payload, 600)}"
    return line


def relevant_messages(messages: Sequence[Message], binding: WorkerBinding) -> list[Message]:
    """Messages addressed to the binding's task or to the whole track, without noise."""
    keep: list[Message] = []
    for msg in messages:
        if msg.type not in READABLE_TYPES or msg.worker == binding.worker:
            continue
        if msg.task not in (None, binding.task):
            continue
        keep.append(msg)
    return keep


def build_tools(binding: WorkerBinding) -> list[SdkMcpTool[Any]]:
    """The bus tools, bound to ``binding``."""

    def check_path(raw: Any) -> tuple[str | None, str | None]:
        if not isinstance(raw, str) or not raw.strip():
            return None, "path must be a non-empty string"
        where = repo_relative(binding.repo, raw.strip())
        if where.reason is not None or where.rel is None:
            return None, where.reason or "invalid path"
        if binding.globs and not matches_globs(where.rel, binding.globs):
            return None, (
                f"{where.rel} is outside this task's files ({', '.join(binding.globs)}); "
                "you may only lock files your task may change"
            )
        return where.rel, None

    @tool(
        REPORT_PROGRESS,
        "Tell the conductor how the task is going (shown to the person running the track).",
        {
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "What you are doing or did."},
                "percent": {"type": "number", "description": "Rough completion, 0-100."},
            },
            "required": ["message"],
        },
    )
    async def report_progress(args: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": _clip(args.get("message", "")), "source": "worker"}
        percent = args.get("percent")
        if isinstance(percent, int | float) and not isinstance(percent, bool):
            payload["percent"] = max(0.0, min(100.0, float(percent)))
        binding.post(MessageType.PROGRESS, payload=payload)
        return _text("Progress recorded.")

    @tool(
        LOCK_FILE,
        "Lock a repository file (path relative to the repository) so no other worker edits it "
        "while you do. Fails if another worker holds it.",
        {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Repository path."}},
            "required": ["path"],
        },
    )
    async def lock_file(args: dict[str, Any]) -> dict[str, Any]:
        rel, reason = check_path(args.get("path"))
        if reason is not None or rel is None:
            return _text(f"Lock refused: {reason}", error=True)
        if binding.locks is None:
            return _text(f"Locks are not enabled for this run; {rel} is yours to edit.")
        locks = binding.locks
        try:
            await anyio.to_thread.run_sync(
                lambda: locks.acquire(
                    rel, worker=binding.worker, task=binding.task, attempt=binding.attempt
                )
            )
        except ConductorError as exc:
            return _text(f"Lock refused: {exc}", error=True)
        return _text(f"Locked {rel} for you ({binding.worker}).")

    @tool(
        UNLOCK_FILE,
        "Release a lock you hold on a repository file.",
        {
            "type": "object",
            "properties": {"path": {"type": "string", "description": "Repository path."}},
            "required": ["path"],
        },
    )
    async def unlock_file(args: dict[str, Any]) -> dict[str, Any]:
        raw = args.get("path")
        if not isinstance(raw, str) or not raw.strip():
            return _text("Unlock refused: path must be a non-empty string", error=True)
        where = repo_relative(binding.repo, raw.strip())
        if where.rel is None:
            return _text(f"Unlock refused: {where.reason}", error=True)
        if binding.locks is None:
            return _text("Locks are not enabled for this run.")
        locks = binding.locks
        rel = where.rel
        holder = await anyio.to_thread.run_sync(lambda: locks.holder(rel))
        if holder is None:
            return _text(f"{rel} is not locked.")
        if getattr(holder, "worker", None) != binding.worker:
            return _text(
                f"Unlock refused: {rel} is held by {getattr(holder, 'worker', '?')}, not by you",
                error=True,
            )
        try:
            await anyio.to_thread.run_sync(lambda: locks.release(rel, worker=binding.worker))
        except ConductorError as exc:
            return _text(f"Unlock refused: {exc}", error=True)
        return _text(f"Released {rel}.")

    @tool(
        READ_MESSAGES,
        "Read notes, approvals and guidance addressed to your task or the whole track. "
        "Without since_seq, returns what is new since your last call.",
        {
            "type": "object",
            "properties": {
                "since_seq": {
                    "type": "integer",
                    "description": "Only messages after this sequence number.",
                }
            },
        },
    )
    async def read_messages(args: dict[str, Any]) -> dict[str, Any]:
        if binding.bus is None:
            return _text("No messages: the bus is not available to this session.")
        since = args.get("since_seq")
        after = since if isinstance(since, int) and not isinstance(since, bool) else binding.cursor
        after = max(0, after)
        bus = binding.bus
        messages: list[Message] = await anyio.to_thread.run_sync(
            lambda: list(bus.read(after=after))
        )
        if messages:
            binding.cursor = max(binding.cursor, max(m.seq for m in messages))
        keep = relevant_messages(messages, binding)[-_MAX_READ:]
        if not keep:
            return _text(
                f"No new messages for task {binding.task} (checked up to #{binding.cursor})."
            )
        lines = [format_message(m) for m in keep]
        lines.append(
            f"(read up to #{binding.cursor}; pass since_seq={binding.cursor} to read newer)"
        )
        return _text("\n".join(lines))

    @tool(
        REPORT_COMPLETE,
        "Report that your task is done. This is a claim: the conductor checks the files you "
        "changed and runs the task's verify commands before accepting it.",
        {
            "type": "object",
            "properties": {
                "summary": {"type": "string", "description": "What you did, in a few lines."},
                "files_changed": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Repository paths you created, changed or deleted.",
                },
                "notes": {"type": "string", "description": "Anything a reviewer should know."},
            },
            "required": ["summary", "files_changed"],
        },
    )
    async def report_complete(args: dict[str, Any]) -> dict[str, Any]:
        summary = _clip(args.get("summary", ""))
        files = _str_list(args.get("files_changed"))[:500]
        notes = args.get("notes")
        claim = Claim(
            complete=True,
            summary=summary,
            files_changed=files,
            notes=_clip(notes) if isinstance(notes, str) else None,
        )
        binding.evidence.claim = claim
        payload: dict[str, Any] = {"summary": summary, "files_changed": files}
        if claim.notes:
            payload["notes"] = claim.notes
        binding.post(MessageType.CLAIM_COMPLETE, payload=payload)
        return _text(
            "Completion recorded. The conductor will check your changes and run the task's "
            "verify commands. End your turn now."
        )

    @tool(
        REPORT_FAILED,
        "Report that you cannot complete your task, and why.",
        {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a few lines."}},
            "required": ["reason"],
        },
    )
    async def report_failed(args: dict[str, Any]) -> dict[str, Any]:
        reason = _clip(args.get("reason", "")) or "no reason given"
        binding.evidence.claim = Claim(complete=False, summary=reason)
        binding.post(MessageType.CLAIM_FAILED, payload={"reason": reason})
        return _text("Failure recorded. End your turn now.")

    return [report_progress, lock_file, unlock_file, read_messages, report_complete, report_failed]


def build_bus_server(binding: WorkerBinding) -> McpSdkServerConfig:
    """The in-process MCP server ``conductor`` for one worker."""
    return create_sdk_mcp_server(name=SERVER_KEY, tools=build_tools(binding))
