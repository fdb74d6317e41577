"""Run a task as a background Claude agent session (claude-agent-sdk).

One attempt is one isolated session (more only when the API is overloaded, see below):

- **system prompt**: the worker's rendered ``SKILL.md`` body appended to Claude Code's preset
  prompt; over ``LARGE_PROMPT_BYTES`` it is passed as a file (``--append-system-prompt-file``)
  because a long argument fails with "Argument list too long";
- **isolation**: ``setting_sources=[]`` (no user or project settings, hooks or CLAUDE.md) unless
  the track opts in, only conductor's MCP server (``strict_mcp_config``), its own
  ``CLAUDE_CONFIG_DIR`` inside the worker directory and ``TMPDIR`` (the attempt's temporary
  directory beside its copy). With a private config
  directory a Claude login is not seen: give the CLI ``ANTHROPIC_API_KEY`` (or
  ``CLAUDE_CODE_OAUTH_TOKEN``) in the environment;
- **limits**: the agent's tools (also auto-allowed: a background session has nobody to ask), the
  task's or track's permission mode (default ``acceptEdits``), ``max_turns``, and
  ``max_budget_usd``: what the task's earlier attempts left of it, capped by what is left of
  the track's budget (``AttemptContext.budget_left_usd``);
- **reporting**: the ``conductor`` MCP server (``bus_tools``) and a PreToolUse file guard
  (``evidence.FileGuard``); the CLI's stderr goes to the attempt's log.

The message stream is always drained to its end (leaving it early leaks the CLI process). The
bus gets WORKER_STARTED (session id, CLI pid and its start time, for
``conductor.processes.end_recorded``), PROGRESS (tokens, cost, turns; at most one per
``PROGRESS_INTERVAL`` seconds, at once when the cost grew by ``COST_STEP``, and one at the
end), API_RETRY, TOOL_DENIED and the worker's CLAIM_* messages. The attempt's log gets the
CLI's stderr and, per session, a line saying how it ended in the CLI's own words.

Cost: each response is priced as it streams (``pricing``, from the ``message_delta`` stream
event: the session runs with partial messages on), so budgets see money before the session
ends; a result's ``total_cost_usd`` (cumulative within a session) then replaces the
estimate. ``Outcome.cost_usd`` is the sum over this attempt's sessions.

API errors (``api_errors``): a session that stopped on the API before the worker claimed
anything ends the attempt with ``Outcome.api_stop`` set (auth, billing, usage limit, rate
limit, overload); the scheduler defers it without counting it (``conductor.limits``). A refused
key is cut at the CLI's first retry of it. An overload alone is first retried here: the whole
session runs again after ``api_backoff * 2**n`` seconds, up to ``api_retries`` times, with an
API_RETRY message each time.

The verdict: a session error (``error_max_budget_usd``, ``error_during_execution``, a crash)
fails the attempt (one stopped by its budget is not retryable); otherwise the worker's
claim is judged against the session's evidence (``evidence.judge``: a claim, tool calls). A
worker that claimed completion and was then stopped by ``error_max_turns`` (the claim was its
last allowed turn) is judged the same way.
What the attempt's copy really changed is judged afterwards by the scheduler
(``conductor.isolation``); a copy cut off mid-write is never landed.

Sandbox: an attempt in a copy runs in the copy (its cwd) with Claude Code's sandbox on
(``conductor.sandbox.claude_settings``) and credential scrubbing forced off, because with it
on the CLI's sandbox stops confining writes. Every message is kept in the attempt's
transcript, every tool call in its tool list (``transcript``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import anyio
import psutil
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLINotFoundError,
    HookMatcher,
    ProcessError,
    ResultError,
    ResultMessage,
    StreamEvent,
    SystemMessage,
    ToolUseBlock,
)

from conductor.atomic import write_atomic
from conductor.contract import (
    REPORT_COMPLETE,
    REPORT_FAILED,
    SERVER_KEY,
    TOKEN_ENV,
    qualified,
    qualified_tool_names,
)
from conductor.errors import ConductorError, UserError
from conductor.executors.api_errors import ApiStop, ApiWatch
from conductor.executors.base import AttemptContext, ExecutorBase, Needs, Outcome
from conductor.executors.bus_tools import WorkerBinding, build_bus_server
from conductor.executors.evidence import (
    GUARDED_MATCHER,
    GUARDED_TOOLS,
    READ_TOOLS,
    Evidence,
    FileGuard,
    ReadGuard,
    denial,
    guarded_path,
    judge,
    locks_covering,
)
from conductor.executors.pricing import price
from conductor.executors.transcript import Transcript
from conductor.limits import env_number
from conductor.logs import get_logger
from conductor.messages import MessageType
from conductor.paths import open_state_file
from conductor.processes import descendants, end_recorded, process_start_time, terminate
from conductor.sandbox import claude_settings

if TYPE_CHECKING:
    from claude_agent_sdk.types import (
        HookContext,
        HookInput,
        HookJSONOutput,
        PermissionMode,
        SettingSource,
    )

    from conductor.track import Task

log = get_logger(__name__)

CLI_ENV = "CONDUCTOR_CLAUDE_CLI"
"""Environment variable naming the Claude Code executable to run (e.g. the offline fake)."""

RETRIES_ENV = "CONDUCTOR_CLAUDE_API_RETRIES"
"""Environment variable overriding ``api_retries``."""

BACKOFF_ENV = "CONDUCTOR_CLAUDE_API_BACKOFF"
"""Environment variable overriding ``api_backoff`` (seconds)."""

LARGE_PROMPT_BYTES = 100 * 1024
"""System prompts larger than this are passed as a file."""

PROGRESS_INTERVAL = 2.0
"""Minimum seconds between two PROGRESS messages of one attempt."""

COST_STEP = 0.01
"""Cost growth (USD) that is posted at once, whatever ``PROGRESS_INTERVAL`` says."""

MAX_BACKOFF = 300.0
"""Longest wait before re-running a session after an API error."""

_FAKE_PATH_ENV = ("CONDUCTOR_FAKE_SCRIPT", "CONDUCTOR_FAKE_LOG", "CONDUCTOR_FAKE_STATE")
"""Paths the offline fake CLI reads, resolved before the session starts in its copy."""

_DEFAULT_PERMISSION_MODE = "acceptEdits"
_ISOLATION_ENV = {
    # No telemetry, update checks or session-title requests (the latter is billed).
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    # Offer the conductor tools from the first request instead of behind ToolSearch.
    "ENABLE_TOOL_SEARCH": "false",
}

_FORCED_ENV = {
    # Measured with the bundled CLI 2.1.3xx: with credential scrubbing on (which the CLI
    # turns on by itself under GitHub Actions) its Bash sandbox no longer keeps writes inside
    # the working directory. Keep it off, whatever the environment says.
    "CLAUDE_CODE_SUBPROCESS_ENV_SCRUB": "0",
}


def isolated_env(env: dict[str, str], config_dir: Path, tmp_dir: Path) -> dict[str, str]:
    """``env`` for a background session: its own config and temp directories, no
    non-essential traffic, credential scrubbing off (see ``_FORCED_ENV``)."""
    env = dict(env)
    for key, value in _ISOLATION_ENV.items():
        if key not in env and key not in os.environ:
            env[key] = value
    env.update(_FORCED_ENV)
    env["CLAUDE_CONFIG_DIR"] = str(config_dir)
    env["TMPDIR"] = str(tmp_dir)
    return env


# --------------------------------------------------------------------------- metering


def _add_usage(total: dict[str, Any], usage: dict[str, Any] | None) -> None:
    for key, value in (usage or {}).items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            sub = total.setdefault(key, {})
            if isinstance(sub, dict):
                _add_usage(sub, value)


def _tokens(usage: dict[str, Any]) -> tuple[int, int]:
    tin = sum(
        int(usage.get(k, 0) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return tin, int(usage.get("output_tokens", 0) or 0)


@dataclass
class Meter:
    """Cost, usage and turns of one attempt, and the throttled PROGRESS messages about them."""

    post: Callable[..., Any]
    """Posts as the worker."""
    interval: float = PROGRESS_INTERVAL
    """Minimum seconds between PROGRESS messages."""
    clock: Callable[[], float] = time.monotonic
    """Time source (tests replace it)."""
    cost_done: float = 0.0
    """Cost of the attempt's finished sessions."""
    session_cost: float = 0.0
    """Latest cumulative ``total_cost_usd`` of the running session."""
    usage: dict[str, Any] = field(default_factory=dict)
    """Usage summed over results."""
    live: dict[str, Any] = field(default_factory=dict)
    """Usage of assistant messages since the last result (not yet in ``usage``)."""
    live_cost: float = 0.0
    """Those messages priced as they stream (``pricing``); the result's cost replaces it."""
    turns_done: int = 0
    """Turns of the finished sessions."""
    session_turns: int = 0
    """Turns of the running session."""
    results: int = 0
    """Results seen."""
    _seen: dict[str, tuple[str | None, dict[str, Any]]] = field(default_factory=dict)
    _current: str | None = None
    _posted_cost: float = 0.0
    _last_post: float | None = None
    _dirty: bool = False

    @property
    def cost(self) -> float:
        """This attempt's cost so far, the running session's streamed responses included."""
        return self.cost_done + self.session_cost + self.live_cost

    @property
    def turns(self) -> int:
        """This attempt's turns so far."""
        return self.turns_done + self.session_turns

    def begin_session(self) -> None:
        """A new session starts: its cumulative counters start from zero."""
        self.cost_done += self.session_cost
        self.turns_done += self.session_turns
        self.session_cost = 0.0
        self.session_turns = 0
        self.live = {}
        self.live_cost = 0.0
        self._seen.clear()
        self._current = None

    def on_assistant(self, message: AssistantMessage) -> None:
        """Count an assistant message's usage once per API message id, and price it."""
        if message.usage is None or message.parent_tool_use_id is not None:
            return
        key = message.message_id or message.uuid or str(id(message))
        self._update(key, message.model, message.usage)

    def on_stream(self, event: StreamEvent) -> None:
        """Take a response's usage as the API streams it.

        The CLI's assistant messages carry the usage of the response's start (output tokens
        still at 1); only the stream's ``message_delta`` has the final figure, long before
        the session's result."""
        if event.parent_tool_use_id is not None:
            return
        data = event.event
        kind = data.get("type")
        if kind == "message_start":
            start = data.get("message") or {}
            self._current = str(start.get("id") or event.uuid)
            self._update(self._current, start.get("model"), start.get("usage") or {})
        elif kind == "message_delta" and self._current is not None:
            model = self._seen.get(self._current, (None, {}))[0]
            self._update(self._current, model, data.get("usage") or {})

    def _update(self, key: str, model: str | None, usage: dict[str, Any]) -> None:
        """Merge what is known of one response's usage (the larger figure of each kind wins:
        the CLI repeats a response per content block, the stream refines it) and reprice."""
        old_model, known = self._seen.get(key, (None, {}))
        merged = dict(known)
        for name, value in usage.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                merged[name] = max(value, merged.get(name, 0) or 0)
            elif name not in merged:
                merged[name] = value
        entry = (model or old_model, merged)
        if self._seen.get(key) == entry:
            return
        self._seen[key] = entry
        self.live = {}
        self.live_cost = 0.0
        for each_model, each in self._seen.values():
            _add_usage(self.live, each)
            self.live_cost += price(each_model, each)
        self._dirty = True
        self.maybe_post()

    def on_result(self, result: ResultMessage) -> None:
        """Take a result's usage, its cost increase and its turns."""
        self.results += 1
        if result.total_cost_usd is not None:
            self.session_cost = max(self.session_cost, float(result.total_cost_usd))
        _add_usage(self.usage, result.usage)
        self.live = {}
        self.live_cost = 0.0
        self._seen.clear()
        self._current = None
        self.session_turns = max(self.session_turns, int(result.num_turns or 0))
        self._dirty = True
        self.maybe_post()

    def payload(self) -> dict[str, Any]:
        """The PROGRESS payload for the current figures."""
        current: dict[str, Any] = {}
        _add_usage(current, self.usage)
        _add_usage(current, self.live)
        tin, tout = _tokens(current)
        return {
            "source": "session",
            "tokens_in": tin,
            "tokens_out": tout,
            "cost_usd": round(self.cost, 6),
            "turns": self.turns,
        }

    def maybe_post(self, *, force: bool = False) -> None:
        """Post PROGRESS if figures changed and the interval passed, or the cost grew by
        ``COST_STEP`` since the last one (budgets must see money at once), or ``force``."""
        now = self.clock()
        if not force:
            if not self._dirty:
                return
            soon = self._last_post is not None and now - self._last_post < self.interval
            if soon and self.cost - self._posted_cost < COST_STEP:
                return
        self._last_post = now
        self._posted_cost = self.cost
        self._dirty = False
        self.post(MessageType.PROGRESS, payload=self.payload())


