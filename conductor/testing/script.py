"""The script formats of the two offline fakes, validated strictly.

Both fakes read a YAML (or JSON) file that says, per session, what the "model" does:

- the fake ``claude`` executable (``conductor.testing.fake_cli``) reads a ``CliScript``: rules
  under ``sessions:``, each a list of *steps* (text, tool calls, errors, exits...);
- the fake Messages API (``conductor.testing.fake_api``) reads an ``ApiScript``: rules under
  ``conversations:``, each a list of *turns* (one assistant response per model request).

A rule's ``match`` is a substring, or a regular expression written ``/.../`` (``/.../i`` for
case-insensitive), searched in the session's system prompt and first prompt joined by a
newline. Rules are tried in order; the first that matches wins; ``default`` applies when none
does. A rule gives either ``steps``/``turns`` (the same every time) or ``attempts`` (a list of
step lists: the first session that matches gets the first, the second the second, and so on;
past the end the last one repeats).

Every model forbids unknown keys, so a typo in a script is an error naming the file, the line
and the field (``load_cli_script`` / ``load_api_script`` raise ``conductor.errors.UserError``).
The full formats, with examples, are in ``docs/offline-testing.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from conductor.errors import UserError
from conductor.yamldoc import Doc, node_lines, validate

__all__ = [
    "ApiRetryAction",
    "ApiRule",
    "ApiScript",
    "ApiTurn",
    "ApiUsage",
    "BashAction",
    "CliRule",
    "CliScript",
    "CliStep",
    "EditAction",
    "ErrorAction",
    "HangMode",
    "McpAction",
    "ResultAction",
    "ToolAction",
    "ToolUse",
    "WriteAction",
    "load_api_script",
    "load_cli_script",
    "match_text",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def match_text(pattern: str, text: str) -> bool:
    """Whether a rule's ``match`` pattern matches ``text``.

    ``/regex/`` (or ``/regex/i``) is searched as a regular expression; anything else is a
    plain substring.
    """
    regex = _as_regex(pattern)
    if regex is not None:
        return regex.search(text) is not None
    return pattern in text


def _as_regex(pattern: str) -> re.Pattern[str] | None:
    if len(pattern) >= 2 and pattern.startswith("/"):
        if pattern.endswith("/"):
            return re.compile(pattern[1:-1])
        if pattern.endswith("/i") and len(pattern) >= 3:
            return re.compile(pattern[1:-2], re.IGNORECASE)
    return None


def _check_pattern(value: str) -> str:
    if not value:
        raise ValueError("match must not be empty")
    try:
        _as_regex(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
    return value


# --------------------------------------------------------------------------- fake CLI


class McpAction(_Strict):
    """Call a tool of an in-process SDK MCP server (``mcp: {tool: ..., input: {...}}``)."""

    tool: str
    """The tool's name on its server (``report_complete``) or its full name
    (``mcp__conductor__report_complete``)."""
    input: dict[str, Any] = Field(default_factory=dict)
    """The tool's arguments."""
    server: str | None = None
    """The server's key in ``mcp_servers``; by default the SDK server that lists the tool."""


class WriteAction(_Strict):
    """A built-in ``Write`` call: create or overwrite a file (relative to the session's cwd)."""

    path: str
    content: str


class EditAction(_Strict):
    """A built-in ``Edit`` call: replace ``old_string`` by ``new_string`` in a file."""

    path: str
    old_string: str
    new_string: str
    replace_all: bool = False


class BashAction(_Strict):
    """A built-in ``Bash`` call; ``bash: "cmd"`` is short for ``bash: {command: "cmd"}``."""

    command: str
    timeout: float = Field(default=120.0, gt=0)
    """Seconds before the command is killed (the result then says it timed out)."""


class ToolAction(_Strict):
    """Any other tool call (``Read``, ``WebFetch``...): goes through hooks and permissions
    like the others, then returns the canned ``result`` without doing anything."""

    name: str
    input: dict[str, Any] = Field(default_factory=dict)
    result: str = "ok"
    is_error: bool = False


