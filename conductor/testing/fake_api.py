"""A local Anthropic Messages API with a scripted model, to run the real CLI offline.

The real Claude Code CLI (bundled with claude-agent-sdk) pointed at this server with
``ANTHROPIC_BASE_URL`` runs everything for real — permissions, hooks, in-process MCP tools,
retries, cost accounting — while the "model" follows a script::

    with FakeMessagesAPI(script) as api:
        options = ClaudeAgentOptions(
            cli_path=bundled_cli_path(),
            env=real_cli_env(api.base_url, tmp_path / "claude-config", tmp_dir=tmp_path / "tmp"),
            ...,
        )
        async for message in query(prompt="...", options=options): ...
        assert len(api.requests) == 3

The script (a mapping, or a YAML/JSON file; ``conductor.testing.script.ApiScript``)::

    conversations:                 # rules, tried in order; the first match wins
      - match: "task T1"           # substring (or /regex/) of system prompt + first user message
        turns:                     # one entry per model request of the conversation
          - status: 529            # an injected HTTP error (overloaded) ...
            times: 1               # ... for this many requests in a row; the CLI retries
          - text: "Writing it."
            tool_use:              # one mapping or a list (parallel calls)
              - {name: Write, input: {file_path: out.txt, content: "hi\\n"}}
              - {name: mcp__conductor__report_complete, input: {summary: done}}
          - text: "Done."          # stop_reason: end_turn (tool_use when there are tool calls)
            usage: {input_tokens: 1000, output_tokens: 200}
      - match: "/task T[2-9]/"
        attempts:                  # turns for the 1st, 2nd... CLI session that matches
          - [{text: "first try"}]
          - [{text: "second try"}]
    default:                       # anything else (default: a short text)
      - text: "OK."

The server is stateless about progress: the reply to a request is the turn whose index is the
number of assistant messages already in the request, so a retried request gets the same answer.
Injected errors are counted per CLI session (``X-Claude-Code-Session-Id``) and position. A
request past the end of its turns, a request no rule matches, and the CLI's side requests
(session title, which asks for JSON) get a short ``end_turn`` text; nothing crashes the server.

Every ``POST /v1/messages`` body is kept in ``requests`` (in arrival order, errors included);
``calls`` lists every HTTP request with its status.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from conductor.errors import ConductorError
from conductor.testing.script import (
    ApiRule,
    ApiScript,
    ApiTurn,
    load_api_script,
    match_text,
    text_of,
)

__all__ = [
    "FAKE_API_KEY",
    "FAKE_OAUTH_TOKEN",
    "FakeMessagesAPI",
    "bundled_cli_path",
    "main",
    "real_cli_env",
]

FAKE_API_KEY = "sk-ant-offline-fake-key-000000000000"
"""The API key ``real_cli_env`` hands the CLI; the fake server accepts any key."""

FAKE_OAUTH_TOKEN = "sk-ant-oat01-offline-fake-token-000000000000"
"""The OAuth token ``real_cli_env(..., credentials="oauth")`` hands the CLI instead: the CLI
then acts as for a Claude subscription (usage limits with reset times)."""

Credentials = Literal["api_key", "oauth", "none"]

_FALLBACK_TEXT = "OK."
_ERROR_TYPES = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "Invalid API key"),
    403: ("permission_error", "Permission denied"),
    404: ("not_found_error", "Not found"),
    413: ("request_too_large", "Request too large"),
    429: ("rate_limit_error", "Rate limited"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass(frozen=True)
class _Reply:
    """What to answer one request with."""

    turn: ApiTurn | None
    """The scripted turn, or None for the fallback text."""
    text: str | None = None
    """Fallback text when ``turn`` is None."""


class FakeMessagesAPI:
    """A scripted Messages API on ``127.0.0.1`` (a free port), served from a background thread.

    Use it as a context manager, or call ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        script: ApiScript | Mapping[str, Any] | Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.script = script if isinstance(script, ApiScript) else load_api_script(script)
        self.requests: list[dict[str, Any]] = []
        """Bodies of every ``POST /v1/messages``, in arrival order."""
        self.calls: list[dict[str, Any]] = []
        """Every HTTP request: ``method``, ``path``, ``status``."""
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._errors_served: dict[tuple[str, int, int], int] = {}
        self._attempts: dict[tuple[int, str], int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (the server must be started)."""
        if self._server is None:
            raise RuntimeError("FakeMessagesAPI is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMessagesAPI:
        """Bind and serve in a background thread."""
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.block_on_close = False
        server.api = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ the scripted model

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.calls.append({"method": method, "path": path, "status": status})

    def reply_for(self, body: dict[str, Any], session: str) -> _Reply:
        """Pick the answer to one ``/v1/messages`` request (or an injected error turn)."""
        if _is_side_request(body):
            return _Reply(None, json.dumps(_sample(_json_schema(body) or {})))
        text = _conversation_text(body)
        turns: list[ApiTurn] | None = None
        rule_key = "default"
        for index, rule in enumerate(self.script.conversations):
            if match_text(rule.match, text):
                turns = rule.turns_for(self._attempt(index, rule, session))
                rule_key = f"{index}"
                break
        if turns is None:
            if self.script.default is None:
                return _Reply(None, _FALLBACK_TEXT)
            turns = list(self.script.default)
        position = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        errors: list[ApiTurn] = []  # the error entries just before the target turn
        target: ApiTurn | None = None
        index = 0
        for turn in turns:
            if turn.is_error:
                errors.append(turn)
            elif index == position:
                target = turn
                break
            else:
                errors = []
                index += 1
        if index < position:
            errors = []  # past the end of the script
        with self._lock:
            for number, error in enumerate(errors):
                key = (f"{session}/{rule_key}", position, number)
                served = self._errors_served.get(key, 0)
                if served < error.times:
                    self._errors_served[key] = served + 1
                    return _Reply(error)
        if target is None:
            return _Reply(None, _FALLBACK_TEXT)
        return _Reply(target)

    def _attempt(self, index: int, rule: ApiRule, session: str) -> int:
        if rule.attempts is None:
            return 1
        with self._lock:
            key = (index, session)
            if key not in self._attempts:
                self._attempts[key] = 1 + sum(1 for i, _ in self._attempts if i == index)
            return self._attempts[key]


class _Handler(BaseHTTPRequestHandler):
    """HTTP handler: /v1/messages (SSE or JSON), count_tokens, and harmless 200/404s."""

    protocol_version = "HTTP/1.1"
    server_version = "conductor-fake-api/1"

    @property
    def api(self) -> FakeMessagesAPI:
        api: FakeMessagesAPI = self.server.api  # type: ignore[attr-defined]
        return api

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``calls`` instead."""

    # ------------------------------------------------------------------ verbs

    def do_HEAD(self) -> None:
        self._plain(200, b"")

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/api/hello") or path in ("/", "/health"):
            self._json(200, {"ok": True})
        else:
            self._json(404, _error_body(404, f"{path} is not served by the fake API"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            body = self._read_json()
        except ValueError as exc:
            self._json(400, _error_body(400, f"invalid JSON body: {exc}"))
            return
        try:
            if path == "/v1/messages":
                with self.api._lock:
                    self.api.requests.append(body)
                self._messages(body)
            elif path == "/v1/messages/count_tokens":
                self._json(200, {"input_tokens": max(1, len(json.dumps(body)) // 4)})
            else:
                self._json(404, _error_body(404, f"{path} is not served by the fake API"))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a script or server bug must not kill the thread silently
            self._json(500, _error_body(500, f"fake API failure: {exc!r}"))

    # ------------------------------------------------------------------ responses

    def _read_json(self) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = json.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the body is not a JSON object")
        return data

    def _plain(self, status: int, data: bytes, content_type: str = "text/plain") -> None:
        self.api._record(self.command, self.path, status)  # before the client can see it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.api._record(self.command, self.path, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:16]}")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _messages(self, body: dict[str, Any]) -> None:
        reply = self.api.reply_for(body, _session_key(self.headers, body))
        turn = reply.turn
        if turn is not None and turn.delay:
            time.sleep(turn.delay)
        if turn is not None and turn.status is not None:
            self._json(turn.status, _error_body(turn.status, turn.message), _error_headers(turn))
            return
        model = str(body.get("model") or "claude-sonnet-4-5")
        message = _message(turn, reply.text, model)
        if body.get("stream"):
            self._stream(message)
        else:
            self._json(200, message)

    def _stream(self, message: dict[str, Any]) -> None:
        self.api._record(self.command, self.path, 200)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:16]}")
        self.end_headers()
        self.close_connection = True
        usage = message["usage"]
        start = dict(message, content=[], stop_reason=None)
        start["usage"] = dict(usage, output_tokens=1)
        self._event("message_start", {"message": start})
        self._event("ping", {})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                self._event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
                for chunk in _chunks(block["text"], 40):
                    self._event(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "text_delta", "text": chunk}},
                    )
            else:
                empty = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                self._event("content_block_start", {"index": index, "content_block": empty})
                for chunk in _chunks(json.dumps(block["input"]), 64):
                    delta = {"type": "input_json_delta", "partial_json": chunk}
                    self._event("content_block_delta", {"index": index, "delta": delta})
            self._event("content_block_stop", {"index": index})
        self._event(
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        self._event("message_stop", {})
        self.wfile.flush()

    def _event(self, name: str, data: dict[str, Any]) -> None:
        payload = json.dumps({"type": name, **data})
        self.wfile.write(f"event: {name}\ndata: {payload}\n\n".encode())


# --------------------------------------------------------------------------- helpers


def _message(turn: ApiTurn | None, fallback: str | None, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if turn is None:
        content.append({"type": "text", "text": fallback or _FALLBACK_TEXT})
        stop_reason = "end_turn"
        usage = {"input_tokens": 10, "output_tokens": 5}
    else:
        if turn.text is not None:
            content.append({"type": "text", "text": turn.text})
        for call in turn.tool_use:
            content.append(
                {
                    "type": "tool_use",
                    "id": call.id or f"toolu_fake_{uuid.uuid4().hex[:20]}",
                    "name": call.name,
                    "input": call.input,
                }
            )
        stop_reason = turn.stop_reason or ("tool_use" if turn.tool_use else "end_turn")
        usage = turn.usage.model_dump()
    return {
        "id": f"msg_fake_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **usage},
    }


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind, default = _ERROR_TYPES.get(status, ("api_error", "Error"))
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default},
        "request_id": f"req_fake_{uuid.uuid4().hex[:16]}",
    }


def _error_headers(turn: ApiTurn) -> dict[str, str]:
    """Headers of an injected error: a rate limit's reset times, a usage limit's."""
    now = time.time()
    headers: dict[str, str] = {}
    if turn.retry_after is not None:
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + turn.retry_after))
        headers["retry-after"] = f"{turn.retry_after:g}"
        for kind in ("requests", "tokens", "input-tokens", "output-tokens"):
            headers[f"anthropic-ratelimit-{kind}-reset"] = reset
    if turn.resets_in is not None:
        reset_at = str(int(now + turn.resets_in))
        headers.update(
            {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": reset_at,
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
                "anthropic-ratelimit-unified-5h-status": "rejected",
                "anthropic-ratelimit-unified-5h-reset": reset_at,
                "anthropic-ratelimit-unified-5h-utilization": "1.0",
            }
        )
    headers.update(turn.headers)
    return headers


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]




