"""The Claude executor against the offline fake CLI (and a few runs of the real bundled CLI)."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import yaml
from claude_agent_sdk import AssistantMessage, ResultMessage, TextBlock

from conductor.bus import Bus
from conductor.errors import UserError
from conductor.executors.base import AttemptContext, Outcome
from conductor.executors.claude import ClaudeExecutor, Meter, claude_executor_from_env
from conductor.locks import PathLocks
from conductor.messages import Message
from conductor.paths import StateDir
from conductor.testing import fake_cli_path, read_fake_log
from conductor.track import Track, parse_track
from conductor.workers import create_worker_dir

pytestmark = pytest.mark.anyio

TRACK = """
track: tr
agents:
  coder:
    role: Careful coder
    system_prompt: You write small, correct changes.
    tools: [Read, Write, Edit, Bash]
  reader:
    role: Curious coder
    tools: [Read, Grep, Glob, Write]
tasks:
  - id: ok
    type: code
    files: ["src/**"]
    agent: coder
    instructions: "MARKER-OK write src/a.py"
    max_turns: 7
    max_budget_usd: 2.5
    model: claude-test-model
  - {id: notools, type: code, files: ["src/**"], agent: coder}
  - {id: nochange, type: code, files: ["src/**"], agent: coder}
  - {id: noclaim, type: code, files: ["src/**"], agent: coder}
  - {id: outside, type: code, files: ["src/**"], agent: coder}
  - {id: locked, type: code, files: ["src/**"], agent: coder}
  - {id: overload, type: code, files: ["src/**"], agent: coder}
  - {id: exhaust, type: code, files: ["src/**"], agent: coder}
  - {id: hang, type: code, agent: coder}
  - {id: stubborn, type: code, agent: coder}
  - {id: costly, type: research, agent: coder}
  - {id: failing, type: code, agent: coder}
  - {id: turns, type: code, files: ["src/**"], agent: coder, max_turns: 2}
  - {id: budget, type: code, files: ["src/**"], agent: coder, max_budget_usd: 0.05}
  - {id: crash, type: code, agent: coder}
  - {id: big, type: code, agent: coder}
  - {id: child, type: code, agent: coder}
  - {id: peek, type: code, files: ["src/**"], agent: reader}
"""


def rule(task: str, steps: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    """A fake-CLI rule matching the executor's prompt for ``task``."""
    out: dict[str, Any] = {"match": f"Carry out task {task} ("}
    if steps is not None:
        out["steps"] = steps
    out.update(kw)
    return out


def complete(*files: str, summary: str = "done") -> dict[str, Any]:
    return {
        "mcp": {
            "tool": "report_complete",
            "input": {"summary": summary, "files_changed": list(files)},
        }
    }


class Harness:
    """A git repository, a state directory with a real bus and locks, and the fake CLI."""

    def __init__(self, root: Path, repo: Path) -> None:
        self.root = root
        self.repo = repo
        self.track: Track = parse_track(textwrap.dedent(TRACK))
        self.sd = StateDir.for_track(repo, "tr", root / "state").ensure()
        self.bus = Bus.for_state(self.sd, "tr")
        self.locks = PathLocks(self.sd.locks, notify=self._notify)
        self.script = root / "script.yaml"
        self.fake_log = root / "fake.jsonl"
        self.script.write_text(yaml.safe_dump({"sessions": []}))

    def _notify(self, mtype: str, payload: dict[str, Any]) -> None:
        worker = payload.get("worker")
        self.bus.post(mtype, task=payload.get("task"), worker=worker, payload=payload)

    def write_script(self, *rules: dict[str, Any]) -> None:
        self.script.write_text(yaml.safe_dump({"sessions": list(rules)}))

    def executor(self, **kw: Any) -> ClaudeExecutor:
        kw.setdefault("api_backoff", 0.01)
        return ClaudeExecutor(
            cli_path=fake_cli_path(),
            extra_env={
                "CONDUCTOR_FAKE_SCRIPT": str(self.script),
                "CONDUCTOR_FAKE_LOG": str(self.fake_log),
            },
            **kw,
        )

    def ctx(
        self, task_id: str, *, attempt: int = 1, budget_left: float | None = None
    ) -> AttemptContext:
        task = self.track.task(task_id)
        wid = f"{task_id}.{attempt}"
        worker_dir, token = create_worker_dir(self.sd.workers, task_id, attempt)

        def post(mtype: str, *, payload: dict[str, Any] | None = None) -> Message:
            return self.bus.post(mtype, task=task_id, worker=wid, attempt=attempt, payload=payload)

        return AttemptContext(
            track=self.track,
            task=task,
            attempt=attempt,
            worker_id=wid,
            repo=self.repo,
            worker_dir=worker_dir,
            log_path=self.sd.logs / task_id / f"{attempt}.log",
            state_root=self.sd.root,
            post=post,
            token=token,
            env={"CONDUCTOR_WORKER": wid, "CONDUCTOR_WORKER_TOKEN": token},
            budget_left_usd=budget_left,
            locks=self.locks,
            bus=self.bus,
        )

    def messages(self, mtype: str | None = None, task: str | None = None) -> list[Message]:
        return [
            m
            for m in self.bus.read()
            if (mtype is None or m.type == mtype) and (task is None or m.task == task)
        ]

    def starts(self) -> list[dict[str, Any]]:
        return [r for r in read_fake_log(self.fake_log) if r["event"] == "start"]


