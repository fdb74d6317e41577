"""A fake ``claude`` executable that speaks the Agent SDK's stream-json protocol, offline.

Point ``ClaudeAgentOptions(cli_path=fake_cli_path(), env={"CONDUCTOR_FAKE_SCRIPT": ...})`` at it
and the real ``claude_agent_sdk`` runs a session against it: the ``initialize`` handshake, the
prompt, in-process MCP tools (``create_sdk_mcp_server``) called through ``mcp_message`` control
requests, ``PreToolUse``/``PostToolUse`` hooks and ``can_use_tool`` asked before every tool,
then ``system``/``init``, ``assistant``, ``user`` (tool results) and ``result`` messages. No
network, no API key, ~0.2 s per session.

What the "model" does comes from a script, ``$CONDUCTOR_FAKE_SCRIPT`` (YAML or JSON)::

    model: claude-sonnet-4-5          # reported when the session does not choose one
    sessions:                          # rules, tried in order; the first match wins
      - match: "task: build-api"      # substring of system prompt + "\\n" + prompt,
        attempts:                      #   or /regex/ (/regex/i)
          - - text: "Writing the handler."         # attempt 1 (1st matching session)
            - write: {path: api.py, content: "def handler(): ...\\n"}
            - bash: "python -c 'import api'"
            - mcp: {tool: report_failed, input: {reason: "tests fail"}}
              cost: 0.02                            # cost rides on any step
          - - edit: {path: api.py, old_string: "...", new_string: "return 1"}
            - mcp: {tool: report_complete, input: {summary: "done"}}   # attempt 2 and later
            - cost: 0.01
      - match: "/docs-\\\\d+/"
        steps:                         # the same for every matching session
          - api_retry: {attempt: 1, status: 529}
          - error: {message: "Overloaded", api_error_status: 529}
    default:                           # no rule matched (default: one short text)
      - text: "Nothing to do."

Steps (one action each, plus an optional ``cost``):

- ``text: str``: an assistant message; the last one is the result's text.
- ``mcp: {tool, input, server}``: call an in-process SDK MCP tool (``mcp__<server>__<tool>``).
- ``write: {path, content}`` / ``edit: {path, old_string, new_string, replace_all}`` /
  ``bash: "cmd"`` (or ``{command, timeout}``) / ``tool: {name, input, result, is_error}``:
  a built-in tool call. Like the real CLI, each call first runs the matching ``PreToolUse``
  hooks (``hook_callback``; a deny becomes an error tool result and a ``permission_denials``
  entry), then the permission rules (``--permission-mode``, ``--allowedTools``,
  ``--disallowedTools``), then ``can_use_tool`` when the SDK has one; only an allowed call
  runs (files relative to the session's cwd), then ``PostToolUse`` hooks. ``tool`` runs
  nothing and returns its canned ``result``.
- ``cost: usd``: add to the cumulative ``total_cost_usd`` (``--max-budget-usd`` is enforced:
  ``error_max_budget_usd``). Each assistant message is one turn (``--max-turns`` is
  enforced: ``error_max_turns``, ``num_turns = max_turns + 1``).
- ``sleep: seconds``; ``api_retry: {attempt, max_retries, status, delay_ms}`` (a
  ``system``/``api_retry`` message); ``error: {message, api_error_status, resets_in}`` (an
  ``api_error`` result: subtype ``success``, ``is_error`` true; exit 1 at end of input, so the
  SDK raises ``ResultError``; a null status is "Not logged in", ``resets_in`` a usage limit
  announced by a ``rate_limit_event``); ``result: {subtype, is_error, result,
  terminal_reason, errors, structured_output}`` (end the turn with that result;
  ``structured_output`` is the answer a ``--json-schema`` session returns); ``exit: code``
  (result, then exit at once); ``crash: true|code`` (exit abruptly, no result);
  ``hang: true|forever|eof|unkillable`` (never finish).

``attempts`` are counted per rule across processes in a state file beside the script
(``<script>.state.json``, or ``$CONDUCTOR_FAKE_STATE``) under a file lock. Each prompt of a
session picks its rule afresh and counts as one attempt.

``$CONDUCTOR_FAKE_LOG`` names a JSONL file that receives one record per event: ``start``
(argv, parsed arguments, cwd, pid, environment with secrets masked), ``recv`` (every message
the SDK wrote to stdin), ``send`` (every message written to stdout), ``rule`` (which rule and
attempt a prompt got), ``exit``. ``read_fake_log(path)`` parses it. The ``system``/``init``
message carries ``fake_pid``, ``fake_rule`` and ``fake_attempt``.

The fake is not the real CLI: it has no model, no read-only command classifier (``Bash`` needs
permission like any other tool), no "read before write" rule, and it calls only
``PreToolUse``/``PostToolUse`` hooks. External (non-SDK) MCP servers are reported as failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from filelock import FileLock

from conductor.atomic import write_atomic
from conductor.contract import ENV_PREFIX
from conductor.errors import ConductorError
from conductor.testing.script import (
    CliRule,
    CliScript,
    CliStep,
    McpAction,
    load_cli_script,
    match_text,
    text_of,
)

__all__ = [
    "ENV_LOG",
    "ENV_SCRIPT",
    "ENV_STATE",
    "FAKE_CLI_VERSION",
    "CliArgs",
    "fake_cli_path",
    "main",
    "parse_args",
    "read_fake_log",
]

FAKE_CLI_VERSION = "2.1.330"
"""The Claude Code version the fake reports (the SDK warns below 2.0.0)."""
ENV_SCRIPT = "CONDUCTOR_FAKE_SCRIPT"
"""Environment variable naming the script file."""
ENV_LOG = "CONDUCTOR_FAKE_LOG"
"""Environment variable naming the JSONL event log."""
ENV_STATE = "CONDUCTOR_FAKE_STATE"
"""Environment variable naming the attempt-counter file (default: beside the script)."""

DEFAULT_MODEL = "claude-sonnet-4-5"
# fmt: off
DEFAULT_TOOLS = (
    "Task", "Bash", "Glob", "Grep", "Read", "Edit", "Write", "NotebookEdit", "WebFetch",
    "WebSearch", "TodoWrite", "Skill",
)
# fmt: on
EDIT_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
MCP_PROTOCOL_VERSION = "2025-11-25"
CONTROL_TIMEOUT = 60.0
_MODEL_ACTIONS = frozenset({"text", "mcp", "write", "edit", "bash", "tool"})
"""Actions that are an assistant message (a model turn)."""

# fmt: off
_VALUE_FLAGS = frozenset({
    "--output-format", "--input-format", "--system-prompt", "--system-prompt-file",
    "--append-system-prompt", "--append-system-prompt-file", "--model", "--fallback-model",
    "--max-turns", "--max-budget-usd", "--task-budget", "--mcp-config", "--permission-mode",
    "--permission-prompt-tool", "--allowedTools", "--allowed-tools", "--disallowedTools",
    "--disallowed-tools", "--tools", "--setting-sources", "--settings", "--add-dir", "--resume",
    "--session-id", "--resume-session-at", "--resume-drops-turn", "--plugin-dir", "--betas",
    "--json-schema", "--max-thinking-tokens", "--thinking", "--thinking-display", "--effort",
    "--agents", "--debug-file",
})
"""Flags that take a value (``--flag value`` or ``--flag=value``)."""
_BOOL_FLAGS = frozenset({
    "--verbose", "--print", "-p", "--continue", "-c", "--include-partial-messages",
    "--include-hook-events", "--strict-mcp-config", "--fork-session", "--session-mirror",
    "--dangerously-skip-permissions", "--replay-user-messages", "--debug",
})
# fmt: on
_LIST_FLAGS = frozenset({"--add-dir", "--plugin-dir"})
_SECRET_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)


# --------------------------------------------------------------------------- arguments


@dataclass
class CliArgs:
    """The command line the SDK built, as the fake understood it."""

    values: dict[str, Any] = field(default_factory=dict)
    """Every ``--flag value`` (repeatable flags as lists), by flag name without dashes."""
    flags: list[str] = field(default_factory=list)
    """Boolean flags present, without dashes."""
    unknown: list[str] = field(default_factory=list)
    """Flags the fake does not know (kept, ignored)."""

    def get(self, name: str) -> str | None:
        """The value of ``--name``, if given."""
        value = self.values.get(name)
        return value if isinstance(value, str) else None

    @property
    def system_prompt(self) -> str | None:
        return self.get("system-prompt")

    @property
    def append_system_prompt(self) -> str | None:
        return self.get("append-system-prompt")

    @property
    def model(self) -> str | None:
        return self.get("model")

    @property
    def max_turns(self) -> int | None:
        value = self.get("max-turns")
        return int(value) if value else None

    @property
    def max_budget_usd(self) -> float | None:
        value = self.get("max-budget-usd")
        return float(value) if value else None

    @property
    def permission_mode(self) -> str:
        if "dangerously-skip-permissions" in self.flags:
            return "bypassPermissions"
        return self.get("permission-mode") or "default"

    @property
    def permission_prompt_tool(self) -> str | None:
        return self.get("permission-prompt-tool")

    @property
    def allowed_tools(self) -> list[str]:
        return _split_rules(self.get("allowedTools") or self.get("allowed-tools") or "")

    @property
    def disallowed_tools(self) -> list[str]:
        return _split_rules(self.get("disallowedTools") or self.get("disallowed-tools") or "")

    @property
    def tools(self) -> list[str] | None:
        """``--tools``: None when absent (the default set), ``[]`` for ``""``."""
        if "tools" not in self.values:
            return None
        value = self.get("tools") or ""
        if value == "default":
            return list(DEFAULT_TOOLS)
        return [t.strip() for t in value.split(",") if t.strip()]

    @property
    def setting_sources(self) -> list[str] | None:
        if "setting-sources" not in self.values:
            return None
        return [s for s in (self.get("setting-sources") or "").split(",") if s]

    @property
    def session_id(self) -> str | None:
        return self.get("session-id") or self.get("resume")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary for the log."""
        return {
            "values": self.values,
            "flags": self.flags,
            "unknown": self.unknown,
            "system_prompt": self.system_prompt,
            "append_system_prompt": self.append_system_prompt,
            "model": self.model,
            "max_turns": self.max_turns,
            "max_budget_usd": self.max_budget_usd,
            "permission_mode": self.permission_mode,
            "allowed_tools": self.allowed_tools,
            "disallowed_tools": self.disallowed_tools,
            "tools": self.tools,
            "setting_sources": self.setting_sources,
            "mcp_servers": sorted(_parse_mcp_config(self.get("mcp-config"))),
        }


