"""One attempt's output for a person: ``conductor logs TRACK TASK [--attempt N] [-f]``.

A shell attempt's output is its log, ``logs/<task>.<n>.log`` (the command's output, then each
verify command and its output). A Claude attempt's log holds little (session markers and the
verify output); what it did is in its transcript, ``logs/<task>.<n>.transcript.jsonl``,
which this module renders: the assistant's text, each tool call with its Bash command or
file path, failed and denied calls with the reason, and each session's result (turns, cost,
tokens). After the output come what the bus says about the attempt: its verify results, the
tool calls that were denied (TOOL_DENIED) and its outcome.

Following (``-f``) prints output as it is written and stops when the bus records the
attempt's end, or when the conductor that ran it is gone. Text from the model is printed
with control characters made visible, so a transcript cannot drive the terminal.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conductor.bus import Bus
from conductor.errors import ConductorError, UserError
from conductor.messages import Message, MessageType
from conductor.paths import StateDir, open_state_file
from conductor.report import ENDINGS, money, seconds, tokens_text
from conductor.terminal import visible

BASH_LINES = 8
"""Lines of a Bash call's output shown under it."""

_TARGET_KEYS = ("command", "file_path", "notebook_path", "path", "pattern", "url", "query")


@dataclass
class AttemptInfo:
    """Where one attempt's records are and what the bus says about it."""

    task: str
    """The task id."""
    attempt: int
    """The attempt number."""
    worker: str
    """The worker id (``task.attempt``)."""
    executor: str
    """``shell``, ``claude`` or ``?``."""
    log: Path
    """The attempt's log."""
    transcript: Path
    """A Claude attempt's transcript (may not exist)."""
    events: list[Message] = field(default_factory=list)
    """The bus messages about the attempt, in order."""

    @property
    def end(self) -> Message | None:
        """The message that ended the attempt, if any."""
        for msg in reversed(self.events):
            if msg.type in ENDINGS:
                return msg
        return None

    def denials(self) -> list[dict[str, str]]:
        """TOOL_DENIED payloads: ``tool``, ``target``, ``reason``."""
        out = []
        for msg in self.events:
            if msg.type == MessageType.TOOL_DENIED:
                p = msg.payload
                target = p.get("command") or p.get("path") or p.get("target") or ""
                out.append(
                    {"tool": str(p.get("tool") or "?"), "target": str(target),
                     "reason": str(p.get("reason") or "")}
                )
        return out


def find_attempt(bus: Bus, sd: StateDir, task: str, attempt: int | None) -> AttemptInfo | None:
    """The attempt ``attempt`` at ``task`` (default: the latest), or None if not dispatched.

    Raises ``UserError`` when the bus never mentions ``task``.
    """
    dispatched: dict[int, Message] = {}
    events: dict[int, list[Message]] = {}
    seen = False
    for msg in bus.iter_all():
        if msg.task != task:
            continue
        seen = True
        if msg.attempt is None:
            continue
        if msg.type == MessageType.TASK_DISPATCHED:
            dispatched[msg.attempt] = msg
            events[msg.attempt] = []
        if msg.attempt in events:
            events[msg.attempt].append(msg)
    if not seen and attempt is None:
        return None
    if not dispatched:
        return None
    number = attempt if attempt is not None else max(dispatched)
    if number not in dispatched:
        if attempt is not None and attempt > max(dispatched):
            return None  # not yet: a follower waits for it
        known = ", ".join(str(n) for n in sorted(dispatched))
        raise UserError(f"task {task!r} has no attempt {number} (attempts: {known})")
    first = dispatched[number]
    worker = first.worker or f"{task}.{number}"
    return AttemptInfo(
        task=task,
        attempt=number,
        worker=worker,
        executor=str(first.payload.get("executor") or "?"),
        log=sd.logs / f"{worker}.log",
        transcript=sd.logs / f"{worker}.transcript.jsonl",
        events=events[number],
    )


def _indent(text: str, prefix: str) -> list[str]:
    return [prefix + line for line in visible(text).rstrip("\n").splitlines()] or [prefix]


def tool_label(name: str) -> str:
    """``Bash``, or ``conductor report_complete`` for ``mcp__conductor__report_complete``."""
    if name.startswith("mcp__"):
        server, _, tool = name[5:].partition("__")
        return f"{server} {tool}" if tool else name
    return name


def tool_target(name: str, tool_input: Any) -> str:
    """The one thing a person wants to see of a tool call: a command, a path, a pattern."""
    if not isinstance(tool_input, dict):
        return ""
    for key in _TARGET_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return value
    if name.startswith("mcp__"):
        for key in ("summary", "message", "reason", "path"):
            value = tool_input.get(key)
            if isinstance(value, str) and value:
                return value
    return json.dumps(tool_input, ensure_ascii=False, default=str)[:300]


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict)
        )
    return ""