@pytest.fixture
def h(tmp_path: Path, repo: Path) -> Iterator[Harness]:
    """The harness; afterwards no child process of this test may still be running."""
    harness = Harness(tmp_path, repo)
    yield harness
    harness.bus.close()
    leaked = [p for p in psutil.Process().children(recursive=True) if p.is_running()]
    leaked = [p for p in leaked if p.status() != psutil.STATUS_ZOMBIE]
    assert not leaked, f"processes outlived the attempt: {leaked}"


async def run(h: Harness, task: str, **kw: Any) -> Outcome:
    executor = kw.pop("executor", None) or h.executor()
    return await executor.execute(h.ctx(task, **kw))


# ----------------------------------------------------------------------------- isolation


async def test_isolation_options_reach_the_cli(h: Harness) -> None:
    """The CLI gets the rendered skill appended, no setting sources, tools, model and limits."""
    h.write_script(
        rule("ok", [{"write": {"path": "src/a.py", "content": "a = 1\n"}}, complete("src/a.py")])
    )
    ctx = h.ctx("ok", budget_left=1.25)
    outcome = await h.executor().execute(ctx)
    assert outcome.ok, outcome.error
    (start,) = h.starts()
    args = start["args"]
    skill = (ctx.worker_dir / "SKILL.md").read_text()
    assert "MARKER-OK" in skill
    assert "MARKER-OK" in args["append_system_prompt"]
    assert args["system_prompt"] is None, "the Claude Code preset is kept"
    assert args["setting_sources"] == []
    assert args["tools"] == ["Read", "Write", "Edit", "Bash"]
    assert args["model"] == "claude-test-model"
    assert args["permission_mode"] == "acceptEdits"
    assert args["max_turns"] == 7
    assert args["max_budget_usd"] == 1.25, "capped by what is left of the track budget"
    assert args["mcp_servers"] == ["conductor"]
    assert "mcp__conductor__report_complete" in args["allowed_tools"]
    assert "strict-mcp-config" in args["flags"]
    env = start["env"]
    assert env["CLAUDE_CONFIG_DIR"] == str(ctx.worker_dir / "claude-config")
    assert env["TMPDIR"] == str(ctx.worker_dir / "tmp")
    assert env["CONDUCTOR_WORKER"] == "ok.1"
    assert "CONDUCTOR_WORKER_TOKEN" in env
    assert start["cwd"] == str(h.repo)
    (started,) = h.messages("WORKER_STARTED")
    assert started.payload["cli_pid"] == start["pid"]
    assert started.payload["cli_pid_start"] > 0
    assert started.payload["agent"] == "coder" and started.payload["template"] == "code-worker"
    assert started.payload["session_id"] == outcome.session_id == args["values"]["session-id"]
    assert f"--- claude session 1 ({outcome.session_id}) ---" in ctx.log_path.read_text()


async def test_the_cli_runs_in_a_session_of_its_own(h: Harness) -> None:
    """The CLI leads its own session: no controlling terminal, out of Ctrl-C's reach; the pid
    recorded for reaping is the CLI's."""
    h.write_script(
        rule("ok", [{"write": {"path": "src/a.py", "content": "a = 1\n"}}, complete("src/a.py")])
    )
    outcome = await h.executor().execute(h.ctx("ok"))
    assert outcome.ok, outcome.error
    (start,) = h.starts()
    assert start["session"] == start["pid"] != os.getsid(0)
    assert start["has_tty"] is False
    (started,) = h.messages("WORKER_STARTED")
    assert started.payload["cli_pid"] == start["pid"]


