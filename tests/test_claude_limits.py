"""`conductor run` against the fake CLI when the API refuses: credentials, limits, budgets.

What the real CLI streams in each case is checked in tests/test_real_cli_limits.py; here the
fake CLI plays those streams so the scheduler's answers can be tested quickly: a refused
login stops the run (exit 7), limits are waited out without counting an attempt, a wait
survives Ctrl-C, and a task's budget spans its attempts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fakekit import complete, conductor, rule
from fakekit import setup as fake_setup

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.testing import read_fake_log


def writes(path: str) -> list[dict[str, Any]]:
    return [{"write": {"path": path, "content": "ok\n"}}, complete(path)]


def task(tid: str, **kw: Any) -> dict[str, Any]:
    return {"id": tid, "type": "code", "files": [f"{tid}.txt"], **kw}


def setup(
    repo: Path, tmp_path: Path, track: dict[str, Any], script: dict[str, Any], **env_kw: str
) -> dict[str, str]:
    """``fakekit.setup``, with limit waits of 0.2 s."""
    return fake_setup(repo, tmp_path, track, script, CONDUCTOR_LIMIT_BACKOFF="0.2", **env_kw)


def finish(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, (out + err).decode()


def messages(repo: Path, track_id: str) -> list[dict[str, Any]]:
    sd = StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))
    with Bus.for_state(sd, track_id) as bus:
        return [m.to_dict() for m in bus.iter_all()]


def of(msgs: list[dict[str, Any]], mtype: str, tid: str | None = None) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == mtype and (tid is None or m["task"] == tid)]


def ts(message: dict[str, Any]) -> float:
    return datetime.fromisoformat(message["ts"]).timestamp()


def wait_for(repo: Path, track_id: str, mtype: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        sd = StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))
        if sd.bus.exists():
            found = of(messages(repo, track_id), mtype)
            if found:
                return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {mtype} on the bus")


def test_not_logged_in_stops_the_run_naming_the_variables(repo: Path, tmp_path: Path) -> None:
    """ "Not logged in" fails the run at the first session with exit 7 and a message naming
    ANTHROPIC_API_KEY and CLAUDE_CODE_OAUTH_TOKEN; no other task is dispatched, and the
    attempt's log shows the CLI's own words."""
    track = {"track": "nokey", "max_parallel": 1, "tasks": [task("a"), task("b"), task("c")]}
    script = {"default": [{"error": {"api_error_status": None}}]}
    code, output = finish(
        conductor(repo, setup(repo, tmp_path, track, script), "run", "track.yaml")
    )
    assert code == 7, output[-3000:]
    assert "ANTHROPIC_API_KEY" in output and "CLAUDE_CODE_OAUTH_TOKEN" in output
    assert "Not logged in" in output
    msgs = messages(repo, "nokey")
    assert len(of(msgs, "TASK_DISPATCHED")) == 1
    deferred = of(msgs, "TASK_DEFERRED")
    assert len(deferred) == 1 and deferred[0]["payload"]["counted"] is False
    assert not of(msgs, "TASK_FAILED")
    end = of(msgs, "TRACK_FAILED")[-1]["payload"]
    assert end["status"] == "auth" and "ANTHROPIC_API_KEY" in end["auth"]
    logs = StateDir.for_track(repo, "nokey", Path(os.environ["CONDUCTOR_STATE_DIR"])).logs
    log_text = "".join(p.read_text() for p in logs.glob("*.log") if p.name != "conductor.log")
    assert "Not logged in · Please run /login" in log_text


def test_refused_key_mid_retry_stops_the_run(repo: Path, tmp_path: Path) -> None:
    """A 401 the CLI starts retrying ends the session at its first retry and stops the run:
    the scripted retries after it never happen."""
    track = {"track": "badkey", "tasks": [task("a")]}
    retries = [{"api_retry": {"attempt": n, "status": 401, "delay_ms": 300}} for n in (1, 2, 3)]
    script = {"default": [*retries, {"error": {"api_error_status": 401, "message": "bad"}}]}
    code, output = finish(
        conductor(repo, setup(repo, tmp_path, track, script), "run", "track.yaml")
    )
    assert code == 7, output[-3000:]
    msgs = messages(repo, "badkey")
    assert [m["payload"]["attempt"] for m in of(msgs, "API_RETRY")] == [1]
    assert "401" in of(msgs, "TASK_DEFERRED")[0]["payload"]["error"]


def test_usage_limit_waits_for_the_reset_and_does_not_count(repo: Path, tmp_path: Path) -> None:
    """A usage limit with a reset time: the attempt is deferred (not counted, even with
    max_attempts 1), LIMIT_WAIT carries the reset time, the run shows it, nothing starts
    before it, then the task and the next one run."""
    track = {
        "track": "usage",
        "max_parallel": 1,
        "tasks": [task("a", max_attempts=1), task("b", depends_on=["a"])],
    }
    script = {
        "sessions": [
            rule(
                "a",
                attempts=[
                    [{"error": {"api_error_status": 429, "resets_in": 2}}],
                    writes("a.txt"),
                ],
            ),
            rule("b", steps=writes("b.txt")),
        ]
    }
    code, output = finish(
        conductor(repo, setup(repo, tmp_path, track, script), "run", "track.yaml")
    )
    assert code == 0, output[-3000:]
    msgs = messages(repo, "usage")
    deferred = of(msgs, "TASK_DEFERRED", "a")
    assert len(deferred) == 1 and "hit your limit" in deferred[0]["payload"]["error"]
    wait = of(msgs, "LIMIT_WAIT")
    assert len(wait) == 1
    payload = wait[0]["payload"]
    assert payload["kind"] == "usage_limit" and payload["announced"] is True
    assert payload["until_utc"].endswith("UTC")
    assert f"nothing new starts until {payload['until_utc']}" in output, "the wait is shown"
    dispatched = of(msgs, "TASK_DISPATCHED")
    assert [(m["task"], m["attempt"]) for m in dispatched] == [("a", 1), ("a", 2), ("b", 1)]
    assert all(ts(m) >= payload["until"] for m in dispatched[1:])
    assert not of(msgs, "TASK_FAILED")


def test_overload_and_rate_limit_never_count(repo: Path, tmp_path: Path) -> None:
    """An overload that outlasts the retries and a rate limit are deferred and waited out
    (conductor's own backoff, no announced reset); a task with max_attempts 1 still
    completes on its third attempt."""
    track = {"track": "busy", "tasks": [task("a", max_attempts=1)]}
    script = {
        "sessions": [
            rule(
                "a",
                attempts=[
                    [{"error": {"api_error_status": 529, "message": "Overloaded"}}],
                    [{"error": {"api_error_status": 429, "message": "Rate limited"}}],
                    writes("a.txt"),
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script, CONDUCTOR_CLAUDE_API_RETRIES="0")
    code, output = finish(conductor(repo, env, "run", "track.yaml"))
    assert code == 0, output[-3000:]
    msgs = messages(repo, "busy")
    waits = [m["payload"] for m in of(msgs, "LIMIT_WAIT")]
    assert [(w["kind"], w["announced"]) for w in waits] == [
        ("overload", False),
        ("rate_limit", False),
    ]
    assert len(of(msgs, "TASK_DEFERRED")) == 2 and not of(msgs, "TASK_FAILED")
    assert of(msgs, "TASK_COMPLETE", "a")[0]["attempt"] == 3


def test_ctrl_c_during_a_limit_wait_and_resume(repo: Path, tmp_path: Path) -> None:
    """Ctrl-C while waiting for a usage limit ends the run (exit 130); a run started before
    the reset time waits for what is left of it, then completes."""
    track = {"track": "pause", "tasks": [task("a")]}
    script = {
        "sessions": [
            rule(
                "a",
                attempts=[
                    [{"error": {"api_error_status": 429, "resets_in": 3}}],
                    writes("a.txt"),
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script)
    first = conductor(repo, env, "run", "track.yaml")
    wait = wait_for(repo, "pause", "LIMIT_WAIT")
    first.send_signal(signal.SIGINT)
    code, output = finish(first)
    assert code == 130, output[-3000:]
    assert of(messages(repo, "pause"), "TRACK_INTERRUPTED")
    code, output = finish(conductor(repo, env, "run", "track.yaml"))
    assert code == 0, output[-3000:]
    msgs = messages(repo, "pause")
    second = [m for m in of(msgs, "TASK_DISPATCHED") if m["attempt"] == 2]
    assert second and ts(second[0]) >= wait["payload"]["until"]
    assert (repo / "a.txt").read_text() == "ok\n"


def test_task_budget_spans_attempts_and_a_budget_stop_is_final(repo: Path, tmp_path: Path) -> None:
    """max_budget_usd caps all attempts together: the second attempt gets what the first
    left, is stopped by it and not retried; a rerun spends nothing until the budget is
    raised."""
    spec = task("a", max_budget_usd=0.05, max_attempts=3)
    track = {"track": "money", "tasks": [spec]}
    script = {
        "sessions": [
            rule(
                "a",
                attempts=[
                    [
                        {"text": "trying", "cost": 0.03},
                        {"mcp": {"tool": "report_failed", "input": {"reason": "stuck"}}},
                    ],
                    [{"text": "more", "cost": 0.03}, {"text": "never"}],
                    writes("a.txt"),
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script)
    code, output = finish(conductor(repo, env, "run", "track.yaml"))
    assert code == 1, output[-3000:]
    starts = [e for e in read_fake_log(tmp_path / "fake.jsonl") if e.get("event") == "start"]
    caps = [float(s["args"]["max_budget_usd"]) for s in starts]
    assert caps[0] == 0.05 and abs(caps[1] - 0.02) < 1e-6
    failed = of(messages(repo, "money"), "TASK_FAILED")
    assert [m["payload"]["final"] for m in failed] == [False, True]
    assert failed[-1]["payload"]["budget_stop"] is True

    code, output = finish(conductor(repo, env, "run", "track.yaml"))
    assert code == 1, output[-3000:]
    assert "max_budget_usd" in output
    starts = [e for e in read_fake_log(tmp_path / "fake.jsonl") if e.get("event") == "start"]
    assert len(starts) == 2, "no session starts once the task's budget is spent"

    spec["max_budget_usd"] = 0.5
    code, output = finish(
        conductor(repo, setup(repo, tmp_path, track, script), "run", "track.yaml")
    )
    assert code == 0, output[-3000:]
    assert (repo / "a.txt").read_text() == "ok\n"


def test_resume_after_the_reset_time_goes_straight_on(repo: Path, tmp_path: Path) -> None:
    """A run resumed after a recorded reset time has passed dispatches at once: no new
    LIMIT_WAIT, and the task completes."""
    track = {"track": "later", "tasks": [task("a")]}
    script = {
        "sessions": [
            rule(
                "a",
                attempts=[
                    [{"error": {"api_error_status": 429, "resets_in": 1}}],
                    writes("a.txt"),
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script)
    first = conductor(repo, env, "run", "track.yaml")
    wait = wait_for(repo, "later", "LIMIT_WAIT")
    first.send_signal(signal.SIGINT)
    code, output = finish(first)
    assert code == 130, output[-3000:]
    deadline = time.monotonic() + 60
    while time.time() <= wait["payload"]["until"] and time.monotonic() < deadline:
        time.sleep(0.2)
    code, output = finish(conductor(repo, env, "run", "track.yaml"))
    assert code == 0, output[-3000:]
    msgs = messages(repo, "later")
    assert len(of(msgs, "LIMIT_WAIT")) == 1
    assert of(msgs, "TASK_COMPLETE", "a")