class TranscriptRenderer:
    """Turns transcript records (``{"kind", "message"}`` lines) into lines for a person."""

    def __init__(self, denials: Callable[[], list[dict[str, str]]] = list) -> None:
        self.denials = denials
        """The attempt's TOOL_DENIED records so far (to tell a denial from an error)."""
        self.calls: dict[str, tuple[str, str]] = {}
        """Tool calls by id: (tool, target)."""
        self.results: dict[str, tuple[str, str | None]] = {}
        """Tool results by call id: (``ok``, ``error`` or ``denied``; the reason)."""
        self.sessions = 0

    def tool_calls(self) -> list[dict[str, str | None]]:
        """Every tool call seen so far: ``tool``, ``target``, ``status``, ``reason``."""
        out: list[dict[str, str | None]] = []
        for call_id, (tool, target) in self.calls.items():
            status, reason = self.results.get(call_id, ("pending", None))
            out.append({"tool": tool, "target": target, "status": status, "reason": reason})
        return out

    def feed(self, record: Any) -> list[str]:
        """The lines one record renders to (possibly none)."""
        if not isinstance(record, dict):
            return []
        kind = record.get("kind")
        msg = record.get("message")
        if not isinstance(msg, dict):
            return []
        if kind == "SystemMessage":
            return self._system(msg)
        if kind == "AssistantMessage":
            return self._assistant(msg)
        if kind == "UserMessage":
            return self._user(msg)
        if kind == "ResultMessage":
            return self._result(msg)
        return []

    def _system(self, msg: dict[str, Any]) -> list[str]:
        subtype = str(msg.get("subtype") or "")
        data = msg.get("data") if isinstance(msg.get("data"), dict) else {}
        assert isinstance(data, dict)
        if subtype == "init":
            self.sessions += 1
            bits = [f"session {self.sessions}"]
            if data.get("model"):
                bits.append(f"model {data['model']}")
            if data.get("permissionMode"):
                bits.append(f"permissions {data['permissionMode']}")
            return ["", visible(f"── {' · '.join(bits)} ──")]
        if subtype == "api_retry":
            return [visible(f"· API retry: {json.dumps(data, default=str)[:200]}")]
        return []

    def _assistant(self, msg: dict[str, Any]) -> list[str]:
        lines: list[str] = []
        if msg.get("error"):
            lines.append(visible(f"assistant error: {msg['error']}"))
        for block in msg.get("content") or []:
            if not isinstance(block, dict):
                continue
            if "text" in block and isinstance(block["text"], str):
                text = block["text"].strip()
                if text:
                    first, *rest = visible(text).splitlines()
                    lines.append(f"assistant: {first}")
                    lines.extend(f"           {line}" for line in rest)
            elif "thinking" in block:
                thought = " ".join(str(block["thinking"]).split())
                if thought:
                    more = "…" if len(thought) > 200 else ""
                    lines.append(visible(f"thinking: {thought[:200]}{more}"))
            elif "name" in block and "id" in block:
                name = str(block["name"])
                target = tool_target(name, block.get("input"))
                self.calls[str(block["id"])] = (name, target)
                shown = " ".join(target.split()) if name != "Bash" else target
                head, *rest = visible(shown).splitlines() or [""]
                lines.append(f"  ▸ {tool_label(name)}: {head}".rstrip())
                lines.extend(f"      {line}" for line in rest[:BASH_LINES])
        return lines

    def _user(self, msg: dict[str, Any]) -> list[str]:
        content = msg.get("content")
        if isinstance(content, str):
            return _indent(content[:500], "user: ")
        lines: list[str] = []
        for block in content or []:
            if not isinstance(block, dict) or "tool_use_id" not in block:
                continue
            call_id = str(block["tool_use_id"])
            tool, target = self.calls.get(call_id, ("?", ""))
            text = _content_text(block.get("content")).strip()
            if block.get("is_error"):
                denial = self._denial(tool, target)
                if denial is not None:
                    self.results[call_id] = ("denied", denial)
                    lines.append(visible(f"    ✗ denied: {denial}"))
                else:
                    first = text.splitlines()[0] if text else "failed"
                    self.results[call_id] = ("error", first[:300])
                    lines.append(visible(f"    ✗ error: {first[:300]}"))
                continue
            self.results[call_id] = ("ok", None)
            if tool == "Bash" and text:
                out = text.splitlines()
                lines.extend(_indent("\n".join(out[:BASH_LINES]), "    │ "))
                if len(out) > BASH_LINES:
                    lines.append(f"    │ … {len(out) - BASH_LINES} more lines")
        return lines

    def _denial(self, tool: str, target: str) -> str | None:
        for d in self.denials():
            if d["tool"] == tool and (d["target"] == target or not d["target"]):
                return d["reason"] or "denied"
        return None

    def _result(self, msg: dict[str, Any]) -> list[str]:
        bits = [str(msg.get("subtype") or "result")]
        if msg.get("is_error"):
            bits[0] += " (error)"
        if msg.get("num_turns") is not None:
            bits.append(f"{msg['num_turns']} turns")
        cost = msg.get("total_cost_usd")
        if isinstance(cost, int | float):
            bits.append(money(float(cost)))
        usage = msg.get("usage")
        if isinstance(usage, dict):
            tok = tokens_text({k: v for k, v in usage.items() if isinstance(v, int)})
            if tok:
                bits.append(tok + " tokens")
        denied = msg.get("permission_denials") or []
        if denied:
            bits.append(f"{len(denied)} permission denials")
        lines = [visible(f"result: {' · '.join(bits)}")]
        if msg.get("is_error") and isinstance(msg.get("result"), str):
            lines.extend(_indent(str(msg["result"])[:500], "        "))
        return lines