# --------------------------------------------------------------------------- a session


@dataclass
class _Prepared:
    """The rendered worker for this attempt."""

    agent_name: str
    template: str
    system_text: str
    model: str | None
    tools: list[str] | None
    skill_path: Path


@dataclass
class SessionEnd:
    """How one CLI session ended."""

    session_id: str
    """The id conductor gave the session."""
    cli_pid: int | None = None
    """The CLI process."""
    result: ResultMessage | None = None
    """The last result, if any."""
    error: str | None = None
    """A crash or protocol failure (no usable result)."""
    exit_code: int | None = None
    """The CLI's non-zero exit code, when known."""
    fatal: bool = False
    """A new attempt cannot help (the CLI is missing)."""
    watch: ApiWatch = field(default_factory=ApiWatch)
    """What the stream said about the API (errors, retries, rate-limit events)."""
    cut: bool = False
    """conductor ended the session itself (credentials refused, see ``ApiWatch.observe``)."""

    @property
    def api_stop(self) -> ApiStop | None:
        """Why the session stopped on the API (``api_errors``), or None."""
        if self.result is None and self.error is not None and not self.cut:
            return None
        return self.watch.classify(self.result)

    @property
    def api_status(self) -> int | None:
        """The HTTP status when the session ended on an overloaded API (worth running the
        session again after a pause), else None."""
        stop = self.api_stop
        if stop is None or stop.kind != "overload":
            return None
        return stop.status or 529