class ErrorAction(_Strict):
    """End the turn the way the CLI does when API retries ran out: an ``api_error`` result
    (subtype ``success`` with ``is_error`` true); the process then exits 1 at end of input."""

    message: str = "Overloaded"
    """The API's error message (the text is "API Error: <status> <message>")."""
    api_error_status: int | None = Field(default=529, ge=400, le=599)
    """The HTTP status; null is the CLI's own refusal before any request: without
    credentials it says "Not logged in · Please run /login" (error ``authentication_failed``)."""
    resets_in: float | None = Field(default=None, ge=0)
    """A subscription's usage limit: first a ``rate_limit_event`` (``status: rejected``,
    ``resetsAt`` = now + this many seconds), then the CLI's "You've hit your limit · resets
    <time> (UTC)" with status 429."""


class ApiRetryAction(_Strict):
    """Emit one ``system``/``api_retry`` message (the CLI retrying a failed API call)."""

    attempt: int = Field(default=1, ge=1)
    max_retries: int = Field(default=10, ge=0)
    status: int = Field(default=529, ge=400, le=599)
    delay_ms: int = Field(default=0, ge=0)
    """Also sleep this long, as the CLI would before retrying."""


class ResultAction(_Strict):
    """End the turn with this result instead of the normal ``success``."""

    subtype: str = "success"
    """``success``, ``error_max_turns``, ``error_max_budget_usd``, ``error_during_execution``..."""
    is_error: bool | None = None
    """Defaults to ``subtype != "success"``."""
    result: str | None = None
    """The result text; defaults to the last assistant text."""
    terminal_reason: str | None = None
    errors: list[str] = Field(default_factory=list)
    structured_output: Any = None
    """The answer of a session asked for structured output (``--json-schema``), as the
    result's ``structured_output``. Not checked against the schema: a test may send a wrong
    one on purpose."""


HangMode = Literal["forever", "eof", "unkillable"]
"""``forever`` (what ``hang: true`` means): never finish; an interrupt or a signal ends it, end of
input does not (the SDK's ``close()`` then waits ~5 s before SIGTERM). ``eof``: also end, with
no result, as soon as stdin is closed (fast cancellation with ``ClaudeSDKClient``).
``unkillable``: ignore interrupts and SIGTERM too; only SIGKILL ends it."""

_CLI_ACTIONS = (
    "text",
    "mcp",
    "write",
    "edit",
    "bash",
    "tool",
    "sleep",
    "error",
    "api_retry",
    "result",
    "exit",
    "hang",
    "crash",
)


class CliStep(_Strict):
    """One step of a fake CLI session: exactly one action, optionally with ``cost``.

    ``cost`` alone is a step too; on another step it is added when that step runs.
    """

    text: str | None = None
    """An assistant message with this text."""
    mcp: McpAction | None = None
    write: WriteAction | None = None
    edit: EditAction | None = None
    bash: BashAction | None = None
    tool: ToolAction | None = None
    sleep: float | None = Field(default=None, ge=0)
    """Seconds to wait (an interrupt cuts it short)."""
    error: ErrorAction | None = None
    api_retry: ApiRetryAction | None = None
    result: ResultAction | None = None
    exit: int | None = Field(default=None, ge=0, le=255)
    """Emit the result now (an error result unless 0) and exit with this code at once."""
    hang: HangMode | None = None
    """Never finish (``true`` means ``forever``)."""
    crash: int | None = Field(default=None, ge=1, le=255)
    """Exit abruptly with this code (``true`` means 1), writing no result."""
    cost: float | None = Field(default=None, ge=0)
    """US dollars added to the session's cumulative ``total_cost_usd``."""

    @field_validator("bash", mode="before")
    @classmethod
    def _bash_shorthand(cls, value: Any) -> Any:
        return {"command": value} if isinstance(value, str) else value

    @field_validator("hang", mode="before")
    @classmethod
    def _hang_shorthand(cls, value: Any) -> Any:
        if value is True:
            return "forever"
        if value is False:
            raise ValueError("hang: false does nothing; remove the step")
        return value

    @field_validator("crash", mode="before")
    @classmethod
    def _crash_shorthand(cls, value: Any) -> Any:
        if value is True:
            return 1
        if value is False:
            raise ValueError("crash: false does nothing; remove the step")
        return value

    @field_validator("error", "api_retry", "result", mode="before")
    @classmethod
    def _empty_mapping(cls, value: Any) -> Any:
        return {} if value is None or value is True else value

    @model_validator(mode="after")
    def _one_action(self) -> CliStep:
        present = [name for name in _CLI_ACTIONS if getattr(self, name) is not None]
        if len(present) > 1:
            raise ValueError(f"a step does one thing; this one has {', '.join(present)}")
        if not present and self.cost is None:
            raise ValueError(f"a step needs one of: {', '.join((*_CLI_ACTIONS, 'cost'))}")
        return self

    @property
    def action(self) -> str:
        """The step's action name (``cost`` for a cost-only step)."""
        for name in _CLI_ACTIONS:
            if getattr(self, name) is not None:
                return name
        return "cost"