async def test_sandbox_and_network_reach_the_cli(h: Harness) -> None:
    """An attempt with a sandbox plan runs the CLI with Claude Code's sandbox on, unsandboxed
    commands refused, the state directory unreadable and the track's domains as the only
    network."""
    import dataclasses

    from conductor.executors.base import Sandbox

    h.write_script(rule("ok", [{"text": "hi"}]))
    plan = Sandbox(allowed_domains=("pypi.org",), hidden=(h.sd.root,))
    ctx = dataclasses.replace(h.ctx("ok"), sandbox=plan)
    await h.executor().execute(ctx)
    (start,) = h.starts()
    settings = json.loads(start["args"]["values"]["settings"])
    assert settings["sandbox"] == {
        "enabled": True,
        "autoAllowBashIfSandboxed": True,
        "allowUnsandboxedCommands": False,
        "network": {"allowedDomains": ["pypi.org"]},
        "filesystem": {"denyRead": [str(h.sd.root)]},
    }
    assert start["env"]["CLAUDE_CODE_SUBPROCESS_ENV_SCRUB"] == "0", "scrubbing lifts the sandbox"


async def test_large_system_prompt_goes_through_a_file(h: Harness) -> None:
    """A skill over 100 KiB is passed with --append-system-prompt-file, not on the command line."""
    h.write_script(rule("big", [{"text": "ok"}]))
    big = "x" * (110 * 1024)
    h.track = parse_track(
        textwrap.dedent(TRACK).replace(
            "  - {id: big, type: code, agent: coder}",
            f'  - {{id: big, type: code, agent: coder, instructions: "{big}"}}',
        )
    )
    ctx = h.ctx("big")
    await h.executor().execute(ctx)
    (start,) = h.starts()
    prompt_file = Path(start["args"]["values"]["append-system-prompt-file"])
    assert start["args"]["append_system_prompt"] is None
    assert big in prompt_file.read_text()  # noqa: ASYNC240 - a test reading a small file


# ----------------------------------------------------------------------------- verdicts


async def test_complete_claim_with_a_real_change_is_ok(h: Harness) -> None:
    """A claim backed by a tool call stands; the executor reports the claimed files (what the
    copy really changed is judged by the scheduler: tests/test_isolation.py)."""
    h.write_script(
        rule(
            "ok",
            [
                {
                    "mcp": {
                        "tool": "report_progress",
                        "input": {"message": "writing", "percent": 50},
                    }
                },
                {"write": {"path": "src/a.py", "content": "a = 1\n"}, "cost": 0.02},
                complete("src/a.py", "src/imaginary.py", summary="wrote a"),
            ],
        )
    )
    outcome = await run(h, "ok")
    assert outcome.ok and outcome.error is None
    assert outcome.claimed_files == ["src/a.py", "src/imaginary.py"]
    assert outcome.summary == "wrote a"
    assert outcome.extra["claimed_files"] == ["src/a.py", "src/imaginary.py"]
    assert outcome.cost_usd == pytest.approx(0.02)
    assert outcome.turns and outcome.turns >= 1
    assert (h.repo / "src" / "a.py").read_text() == "a = 1\n"
    types = [m.type for m in h.messages(task="ok")]
    assert types[0] == "WORKER_STARTED"
    assert "CLAIM_COMPLETE" in types
    progress = h.messages("PROGRESS", "ok")
    assert any(p.payload.get("source") == "worker" for p in progress)
    final = [p for p in progress if p.payload.get("source") == "session"][-1]
    assert final.payload["cost_usd"] == pytest.approx(0.02)


async def test_claim_without_tool_calls_is_rejected(h: Harness) -> None:
    """Claiming completion without having called a single tool is not evidence of work."""
    h.write_script(rule("notools", [{"text": "All done!"}, complete("src/a.py")]))
    outcome = await run(h, "notools")
    assert not outcome.ok and outcome.error == "no evidence: no tool calls"
    assert h.messages("CLAIM_COMPLETE", "notools"), "the claim itself is still on the bus"


