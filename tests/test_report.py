"""`conductor report` and the report library: attempts, cost, tokens, denials, verify, agents;
and `conductor status` saying when the conductor that ran a track is gone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest
import yaml
from reportkit import (
    CLAUDE_SCRIPT,
    CLAUDE_TRACK,
    SHELL_TRACK,
    cli,
    git_repo,
    offline_env,
    ran,
)

from conductor.bus import Bus
from conductor.liveness import Runner
from conductor.messages import Message
from conductor.paths import StateDir
from conductor.report import build_report, place, render_text, timeline


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The Claude track run once against the fake CLI: (repo, state root)."""
    yield ran(tmp_path_factory.mktemp("story"), CLAUDE_TRACK, CLAUDE_SCRIPT)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The shell track whose first task fails once: (repo, state root)."""
    yield ran(tmp_path_factory.mktemp("flaky"), SHELL_TRACK)


def test_report_json_has_attempts_cost_tokens_denials_verify(story: tuple[Path, Path]) -> None:
    """Per task the JSON report lists each attempt with outcome, cost, tokens, denials, verify."""
    repo, state = story
    result = cli(repo, state, "report", str(repo / "track.yaml"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "complete" and data["runner"]["status"] == "ended"
    greet = next(t for t in data["tasks"] if t["id"] == "greet")
    first, second = greet["attempts"]
    assert (first["outcome"], second["outcome"]) == ("failed", "complete")
    assert first["cost_usd"] == pytest.approx(0.01) and second["cost_usd"] == pytest.approx(0.02)
    assert greet["cost_usd"] == pytest.approx(0.03)
    assert first["tokens"]["input_tokens"] > 0 and first["tokens"]["output_tokens"] > 0
    assert first["denials"] == [
        {"tool": "Write", "target": "other.txt", "reason": first["denials"][0]["reason"]}
    ]
    assert "outside" in first["denials"][0]["reason"]
    assert first["verify"][0]["command"] == "grep -q hello hello.txt"
    assert first["verify"][0]["ok"] is False and second["verify"][0]["ok"] is True
    assert "verify failed" in first["reason"]
    assert second["commit"] and second["agent"] == "tech-writer"
    assert first["duration"] > 0 and first["started"] < second["started"]
    assert data["cost_usd"] == pytest.approx(0.035)
    agents = {a["agent"]: a for a in data["agents"]}
    assert list(agents) == ["tech-writer"]
    assert agents["tech-writer"]["attempts"] == 3
    assert agents["tech-writer"]["cost_usd"] == pytest.approx(0.035)
    assert greet["depends_on"] == [] and data["tasks"][1]["depends_on"] == ["greet"]


def test_report_text_shows_timeline_attempts_and_agents(story: tuple[Path, Path]) -> None:
    """The terminal report shows a timeline bar per attempt, verify marks, reasons and agents."""
    repo, state = story
    result = cli(repo, state, "report", "story")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("track story: complete")
    assert "$0.0350" in out and "1 denied" in out
    assert "greet.1" in out and "█" in out and "greet.2" in out and "title.1" in out
    assert "verify ✗ grep -q hello hello.txt (exit 1)" in out
    assert "denied Write other.txt" in out
    assert "why: verify failed" in out
    assert "cost per agent" in out and "tech-writer" in out


def test_report_of_a_shell_track_groups_cost_as_shell(flaky: tuple[Path, Path]) -> None:
    """Shell attempts count under the `shell` agent; the failed one keeps its exit reason."""
    repo, state = flaky
    data = json.loads(cli(repo, state, "report", "flaky", "--json").output)
    flaky_task = next(t for t in data["tasks"] if t["id"] == "flaky")
    assert [a["outcome"] for a in flaky_task["attempts"]] == ["failed", "complete"]
    assert "status 3" in flaky_task["attempts"][0]["reason"]
    assert [a["agent"] for a in data["agents"]] == ["shell"]
    assert data["agents"][0]["attempts"] == 3


def test_report_of_an_unknown_track_is_a_clear_error(tmp_path: Path) -> None:
    """A track that never ran: exit 2 and a message naming it, no traceback."""
    repo = git_repo(tmp_path / "repo")
    result = cli(repo, tmp_path / "state", "report", "nothing-here")
    assert result.exit_code == 2
    assert "nothing-here" in result.output and "Traceback" not in result.output


def test_report_html_to_an_unwritable_place_is_a_clear_error(story: tuple[Path, Path]) -> None:
    """--html into a missing directory: exit 2 naming it, nothing written."""
    repo, state = story
    target = repo.parent / "missing" / "r.html"
    result = cli(repo, state, "report", "story", "--html", str(target))
    assert result.exit_code == 2 and "missing" in result.output
    assert not target.exists()


def _msg(seq: int, mtype: str, at: datetime, task: str | None = None,
         attempt: int | None = None, **payload: object) -> Message:
    return Message(
        seq=seq, id=f"{seq:032x}", type=mtype, ts=at, track="t", task=task,
        worker=f"{task}.{attempt}" if task and attempt else None, attempt=attempt,
        payload=dict(payload),
    )


def test_attempt_without_an_end_is_unfinished_when_its_conductor_is_gone() -> None:
    """An attempt with no end is `running` under a live conductor, `unfinished` after one died."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        _msg(1, "TRACK_STARTED", t0),
        _msg(2, "TASK_DISPATCHED", t0, "a", 1, executor="shell"),
    ]
    gone = build_report(messages, "t", Runner("gone", pid=4242))
    assert gone.tasks[0].attempts[0].outcome == "unfinished"
    assert gone.status() == "gone"
    assert "pid 4242" in render_text(gone, now=t0 + timedelta(seconds=5))
    live = build_report(messages, "t", Runner("running", pid=1))
    assert live.tasks[0].attempts[0].outcome == "running"


