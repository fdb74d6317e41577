"""The shell executor's failures: why in words, the command's last output, 126/127 final."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conductor.bus import Bus
from conductor.executors.shell import failure
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.track import parse_track

pytestmark = pytest.mark.anyio


async def run(text: str, repo: Path) -> tuple[RunResult, list[dict[str, Any]]]:
    track = parse_track(textwrap.dedent(text))
    root = Path(os.environ["CONDUCTOR_STATE_DIR"])
    result = await run_track(track, RunOptions(repo=repo, state_root=root, handle_signals=False))
    with Bus.for_state(StateDir.for_track(repo, track.id, root), track.id) as bus:
        failed = [m.to_dict() for m in bus.iter_all() if m.type == "TASK_FAILED"]
    return result, failed


async def test_a_missing_command_fails_once_with_its_cause(repo: Path) -> None:
    """Exit 127 is not retried: one final TASK_FAILED saying "command not found" and what the
    shell said; the run's result carries the same reason."""
    result, failed = await run(
        """
        track: missing
        tasks:
          - {id: go, run: "./no-such-script.sh --flag", max_attempts: 3}
        """,
        repo,
    )
    assert [m["attempt"] for m in failed] == [1]
    payload = failed[0]["payload"]
    assert payload["final"] is True and payload["exit_code"] == 127
    assert payload["cause"] == "command not found"
    head, *rest = payload["error"].splitlines()
    assert head == "command not found (exit 127)"
    assert any("no-such-script.sh" in line for line in rest)
    assert result.failed["go"] == payload["error"]


async def test_a_missing_command_inside_a_shell_line_is_not_retried(repo: Path) -> None:
    """A command line run by /bin/sh whose command is missing also exits 127, once."""
    _, failed = await run(
        """
        track: missing-sh
        tasks:
          - {id: go, run: "echo start && conductor-no-such-tool-xyz arg"}
        """,
        repo,
    )
    assert len(failed) == 1 and failed[0]["payload"]["exit_code"] == 127
    assert "conductor-no-such-tool-xyz" in failed[0]["payload"]["error"]


async def test_a_file_that_is_not_executable_fails_once_with_126(repo: Path) -> None:
    """A script without its execute bit exits 126 ("not executable") and is not retried."""
    (repo / "build.sh").write_text("#!/bin/sh\necho built\n")
    os.chmod(repo / "build.sh", 0o644)
    _, failed = await run(
        """
        track: noexec
        tasks:
          - {id: go, run: ./build.sh}
        """,
        repo,
    )
    assert len(failed) == 1
    payload = failed[0]["payload"]
    assert (payload["exit_code"], payload["cause"], payload["final"]) == (
        126, "not executable", True
    )
    assert payload["error"].startswith("not executable (exit 126)\n")


async def test_an_ordinary_failure_is_retried_and_quotes_the_last_output(repo: Path) -> None:
    """Other exit codes are retried as before; the error quotes the last lines of output."""
    _, failed = await run(
        """
        track: plain-fail
        tasks:
          - id: go
            max_attempts: 2
            run: "echo one; echo two; echo three; echo 'ValueError: bad input' >&2; exit 3"
        """,
        repo,
    )
    assert [m["payload"]["final"] for m in failed] == [False, True]
    assert failed[0]["payload"]["error"].splitlines() == [
        "command exited with status 3", "two", "three", "ValueError: bad input"
    ]
    assert "cause" not in failed[0]["payload"]


def test_failure_names_signals_and_clips_long_lines() -> None:
    """A command killed by a signal says which; quoted lines are clipped."""
    error, cause = failure(-9, "x" * 1000)
    head, quoted = error.splitlines()
    assert (head, cause) == ("command killed by SIGKILL", None)
    assert len(quoted) == 300 and quoted.endswith("…")
    assert failure(1, "") == ("command exited with status 1", None)