async def test_claim_is_passed_on_for_the_diff_verdict(h: Harness) -> None:
    """A claim after a tool call stands at the session's level; whether the files really
    changed is the scheduler's verdict on the copy (tests/test_isolation.py)."""
    h.write_script(
        rule(
            "nochange",
            [{"tool": {"name": "Read", "input": {"file_path": "README.md"}}}, complete("src/a.py")],
        )
    )
    outcome = await run(h, "nochange")
    assert outcome.ok and outcome.claimed_files == ["src/a.py"]
    assert outcome.extra["tool_calls"] == 1


async def test_session_without_claim_fails(h: Harness) -> None:
    """A session that ends without reporting is a failure, even if it changed files."""
    h.write_script(rule("noclaim", [{"write": {"path": "src/a.py", "content": "x"}}]))
    outcome = await run(h, "noclaim")
    assert not outcome.ok
    assert outcome.error == "session ended without reporting completion"
    assert outcome.claimed_files is None


async def test_failure_claim_fails_with_its_reason(h: Harness) -> None:
    """report_failed makes the attempt fail with the worker's reason."""
    h.write_script(
        rule("failing", [{"mcp": {"tool": "report_failed", "input": {"reason": "no compiler"}}}])
    )
    outcome = await run(h, "failing")
    assert not outcome.ok and "no compiler" in (outcome.error or "")
    assert h.messages("CLAIM_FAILED", "failing")[0].payload == {"reason": "no compiler"}


# ----------------------------------------------------------------------------- the guard


async def test_write_outside_files_is_denied(h: Harness) -> None:
    """A write outside the task's files is denied before it happens and reported on the bus."""
    h.write_script(
        rule(
            "outside",
            [
                {"write": {"path": "docs/notes.md", "content": "x"}},
                {"write": {"path": "../escape.txt", "content": "x"}},
                {"write": {"path": "src/a.py", "content": "a = 1\n"}},
                complete("src/a.py"),
            ],
        )
    )
    outcome = await run(h, "outside")
    assert not (h.repo / "docs" / "notes.md").exists()
    assert not (h.repo.parent / "escape.txt").exists()
    denied = h.messages("TOOL_DENIED", "outside")
    assert len(denied) == 2 and denied[0].payload["path"] == "docs/notes.md"
    assert denied[1].payload["path"].endswith("escape.txt")
    assert "outside the repository" in denied[1].payload["reason"]
    assert "outside this task's files" in denied[0].payload["reason"]
    assert denied[0].payload["tool"] == "Write"
    assert outcome.ok, "the allowed write still counts"
    assert outcome.files_changed == ["src/a.py"]
    assert len(outcome.extra["denials"]) == 2
    assert len(outcome.extra["permission_denials"]) == 2


async def test_reads_of_conductors_state_are_denied(h: Harness) -> None:
    """Read, Grep and Glob cannot reach conductor's state (the workers' secret, the bus, other
    tracks'), not even by a search rooted above it; the repository and beyond stay readable."""
    secret = h.sd.workers / ".secret"  # written when the attempt's worker is made
    other = h.sd.root.parent / "other-track"
    other.mkdir()
    (h.repo / "notes.txt").write_text("notes\n")
    (h.repo / "link").symlink_to(secret)
    steps = [
        {"tool": {"name": "Read", "input": {"file_path": str(secret)}, "result": "s3cret"}},
        {"tool": {"name": "Read", "input": {"file_path": "link"}, "result": "s3cret"}},
        {"tool": {"name": "Grep", "input": {"pattern": "x", "path": str(h.root)}}},
        {"tool": {"name": "Glob", "input": {"pattern": f"{other}/**"}}},
        {"tool": {"name": "Glob", "input": {"pattern": "**/*.json", "path": str(h.sd.bus)}}},
        {"tool": {"name": "Read", "input": {"file_path": str(h.repo / "notes.txt")}}},
        {"tool": {"name": "Grep", "input": {"pattern": "notes"}}},
        {"tool": {"name": "Read", "input": {"file_path": "/etc/hostname"}}},
        {"write": {"path": "src/a.py", "content": "a = 1\n"}},
        complete("src/a.py"),
    ]
    h.write_script(rule("peek", steps))
    outcome = await run(h, "peek")
    denied = [(m.payload["tool"], m.payload["reason"]) for m in h.messages("TOOL_DENIED", "peek")]
    assert [tool for tool, _ in denied] == ["Read", "Read", "Grep", "Glob", "Glob"], denied
    assert all("conductor's state directory" in reason for _, reason in denied), denied
    assert "search inside the repository" in denied[2][1]
    assert outcome.ok and outcome.files_changed == ["src/a.py"]
    assert len(outcome.extra["denials"]) == 5