def _split_rules(value: str) -> list[str]:
    """Split an ``--allowedTools`` value on commas/spaces outside parentheses."""
    rules: list[str] = []
    depth = 0
    current = ""
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        if ch in ", " and depth == 0:
            if current:
                rules.append(current)
            current = ""
        else:
            current += ch
    if current:
        rules.append(current)
    return rules


def parse_args(argv: Sequence[str]) -> CliArgs:
    """Parse the CLI arguments the SDK passes; unknown flags are kept and ignored."""
    args = CliArgs()
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if not token.startswith("-"):
            args.unknown.append(token)
            continue
        name, eq, inline = token.partition("=")
        if name in _VALUE_FLAGS:
            if eq:
                value = inline
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                value = ""
            key = name.lstrip("-")
            if name in _LIST_FLAGS:
                args.values.setdefault(key, []).append(value)
            else:
                args.values[key] = value
        elif name in _BOOL_FLAGS:
            args.flags.append(name.lstrip("-"))
        else:
            args.unknown.append(token)
            if not eq and i < len(argv) and not argv[i].startswith("-"):
                args.unknown.append(argv[i])
                i += 1
    return args


def _parse_mcp_config(value: str | None) -> dict[str, dict[str, Any]]:
    if not value:
        return {}
    try:
        text = value if value.lstrip().startswith("{") else Path(value).read_text()
        data = json.loads(text)
    except (OSError, ValueError):
        return {}
    servers = data.get("mcpServers", {}) if isinstance(data, dict) else {}
    return {str(k): v for k, v in servers.items() if isinstance(v, dict)}


# --------------------------------------------------------------------------- log and state