class CliRule(_Strict):
    """Which sessions a list of steps applies to."""

    match: str
    """Substring or ``/regex/`` searched in the system prompt + prompt."""
    name: str | None = None
    """Names the rule's attempt counter (default: its position and pattern)."""
    steps: list[CliStep] | None = None
    """The same steps for every session that matches."""
    attempts: list[list[CliStep]] | None = None
    """Steps for the 1st, 2nd... session that matches; the last repeats."""

    @field_validator("match")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _check_pattern(value)

    @model_validator(mode="after")
    def _steps_or_attempts(self) -> CliRule:
        if (self.steps is None) == (self.attempts is None):
            raise ValueError("give exactly one of 'steps' or 'attempts'")
        if self.attempts is not None and not self.attempts:
            raise ValueError("'attempts' must list at least one attempt")
        return self

    def steps_for(self, attempt: int) -> list[CliStep]:
        """The steps of attempt ``attempt`` (from 1)."""
        if self.attempts is None:
            return list(self.steps or [])
        return list(self.attempts[min(attempt, len(self.attempts)) - 1])

    def counter_key(self, index: int) -> str:
        """Key of this rule's attempt counter in the state file."""
        return self.name if self.name is not None else f"{index}:{self.match}"


class CliScript(_Strict):
    """A fake CLI script: rules tried in order, then ``default``."""

    model: str | None = None
    """Model reported when the session did not ask for one (default ``claude-sonnet-4-5``)."""
    sessions: list[CliRule] = Field(default_factory=list)
    default: list[CliStep] | None = None
    """Steps for a session no rule matches (default: one short text)."""


# --------------------------------------------------------------------------- fake API


class ToolUse(_Strict):
    """One ``tool_use`` block of a scripted assistant turn."""

    name: str
    """The tool's full name as the CLI offers it (``Write``, ``mcp__conductor__report``)."""
    input: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    """The block id (default: generated)."""


class ApiUsage(_Strict):
    """Token usage reported for one turn (the CLI turns it into cost)."""

    input_tokens: int = Field(default=100, ge=0)
    output_tokens: int = Field(default=50, ge=0)
    cache_creation_input_tokens: int = Field(default=0, ge=0)
    cache_read_input_tokens: int = Field(default=0, ge=0)


