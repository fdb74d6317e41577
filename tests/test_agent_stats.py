"""`conductor agents stats`: per-agent figures over the runs on the buses."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from conductor.bus import Bus
from conductor.cli import main
from conductor.paths import StateDir


def seed(repo: Path, track_id: str) -> None:
    sd = StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"])).ensure()
    with Bus.for_state(sd, track_id) as bus:
        # a: failed once, then done; b: done at the first try; c: a shell task (no agent)
        bus.post(
            "TASK_FAILED",
            task="a",
            worker="a.1",
            attempt=1,
            payload={"agent": "coder", "cost_usd": 0.5},
        )
        bus.post("REVIEW_RESULT", task="a", worker="a.2", attempt=2, payload={"score": 80})
        bus.post(
            "TASK_COMPLETE",
            task="a",
            worker="a.2",
            attempt=2,
            payload={"agent": "coder", "cost_usd": 0.25, "duration": 10.0},
        )
        bus.post(
            "TASK_COMPLETE",
            task="b",
            worker="b.1",
            attempt=1,
            payload={"agent": "coder", "cost_usd": 0.25, "duration": 20.0},
        )
        bus.post("TASK_COMPLETE", task="c", worker="c.1", attempt=1, payload={"duration": 1.0})
        bus.post(
            "TASK_COMPLETE",
            task="d",
            worker="d.1",
            attempt=1,
            payload={"agent": "writer", "cost_usd": 0.1, "duration": 5.0},
        )


def test_stats_per_agent_over_every_track(repo: Path) -> None:
    """Figures are per agent, over all tracks; shell tasks are left out."""
    seed(repo, "one")
    seed(repo, "two")
    result = CliRunner().invoke(
        main, ["agents", "stats", "--json", "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    coder, writer = json.loads(result.output)
    assert coder == {
        "agent": "coder",
        "tasks_done": 4,
        "first_try_rate": 0.5,
        "mean_attempts": 1.5,
        "mean_duration": 15.0,
        "failed_attempts": 2,
        "cost_usd": 2.0,
        "mean_review_score": 80.0,
    }
    assert writer["tasks_done"] == 2 and writer["mean_review_score"] is None


def test_stats_table_and_one_track(repo: Path) -> None:
    """The table names each agent; a TRACK argument limits the figures to its bus."""
    seed(repo, "one")
    result = CliRunner().invoke(
        main, ["agents", "stats", "one", "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["AGENT", "DONE", "FIRST"]
    coder = next(line for line in lines if line.startswith("coder"))
    assert coder.split()[1:3] == ["2", "50%"] and "$1.0000" in coder


def test_a_review_that_could_not_be_done_is_left_out_of_the_score(repo: Path) -> None:
    """The 0 of a review whose session failed is not the agent's: its mean skips it."""
    sd = StateDir.for_track(repo, "rev", Path(os.environ["CONDUCTOR_STATE_DIR"])).ensure()
    with Bus.for_state(sd, "rev") as bus:
        failed = {"score": 0.0, "error": "the session failed"}
        bus.post("REVIEW_RESULT", task="a", worker="a.1", attempt=1, payload=failed)
        bus.post("TASK_FAILED", task="a", worker="a.1", attempt=1, payload={"agent": "coder"})
        bus.post("REVIEW_RESULT", task="a", worker="a.2", attempt=2, payload={"score": 80})
        bus.post("TASK_COMPLETE", task="a", worker="a.2", attempt=2, payload={"agent": "coder"})
    result = CliRunner().invoke(
        main, ["agents", "stats", "rev", "--json", "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    (coder,) = json.loads(result.output)
    assert coder["mean_review_score"] == 80.0 and coder["failed_attempts"] == 1


def test_a_track_that_never_ran_is_an_error(repo: Path) -> None:
    """Naming a track id without run state is exit 2 with a suggestion, not an empty table."""
    seed(repo, "one")
    result = CliRunner().invoke(
        main, ["agents", "stats", "one", "onne", "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "onne" in result.output and "one" in result.output