def test_report_text_shows_escape_sequences_in_a_reason_as_text() -> None:
    """A failure's reason quoting a task's escape sequences is printed with them made
    visible, so `conductor report` on a terminal cannot be driven by a task's output."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        _msg(1, "TRACK_STARTED", t0),
        _msg(2, "TASK_DISPATCHED", t0, "a", 1, executor="shell"),
        _msg(3, "TASK_FAILED", t0, "a", 1, error="exit 3\n\x1b]0;PWNED\x07\x1b[2J", final=True),
    ]
    text = render_text(build_report(messages, "t", Runner("ended")), now=t0)
    assert "\x1b" not in text and "\x07" not in text
    assert "why: exit 3 \\x1b]0;PWNED\\x07\\x1b[2J" in text


def test_an_attempt_lost_with_its_conductor_ends_with_its_own_run() -> None:
    """An attempt the next run records as lost (its conductor was killed) ends with the last
    message of its own run, so the downtime between runs is neither its duration nor drawn
    unshortened; a person's NOTE between the runs does not extend it."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    messages = [
        _msg(1, "TRACK_STARTED", t0),
        _msg(2, "TASK_DISPATCHED", t0, "a", 1, executor="shell"),
        _msg(3, "TASK_DISPATCHED", t0, "b", 1, executor="shell"),
        _msg(4, "TASK_COMPLETE", t0 + timedelta(seconds=2), "b", 1, duration=2.0),
        _msg(5, "NOTE", t0 + timedelta(minutes=5), text="back after lunch"),
        _msg(6, "TRACK_STARTED", t0 + timedelta(hours=1)),
        _msg(7, "WORKER_LOST", t0 + timedelta(hours=1), "a", 1, reason="gone"),
        _msg(8, "TASK_DISPATCHED", t0 + timedelta(hours=1), "a", 2, executor="shell"),
        _msg(9, "TASK_COMPLETE", t0 + timedelta(hours=1, seconds=3), "a", 2, duration=3.0),
    ]
    report = build_report(messages, "t", Runner("ended"))
    lost = report.tasks[0].attempts[0]
    assert (lost.outcome, lost.duration) == ("lost", 2.0)
    assert lost.ended == t0 + timedelta(seconds=2)
    _, drawn = timeline(report.attempts, t0 + timedelta(hours=2))
    assert drawn < 60


def test_a_track_that_never_ran_reports_plainly() -> None:
    """No messages: the text and HTML reports say nothing has run, without failing."""
    from conductor.report_html import render_html

    report = build_report([], "t", Runner("never run"))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert render_text(report, now=now).startswith("track t: not run")
    assert "No attempt has run yet." in render_html(report, now=now)
    assert report.to_dict()["tasks"] == [] and report.to_dict()["cost_usd"] == 0