class ApiTurn(_Strict):
    """One scripted model response, or an injected HTTP error (``status``)."""

    text: str | None = None
    tool_use: list[ToolUse] = Field(default_factory=list)
    """One block (a mapping) or several (a list), after the text."""
    stop_reason: str | None = None
    """Default: ``tool_use`` when there are tool calls, else ``end_turn``."""
    usage: ApiUsage = Field(default_factory=ApiUsage)
    delay: float = Field(default=0.0, ge=0)
    """Seconds to wait before answering."""
    status: int | None = Field(default=None, ge=400, le=599)
    """Answer with this HTTP error instead (529 overloaded, 429 rate limit, 500...)."""
    times: int = Field(default=1, ge=1)
    """For an error: how many requests in a row get it."""
    message: str | None = None
    """For an error: the error message in the JSON body."""
    retry_after: float | None = Field(default=None, ge=0)
    """For an error: a ``retry-after`` header (seconds) and the ``anthropic-ratelimit-*-reset``
    headers of an API-key rate limit, that much later."""
    resets_in: float | None = Field(default=None, ge=0)
    """For a 429: a subscription's usage limit, resetting this many seconds from now (the
    ``anthropic-ratelimit-unified-*`` headers, ``status: rejected``). The CLI heeds them only
    when it runs on an OAuth token (``real_cli_env(..., credentials="oauth")``)."""
    headers: dict[str, str] = Field(default_factory=dict)
    """For an error: more response headers, as given."""

    @field_validator("tool_use", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, Mapping) else value

    @model_validator(mode="after")
    def _content_or_status(self) -> ApiTurn:
        if self.status is not None:
            if self.text is not None or self.tool_use:
                raise ValueError("an error turn ('status') has no text or tool_use")
        elif self.text is None and not self.tool_use:
            raise ValueError("a turn needs 'text', 'tool_use' or 'status'")
        if self.status is None and self.times != 1:
            raise ValueError("'times' only applies to an error turn ('status')")
        extras = self.retry_after is not None or self.resets_in is not None or self.headers
        if self.status is None and extras:
            raise ValueError(
                "'retry_after', 'resets_in' and 'headers' only apply to an error turn ('status')"
            )
        return self

    @property
    def is_error(self) -> bool:
        """Whether this entry injects an HTTP error rather than answering."""
        return self.status is not None


class ApiRule(_Strict):
    """Which conversations a list of turns applies to."""

    match: str
    """Substring or ``/regex/`` searched in the system prompt + first user message."""
    name: str | None = None
    turns: list[ApiTurn] | None = None
    attempts: list[list[ApiTurn]] | None = None
    """Turns for the 1st, 2nd... conversation (CLI session) that matches; the last repeats."""

    @field_validator("match")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _check_pattern(value)

    @model_validator(mode="after")
    def _turns_or_attempts(self) -> ApiRule:
        if (self.turns is None) == (self.attempts is None):
            raise ValueError("give exactly one of 'turns' or 'attempts'")
        if self.attempts is not None and not self.attempts:
            raise ValueError("'attempts' must list at least one attempt")
        return self

    def turns_for(self, attempt: int) -> list[ApiTurn]:
        """The turns of attempt ``attempt`` (from 1)."""
        if self.attempts is None:
            return list(self.turns or [])
        return list(self.attempts[min(attempt, len(self.attempts)) - 1])


class ApiScript(_Strict):
    """A fake Messages API script: rules tried in order, then ``default``."""

    conversations: list[ApiRule] = Field(default_factory=list)
    default: list[ApiTurn] | None = None
    """Turns for a conversation no rule matches (default: one short text)."""


# --------------------------------------------------------------------------- loading

_M = TypeVar("_M", bound=BaseModel)


def load_cli_script(source: Path | str | Mapping[str, Any]) -> CliScript:
    """Load and validate a fake CLI script from a YAML/JSON file or a mapping."""
    return _load(CliScript, source)


def load_api_script(source: Path | str | Mapping[str, Any]) -> ApiScript:
    """Load and validate a fake API script from a YAML/JSON file or a mapping."""
    return _load(ApiScript, source)


def _load(model: type[_M], source: Path | str | Mapping[str, Any]) -> _M:
    if isinstance(source, Mapping):
        return _validate(model, dict(source), None, None)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read script: {exc.strerror or exc}", path=path) from exc
    try:
        if path.suffix == ".json":
            data = json.loads(text)
            root = None
        else:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid JSON: {exc.msg}", path=path, line=exc.lineno) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise UserError(f"invalid YAML: {exc}", path=path, line=line) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError("a script is a mapping (sessions:/conversations:, default:)", path=path)
    return _validate(model, data, path, root)


def _validate(
    model: type[_M], data: dict[str, Any], path: Path | None, root: yaml.Node | None
) -> _M:
    return validate(Doc(data, node_lines(root), path, UserError), model, data)


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a block list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        )
    return ""