async def test_write_to_a_file_locked_by_another_worker_is_denied(h: Harness) -> None:
    """A file another worker locked cannot be written; the worker's lock_file is refused too."""
    h.locks.acquire("src/a.py", worker="other.1", task="other", attempt=1)
    h.write_script(
        rule(
            "locked",
            [
                {"mcp": {"tool": "lock_file", "input": {"path": "src/a.py"}}},
                {"write": {"path": "src/a.py", "content": "mine"}},
                {"mcp": {"tool": "lock_file", "input": {"path": "src/b.py"}}},
                {"write": {"path": "src/b.py", "content": "b"}},
                complete("src/b.py"),
            ],
        )
    )
    outcome = await run(h, "locked")
    assert not (h.repo / "src" / "a.py").exists()
    (denied,) = h.messages("TOOL_DENIED", "locked")
    assert "locked by worker other.1" in denied.payload["reason"]
    assert h.messages("LOCK_DENIED"), "the refused lock_file is on the bus"
    assert h.locks.holder("src/b.py") is not None
    assert outcome.ok and outcome.files_changed == ["src/b.py"]


# ----------------------------------------------------------------------------- API errors


async def test_overloaded_api_reruns_the_session(h: Harness) -> None:
    """A 529 error result re-runs the session after a backoff; it is not a task failure."""
    h.write_script(
        rule(
            "overload",
            attempts=[
                [
                    {"api_retry": {"attempt": 1, "status": 529}},
                    {"text": "thinking", "cost": 0.01},
                    {"error": {"message": "Overloaded", "api_error_status": 529}},
                ],
                [
                    {"write": {"path": "src/a.py", "content": "1"}, "cost": 0.02},
                    complete("src/a.py"),
                ],
            ],
        )
    )
    outcome = await run(h, "overload")
    assert outcome.ok, outcome.error
    retries = h.messages("API_RETRY", "overload")
    scopes = [(r.payload["scope"], r.payload["status"]) for r in retries]
    assert scopes == [("request", 529), ("session", 529)]
    assert len(h.messages("WORKER_STARTED", "overload")) == 2
    assert outcome.extra["sessions"] == 2 and outcome.extra["api_retries"] == 1
    assert outcome.cost_usd == pytest.approx(0.03), "both sessions are paid for, once each"


async def test_api_errors_exhausted_is_an_api_stop(h: Harness) -> None:
    """When the API stays overloaded past api_retries, the outcome is an overload API stop
    (which the scheduler defers without counting), in the CLI's own words."""
    h.write_script(rule("exhaust", [{"error": {"message": "Overloaded", "api_error_status": 529}}]))
    outcome = await run(h, "exhaust", executor=h.executor(api_retries=2))
    assert not outcome.ok and outcome.retryable
    assert outcome.api_stop is not None and outcome.api_stop.kind == "overload"
    assert outcome.error == (
        "the API is overloaded: API Error: 529 Overloaded (the session was run 3 times)"
    )
    assert len(h.messages("WORKER_STARTED", "exhaust")) == 3


# ----------------------------------------------------------------------------- session errors


async def test_turn_limit_without_claim_fails(h: Harness) -> None:
    """error_max_turns before any claim fails the attempt with the reason."""
    h.write_script(rule("turns", [{"text": "1"}, {"text": "2"}, {"text": "3"}, complete()]))
    outcome = await run(h, "turns")
    assert not outcome.ok and "turn limit" in (outcome.error or "")


async def test_turn_limit_after_the_claim_is_judged_by_evidence(h: Harness) -> None:
    """A worker stopped by max_turns right after claiming is judged by its evidence."""
    h.write_script(
        rule(
            "turns",
            [
                {"write": {"path": "src/a.py", "content": "1"}},
                complete("src/a.py"),
                {"text": "Finished."},
            ],
        )
    )
    outcome = await run(h, "turns")
    assert outcome.extra["subtype"] == "error_max_turns"
    assert outcome.ok, outcome.error
    assert outcome.files_changed == ["src/a.py"]


async def test_budget_cut_fails_and_reports_changes(h: Harness) -> None:
    """error_max_budget_usd fails the attempt (its copy is never landed)."""
    h.write_script(
        rule(
            "budget",
            [
                {"write": {"path": "src/a.py", "content": "1"}, "cost": 0.04},
                {"text": "more", "cost": 0.04},
                complete("src/a.py"),
            ],
        )
    )
    outcome = await run(h, "budget")
    assert not outcome.ok and "budget" in (outcome.error or "")
    assert not h.messages("CLAIM_COMPLETE", "budget")