def test_timeline_shortens_long_idle_gaps_and_keeps_order() -> None:
    """A day between two runs is drawn far shorter than the day, and times keep their order."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    later = t0 + timedelta(days=1)
    messages = [
        _msg(1, "TASK_DISPATCHED", t0, "a", 1, executor="shell"),
        _msg(2, "TASK_COMPLETE", t0 + timedelta(seconds=10), "a", 1, duration=10.0),
        _msg(3, "TASK_DISPATCHED", later, "b", 1, executor="shell"),
        _msg(4, "TASK_COMPLETE", later + timedelta(seconds=30), "b", 1, duration=30.0),
    ]
    report = build_report(messages, "t", Runner("ended"))
    segments, total = timeline(report.attempts, later)
    assert total < 60  # 40 s busy plus a shortened gap, not 86,400 s
    points = [place(segments, total, m.ts.timestamp()) for m in messages]
    assert points == sorted(points) and points[0] == 0 and points[-1] == pytest.approx(total)
    assert points[2] - points[1] < points[3] - points[2]  # the gap is drawn shorter than b


def test_status_shows_cost_and_denials_per_task(story: tuple[Path, Path]) -> None:
    """`conductor status` shows what each task cost and how many tool calls were denied."""
    repo, state = story
    result = cli(repo, state, "status", "story")
    assert result.exit_code == 0, result.output
    greet = next(line for line in result.output.splitlines() if line.strip().startswith("greet"))
    assert "$0.0300" in greet and "1 denied" in greet
    assert "gone" not in result.output


def _wait_for(predicate: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _dispatched(state: Path, track: str) -> bool:
    sd = StateDir(state / track)
    if not sd.bus.is_dir():
        return False
    with Bus.for_state(sd, track) as bus:
        return any(m.type == "TASK_DISPATCHED" for m in bus.iter_all())


def test_status_says_the_conductor_is_running_then_gone_after_kill_9(tmp_path: Path) -> None:
    """While a conductor runs the track status names it; after kill -9 status and report say
    it is gone (naming the track file that resumes it), and `logs -f` of its attempt
    stops by itself with the attempt unfinished."""
    repo = git_repo(tmp_path / "repo")
    state = tmp_path / "state"
    track = {"track": "stuck", "tasks": [{"id": "wait", "run": "sleep 300"}]}
    (repo / "track.yaml").write_text(yaml.safe_dump(track))
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "track.yaml"],
        cwd=repo, env=offline_env(state), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        _wait_for(lambda: _dispatched(state, "stuck"), "the task to start")
        running = cli(repo, state, "status", "stuck")
        assert f"running now: pid {proc.pid}" in running.output
        follower = subprocess.Popen(
            [sys.executable, "-m", "conductor", "logs", "stuck", "wait", "-f"],
            cwd=repo, env=offline_env(state), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        assert follower.stdout is not None
        assert follower.stdout.readline().startswith("attempt 1 of task wait")
        children = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        # The follower notices the conductor is gone and stops by itself.
        rest, _ = follower.communicate(timeout=120)
        assert follower.returncode == 0 and "outcome: unfinished" in rest
        gone = cli(repo, state, "status", "stuck", "--json")
        data = json.loads(gone.output)
        assert data["runner"]["status"] == "gone" and data["runner"]["pid"] == proc.pid
        text = cli(repo, state, "status", "stuck").output
        assert f"the conductor that ran this track (pid {proc.pid}" in text
        assert "is gone" in text and "conductor run" in text
        assert "1 unfinished" in text and "  wait  unfinished  attempts 1" in text
        assert data["tasks"][0]["status"] == "running"  # --json keeps the bus's word
        # Named by its id, the track is resumed by its file: status names the file it ran.
        assert f"`conductor run` on {repo / 'track.yaml'} resumes it" in text
        report_text = cli(repo, state, "report", "stuck").output
        assert f"`conductor run` on {repo / 'track.yaml'} resumes it" in report_text
        report = json.loads(cli(repo, state, "report", "stuck", "--json").output)
        assert report["status"] == "gone"
        assert report["tasks"][0]["attempts"][0]["outcome"] == "unfinished"
        logs = cli(repo, state, "logs", "stuck", "wait").output
        assert "outcome: unfinished (the conductor that ran it is gone" in logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        for child in children:  # the orphaned shell task
            with contextlib.suppress(psutil.Error):
                child.kill()
