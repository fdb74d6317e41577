"""`conductor logs TRACK TASK [--attempt N] [-f]`: an attempt's output for a person."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
    run_track,
)

from conductor.logview import TranscriptRenderer
from conductor.terminal import visible


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The Claude track run once against the fake CLI: (repo, state root)."""
    yield ran(tmp_path_factory.mktemp("logs"), CLAUDE_TRACK, CLAUDE_SCRIPT)


def test_claude_attempt_renders_text_tools_denials_verify_outcome(story: tuple[Path, Path]) -> None:
    """A Claude attempt shows the assistant's text, each tool call with its command or path,
    the denied Write with its reason, the verify result and why the attempt failed."""
    repo, state = story
    result = cli(repo, state, "logs", "story", "greet", "--attempt", "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("attempt 1 of task greet (greet.1, claude)")
    assert "assistant: Trying a first greeting." in out
    assert "▸ Bash: echo probing the copy" in out and "│ probing the copy" in out
    lines = out.splitlines()
    denied_at = lines.index("  ▸ Write: other.txt")
    assert lines[denied_at + 1].startswith("    ✗ denied: other.txt is outside this task's files")
    assert "▸ Write: hello.txt" in out
    assert "▸ conductor report_complete: wrote bye" in out
    assert "result: success" in out and "$0.0100" in out
    assert "✗ grep -q hello hello.txt  (exit 1)" in out
    assert "── denied (1) ──" in out
    assert "outcome: failed" in out and "why: verify failed" in out


def test_json_lists_tool_calls_with_their_status(story: tuple[Path, Path]) -> None:
    """`logs --json` gives the attempt's tool calls (ok, denied), verify, denials and end."""
    repo, state = story
    result = cli(repo, state, "logs", "story", "greet", "--attempt", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["task"], data["attempt"], data["outcome"]) == ("greet", 1, "failed")
    calls = [(c["tool"], c["target"], c["status"]) for c in data["tool_calls"]]
    assert calls[:3] == [
        ("Bash", "echo probing the copy", "ok"),
        ("Write", "other.txt", "denied"),
        ("Write", "hello.txt", "ok"),
    ]
    assert data["verify"][0]["ok"] is False and data["denials"][0]["target"] == "other.txt"
    assert data["end"]["type"] == "TASK_FAILED" and "grep -q hello" in data["output"]
    assert cli(repo, state, "logs", "story", "greet", "-f", "--json").exit_code == 2


def test_model_text_cannot_drive_the_terminal(story: tuple[Path, Path]) -> None:
    """An escape sequence in the model's text is shown as text, never written raw."""
    repo, state = story
    out = cli(repo, state, "logs", "story", "greet", "-n", "1").output
    assert "\x1b" not in out
    assert "\\x1b[31mred" in out


def test_latest_attempt_is_the_default(story: tuple[Path, Path]) -> None:
    """Without --attempt the latest attempt is shown, with its commit."""
    repo, state = story
    out = cli(repo, state, "logs", str(repo / "track.yaml"), "greet").output
    assert out.startswith("attempt 2 of task greet")
    assert "assistant: Fixing: verify wants hello." in out
    assert "outcome: complete" in out and "commit " in out
    assert "denied" not in out


def test_shell_attempt_shows_its_output(tmp_path: Path) -> None:
    """A shell attempt shows what the command printed and why it failed."""
    repo, state = git_repo(tmp_path / "repo"), tmp_path / "state"
    assert run_track(repo, state, SHELL_TRACK).returncode == 0
    first = cli(repo, state, "logs", "flaky", "flaky", "--attempt", "1").output
    assert "first try" in first and "outcome: failed" in first and "status 3" in first
    second = cli(repo, state, "logs", "flaky", "flaky").output
    assert "second try" in second and "✓ true" in second and "outcome: complete" in second


def test_a_planted_symlink_or_fifo_log_is_refused_and_said(tmp_path: Path) -> None:
    """A log replaced by a symlink or a FIFO is neither followed nor blocked on: the
    output is said to be not shown, and why."""
    import os

    repo, state = git_repo(tmp_path / "repo"), tmp_path / "state"
    assert run_track(repo, state, SHELL_TRACK).returncode == 0
    log = state / "flaky" / "logs" / "flaky.1.log"
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show me\n")
    log.unlink()
    log.symlink_to(secret)
    out = cli(repo, state, "logs", "flaky", "flaky", "--attempt", "1").output
    assert "do not show me" not in out
    assert "(output not shown: refusing to use" in out and "symbolic link" in out
    log.unlink()
    os.mkfifo(log)
    out = cli(repo, state, "logs", "flaky", "flaky", "--attempt", "1").output
    assert "(output not shown: refusing to use" in out and "not a regular file" in out


def test_a_planted_symlink_transcript_is_refused_and_said(tmp_path: Path) -> None:
    """A Claude attempt whose transcript is a planted symlink shows nothing of its target and
    says why."""
    from conductor.logview import AttemptInfo, render_attempt

    secret = tmp_path / "secret.jsonl"
    secret.write_text('{"type": "assistant", "message": {"content": [{"type": "text", '
                      '"text": "do not show me"}]}}\n')
    transcript = tmp_path / "t.1.transcript.jsonl"
    transcript.symlink_to(secret)
    info = AttemptInfo(task="t", attempt=1, worker="t.1", executor="claude",
                       log=tmp_path / "t.1.log", transcript=transcript)
    text = "\n".join(render_attempt(info))
    assert "do not show me" not in text
    assert f"(not shown: refusing to use {transcript}: it is a symbolic link)" in text


def test_unknown_task_or_attempt_is_a_clear_error(story: tuple[Path, Path]) -> None:
    """A task the track lacks (with a did-you-mean, also with -f), or an attempt that never
    ran: exit 2 with a message."""
    repo, state = story
    missing = cli(repo, state, "logs", str(repo / "track.yaml"), "nope")
    assert missing.exit_code == 2 and "nope" in missing.output
    assert "Traceback" not in missing.output
    never = cli(repo, state, "logs", "story", "nope")
    assert never.exit_code == 2 and "track 'story' has no task 'nope'" in never.output
    typo = cli(repo, state, "logs", "story", "gret", "-f")  # never waits for a misspelt task
    assert typo.exit_code == 2 and "has no task 'gret' (did you mean 'greet'?)" in typo.output
    past = cli(repo, state, "logs", "story", "greet", "--attempt", "9")
    assert past.exit_code == 2 and "attempt 9" in past.output


def test_renderer_tells_denials_from_errors() -> None:
    """A failed tool result is `denied` when the bus has its TOOL_DENIED, else an `error`."""
    denials = [{"tool": "Write", "target": "x.txt", "reason": "outside files"}]
    renderer = TranscriptRenderer(lambda: denials)
    calls = {
        "kind": "AssistantMessage",
        "message": {"content": [
            {"id": "1", "name": "Write", "input": {"file_path": "x.txt", "content": ""}},
            {"id": "2", "name": "Bash", "input": {"command": "false"}},
        ]},
    }
    results = {
        "kind": "UserMessage",
        "message": {"content": [
            {"tool_use_id": "1", "content": "conductor: outside files", "is_error": True},
            {"tool_use_id": "2", "content": "Exit code 1", "is_error": True},
        ]},
    }
    assert renderer.feed(calls) == ["  ▸ Write: x.txt", "  ▸ Bash: false"]
    assert renderer.feed(results) == ["    ✗ denied: outside files", "    ✗ error: Exit code 1"]
    assert visible("a\x1b[2Jb\n\tc") == "a\\x1b[2Jb\n\tc"


def test_follow_prints_output_as_written_until_the_attempt_ends(tmp_path: Path) -> None:
    """`logs -f` prints a running attempt's first line before it goes on, then the rest and
    the outcome, and exits by itself when the attempt ends."""
    repo, state = git_repo(tmp_path / "repo"), tmp_path / "state"
    gate = tmp_path / "gate"
    track = {
        "track": "slow",
        "tasks": [{
            "id": "step",
            "run": f"echo first line; while [ ! -f {gate} ]; do sleep 0.1; done; echo second line",
        }],
    }
    (repo / "track.yaml").write_text(yaml.safe_dump(track))
    env = offline_env(state)
    # The follower starts first: it waits for the track's first run and the task's start.
    follower = subprocess.Popen(
        [sys.executable, "-m", "conductor", "logs", "track.yaml", "step", "-f"],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "track.yaml"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        assert follower.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = follower.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if line.startswith("first line"):
                break
        assert "first line" in seen, (seen, follower.stderr)
        assert "second line" not in seen
        gate.touch()
        rest, err = follower.communicate(timeout=120)
        assert follower.returncode == 0, err
        assert "second line" in rest and "outcome: complete" in rest
        assert runner.wait(timeout=120) == 0
    finally:
        gate.touch()
        for proc in (follower, runner):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=60)


def test_lines_end_at_newlines_only_whether_followed_or_not(tmp_path: Path) -> None:
    """A log read at once splits lines where following it does: at "\\n" only, so a "\\r"
    or a U+2028 inside a transcript record stays in its line."""
    from conductor.logview import LineReader

    log = tmp_path / "t.1.log"
    log.write_bytes("50%\r100%\n{\"text\": \"a\u2028b\"}\nlast".encode())
    followed = LineReader(log)
    lines = followed.read() + followed.read(final=True)
    assert lines == ["50%\r100%", '{"text": "a\u2028b"}', "last"]
    assert LineReader(log).read(final=True) == lines
    assert visible(lines[0]) == "50%\\r100%"
