"""`conductor run` in-process: what it prints and the exit code it documents."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import Result
from clikit import invoke

from conductor.locks import RunLock
from conductor.paths import StateDir

SHELL_TRACK = """\
track: demo
tasks:
  - id: build
    run: "echo built > out.txt"
  - id: test
    depends_on: [build]
    run: "{test}"
  - id: docs
    depends_on: [test]
    run: "true"
"""


def write_track(repo: Path, text: str) -> Path:
    path = repo / "track.yaml"
    path.write_text(text)
    return path


def run(repo: Path, track: Path, *extra: str) -> Result:
    return invoke("run", str(track), "--repo", str(repo), "--progress", "none", *extra)


def state_dir(repo: Path, track_id: str) -> StateDir:
    return StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))


def test_a_complete_run_exits_0_and_a_second_run_redoes_nothing(repo: Path) -> None:
    """Every task completes: exit 0 and a summary line; run again, nothing is redone."""
    track = write_track(repo, SHELL_TRACK.format(test="true"))
    first = run(repo, track)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("track demo: complete in ")
    assert "3 complete" in first.stdout
    assert (repo / "out.txt").read_text() == "built\n"
    (repo / "out.txt").unlink()
    second = run(repo, track)
    assert second.exit_code == 0, second.output
    assert "3 complete" in second.stdout
    assert not (repo / "out.txt").exists()  # build was not run again


def test_a_failed_task_exits_1_and_names_what_failed_and_what_it_blocked(repo: Path) -> None:
    """A failing task makes the run exit 1; the output names it, why, and the task it blocked."""
    track = write_track(repo, SHELL_TRACK.format(test="false"))
    result = run(repo, track)
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith("track demo: failed in ")
    assert "1 complete, 1 failed, 1 blocked" in result.stdout
    assert "  failed   test" in result.stdout and "exited with status 1" in result.stdout
    assert "  blocked  docs" in result.stdout


def test_json_result_carries_the_exit_code(repo: Path) -> None:
    """--json prints the result as one JSON object with its status and exit code."""
    track = write_track(repo, SHELL_TRACK.format(test="false"))
    result = run(repo, track, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["track"] == "demo" and data["status"] == "failed" and data["exit_code"] == 1
    assert data["completed"] == ["build"] and list(data["failed"]) == ["test"]
    assert data["blocked"] == ["docs"]


def test_a_bad_track_file_exits_2_naming_file_and_line(repo: Path) -> None:
    """A track with an unknown field is refused with file:line and exit 2; nothing runs."""
    track = write_track(repo, "track: demo\ntasks:\n  - id: a\n    run: 'true'\n    bogus: 1\n")
    result = run(repo, track)
    assert result.exit_code == 2
    assert f"error: {track}:5" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.output
    assert not state_dir(repo, "demo").root.exists()


def test_an_unknown_from_task_exits_2(repo: Path) -> None:
    """--from naming no task of the track is a bad-input error (exit 2)."""
    track = write_track(repo, SHELL_TRACK.format(test="true"))
    result = run(repo, track, "--from", "nosuch")
    assert result.exit_code == 2
    assert "nosuch" in result.stderr
    assert not state_dir(repo, "demo").root.exists()


def test_an_agent_defined_nowhere_fails_before_anything_is_written(repo: Path) -> None:
    """A Claude task naming an undefined agent fails the preflight: exit 2 at its line, and
    no run state is created."""
    track = write_track(
        repo, "track: demo\ntasks:\n  - id: a\n    name: Do a\n    agent: nobody-defined-me\n"
    )
    result = run(repo, track)
    assert result.exit_code == 2
    assert f"{track}:5" in result.stderr and "nobody-defined-me" in result.stderr
    assert not state_dir(repo, "demo").bus.exists()


def test_a_track_another_conductor_runs_exits_3(repo: Path) -> None:
    """While the run lock is held, `conductor run` exits 3 and says the track is running."""
    track = write_track(repo, SHELL_TRACK.format(test="true"))
    sd = state_dir(repo, "demo").ensure()
    with RunLock(sd, "demo"):
        result = run(repo, track)
    assert result.exit_code == 3, result.output
    assert "error:" in result.stderr and str(os.getpid()) in result.stderr
    assert not (repo / "out.txt").exists()