class LineReader:
    """Reads complete new lines of a growing state file (never through a symlink)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = b""
        self.refused: str | None = None
        """Why the file was not read (a symlink or FIFO planted under its name), or None."""

    def read(self, *, final: bool = False) -> list[str]:
        """New complete lines; with ``final`` also a last line without its newline."""
        chunk = self._read_new()
        data = self._partial + chunk
        if final:
            # Lines end at "\n" only, as while following: a "\r" stays in its line (shown).
            self._partial = b""
            lines = data.decode("utf-8", "replace").split("\n")
            return lines[:-1] if lines[-1] == "" else lines
        cut = data.rfind(b"\n")
        if cut < 0:
            self._partial = data
            return []
        self._partial = data[cut + 1 :]
        return data[:cut].decode("utf-8", "replace").split("\n")

    def _read_new(self) -> bytes:
        try:
            fd = open_state_file(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return b""
        except ConductorError as exc:
            self.refused = exc.message
            return b""
        with os.fdopen(fd, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read()
        self.offset += len(data)
        return data


def transcript_lines(reader: LineReader, renderer: TranscriptRenderer, *, final: bool) -> list[str]:
    """Render whatever complete records ``reader`` has now."""
    out: list[str] = []
    for line in reader.read(final=final):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            out.append(visible(f"(unreadable transcript line: {line[:120]})"))
            continue
        out.extend(renderer.feed(record))
    return out


def header(info: AttemptInfo) -> str:
    """``attempt 2 of task greeting (greeting.2, claude)``."""
    return f"attempt {info.attempt} of task {info.task} ({info.worker}, {info.executor})"


def closing(info: AttemptInfo, *, log_text: str | None, gone: bool = False) -> list[str]:
    """What follows the output: the log (Claude), verify results, denials, the outcome."""
    lines: list[str] = []
    if log_text is not None and log_text.strip():
        lines += ["", "── log ──", *visible(log_text.rstrip("\n")).splitlines()]
    verify = [m.payload for m in info.events if m.type == MessageType.VERIFY_RESULT]
    if verify:
        lines += ["", "── verify ──"]
        for v in verify:
            mark = "✓" if v.get("ok") else "✗"
            tail = "" if v.get("ok") else f"  (exit {v.get('exit_code')})"
            dur = v.get("duration")
            took = f"  {seconds(float(dur))}" if isinstance(dur, int | float) else ""
            lines.append(visible(f"{mark} {v.get('command', '')}{tail}{took}"))
    denials = info.denials()
    if denials:
        lines += ["", f"── denied ({len(denials)}) ──"]
        for d in denials:
            lines.append(visible(f"✗ {d['tool']} {d['target']}: {d['reason']}"))
    lines += ["", outcome_line(info, gone=gone)]
    return lines


def outcome_line(info: AttemptInfo, *, gone: bool = False) -> str:
    """``outcome: complete in 0.5s, $0.0150, commit 250877dbfdb2`` (or why it failed)."""
    end = info.end
    if end is None:
        if gone:
            return (
                "outcome: unfinished (the conductor that ran it is gone; `conductor run` resumes)"
            )
        return "outcome: still running (no end on the bus yet)"
    p = end.payload
    what = ENDINGS[MessageType(end.type)]
    bits = []
    if isinstance(p.get("duration"), int | float):
        bits.append(f"in {seconds(float(p['duration']))}")
    if isinstance(p.get("cost_usd"), int | float) and p["cost_usd"]:
        bits.append(money(float(p["cost_usd"])))
    usage = p.get("usage")
    if isinstance(usage, dict):
        tok = tokens_text({k: v for k, v in usage.items() if isinstance(v, int)})
        if tok:
            bits.append(tok + " tokens")
    if isinstance(p.get("commit"), str):
        bits.append(f"commit {p['commit'][:12]}")
    line = f"outcome: {what}" + (f" {', '.join(bits)}" if bits else "")
    why = p.get("error") or p.get("reason")
    if what != "complete" and why:
        line += f"\n  why: {why}"
    return visible(line)


def attempt_data(info: AttemptInfo, *, gone: bool = False) -> dict[str, Any]:
    """The attempt as one JSON-ready object (``conductor logs --json``)."""
    renderer = TranscriptRenderer(info.denials)
    has_transcript = info.transcript.exists()
    if has_transcript:
        transcript_lines(LineReader(info.transcript), renderer, final=True)
    end = info.end
    outcome = ENDINGS[MessageType(end.type)] if end is not None else (
        "unfinished" if gone else "running"
    )
    return {
        "task": info.task,
        "attempt": info.attempt,
        "worker": info.worker,
        "executor": info.executor,
        "outcome": outcome,
        "log": str(info.log),
        "transcript": str(info.transcript) if has_transcript else None,
        "output": "\n".join(LineReader(info.log).read(final=True)),
        "tool_calls": renderer.tool_calls(),
        "verify": [m.payload for m in info.events if m.type == MessageType.VERIFY_RESULT],
        "denials": info.denials(),
        "end": end.to_dict() if end is not None else None,
    }


def render_attempt(info: AttemptInfo, *, gone: bool = False) -> Iterator[str]:
    """The whole attempt as it stands now (``conductor logs`` without ``-f``); ``gone``: the
    conductor that ran the track is gone, so an attempt without an end is unfinished."""
    yield header(info)
    if info.transcript.exists() or info.executor == "claude":
        renderer = TranscriptRenderer(info.denials)
        transcript, log = LineReader(info.transcript), LineReader(info.log)
        yield from transcript_lines(transcript, renderer, final=True)
        log_text = "\n".join(log.read(final=True))
        for reader in (transcript, log):
            if reader.refused:
                yield visible(f"(not shown: {reader.refused})")
        yield from closing(info, log_text=log_text, gone=gone)
    else:
        reader = LineReader(info.log)
        yield from (visible(line) for line in reader.read(final=True))
        if reader.refused:
            yield visible(f"(output not shown: {reader.refused})")
        yield from closing(info, log_text=None, gone=gone)


def follow_attempt(
    bus: Bus,
    sd: StateDir,
    task: str,
    attempt: int | None,
    emit: Callable[[str], None],
    *,
    alive: Callable[[], bool],
    poll: float = 0.2,
    waiting: Callable[[str], None] | None = None,
) -> AttemptInfo | None:
    """Print the attempt's output as it is written until the bus records its end.

    Waits for the attempt to be dispatched if it has not been yet, also before any conductor
    runs the track. ``alive()`` says whether a conductor runs the track; when one that was
    running stops before the attempt starts or ends, the follow stops too (returns the
    attempt as far as it got, or None if it never started).
    """
    info = find_attempt(bus, sd, task, attempt)
    said_waiting = False
    seen_alive = False
    while info is None:
        if alive():
            seen_alive = True
        elif seen_alive:
            return None
        if waiting is not None and not said_waiting:
            waiting(f"waiting for task {task} to start… (Ctrl-C to stop)")
            said_waiting = True
        time.sleep(poll)
        info = find_attempt(bus, sd, task, attempt)
    emit(header(info))
    claude = info.executor == "claude"
    renderer = TranscriptRenderer(info.denials)
    reader = LineReader(info.transcript if claude else info.log)
    cursor = info.events[-1].seq if info.events else 0
    last_check = time.monotonic()
    while True:
        for msg in _newer(bus, cursor):
            cursor = msg.seq
            if msg.task == info.task and msg.attempt == info.attempt:
                info.events.append(msg)
        ended = info.end is not None
        gone = False
        if not ended and time.monotonic() - last_check > 2.0:
            last_check = time.monotonic()
            gone = not alive()
        lines = (
            transcript_lines(reader, renderer, final=ended or gone)
            if claude
            else reader.read(final=ended or gone)
        )
        for line in lines:
            emit(line if claude else visible(line))
        if ended or gone:
            if reader.refused:
                emit(visible(f"(output not shown: {reader.refused})"))
            break
        time.sleep(poll)
    log_text = "\n".join(LineReader(info.log).read(final=True)) if claude else None
    for line in closing(info, log_text=log_text, gone=gone):
        emit(line)
    return info


def _newer(bus: Bus, cursor: int) -> Iterable[Message]:
    return bus.read(after=cursor, limit=1000)