async def test_cli_crash_fails_the_attempt(h: Harness) -> None:
    """A CLI that dies without a result fails the attempt with its exit status."""
    h.write_script(rule("crash", [{"text": "hi"}, {"crash": 3}]))
    outcome = await run(h, "crash")
    assert not outcome.ok and "exited with status 3" in (outcome.error or "")
    assert outcome.exit_code == 3


async def test_no_budget_left_does_not_start(h: Harness) -> None:
    """With the track budget spent, no session starts and the failure is not retryable."""
    outcome = await run(h, "ok", budget_left=0.0)
    assert not outcome.ok and not outcome.retryable
    assert not h.messages("WORKER_STARTED")


# ----------------------------------------------------------------------------- cancellation


async def _cancel_when_started(h: Harness, task: str, *, after: float = 0.2) -> int:
    """Run ``task`` and cancel it once its CLI has started; return the CLI pid.

    Returning at all shows the cancelled attempt wound down (a hung session never would;
    pytest's timeout is the deadline); how fast it did is the benchmarks' business."""
    executor = h.executor()
    ctx = h.ctx(task)
    async with anyio.create_task_group() as tg:
        tg.start_soon(executor.execute, ctx)
        with anyio.fail_after(120):
            while not h.messages("WORKER_STARTED", task):  # noqa: ASYNC110 - polling the bus
                await anyio.sleep(0.02)
        await anyio.sleep(after)
        tg.cancel_scope.cancel()
    return h.messages("WORKER_STARTED", task)[0].payload["cli_pid"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_cancelling_a_hung_session_reaps_the_cli(h: Harness) -> None:
    """Cancelling execute (timeout, Ctrl-C) ends a hung CLI promptly; nothing outlives it."""
    h.write_script(rule("hang", [{"text": "working"}, {"hang": "forever"}]))
    pid = await _cancel_when_started(h, "hang")
    assert _gone(pid)


async def test_timeout_kills_a_cli_that_ignores_sigterm(h: Harness) -> None:
    """A CLI that ignores SIGTERM is killed after the grace period when its attempt times out."""
    h.write_script(rule("stubborn", [{"hang": "unkillable"}]))
    pid = await _cancel_when_started(h, "stubborn", after=1.0)
    assert _gone(pid)


async def test_cancelling_ends_what_the_cli_started(h: Harness) -> None:
    """Processes the session started (a Bash command) end with it when it is cancelled."""
    h.write_script(rule("child", [{"bash": "sleep 60"}]))
    pid = await _cancel_when_started(h, "child", after=1.0)
    assert _gone(pid)


# ----------------------------------------------------------------------------- cost


async def test_cumulative_cost_is_counted_once(h: Harness) -> None:
    """Two turns with cumulative cost are recorded as the session total, not the sum of totals."""
    h.write_script(
        rule(
            "costly",
            [
                {"text": "one", "cost": 0.01},
                {"tool": {"name": "Read", "input": {"file_path": "README"}}, "cost": 0.02},
                {
                    "mcp": {
                        "tool": "report_complete",
                        "input": {"summary": "read", "files_changed": []},
                    }
                },
            ],
        )
    )
    outcome = await run(h, "costly")
    assert outcome.ok, outcome.error
    assert outcome.cost_usd == pytest.approx(0.03)
    assert outcome.usage.get("output_tokens", 0) > 0


def _assistant(msg_id: str, out: int) -> AssistantMessage:
    return AssistantMessage(
        content=[TextBlock("x")],
        model="m",
        usage={"input_tokens": 10, "output_tokens": out},
        message_id=msg_id,
    )


def _result(total: float, turns: int, out: int) -> ResultMessage:
    return ResultMessage(
        subtype="success",
        duration_ms=1,
        duration_api_ms=1,
        is_error=False,
        num_turns=turns,
        session_id="s",
        total_cost_usd=total,
        usage={"input_tokens": 10, "output_tokens": out},
    )


def test_meter_deltas_and_throttle() -> None:
    """Cumulative totals add only their increase; a new session starts again; posts throttle
    unless the cost grew by a cent or more."""
    posted: list[dict[str, Any]] = []
    now = [0.0]
    meter = Meter(lambda _t, *, payload: posted.append(payload), clock=lambda: now[0])
    meter.begin_session()
    meter.on_assistant(_assistant("m1", 5))
    meter.on_assistant(_assistant("m1", 5))  # the same API message seen twice
    assert len(posted) == 1 and posted[0]["tokens_out"] == 5
    meter.on_result(_result(0.001, 1, 5))
    meter.on_result(_result(0.003, 2, 7))  # a follow-up turn: cumulative 0.003
    assert meter.cost == pytest.approx(0.003)
    assert len(posted) == 1, "throttled within the interval"
    meter.on_result(_result(0.03, 2, 7))  # a cent or more: posted at once
    assert len(posted) == 2 and posted[-1]["cost_usd"] == pytest.approx(0.03)
    now[0] = 5.0
    meter.begin_session()  # an API-error re-run: a fresh session
    meter.on_result(_result(0.02, 1, 1))
    assert meter.cost == pytest.approx(0.05)
    assert meter.usage["output_tokens"] == 20
    assert meter.turns == 3
    assert posted[-1]["cost_usd"] == pytest.approx(0.05)
    meter.maybe_post(force=True)
    assert len(posted) == 4


def test_executor_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """CONDUCTOR_CLAUDE_CLI points the executor at another executable (e.g. the fake)."""
    monkeypatch.delenv("CONDUCTOR_CLAUDE_CLI", raising=False)
    assert claude_executor_from_env().cli_path is None
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    assert claude_executor_from_env().cli_path == fake_cli_path()
    monkeypatch.setenv("PATH", f"{fake_cli_path().parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", "conductor-fake-claude")
    found = claude_executor_from_env().cli_path
    assert found is not None and found.name == "conductor-fake-claude"
    tuned = claude_executor_from_env(
        {"CONDUCTOR_CLAUDE_API_RETRIES": "5", "CONDUCTOR_CLAUDE_API_BACKOFF": "0.5"}
    )
    assert (tuned.api_retries, tuned.api_backoff) == (5, 0.5)
    with pytest.raises(UserError):
        claude_executor_from_env({"CONDUCTOR_CLAUDE_API_BACKOFF": "soon"})
    with pytest.raises(UserError):
        claude_executor_from_env({"CONDUCTOR_CLAUDE_CLI": "no-such-claude-here"})


# ----------------------------------------------------------------------------- the real CLI


def _real_executor(h: Harness, api: Any) -> ClaudeExecutor:
    from conductor.testing.fake_api import real_cli_env

    cli = bundled_cli_path()
    assert cli is not None
    env = real_cli_env(api.base_url, h.root / "unused-config")
    for key in ("CLAUDE_CONFIG_DIR", "TMPDIR"):
        env.pop(key, None)
    return ClaudeExecutor(cli_path=cli, extra_env=env, api_backoff=0.01)


def bundled_cli_path() -> Path | None:
    from conductor.testing.fake_api import bundled_cli_path as find

    return find()


needs_cli = pytest.mark.skipif(
    bundled_cli_path() is None, reason="claude-agent-sdk has no bundled Claude Code binary here"
)


@pytest.mark.real_cli
@needs_cli
async def test_real_cli_write_and_report_complete(h: Harness) -> None:
    """The real CLI: the model writes its file with Write, reports complete; the claim stands."""
    from conductor.testing.fake_api import FakeMessagesAPI

    script = {
        "conversations": [
            {
                "match": "Carry out task ok (",
                "turns": [
                    {
                        "text": "Writing it.",
                        "tool_use": {
                            "name": "Write",
                            "input": {
                                "file_path": str(h.repo / "src" / "a.py"),
                                "content": "a = 1\n",
                            },
                        },
                    },
                    {
                        "tool_use": {
                            "name": "mcp__conductor__report_complete",
                            "input": {"summary": "wrote src/a.py", "files_changed": ["src/a.py"]},
                        }
                    },
                    {"text": "Done."},
                ],
            }
        ]
    }
    with FakeMessagesAPI(script) as api:
        ctx = h.ctx("ok")
        outcome = await _real_executor(h, api).execute(ctx)
    assert outcome.ok, (outcome.error, ctx.log_path.read_text())
    assert outcome.files_changed == ["src/a.py"]
    assert outcome.summary == "wrote src/a.py"
    assert outcome.cost_usd > 0 and outcome.usage.get("output_tokens", 0) > 0
    system = json.dumps(api.requests[0]["system"])
    assert "MARKER-OK" in system, "the rendered skill reaches the model"
    assert "Claude Code" in system, "appended to the Claude Code preset"
    (started,) = h.messages("WORKER_STARTED", "ok")
    assert started.payload["cli_pid"] > 0


@pytest.mark.real_cli
@needs_cli
async def test_real_cli_write_outside_files_is_denied(h: Harness) -> None:
    """The real CLI: a Write outside the task's files is denied by the hook and never happens."""
    from conductor.testing.fake_api import FakeMessagesAPI

    target = h.repo / "docs" / "x.md"
    script = {
        "conversations": [
            {
                "match": "Carry out task outside (",
                "turns": [
                    {
                        "tool_use": {
                            "name": "Write",
                            "input": {"file_path": str(target), "content": "x"},
                        }
                    },
                    {"text": "I could not write it."},
                ],
            }
        ]
    }
    with FakeMessagesAPI(script) as api:
        outcome = await _real_executor(h, api).execute(h.ctx("outside"))
        second = api.requests[1]
    assert not target.exists()
    (denied,) = h.messages("TOOL_DENIED", "outside")
    assert denied.payload["path"] == "docs/x.md"
    assert "outside this task's files" in json.dumps(second["messages"][-1])
    assert not outcome.ok and outcome.error == "session ended without reporting completion"
    assert outcome.extra["permission_denials"]


@pytest.mark.real_cli
@needs_cli
async def test_real_cli_reads_a_large_prompt_from_a_file(h: Harness) -> None:
    """The real CLI: a skill over 100 KiB arrives through the prompt file, after the preset."""
    from conductor.testing.fake_api import FakeMessagesAPI

    big = "BIGMARK " * (14 * 1024)
    h.track = parse_track(
        textwrap.dedent(TRACK).replace(
            "  - {id: big, type: code, agent: coder}",
            f'  - {{id: big, type: code, agent: coder, instructions: "{big}"}}',
        )
    )
    script = {"conversations": [{"match": "Carry out task big (", "turns": [{"text": "Hm."}]}]}
    with FakeMessagesAPI(script) as api:
        await _real_executor(h, api).execute(h.ctx("big"))
    system = json.dumps(api.requests[0]["system"])
    assert system.count("BIGMARK") >= 14 * 1024
    assert "Claude Code" in system


async def test_scheduler_runs_claude_tasks_through_the_fake(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conductor's scheduler, pointed at the fake with CONDUCTOR_CLAUDE_CLI, completes a task
    after a 529 and fails one that never reports; the bus records the whole story."""
    from conductor.scheduler import RunOptions, run_track

    script = tmp_path / "script.yaml"
    script.write_text(
        yaml.safe_dump(
            {
                "sessions": [
                    rule(
                        "good",
                        attempts=[
                            [{"error": {"api_error_status": 529}}],
                            [
                                {"write": {"path": "src/g.py", "content": "g = 1\n"}},
                                complete("src/g.py"),
                            ],
                        ],
                    ),
                    rule("silent", [{"text": "I will not report."}]),
                ]
            }
        )
    )
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    monkeypatch.setenv("CONDUCTOR_FAKE_SCRIPT", str(script))
    track = parse_track(
        textwrap.dedent(
            """
            track: sched
            tasks:
              - {id: good, type: code, files: ["src/g.py"], verify: ["test -s src/g.py"]}
              - {id: silent, type: code, files: ["src/s.py"], max_attempts: 1}
            """
        )
    )
    state_root = tmp_path / "state"
    monkeypatch.setenv("CONDUCTOR_CLAUDE_API_BACKOFF", "0.01")
    result = await run_track(
        track, RunOptions(repo=repo, state_root=state_root, handle_signals=False)
    )
    assert result.completed == ["good"]
    assert "silent" in result.failed
    with Bus.for_state(StateDir.for_track(repo, "sched", state_root), "sched") as bus:
        msgs = bus.read()
    types = [(m.type, m.task) for m in msgs]
    assert ("TASK_COMPLETE", "good") in types and ("TASK_FAILED", "silent") in types
    assert ("API_RETRY", "good") in types and ("CLAIM_COMPLETE", "good") in types
    failed = next(m for m in msgs if m.type == "TASK_FAILED" and m.task == "silent")
    assert "without reporting completion" in json.dumps(failed.payload)