def _conversation_text(body: dict[str, Any]) -> str:
    """System prompt + first user message: what rules are matched against."""
    messages: list[dict[str, Any]] = body.get("messages") or []
    first_user = next((m for m in messages if m.get("role") == "user"), {})
    return f"{text_of(body.get('system'))}\n{text_of(first_user.get('content'))}"


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    return schema if isinstance(schema, dict) else None


def _is_side_request(body: dict[str, Any]) -> bool:
    """The CLI's own side requests (a session title): a JSON answer, no tools."""
    return not body.get("tools") and _json_schema(body) is not None


def _sample(schema: dict[str, Any]) -> Any:
    """A small value satisfying a simple JSON schema (for side requests)."""
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _sample(props.get(name) or {}) for name in schema.get("required", props)}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if schema.get("enum"):
        return schema["enum"][0]
    return "Offline session"


def _session_key(headers: Any, body: dict[str, Any]) -> str:
    """The CLI session a request belongs to (header, then metadata, then content hash)."""
    header = headers.get("X-Claude-Code-Session-Id")
    if header:
        return str(header)
    user_id = (body.get("metadata") or {}).get("user_id")
    if isinstance(user_id, str):
        try:
            session = json.loads(user_id).get("session_id")
        except (ValueError, AttributeError):
            session = None
        if session:
            return str(session)
    return hashlib.sha256(_conversation_text(body).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- the real CLI


def real_cli_env(
    base_url: str,
    config_dir: Path,
    *,
    tmp_dir: Path | None = None,
    credentials: Credentials = "api_key",
) -> dict[str, str]:
    """Environment for the real CLI talking only to a local fake API.

    Sets the base URL and fake credentials (``credentials``: ``api_key``, the default,
    ``FAKE_API_KEY``; ``oauth``, ``FAKE_OAUTH_TOKEN`` as a subscription login; ``none``, no
    credentials at all: the CLI says "Not logged in"), blanks the others and cloud providers, turns
    off non-essential traffic, telemetry and auto-update, offers MCP tools up front
    (``ENABLE_TOOL_SEARCH=false``), and gives the session its own ``CLAUDE_CONFIG_DIR`` (and
    ``TMPDIR`` when ``tmp_dir`` is given); both directories are created.
    """
    config_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": FAKE_API_KEY if credentials == "api_key" else "",
        "ANTHROPIC_AUTH_TOKEN": "",
        "CLAUDE_CODE_OAUTH_TOKEN": FAKE_OAUTH_TOKEN if credentials == "oauth" else "",
        "CLAUDE_CODE_USE_BEDROCK": "0",
        "CLAUDE_CODE_USE_VERTEX": "0",
        "CLAUDE_CODE_USE_FOUNDRY": "0",
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "ENABLE_TOOL_SEARCH": "false",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    if tmp_dir is not None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp_dir)
    return env


def bundled_cli_path() -> Path | None:
    """The Claude Code binary shipped inside claude-agent-sdk, if this install has one."""
    from conductor.executors.claude import bundled_cli

    return bundled_cli()


# --------------------------------------------------------------------------- console script


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``conductor-fake-api``: serve a script until interrupted."""
    parser = argparse.ArgumentParser(
        prog="conductor-fake-api",
        description="Serve a scripted Anthropic Messages API on localhost, for running the "
        "real Claude Code CLI offline (see docs/offline-testing.md).",
    )
    parser.add_argument("--script", required=True, type=Path, help="YAML/JSON script file")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    args = parser.parse_args(argv)
    try:
        api = FakeMessagesAPI(args.script, host=args.host, port=args.port).start()
    except ConductorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"fake Messages API listening on {api.base_url}", flush=True)
    print(f"  ANTHROPIC_BASE_URL={api.base_url} ANTHROPIC_API_KEY={FAKE_API_KEY}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