def _open_log(path: Path, header: str) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_state_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    fh = open(fd, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by the caller
    fh.write(header + "\n")
    fh.flush()
    return fh


async def _one_prompt(text: str) -> AsyncIterator[dict[str, Any]]:
    yield {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": "",
    }


def _task_attr(ctx: AttemptContext, name: str, default: Any = None) -> Any:
    value = getattr(ctx.task, name, None)
    if value is None:
        value = getattr(ctx.track, name, None)
    return default if value is None else value


class ClaudeExecutor(ExecutorBase):
    """Runs an attempt as one background Claude session (see the module docstring)."""

    def __init__(
        self,
        *,
        cli_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
        max_buffer_size: int = 16 << 20,
        api_retries: int = 3,
        api_backoff: float = 5.0,
    ) -> None:
        self.cli_path = cli_path
        """Claude Code executable; None uses the SDK's lookup (bundled binary first)."""
        self.extra_env = dict(extra_env or {})
        """Environment added to every session (under the attempt's own variables)."""
        self.max_buffer_size = max_buffer_size
        """Largest single message line accepted from the CLI."""
        self.api_retries = api_retries
        """Times a session that ended on an overloaded API is run again (other API stops end
        the attempt at once, for the scheduler to wait out)."""
        self.api_backoff = api_backoff
        """First wait before such a re-run, doubled each time."""

    # ---- the attempt

    def needs(self, task: Task) -> Needs:
        """Always its own sandboxed copy; locks on its files (and any it takes itself)."""
        return Needs(copy=True, sandbox=True, locks=True)

    def recover(self, started: dict[str, Any]) -> bool:
        """End the CLI (and its children) a killed conductor's attempt left running."""
        return end_recorded(started.get("cli_pid"), started.get("cli_pid_start"))

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Run the session(s), judge the claim against the evidence, return the outcome."""
        try:
            prepared = self._prepare(ctx)
        except ConductorError as exc:
            return Outcome(ok=False, error=str(exc), retryable=False)
        evidence = Evidence()
        meter = Meter(ctx.post)
        transcript = Transcript(ctx.log_path, ctx.post)
        try:
            return await self._attempt(ctx, prepared, evidence, meter, transcript)
        finally:
            transcript.close()

    async def _attempt(
        self,
        ctx: AttemptContext,
        prepared: _Prepared,
        evidence: Evidence,
        meter: Meter,
        transcript: Transcript,
    ) -> Outcome:
        api_failures = 0
        sessions = 0
        end: SessionEnd | None = None
        outcome: Outcome | None = None
        while True:
            budget = self._budget(ctx, meter.cost)
            if budget is not None and budget <= 0:
                if end is not None:  # spent by the sessions before: judge the last one
                    break
                outcome = Outcome(
                    ok=False,
                    error=_no_budget(ctx),
                    retryable=False,
                    cost_usd=meter.cost,
                    extra={"budget_stop": True},
                )
                break
            sessions += 1
            meter.begin_session()
            end = await self._run_session(
                ctx, prepared, evidence, meter, budget, sessions, transcript
            )
            status = end.api_status
            if status is None or evidence.claim is not None or api_failures >= self.api_retries:
                break
            delay = min(self.api_backoff * 2**api_failures, MAX_BACKOFF)
            api_failures += 1
            ctx.post(
                MessageType.API_RETRY,
                payload={
                    "scope": "session",
                    "attempt": api_failures,
                    "max_retries": self.api_retries,
                    "status": status,
                    "delay": delay,
                },
            )
            await anyio.sleep(delay)
        meter.maybe_post(force=True)
        if outcome is not None:
            return outcome
        assert end is not None
        outcome = self._verdict(
            ctx, end, evidence, meter, api_failures, sessions, prepared.agent_name
        )
        outcome.extra["denials"] = transcript.denials()
        outcome.extra["transcript"] = transcript.path.name
        return outcome

    def _verdict(
        self,
        ctx: AttemptContext,
        end: SessionEnd,
        evidence: Evidence,
        meter: Meter,
        api_failures: int,
        sessions: int,
        agent_name: str,
    ) -> Outcome:
        """The session's own verdict: how it ended and what it claimed. What its copy really
        changed is judged by the scheduler (``conductor.isolation``)."""
        extra: dict[str, Any] = {
            "tool_calls": evidence.tool_calls,
            "tool_counts": dict(evidence.tool_counts),
            "denials": list(evidence.denials),
            "sessions": sessions,
            "api_retries": api_failures,
            "agent": agent_name,
        }
        res = end.result
        if res is not None:
            extra["subtype"] = res.subtype
            if res.permission_denials:
                extra["permission_denials"] = res.permission_denials[:50]
        claim = evidence.claim
        if claim is not None:
            extra["claimed_files"] = claim.files_changed
            if claim.notes:
                extra["notes"] = claim.notes
        common: dict[str, Any] = {
            "cost_usd": meter.cost,
            "usage": meter.usage,
            "turns": meter.turns,
            "session_id": end.session_id,
            "files_changed": list(claim.files_changed) if claim else [],
            "claimed_files": list(claim.files_changed) if claim and claim.complete else None,
            "summary": claim.summary if claim else None,
            "exit_code": end.exit_code,
        }
        error: str | None = None
        retryable = True
        stop = end.api_stop if claim is None else None
        if end.fatal:
            error, retryable = end.error, False
        elif stop is not None:
            error = stop.describe()
            if api_failures:
                error += f" (the session was run {api_failures + 1} times)"
            extra["api_stop"] = stop.to_payload()
            return Outcome(
                ok=False, error=error, retryable=True, extra=extra, api_stop=stop, **common
            )
        elif res is not None and res.subtype == "error_max_budget_usd":
            error = (
                "session stopped at its budget limit; files may be half-written. It is not "
                "retried: raise the task's max_budget_usd (or the track's budget_usd) and run "
                "again"
            )
            retryable = False
            extra["budget_stop"] = True
        elif (
            res is not None
            and res.subtype == "error_max_turns"
            and not (claim is not None and claim.complete)
        ):
            error = f"session hit its turn limit ({res.num_turns} turns)"
        elif res is not None and res.is_error and res.subtype not in ("success", "error_max_turns"):
            detail = "; ".join(res.errors or []) or (res.result or "")
            error = f"session failed ({res.subtype})" + (f": {detail[:300]}" if detail else "")
        elif res is None and end.error is not None:
            error = end.error
        if error is None and res is not None and res.subtype == "error_max_turns":
            extra["session_error"] = "error_max_turns after the completion claim"
        if error is not None:
            return Outcome(ok=False, error=error, retryable=retryable, extra=extra, **common)
        verdict = judge(evidence)
        return Outcome(ok=verdict.ok, error=verdict.error, extra=extra, **common)

    # ---- preparation

    def _prepare(self, ctx: AttemptContext) -> _Prepared:
        from conductor.agents import AgentRegistry
        from conductor.paths import StateDir
        from conductor.templates import TemplateSet, write_skill

        agent = AgentRegistry(ctx.track, ctx.repo).resolve(ctx.task)
        rendered = TemplateSet(ctx.repo, ctx.track).render(
            track=ctx.track,
            task=ctx.task,
            agent=agent,
            attempt=ctx.attempt,
            worker_id=ctx.worker_id,
            feedback=ctx.feedback,
            bus_dir=StateDir(ctx.state_root).bus,
        )
        skill_path = write_skill(ctx.worker_dir, rendered)
        tools = list(rendered.tools) if rendered.tools is not None else None
        return _Prepared(
            agent_name=agent.name,
            template=str(getattr(rendered, "template", "") or ""),
            system_text=rendered.body,
            model=rendered.model,
            tools=tools,
            skill_path=skill_path,
        )

    def _budget(self, ctx: AttemptContext, spent: float) -> float | None:
        caps = [
            c
            for c in (getattr(ctx.task, "max_budget_usd", None), ctx.budget_left_usd)
            if c is not None
        ]
        if not caps:
            return None
        return min(float(c) for c in caps) - spent

    def prompt_for(self, ctx: AttemptContext) -> str:
        """The user prompt of the session."""
        return user_prompt(ctx.task.id, getattr(ctx.task, "name", None))

    def _env(self, ctx: AttemptContext) -> dict[str, str]:
        config_dir = ctx.worker_dir / "claude-config"
        tmp_dir = ctx.tmp_dir or ctx.worker_dir / "tmp"
        for d in (config_dir, tmp_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {**self.extra_env, **ctx.env}
        if ctx.token and TOKEN_ENV not in env:
            env[TOKEN_ENV] = ctx.token
        return isolated_env(env, config_dir, tmp_dir)

    def build_options(
        self,
        ctx: AttemptContext,
        prepared: _Prepared,
        *,
        binding: WorkerBinding,
        hooks: dict[Any, list[HookMatcher]],
        budget: float | None,
        session_id: str,
        stderr: Callable[[str], None] | None,
    ) -> ClaudeAgentOptions:
        """The session's options (exposed for inspection in tests)."""
        extra_args: dict[str, str | None] = {}
        system_prompt: dict[str, Any]
        if len(prepared.system_text.encode()) > LARGE_PROMPT_BYTES:
            prompt_file = ctx.worker_dir / "system-prompt.md"
            prompt_file.write_text(prepared.system_text, encoding="utf-8")
            system_prompt = {"type": "preset", "preset": "claude_code"}
            extra_args["append-system-prompt-file"] = str(prompt_file)
        else:
            system_prompt = {
                "type": "preset",
                "preset": "claude_code",
                "append": prepared.system_text,
            }
        builtin = [t for t in prepared.tools or [] if not t.startswith("mcp__")]
        extra_mcp = [t for t in prepared.tools or [] if t.startswith("mcp__")]
        allowed = list(dict.fromkeys([*qualified_tool_names(), *builtin, *extra_mcp]))
        sources = list(getattr(ctx.track, "setting_sources", None) or [])
        permission_mode: PermissionMode = _task_attr(
            ctx, "permission_mode", _DEFAULT_PERMISSION_MODE
        )
        return ClaudeAgentOptions(
            tools=builtin if prepared.tools is not None else None,
            allowed_tools=allowed,
            system_prompt=system_prompt,  # type: ignore[arg-type]
            mcp_servers={SERVER_KEY: build_bus_server(binding)},
            strict_mcp_config=not sources,
            permission_mode=permission_mode,
            max_turns=getattr(ctx.task, "max_turns", None),
            max_budget_usd=max(budget, 0.0) if budget is not None else None,
            model=prepared.model,
            cwd=ctx.cwd,
            cli_path=self.detached_cli(ctx.worker_dir),
            env=self._env(ctx),
            extra_args=extra_args,
            max_buffer_size=self.max_buffer_size,
            include_partial_messages=True,  # responses' usage as it streams (``Meter``)
            stderr=stderr,
            hooks=hooks,
            disallowed_tools=read_guard(ctx).deny_rules(),
            setting_sources=cast("list[SettingSource]", sources),
            session_id=session_id,
            sandbox=cast("Any", claude_settings(ctx.sandbox.allowed_domains, ctx.sandbox.hidden))
            if ctx.sandbox is not None
            else None,
        )

    def detached_cli(self, worker_dir: Path) -> Path | None:
        """The CLI to start, wrapped to run in a session of its own.

        Then it has no controlling terminal (neither it nor a command it runs can read or
        write the person's terminal past conductor's view) and is out of the terminal's
        process group (Ctrl-C reaches conductor, which ends the session in order). The
        wrapper is ``exec setsid CLI "$@"``: the CLI keeps the wrapper's pid, which is the
        pid recorded for reaping. Without ``setsid`` the CLI is started as it is.
        """
        setsid = shutil.which("setsid")
        real = self.cli_path or bundled_cli() or _on_path("claude")
        if setsid is None or real is None:
            return self.cli_path
        wrapper = worker_dir / "claude-detached"
        script = f'#!/bin/sh\nexec {shlex.quote(setsid)} {shlex.quote(str(real))} "$@"\n'
        write_atomic(wrapper, script, mode=0o700)
        return wrapper

    def _hooks(
        self, ctx: AttemptContext, evidence: Evidence, transcript: Transcript
    ) -> dict[Any, list[HookMatcher]]:
        locks = ctx.locks
        guard = FileGuard(
            repo=ctx.cwd,
            globs=tuple(getattr(ctx.task, "files", None) or ()),
            worker=ctx.worker_id,
            locks=locks_covering(locks) if locks is not None else None,
            extra_forbidden=() if ctx.workdir is not None else (ctx.state_root,),
        )
        reads = read_guard(ctx)

        def deny(name: str, path: str, reason: str, tool_use_id: str | None) -> HookJSONOutput:
            transcript.denied(tool_use_id, name, path, reason)
            refused = {"tool": name, "path": path, "reason": reason}
            evidence.denials.append(refused)
            try:
                ctx.post(MessageType.TOOL_DENIED, payload=refused)
            except Exception:  # the denial stands even when the bus refuses the message
                log.exception("cannot post TOOL_DENIED", worker=ctx.worker_id)
            return cast("HookJSONOutput", denial(reason))

        async def pre_tool_use(
            data: HookInput, tool_use_id: str | None, _context: HookContext
        ) -> HookJSONOutput:
            raw_input: dict[str, Any] = dict(data)
            name = str(raw_input.get("tool_name", ""))
            tool_input = raw_input.get("tool_input") or {}
            tool_use_id = tool_use_id or raw_input.get("tool_use_id")
            evidence.record_tool_use(name, tool_use_id)
            cwd = raw_input.get("cwd")
            here = Path(cwd) if isinstance(cwd, str) else ctx.cwd
            if name in READ_TOOLS:
                try:
                    refused = reads.check(name, dict(tool_input), here)
                except Exception as exc:  # fail closed, as the file guard does
                    log.exception("read guard failed", worker=ctx.worker_id)
                    refused = ("", f"conductor could not check this read ({exc})")
                return {} if refused is None else deny(name, *refused, tool_use_id)
            if name not in GUARDED_TOOLS:
                return {}
            raw = guarded_path(tool_input) if isinstance(tool_input, dict) else None
            if raw is None:
                return deny(name, "", "no file path in the tool call", tool_use_id)
            try:
                rel, reason = guard.check(raw, cwd=Path(cwd) if isinstance(cwd, str) else None)
            except Exception as exc:  # fail closed: a guard that cannot decide denies
                log.exception("file guard failed", worker=ctx.worker_id, path=raw)
                return deny(name, raw, f"conductor could not check this path ({exc})", tool_use_id)
            if reason is None:
                return {}
            return deny(name, rel or raw, reason, tool_use_id)

        async def post_tool_use(
            data: HookInput, tool_use_id: str | None, _context: HookContext
        ) -> HookJSONOutput:
            raw_input: dict[str, Any] = dict(data)
            evidence.record_tool_use(
                str(raw_input.get("tool_name", "")), tool_use_id or raw_input.get("tool_use_id")
            )
            return {}

        return {
            "PreToolUse": [HookMatcher(matcher=GUARDED_MATCHER, hooks=[pre_tool_use])],
            "PostToolUse": [HookMatcher(matcher=None, hooks=[post_tool_use])],
        }

    # ---- one session

    async def _run_session(
        self,
        ctx: AttemptContext,
        prepared: _Prepared,
        evidence: Evidence,
        meter: Meter,
        budget: float | None,
        number: int,
        transcript: Transcript,
    ) -> SessionEnd:
        session_id = str(uuid.uuid4())
        end = SessionEnd(session_id=session_id)
        binding = WorkerBinding(
            worker=ctx.worker_id,
            task=ctx.task.id,
            attempt=ctx.attempt,
            repo=ctx.cwd,
            globs=tuple(getattr(ctx.task, "files", None) or ()),
            post=ctx.post,
            evidence=evidence,
            locks=ctx.locks,
            bus=ctx.bus,
        )
        logfile = _open_log(ctx.log_path, f"--- claude session {number} ({session_id}) ---")

        def stderr(line: str) -> None:
            with contextlib.suppress(OSError, ValueError):
                logfile.write(line + "\n")
                logfile.flush()

        options = self.build_options(
            ctx,
            prepared,
            binding=binding,
            hooks=self._hooks(ctx, evidence, transcript),
            budget=budget,
            session_id=session_id,
            stderr=stderr,
        )
        client = ClaudeSDKClient(options)
        family: list[psutil.Process] = []
        try:
            try:
                await client.connect(prompt=_one_prompt(self.prompt_for(ctx)))
            except CLINotFoundError as exc:
                end.error, end.fatal = f"Claude Code CLI not found: {exc}", True
                return end
            except ClaudeSDKError as exc:
                end.error = f"Claude Code CLI failed to start: {exc}"
                return end
            end.cli_pid = await self._cli_pid(client)
            started = end.cli_pid and process_start_time(end.cli_pid)
            ctx.post(
                MessageType.WORKER_STARTED,
                payload={
                    "session_id": session_id,
                    "session": number,
                    "cli_pid": end.cli_pid,
                    "cli_pid_start": started or None,
                    "model": prepared.model,
                    "template": prepared.template,
                    "agent": prepared.agent_name,
                    "skill": str(prepared.skill_path),
                },
            )
            try:
                with anyio.CancelScope() as cut:
                    async for message in client.receive_messages():
                        if isinstance(message, StreamEvent):
                            meter.on_stream(message)  # partial responses: only their cost
                            continue
                        transcript.record(message)
                        if self._observe(ctx, message, end, evidence, meter):
                            cut.cancel()  # the CLI would retry refused credentials for minutes
                if cut.cancelled_caught:
                    end.cut = True
                    await self._end_cli(end.cli_pid)
            except ResultError as exc:
                end.exit_code = exc.exit_code
                if end.result is None:
                    end.error = f"session failed: {exc}"
            except ProcessError as exc:
                end.exit_code = exc.exit_code
                end.error = f"Claude Code CLI exited with status {exc.exit_code} (see the log)"
            except ClaudeSDKError as exc:
                end.error = f"Claude Code CLI failed: {exc}"
            if end.cli_pid:
                family = descendants(end.cli_pid)
        except BaseException:
            # Cancelled (timeout, Ctrl-C) or failing: end the CLI and whatever it started now,
            # rather than waiting out the SDK's close (EOF, 5 s, SIGTERM, 5 s, SIGKILL).
            await self._end_cli(end.cli_pid)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await client.disconnect()
                leftovers = [p for p in family if p.is_running()]
                if leftovers:
                    await anyio.to_thread.run_sync(terminate, leftovers)
            with contextlib.suppress(OSError, ValueError):
                logfile.write(_end_line(end))
            logfile.close()
        return end

    async def _end_cli(self, pid: int | None) -> None:
        """End the CLI process ``pid`` and everything it started (shielded)."""
        if not pid:
            return
        tree = [*descendants(pid)]
        with contextlib.suppress(psutil.Error):
            tree.insert(0, psutil.Process(pid))
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(terminate, tree)

    async def _cli_pid(self, client: ClaudeSDKClient) -> int | None:
        info = await client.get_server_info()
        pid = info.get("pid") if isinstance(info, dict) else None
        if isinstance(pid, int) and not isinstance(pid, bool):
            return pid
        process = getattr(getattr(client, "_transport", None), "_process", None)
        pid = getattr(process, "pid", None)
        return pid if isinstance(pid, int) else None

    def _observe(
        self,
        ctx: AttemptContext,
        message: Any,
        end: SessionEnd,
        evidence: Evidence,
        meter: Meter,
    ) -> bool:
        """Take one message of the session; True when the session must end now."""
        cut = end.watch.observe(message)
        if isinstance(message, AssistantMessage):
            for block in message.content:
                if isinstance(block, ToolUseBlock):
                    evidence.record_tool_use(block.name, block.id)
            meter.on_assistant(message)
        elif isinstance(message, ResultMessage):
            end.result = message
            meter.on_result(message)
        elif isinstance(message, SystemMessage) and message.subtype == "api_retry":
            data = message.data
            delay_ms = data.get("retry_delay_ms")
            delay = round(delay_ms / 1000, 3) if isinstance(delay_ms, int | float) else None
            ctx.post(
                MessageType.API_RETRY,
                payload={
                    "scope": "request",
                    "attempt": data.get("attempt"),
                    "max_retries": data.get("max_retries"),
                    "status": data.get("error_status"),
                    "delay": delay,
                    "error": str(data.get("error") or "")[:200] or None,
                },
            )
        return cut


def _no_budget(ctx: AttemptContext) -> str:
    """Why an attempt cannot start: which budget is spent, and what to change."""
    cap = getattr(ctx.task, "max_budget_usd", None)
    if cap is None:
        return "no budget left: the track's budget_usd is spent; raise it and run again"
    return (
        f"no budget left: the task's attempts spent its max_budget_usd (${float(cap):.2f}), "
        "or the track's budget_usd is spent; raise it and run again"
    )


def _end_line(end: SessionEnd) -> str:
    """The attempt log's line about how a session ended, in the CLI's own words."""
    res = end.result
    if end.cut:
        what = "ended by conductor: " + (end.watch.assistant_text or "the API refused it")
    elif res is None:
        what = end.error or "no result"
    else:
        what = f"{res.subtype}{' (error)' if res.is_error else ''}"
        text = (res.result or "").strip() or "; ".join(res.errors or [])
        if text and (res.is_error or res.subtype != "success"):
            what += f": {text[:500]}"
    return f"--- claude session ended: {what} ---\n"


def user_prompt(task_id: str, name: str | None = None) -> str:
    """The user prompt every worker session gets; the system prompt carries the task."""
    return (
        f"Carry out task {task_id} ({name or task_id}) as your system prompt describes, in this "
        f"repository. When it is done, call {qualified(REPORT_COMPLETE)} with a "
        f"summary and the files you changed; if you cannot do it, call "
        f"{qualified(REPORT_FAILED)} with the reason."
    )


def read_guard(ctx: AttemptContext) -> ReadGuard:
    """What the attempt's reading tools are kept out of: every track's state, as the sandbox
    hides it from Bash, but the attempt's own copy, temporary and worker directories (the
    CLI keeps its config there, and a long tool output it tells the model to Read)."""
    mine = (ctx.workdir, ctx.tmp_dir, ctx.worker_dir)
    return ReadGuard(hidden=(ctx.state_root.parent,), open=tuple(d for d in mine if d))


def claude_executor_from_env(environ: Mapping[str, str] | None = None) -> ClaudeExecutor:
    """A ``ClaudeExecutor`` configured from the environment.

    - ``CONDUCTOR_CLAUDE_CLI``: the Claude Code executable, a path or a command on ``PATH``
      (e.g. ``conductor-fake-claude`` to run offline);
    - ``CONDUCTOR_CLAUDE_API_RETRIES`` / ``CONDUCTOR_CLAUDE_API_BACKOFF``: how often and after
      how many seconds (doubling) a session that ended on an overloaded API is run again.

    The offline fake's ``CONDUCTOR_FAKE_SCRIPT``, ``CONDUCTOR_FAKE_LOG`` and
    ``CONDUCTOR_FAKE_STATE`` are taken relative to where conductor runs: the session itself
    runs in the attempt's copy, where a relative path would name the copy's files.
    """
    env = os.environ if environ is None else environ
    kw: dict[str, Any] = {}
    # The offline fake reads these in the attempt's copy: make them this process's paths.
    fakes = {
        name: str(Path(env[name]).resolve()) for name in _FAKE_PATH_ENV if env.get(name, "").strip()
    }
    if fakes:
        kw["extra_env"] = fakes
    cli = env.get(CLI_ENV, "").strip()
    if cli:
        if os.sep not in cli:
            found = shutil.which(cli)
            if found is None:
                raise UserError(f"{CLI_ENV}={cli!r}: no such command on PATH")
            cli = found
        kw["cli_path"] = Path(cli)
    retries = env_number(env, RETRIES_ENV, int)
    if retries is not None:
        kw["api_retries"] = retries
    backoff = env_number(env, BACKOFF_ENV, float)
    if backoff is not None:
        kw["api_backoff"] = backoff
    return ClaudeExecutor(**kw)


def bundled_cli() -> Path | None:
    """The Claude Code binary shipped inside claude-agent-sdk, if this install has one."""
    import importlib.util
    import platform

    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or spec.origin is None:
        return None
    name = "claude.exe" if platform.system() == "Windows" else "claude"
    path = Path(spec.origin).parent / "_bundled" / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None
