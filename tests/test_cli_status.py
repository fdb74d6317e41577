"""`conductor status` in-process: each task's state as the bus records it, and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from clikit import invoke

TRACK = """\
track: demo
tasks:
  - id: build
    run: "true"
  - id: test
    depends_on: [build]
    run: "echo boom; exit 3"
  - id: docs
    depends_on: [test]
    run: "true"
"""


@pytest.fixture
def ran(repo: Path) -> Path:
    """The track file of a run that ended with build complete, test failed, docs blocked."""
    track = repo / "track.yaml"
    track.write_text(TRACK)
    result = invoke("run", str(track), "--repo", str(repo), "--progress", "none")
    assert result.exit_code == 1, result.output
    return track


def rows_by_task(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.startswith("  ")}


def test_status_of_a_track_file_lists_every_task(repo: Path, ran: Path) -> None:
    """Given the track file, status sums up the run and shows each task's state, attempts and
    the failed task's error; it exits 0 whatever the track's outcome."""
    result = invoke("status", str(ran), "--repo", str(repo))
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("track demo: 1 blocked, 1 complete, 1 failed (")
    rows = rows_by_task(result.stdout)
    assert rows["build"][1:4] == ["complete", "attempts", "1"]
    assert rows["test"][1] == "failed" and "exited with status 3" in " ".join(rows["test"])
    assert rows["docs"][1:4] == ["blocked", "attempts", "0"]


def test_status_by_track_id_shows_the_tasks_seen_on_the_bus(repo: Path, ran: Path) -> None:
    """Given only the id, status lists the tasks the bus knows; without the file's
    dependencies a task below a failure shows as pending, not blocked."""
    result = invoke("status", "demo", "--repo", str(repo))
    assert result.exit_code == 0, result.output
    rows = rows_by_task(result.stdout)
    assert list(rows) == ["build", "test", "docs"]
    assert [rows[t][1] for t in rows] == ["complete", "failed", "pending"]


def test_status_json(repo: Path, ran: Path) -> None:
    """--json prints one object: counts by status and one row per task with its fields."""
    result = invoke("status", str(ran), "--repo", str(repo), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["track"] == "demo" and data["runs"] == 1
    assert data["counts"] == {"complete": 1, "failed": 1, "blocked": 1}
    rows = {row["task"]: row for row in data["tasks"]}
    assert [row["task"] for row in data["tasks"]] == ["build", "test", "docs"]
    assert rows["build"]["status"] == "complete" and rows["build"]["error"] is None
    assert rows["test"]["status"] == "failed" and rows["test"]["failures"] >= 1
    assert "exited with status 3" in rows["test"]["error"]
    assert rows["docs"] | {"status": "blocked", "attempts": 0} == rows["docs"]


def test_status_of_a_track_never_run_exits_2(repo: Path) -> None:
    """A track id without run state is bad input (exit 2) with a clear message, no traceback."""
    result = invoke("status", "never-ran", "--repo", str(repo))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "never-ran" in result.stderr
    assert "Traceback" not in result.output


def test_status_shows_escape_sequences_in_an_error_as_text(repo: Path) -> None:
    """A last error holding escape sequences is printed with them made visible."""
    from conductor.bus import Bus
    from conductor.paths import StateDir

    sd = StateDir.for_track(repo, "demo", Path(os.environ["CONDUCTOR_STATE_DIR"])).ensure()
    with Bus.for_state(sd, "demo") as bus:
        bus.post("TRACK_STARTED", payload={"pid": 1})
        bus.post("TASK_DISPATCHED", task="build", worker="build.1", attempt=1)
        bus.post("TASK_FAILED", task="build", worker="build.1", attempt=1,
                 payload={"error": "\x1b]0;PWNED\x07\x1b[2Jboom", "final": True})
    result = invoke("status", "demo", "--repo", str(repo))
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\\x1b]0;PWNED\\x07\\x1b[2Jboom" in result.stdout