class _Log:
    """Appends JSON records to ``$CONDUCTOR_FAKE_LOG`` (one locked write per record)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def write(self, event: str, **data: Any) -> None:
        if not self.path:
            return
        record = {"event": event, "ts": time.time(), "pid": os.getpid(), **data}
        line = (json.dumps(record, default=str) + "\n").encode()
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)


def read_fake_log(path: Path | str) -> list[dict[str, Any]]:
    """The records of a ``$CONDUCTOR_FAKE_LOG`` file (a torn last line is skipped)."""
    records: list[dict[str, Any]] = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return records
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


def _next_attempt(state_path: Path, key: str) -> int:
    """Increment and return the attempt counter ``key`` in ``state_path`` (file-locked)."""
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(state_path) + ".lock"):
        try:
            state = json.loads(state_path.read_text())
            if not isinstance(state, dict):
                state = {}
        except (OSError, ValueError):
            state = {}
        count = int(state.get(key, 0)) + 1
        state[key] = count
        write_atomic(state_path, json.dumps(state, indent=1, sort_keys=True), mode=0o644)
    return count


def _masked_env() -> dict[str, str]:
    prefixes = (ENV_PREFIX, "CLAUDE_", "ANTHROPIC_")
    env: dict[str, str] = {}
    for key, value in os.environ.items():
        if key.startswith(prefixes) or key in ("TMPDIR", "PWD"):
            env[key] = "***" if _SECRET_RE.search(key) and value else value
    return env


# --------------------------------------------------------------------------- the session


class _ControlError(Exception):
    """The SDK answered a control request with an error, or went away."""


class _Finish(Exception):
    """End the current turn with a result built from these fields."""

    def __init__(self, **result: Any) -> None:
        super().__init__(result.get("subtype", "finish"))
        self.result = result


class _Exit(Exception):
    """Emit the result, then exit the process with ``code`` at once."""

    def __init__(self, code: int, **result: Any) -> None:
        super().__init__(code)
        self.code = code
        self.result = result


@dataclass
class _Decision:
    allowed: bool
    input: dict[str, Any]
    message: str = ""
    stop: bool = False


@dataclass
class _ToolOutcome:
    content: Any
    is_error: bool = False
    tool_use_result: Any = None


class FakeClaude:
    """One fake CLI process: reads stdin on a thread, runs scripted turns on the main one."""

    def __init__(self, argv: Sequence[str], stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self.argv = list(argv)
        self.args = parse_args(argv)
        self.stdin = stdin
        self.stdout = stdout
        self.cwd = Path.cwd()
        self.log = _Log(os.environ.get(ENV_LOG))
        self.session_id = self.args.session_id or str(uuid.uuid4())
        self.permission_mode = self.args.permission_mode
        self.state_events = os.environ.get("CLAUDE_CODE_SDK_READS_SESSION_STATE") == "1"

        self._out_lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._pending_lock = threading.Lock()
        self._prompts: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._initialized = threading.Event()
        self._eof = threading.Event()
        self._interrupted = threading.Event()
        self.hooks: dict[str, list[dict[str, Any]]] = {}

        self.script: CliScript | None = None
        self.script_error: str | None = None
        self.script_path: Path | None = None
        self._load_script()
        self.model = self.args.model or (self.script.model if self.script else None)
        self.model = self.model or DEFAULT_MODEL

        self.mcp_config = _parse_mcp_config(self.args.get("mcp-config"))
        self.mcp_tools: dict[str, list[str]] = {}
        self.mcp_status: list[dict[str, Any]] = []
        self._rpc_ids: dict[str, int] = {}

        self.total_cost = 0.0
        self.last_is_error = False
        self.process_groups: list[int] = []
        """Process groups of the Bash steps' shells, killed when the fake exits."""

    # ------------------------------------------------------------------ setup

    def _load_script(self) -> None:
        raw = os.environ.get(ENV_SCRIPT)
        if not raw:
            return
        self.script_path = Path(raw)
        try:
            self.script = load_cli_script(self.script_path)
        except ConductorError as exc:
            self.script_error = f"fake claude script error: {exc}"
            print(self.script_error, file=sys.stderr, flush=True)

    @property
    def system_text(self) -> str:
        parts = [self.args.system_prompt, self.args.append_system_prompt]
        path = self.args.get("system-prompt-file")
        if path:
            try:
                parts.append((self.cwd / path).read_text())
            except OSError as exc:
                self.log.write("warning", message=f"cannot read --system-prompt-file: {exc}")
        return "\n".join(p for p in parts if p)

    # ------------------------------------------------------------------ I/O

    def emit(self, message: dict[str, Any]) -> None:
        """Write one NDJSON line to stdout."""
        line = json.dumps(message, separators=(",", ":")) + "\n"
        with self._out_lock:
            try:
                self.stdout.write(line.encode())
                self.stdout.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._die(0)
        if message.get("type") != "control_response":
            self.log.write("send", message=message)

    def _reader(self) -> None:
        """Route stdin: control responses to waiters, control requests answered, prompts queued."""
        try:
            for raw in iter(self.stdin.readline, b""):
                line = raw.strip()
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    self.log.write("bad_input", line=line.decode(errors="replace"))
                    continue
                if not isinstance(message, dict):
                    continue
                self.log.write("recv", message=message)
                kind = message.get("type")
                if kind == "control_response":
                    self._resolve(message.get("response") or {})
                elif kind == "control_request":
                    self._answer(message)
                elif kind == "user":
                    self._prompts.put(message)
        except (OSError, ValueError):
            pass
        finally:
            self._eof.set()
            self._prompts.put(None)
            with self._pending_lock:
                for event, _ in self._pending.values():
                    event.set()

    def _resolve(self, response: dict[str, Any]) -> None:
        with self._pending_lock:
            slot = self._pending.get(str(response.get("request_id")))
        if slot is not None:
            slot[1].append(response)
            slot[0].set()

    def request(self, request: dict[str, Any], timeout: float = CONTROL_TIMEOUT) -> dict[str, Any]:
        """Send a control request to the SDK and wait for its response payload."""
        request_id = str(uuid.uuid4())
        event = threading.Event()
        box: list[dict[str, Any]] = []
        with self._pending_lock:
            self._pending[request_id] = (event, box)
        try:
            if self._eof.is_set():
                raise _ControlError("stdin closed: the SDK can no longer answer")
            self.emit({"type": "control_request", "request_id": request_id, "request": request})
            if not event.wait(timeout):
                raise _ControlError(f"control request timed out: {request.get('subtype')}")
            if not box:
                raise _ControlError("stdin closed before the SDK answered")
        finally:
            with self._pending_lock:
                self._pending.pop(request_id, None)
        response = box[0]
        if response.get("subtype") == "error":
            raise _ControlError(str(response.get("error") or "unknown error"))
        payload = response.get("response")
        return payload if isinstance(payload, dict) else {}

    def _answer(self, message: dict[str, Any]) -> None:
        """Answer a control request from the SDK (initialize, interrupt, ...)."""
        request_id = message.get("request_id")
        request = message.get("request") or {}
        subtype = request.get("subtype")
        payload: dict[str, Any] = {}
        if subtype == "initialize":
            self.hooks = {
                str(event): [m for m in matchers if isinstance(m, dict)]
                for event, matchers in (request.get("hooks") or {}).items()
                if isinstance(matchers, list)
            }
            payload = self._initialize_response()
        elif subtype == "interrupt":
            self._interrupted.set()
        elif subtype == "set_permission_mode":
            self.permission_mode = str(request.get("mode") or "default")
        elif subtype == "set_model":
            self.model = str(request.get("model") or self.model)
        elif subtype == "mcp_status":
            payload = {"mcpServers": self.mcp_status}
        elif subtype == "get_context_usage":
            payload = {"totalTokens": 0, "categories": []}
        else:
            self.emit(
                {
                    "type": "control_response",
                    "response": {
                        "subtype": "error",
                        "request_id": request_id,
                        "error": f"fake claude does not support control request {subtype!r}",
                    },
                }
            )
            return
        self.emit(
            {
                "type": "control_response",
                "response": {"subtype": "success", "request_id": request_id, "response": payload},
            }
        )
        if subtype == "initialize":
            self._initialized.set()

    def _initialize_response(self) -> dict[str, Any]:
        return {
            "commands": [],
            "agents": [],
            "output_style": "default",
            "available_output_styles": ["default"],
            "models": [{"value": self.model, "displayName": self.model, "description": "fake"}],
            "account": {"tokenSource": "none", "apiKeySource": "none", "apiProvider": "fake"},
            "pid": os.getpid(),
            "claude_code_version": FAKE_CLI_VERSION,
            "current_permission_mode": self.permission_mode,
            "hooks_applied": True,
            "hook_on_failure_supported": True,
            "session_state": "idle",
            "capabilities": [],
            "fake": True,
        }

    def _die(self, code: int) -> NoReturn:
        """Exit now, taking the Bash steps' process groups (background jobs too) along."""
        for pgid in self.process_groups:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
        self.log.write("exit", code=code)
        with contextlib.suppress(Exception):
            self.stdout.flush()
        os._exit(code)

    # ------------------------------------------------------------------ MCP

    def _rpc(self, server: str, method: str, params: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        notify = method.startswith("notifications/")
        if not notify:
            rpc_id = self._rpc_ids.get(server, 0)
            self._rpc_ids[server] = rpc_id + 1
            message["id"] = rpc_id
        payload = self.request(
            {"subtype": "mcp_message", "server_name": server, "message": message}
        )
        response = payload.get("mcp_response") or {}
        if isinstance(response, dict) and response.get("error"):
            error = response["error"]
            raise _ControlError(str(error.get("message") if isinstance(error, dict) else error))
        return response.get("result") if isinstance(response, dict) else None

    def connect_mcp(self) -> None:
        """Handshake with every in-process SDK server and list its tools (once)."""
        for name, config in self.mcp_config.items():
            if config.get("type") != "sdk":
                self.mcp_status.append(
                    {"name": name, "status": "failed", "error": "fake claude: not an SDK server"}
                )
                continue
            try:
                self._rpc(
                    name,
                    "initialize",
                    {
                        "protocolVersion": MCP_PROTOCOL_VERSION,
                        "capabilities": {},
                        "clientInfo": {"name": "conductor-fake-claude", "version": "1"},
                    },
                )
                self._rpc(name, "notifications/initialized")
                listed = self._rpc(name, "tools/list") or {}
                tools = [str(t["name"]) for t in listed.get("tools", []) if "name" in t]
            except _ControlError as exc:
                self.mcp_status.append({"name": name, "status": "failed", "error": str(exc)})
                continue
            self.mcp_tools[name] = tools
            self.mcp_status.append({"name": name, "status": "connected", "source": "sdk"})

    # ------------------------------------------------------------------ tools and permissions

    def available_tools(self) -> list[str]:
        base = self.args.tools
        tools = list(DEFAULT_TOOLS) if base is None else base
        for server, names in self.mcp_tools.items():
            tools.extend(f"mcp__{server}__{name}" for name in names)
        denied = {rule for rule in self.args.disallowed_tools if "(" not in rule}
        return [t for t in tools if t not in denied and not _server_rule_hit(denied, t)]

    def _rule_hits(self, rules: list[str], name: str, tool_input: dict[str, Any]) -> bool:
        for rule in rules:
            if rule == name or _server_rule_hit({rule}, name):
                return True
            tool, paren, spec = rule.partition("(")
            if not paren or tool != name:
                continue
            spec = spec[:-1] if spec.endswith(")") else spec
            if name == "Bash":
                command = str(tool_input.get("command", ""))
                prefix = spec[:-2] if spec.endswith(":*") else spec.rstrip("*")
                if command == spec or (spec.endswith("*") and command.startswith(prefix)):
                    return True
            else:
                target = str(tool_input.get("file_path") or tool_input.get("path") or "")
                rel = os.path.relpath(target, self.cwd) if target else ""
                if fnmatch.fnmatch(target, spec) or fnmatch.fnmatch(rel, spec):
                    return True
        return False

    def authorize(
        self, name: str, tool_input: dict[str, Any], tool_use_id: str, mcp_server: str | None
    ) -> _Decision:
        """PreToolUse hooks, then permission rules, then ``can_use_tool``."""
        hook_allowed = False
        for matcher in self.hooks.get("PreToolUse", []):
            if not _matcher_hits(matcher.get("matcher"), name):
                continue
            for callback_id in matcher.get("hookCallbackIds") or []:
                hook_input = self._hook_input("PreToolUse", name, tool_input, tool_use_id)
                try:
                    out = self.request(
                        {
                            "subtype": "hook_callback",
                            "callback_id": callback_id,
                            "input": hook_input,
                            "tool_use_id": tool_use_id,
                        },
                        timeout=float(matcher.get("timeout") or CONTROL_TIMEOUT),
                    )
                except _ControlError as exc:
                    if matcher.get("onFailure") not in (None, "continue"):
                        return _Decision(False, tool_input, f"PreToolUse hook failed: {exc}")
                    continue
                specific = out.get("hookSpecificOutput") or {}
                reason = specific.get("permissionDecisionReason") or out.get("reason") or ""
                if isinstance(specific.get("updatedInput"), dict):
                    tool_input = specific["updatedInput"]
                if out.get("continue") is False:
                    message = out.get("stopReason") or reason or "Stopped by a PreToolUse hook"
                    return _Decision(False, tool_input, str(message), stop=True)
                decision = specific.get("permissionDecision")
                if decision == "deny" or out.get("decision") == "block":
                    return _Decision(False, tool_input, str(reason or "Blocked by a hook"))
                if decision == "allow":
                    hook_allowed = True
        if hook_allowed:
            return _Decision(True, tool_input)
        deny_rules = [r for r in self.args.disallowed_tools if "(" in r]
        if self._rule_hits(deny_rules, name, tool_input):
            return _Decision(False, tool_input, f"Permission to use {name} has been denied.")
        mode = self.permission_mode
        if (
            mode == "bypassPermissions"
            or (mode == "acceptEdits" and name in EDIT_TOOLS)
            or self._rule_hits(self.args.allowed_tools, name, tool_input)
        ):
            return _Decision(True, tool_input)
        if mode != "dontAsk" and self.args.permission_prompt_tool == "stdio":
            request: dict[str, Any] = {
                "subtype": "can_use_tool",
                "tool_name": name,
                "display_name": name,
                "input": tool_input,
                "permission_suggestions": [],
                "tool_use_id": tool_use_id,
            }
            if mcp_server is not None:
                request["mcp_server"] = {"name": mcp_server, "source": "sdk"}
            try:
                answer = self.request(request)
            except _ControlError as exc:
                return _Decision(False, tool_input, f"Permission check failed: {exc}")
            if answer.get("behavior") == "allow":
                updated = answer.get("updatedInput")
                return _Decision(True, updated if isinstance(updated, dict) else tool_input)
            message = str(answer.get("message") or f"Permission to use {name} was denied.")
            return _Decision(False, tool_input, message, stop=bool(answer.get("interrupt")))
        if name in EDIT_TOOLS and tool_input.get("file_path"):
            what = f"write to {tool_input['file_path']}"
        else:
            what = f"use {name}"
        return _Decision(
            False,
            tool_input,
            f"Claude requested permissions to {what}, but you haven't granted it yet.",
        )

    def _hook_input(
        self, event: str, name: str, tool_input: dict[str, Any], tool_use_id: str
    ) -> dict[str, Any]:
        config_dir = os.environ.get("CLAUDE_CONFIG_DIR") or str(Path.home() / ".claude")
        return {
            "session_id": self.session_id,
            "transcript_path": f"{config_dir}/projects/fake/{self.session_id}.jsonl",
            "cwd": str(self.cwd),
            "permission_mode": self.permission_mode,
            "hook_event_name": event,
            "tool_name": name,
            "tool_input": tool_input,
            "tool_use_id": tool_use_id,
        }

    def post_tool_hooks(
        self, name: str, tool_input: dict[str, Any], tool_use_id: str, response: Any
    ) -> None:
        for matcher in self.hooks.get("PostToolUse", []):
            if not _matcher_hits(matcher.get("matcher"), name):
                continue
            for callback_id in matcher.get("hookCallbackIds") or []:
                hook_input = self._hook_input("PostToolUse", name, tool_input, tool_use_id)
                hook_input["tool_response"] = response
                with contextlib.suppress(_ControlError):
                    self.request(
                        {
                            "subtype": "hook_callback",
                            "callback_id": callback_id,
                            "input": hook_input,
                            "tool_use_id": tool_use_id,
                        },
                        timeout=float(matcher.get("timeout") or CONTROL_TIMEOUT),
                    )

    # ------------------------------------------------------------------ running a prompt

    def run(self) -> NoReturn:
        """Serve the session until stdin closes; exits the process."""
        self.log.write(
            "start",
            argv=self.argv,
            args=self.args.as_dict(),
            cwd=str(self.cwd),
            session=os.getsid(0),
            has_tty=_has_tty(),
            env=_masked_env(),
            script=str(self.script_path) if self.script_path else None,
        )
        fmt = (self.args.get("input-format"), self.args.get("output-format"))
        if fmt != ("stream-json", "stream-json"):
            print(
                "conductor-fake-claude speaks only --input-format stream-json "
                "--output-format stream-json (the Agent SDK's protocol)",
                file=sys.stderr,
            )
            self._die(2)
        signal.signal(signal.SIGTERM, lambda _signo, _frame: self._die(143))
        threading.Thread(target=self._reader, name="stdin", daemon=True).start()
        while not (self._initialized.is_set() or self._eof.is_set() or self._prompts.qsize()):
            self._initialized.wait(0.05)
        self.connect_mcp()
        while True:
            prompt = self._prompts.get()
            if prompt is None:
                break
            self.turn(prompt)
        self._die(1 if self.last_is_error else 0)

    def turn(self, prompt_message: dict[str, Any]) -> None:
        """Answer one prompt: init, scripted steps, result."""
        _Turn(self, prompt_message).run()

    def select(self, prompt: str) -> tuple[list[CliStep], str, int]:
        """The steps for this prompt, the rule's label, and the attempt number."""
        text = "\n".join(p for p in (self.system_text, prompt) if p)
        script = self.script or CliScript()
        for index, rule in enumerate(script.sessions):
            if match_text(rule.match, text):
                attempt = self._count(rule, index)
                return rule.steps_for(attempt), rule.name or rule.match, attempt
        if script.default is not None:
            return list(script.default), "default", 1
        fallback = CliStep(text="fake claude: no script rule matched this session.")
        return [fallback], "default", 1

    def _count(self, rule: CliRule, index: int) -> int:
        if rule.attempts is None:
            return 1
        state = os.environ.get(ENV_STATE)
        if state:
            state_path = Path(state)
        elif self.script_path is not None:
            state_path = self.script_path.with_name(self.script_path.name + ".state.json")
        else:
            return 1
        return _next_attempt(state_path, rule.counter_key(index))


class _Turn:
    """One prompt's run through its steps."""

    def __init__(self, cli: FakeClaude, prompt_message: dict[str, Any]) -> None:
        self.cli = cli
        self.prompt = _prompt_text(prompt_message)
        self.started = time.monotonic()
        self.turns = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.denials: list[dict[str, Any]] = []
        self.last_text = ""
        self.rule = "default"
        self.attempt = 1

    # ------------------------------------------------------------------ messages

    def _base(self) -> dict[str, Any]:
        return {"session_id": self.cli.session_id, "uuid": str(uuid.uuid4())}

    def _state(self, state: str) -> None:
        if self.cli.state_events:
            self.cli.emit(
                {
                    "type": "system",
                    "subtype": "session_state_changed",
                    "state": state,
                    "sdk_host_only": True,
                    **self._base(),
                }
            )

    def assistant(self, content: list[dict[str, Any]], step: CliStep | None = None) -> None:
        """Emit one assistant message: one model turn (limits and cost checked here)."""
        max_turns = self.cli.args.max_turns
        if max_turns is not None and self.turns >= max_turns:
            raise _Finish(
                subtype="error_max_turns",
                num_turns=max_turns + 1,
                terminal_reason="max_turns",
                errors=[f"Reached maximum number of turns ({max_turns})"],
            )
        self.turns += 1
        out_tokens = max(1, sum(len(json.dumps(block)) for block in content) // 4)
        self.input_tokens += 100
        self.output_tokens += out_tokens
        self.cli.emit(
            {
                "type": "assistant",
                "message": {
                    "id": f"msg_fake_{uuid.uuid4().hex[:20]}",
                    "type": "message",
                    "role": "assistant",
                    "model": self.cli.model,
                    "content": content,
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": _usage(100, out_tokens),
                },
                "parent_tool_use_id": None,
                **self._base(),
            }
        )
        if step is not None and step.cost is not None:
            self.add_cost(step.cost)

    def interrupted(self, reason: str) -> NoReturn:
        """End the turn the way the CLI does after an ``interrupt`` control request."""
        suffix = " for tool use" if reason == "aborted_tools" else ""
        self.cli.emit(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [{"type": "text", "text": f"[Request interrupted by user{suffix}]"}],
                },
                "parent_tool_use_id": None,
                **self._base(),
            }
        )
        raise _Finish(
            subtype="error_during_execution",
            terminal_reason=reason,
            result=None,
            errors=["Interrupted by the host"],
        )

    def add_cost(self, usd: float) -> None:
        self.cli.total_cost += usd
        budget = self.cli.args.max_budget_usd
        if budget is not None and self.cli.total_cost >= budget:
            raise _Finish(
                subtype="error_max_budget_usd",
                terminal_reason="max_budget_usd",
                errors=[f"Reached maximum budget (${budget})"],
            )

    def tool_result(self, tool_use_id: str, outcome: _ToolOutcome) -> None:
        block: dict[str, Any] = {
            "tool_use_id": tool_use_id,
            "type": "tool_result",
            "content": outcome.content,
        }
        if outcome.is_error:
            block["is_error"] = True
        self.cli.emit(
            {
                "type": "user",
                "message": {"role": "user", "content": [block]},
                "parent_tool_use_id": None,
                "tool_use_result": outcome.tool_use_result
                if outcome.tool_use_result is not None
                else outcome.content,
                **self._base(),
            }
        )

    # ------------------------------------------------------------------ the turn

    def run(self) -> None:
        cli = self.cli
        cli._interrupted.clear()
        self._state("running")
        if cli.script_error is not None:
            self.finish(
                {
                    "subtype": "error_during_execution",
                    "errors": [cli.script_error],
                    "result": cli.script_error,
                },
                exit_code=2,
            )
        steps, self.rule, self.attempt = cli.select(self.prompt)
        cli.log.write("rule", rule=self.rule, attempt=self.attempt, prompt=self.prompt)
        cli.emit(self._init_message())
        try:
            for step in steps:
                if cli._interrupted.is_set():
                    self.interrupted("aborted_streaming")
                self.step(step)
        except _Finish as finish:
            self.finish(finish.result)
        except _Exit as stop:
            self.finish(stop.result, exit_code=stop.code)
        else:
            self.finish({})

    def _init_message(self) -> dict[str, Any]:
        cli = self.cli
        return {
            "type": "system",
            "subtype": "init",
            "cwd": str(cli.cwd),
            "tools": cli.available_tools(),
            "mcp_servers": cli.mcp_status,
            "model": cli.model,
            "permissionMode": cli.permission_mode,
            "slash_commands": [],
            "apiKeySource": "none",
            "claude_code_version": FAKE_CLI_VERSION,
            "output_style": "default",
            "agents": [],
            "skills": [],
            "plugins": [],
            "fake": True,
            "fake_pid": os.getpid(),
            "fake_rule": self.rule,
            "fake_attempt": self.attempt,
            **self._base(),
        }

    def finish(self, fields: dict[str, Any], exit_code: int | None = None) -> None:
        """Emit the turn's result (and exit the process if ``exit_code`` is given)."""
        cli = self.cli
        subtype = fields.get("subtype", "success")
        is_error = fields.get("is_error")
        if is_error is None:
            is_error = subtype != "success" or bool(fields.get("api_error_status"))
        result: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "duration_api_ms": 0,
            "num_turns": fields.get("num_turns", self.turns),
            "result": fields.get("result", self.last_text),
            "stop_reason": fields.get("stop_reason", "end_turn"),
            "session_id": cli.session_id,
            "total_cost_usd": cli.total_cost,
            "usage": _usage(self.input_tokens, self.output_tokens),
            "modelUsage": {
                cli.model: {
                    "inputTokens": self.input_tokens,
                    "outputTokens": self.output_tokens,
                    "cacheReadInputTokens": 0,
                    "cacheCreationInputTokens": 0,
                    "webSearchRequests": 0,
                    "costUSD": cli.total_cost,
                    "contextWindow": 200000,
                    "maxOutputTokens": 32000,
                }
            },
            "permission_denials": self.denials,
            "terminal_reason": fields.get("terminal_reason") or "completed",
            "api_error_status": fields.get("api_error_status"),
            **(
                {"structured_output": fields["structured_output"]}
                if "structured_output" in fields
                else {}
            ),
            "fake_rule": self.rule,
            "fake_attempt": self.attempt,
            "uuid": str(uuid.uuid4()),
        }
        if fields.get("errors"):
            result["errors"] = list(fields["errors"])
        cli.emit(result)
        cli.last_is_error = bool(is_error)
        self._state("idle")
        if exit_code is not None:
            cli._die(exit_code)

    # ------------------------------------------------------------------ steps

    def step(self, step: CliStep) -> None:
        action = step.action
        if action not in _MODEL_ACTIONS and step.cost is not None:
            self.add_cost(step.cost)  # model actions add theirs with their assistant message
        if action == "text":
            self.last_text = step.text or ""
            self.assistant([{"type": "text", "text": self.last_text}], step)
        elif action == "mcp" and step.mcp is not None:
            self.mcp(step.mcp, step)
        elif action == "write" and step.write is not None:
            w = step.write
            self.builtin("Write", {"file_path": w.path, "content": w.content}, step, self._write)
        elif action == "edit" and step.edit is not None:
            e = step.edit
            tool_input = {
                "file_path": e.path,
                "old_string": e.old_string,
                "new_string": e.new_string,
                "replace_all": e.replace_all,
            }
            self.builtin("Edit", tool_input, step, self._edit)
        elif action == "bash" and step.bash is not None:
            timeout = step.bash.timeout
            self.builtin(
                "Bash",
                {"command": step.bash.command},
                step,
                lambda tool_input: self._bash(tool_input, timeout),
            )
        elif action == "tool" and step.tool is not None:
            canned = _ToolOutcome(step.tool.result, step.tool.is_error)
            self.builtin(step.tool.name, dict(step.tool.input), step, lambda _input: canned)
        elif action == "sleep":
            self._wait(step.sleep or 0.0)
        elif action == "api_retry" and step.api_retry is not None:
            r = step.api_retry
            self.cli.emit(
                {
                    "type": "system",
                    "subtype": "api_retry",
                    "attempt": r.attempt,
                    "max_retries": r.max_retries,
                    "retry_delay_ms": r.delay_ms,
                    "error_status": r.status,
                    "error": _error_kind(r.status),
                    **self._base(),
                }
            )
            self._wait(r.delay_ms / 1000)
        elif action == "error" and step.error is not None:
            self.api_error(step.error.api_error_status, step.error.message, step.error.resets_in)
        elif action == "result" and step.result is not None:
            r2 = step.result
            custom: dict[str, Any] = {"result": r2.result} if r2.result is not None else {}
            if r2.structured_output is not None:
                custom["structured_output"] = r2.structured_output
            raise _Finish(
                subtype=r2.subtype,
                is_error=r2.is_error,
                terminal_reason=r2.terminal_reason,
                errors=r2.errors,
                **custom,
            )
        elif action == "exit" and step.exit is not None:
            code = step.exit
            fields: dict[str, Any] = {
                "subtype": "success" if code == 0 else "error_during_execution"
            }
            if code:
                fields["errors"] = [f"fake claude exited with code {code}"]
            raise _Exit(code, **fields)
        elif action == "crash" and step.crash is not None:
            self.cli._die(step.crash)
        elif action == "hang" and step.hang is not None:
            self.hang(step.hang)

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.cli._interrupted.wait(min(left, 0.05)):
                self.interrupted("aborted_streaming")

    def hang(self, mode: str) -> None:
        if mode == "unkillable":  # ignored before the log says so: a test may wait for it
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.cli.log.write("hang", mode=mode)
        if mode == "unkillable":
            while True:
                time.sleep(3600)
        while True:
            if mode == "eof" and self.cli._eof.is_set():
                self.cli._die(0)
            if self.cli._interrupted.wait(0.05):
                self.interrupted("aborted_streaming")

    def api_error(self, status: int | None, message: str, resets_in: float | None = None) -> None:
        text = f"API Error: {status} {message}"
        error = _assistant_error(status) if status is not None else "authentication_failed"
        if status is None:
            text = "Not logged in · Please run /login"
        elif resets_in is not None:
            resets_at = int(time.time() + resets_in)
            clock = time.strftime("%H:%M", time.gmtime(resets_at))
            text = f"You've hit your limit · resets {clock} (UTC)"
            error = "rate_limit"
            self.cli.emit(
                {
                    "type": "rate_limit_event",
                    "rate_limit_info": {
                        "status": "rejected",
                        "resetsAt": resets_at,
                        "rateLimitType": "five_hour",
                        "isUsingOverage": False,
                    },
                    **self._base(),
                }
            )
        self.turns += 1
        self.last_text = text
        self.cli.emit(
            {
                "type": "assistant",
                "message": {
                    "id": str(uuid.uuid4()),
                    "type": "message",
                    "role": "assistant",
                    "model": "<synthetic>",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "stop_sequence",
                    "stop_sequence": "",
                    "usage": _usage(0, 0),
                },
                "parent_tool_use_id": None,
                "error": error,
                "is_api_error_message": True,
                "api_error_status": status,
                **self._base(),
            }
        )
        raise _Finish(
            subtype="success",
            is_error=True,
            result=text,
            api_error_status=status,
            terminal_reason="api_error",
            stop_reason="stop_sequence",
        )

    def mcp(self, action: McpAction, step: CliStep) -> None:
        cli = self.cli
        server, tool = action.server, action.tool
        if tool.startswith("mcp__"):
            _, server_part, tool_part = [*tool.split("__", 2), "", ""][:3]
            server, tool = server or server_part, tool_part
        if server is None:
            owners = [name for name, names in cli.mcp_tools.items() if tool in names]
            server = owners[0] if owners else next(iter(cli.mcp_tools), "")
        full = f"mcp__{server}__{tool}"
        tool_use_id = _tool_id()
        arguments = dict(action.input)
        self.assistant(
            [{"type": "tool_use", "id": tool_use_id, "name": full, "input": arguments}], step
        )
        if full not in cli.available_tools():
            self.tool_result(tool_use_id, _no_such_tool(full))
            return
        decision = cli.authorize(full, arguments, tool_use_id, server)
        if not decision.allowed:
            self.deny(full, tool_use_id, decision)
            return
        try:
            result = cli._rpc(
                server,
                "tools/call",
                {
                    "name": tool,
                    "arguments": decision.input,
                    "_meta": {"claudecode/toolUseId": tool_use_id},
                },
            )
        except _ControlError as exc:
            self.tool_result(
                tool_use_id, _ToolOutcome(f"<tool_use_error>Error: {exc}</tool_use_error>", True)
            )
            return
        result = result if isinstance(result, dict) else {}
        content = result.get("content", [])
        outcome = _ToolOutcome(content, bool(result.get("isError")), content)
        self.tool_result(tool_use_id, outcome)
        cli.post_tool_hooks(full, decision.input, tool_use_id, content)

    def builtin(
        self,
        name: str,
        tool_input: dict[str, Any],
        step: CliStep,
        run: Callable[[dict[str, Any]], _ToolOutcome],
    ) -> None:
        cli = self.cli
        tool_use_id = _tool_id()
        self.assistant(
            [{"type": "tool_use", "id": tool_use_id, "name": name, "input": tool_input}], step
        )
        if name not in cli.available_tools():
            self.tool_result(tool_use_id, _no_such_tool(name))
            return
        resolved = dict(tool_input)
        if "file_path" in resolved:
            resolved["file_path"] = str(cli.cwd / str(resolved["file_path"]))
        decision = cli.authorize(name, resolved, tool_use_id, None)
        if not decision.allowed:
            self.deny(name, tool_use_id, decision)
            return
        if cli._interrupted.is_set():
            self.tool_result(tool_use_id, _ToolOutcome(_REJECTED, True))
            self.interrupted("aborted_tools")
        outcome = run(decision.input)
        self.tool_result(tool_use_id, outcome)
        if not outcome.is_error:
            cli.post_tool_hooks(name, decision.input, tool_use_id, outcome.tool_use_result)

    def deny(self, name: str, tool_use_id: str, decision: _Decision) -> None:
        self.denials.append(
            {"tool_name": name, "tool_use_id": tool_use_id, "tool_input": decision.input}
        )
        self.tool_result(
            tool_use_id, _ToolOutcome(decision.message, True, f"Error: {decision.message}")
        )
        if decision.stop:
            raise _Finish(terminal_reason="hook_stopped")

    # ------------------------------------------------------------------ built-in tools

    def _write(self, tool_input: dict[str, Any]) -> _ToolOutcome:
        path = Path(str(tool_input["file_path"]))
        content = str(tool_input.get("content", ""))
        existed = path.exists()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        except OSError as exc:
            return _ToolOutcome(f"<tool_use_error>{exc}</tool_use_error>", True)
        if existed:
            text = f"The file {path} has been updated successfully."
        else:
            text = f"File created successfully at: {path}"
        kind = "update" if existed else "create"
        return _ToolOutcome(text, False, {"type": kind, "filePath": str(path), "content": content})

    def _edit(self, tool_input: dict[str, Any]) -> _ToolOutcome:
        path = Path(str(tool_input["file_path"]))
        old = str(tool_input.get("old_string", ""))
        new = str(tool_input.get("new_string", ""))
        try:
            original = path.read_text()
        except FileNotFoundError:
            return _ToolOutcome("<tool_use_error>File does not exist.</tool_use_error>", True)
        except OSError as exc:
            return _ToolOutcome(f"<tool_use_error>{exc}</tool_use_error>", True)
        count = original.count(old) if old else 0
        if count == 0:
            return _ToolOutcome(
                "<tool_use_error>String to replace not found in file.\n"
                f"String: {old}</tool_use_error>",
                True,
            )
        if count > 1 and not tool_input.get("replace_all"):
            return _ToolOutcome(
                f"<tool_use_error>Found {count} matches of the string to replace, but "
                "replace_all is false. To replace all occurrences, set replace_all to true. "
                "To replace only one occurrence, please provide more context to uniquely "
                f"identify the instance.\nString: {old}</tool_use_error>",
                True,
            )
        updated = (
            original.replace(old, new)
            if tool_input.get("replace_all")
            else original.replace(old, new, 1)
        )
        try:
            path.write_text(updated)
        except OSError as exc:
            return _ToolOutcome(f"<tool_use_error>{exc}</tool_use_error>", True)
        return _ToolOutcome(
            f"The file {path} has been updated successfully.",
            False,
            {"filePath": str(path), "oldString": old, "newString": new},
        )

    def _bash(self, tool_input: dict[str, Any], timeout: float) -> _ToolOutcome:
        command = str(tool_input.get("command", ""))
        shell = shutil.which("bash") or "/bin/sh"
        proc = subprocess.Popen(
            [shell, "-c", command],
            cwd=self.cli.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own group, so exit can kill its background jobs
        )
        self.cli.process_groups.append(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return _ToolOutcome(
                f"Command timed out after {timeout:g}s\n{stdout}".rstrip(),
                True,
                {"stdout": stdout, "stderr": stderr, "interrupted": True},
            )
        stdout, stderr = stdout.rstrip("\n"), stderr.rstrip("\n")
        combined = "\n".join(part for part in (stdout, stderr) if part)
        details = {
            "stdout": stdout,
            "stderr": stderr,
            "interrupted": False,
            "isImage": False,
            "noOutputExpected": False,
        }
        if proc.returncode != 0:
            return _ToolOutcome(f"Exit code {proc.returncode}\n{combined}".rstrip(), True, details)
        return _ToolOutcome(combined, False, details)


# --------------------------------------------------------------------------- helpers


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _prompt_text(message: dict[str, Any]) -> str:
    return text_of((message.get("message") or {}).get("content", ""))


def _tool_id() -> str:
    return f"toolu_fake_{uuid.uuid4().hex[:20]}"


def _no_such_tool(name: str) -> _ToolOutcome:
    text = f"Error: No such tool available: {name}"
    return _ToolOutcome(f"<tool_use_error>{text}</tool_use_error>", True, text)


def _matcher_hits(matcher: Any, name: str) -> bool:
    if matcher in (None, "", "*"):
        return True
    try:
        return re.fullmatch(str(matcher), name) is not None
    except re.error:
        return str(matcher) == name


def _server_rule_hit(rules: set[str], name: str) -> bool:
    """``mcp__server`` and ``mcp__server__*`` rules cover every tool of that server."""
    if not name.startswith("mcp__"):
        return False
    server = "__".join(name.split("__")[:2])
    return server in rules or f"{server}__*" in rules


_REJECTED = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it "
    "was a file edit, the new_string was NOT written to the file). STOP what you are doing and "
    "wait for the user to tell you how to proceed."
)


def _error_kind(status: int) -> str:
    return {429: "rate_limit", 529: "overloaded", 401: "authentication_failed"}.get(
        status, "server_error" if status >= 500 else "invalid_request"
    )


def _assistant_error(status: int) -> str:
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "authentication_failed"
    if status == 402:
        return "billing_error"
    if status >= 500:
        return "server_error"
    return "invalid_request"


def _decode(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- entry points


def fake_cli_path(cache_dir: Path | None = None) -> Path:
    """An executable to pass as ``ClaudeAgentOptions.cli_path``.

    The installed ``conductor-fake-claude`` console script (beside the running interpreter,
    then on ``PATH``); failing that, a two-line shell wrapper around
    ``python -m conductor.testing.fake_cli`` written into ``cache_dir`` (default
    ``$XDG_CACHE_HOME/conductor`` or ``~/.cache/conductor``).
    """
    name = "conductor-fake-claude"
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(name)
    if found:
        return Path(found)
    if cache_dir is None:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        cache_dir = Path(base) / "conductor"
    cache_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(sys.executable.encode()).hexdigest()[:12]
    wrapper = cache_dir / f"fake-claude-{digest}"
    text = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m conductor.testing.fake_cli "$@"\n'
    if not wrapper.is_file() or wrapper.read_text() != text or not os.access(wrapper, os.X_OK):
        write_atomic(wrapper, text, mode=0o755)
    return wrapper


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Console script ``conductor-fake-claude``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-v", "--version"):
        print(f"{FAKE_CLI_VERSION} (Claude Code; conductor fake)")
        sys.exit(0)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    FakeClaude(args, sys.stdin.buffer, sys.stdout.buffer).run()


if __name__ == "__main__":
    main()


def _has_tty() -> bool:
    """The process has a controlling terminal (what a session started by conductor must not)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True
