"""`conductor revert` and what `conductor status` says about landed, denied and kept work."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from conductor.cli import main
from conductor.scheduler import RunOptions, run_track
from conductor.testing.scripted import ScriptedExecutor, Step
from conductor.track import parse_track

TRACK = textwrap.dedent(
    """
    track: rev
    tasks:
      - {id: add, type: code, files: ["src/**"]}
      - {id: broken, type: code, files: ["lib/**"], max_attempts: 1}
    """
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def ran(repo: Path, tmp_path: Path) -> Path:
    """A track run in copies: `add` landed a commit, `broken` failed and kept its copy."""
    git(repo, "config", "user.name", "P")
    git(repo, "config", "user.email", "p@example.com")
    track_file = tmp_path / "track.yaml"
    track_file.write_text(TRACK)
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("add", Step(writes={"src/a.py": "a = 1\n"}))
    executor.enqueue("broken", Step(writes={"lib/x.py": "x\n", "README": "oops\n"}))
    options = RunOptions(
        repo=repo,
        state_root=Path(os.environ["CONDUCTOR_STATE_DIR"]),
        executors=lambda task: executor,
        handle_signals=False,
    )
    anyio.run(run_track, parse_track(TRACK), options)
    return track_file


def test_status_shows_commit_and_kept_copy(repo: Path, ran: Path) -> None:
    """status names the landed commit of a task and the kept copy of a failed one."""
    result = CliRunner().invoke(
        main, ["status", str(ran), "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    head = git(repo, "rev-parse", "HEAD").strip()
    assert f"commit {head[:12]}" in result.output
    assert "copy kept: " in result.output and "broken.1" in result.output
    data = json.loads(
        CliRunner()
        .invoke(main, ["status", str(ran), "--repo", str(repo), "--json"], catch_exceptions=False)
        .output
    )
    rows = {r["task"]: r for r in data["tasks"]}
    assert rows["add"]["commit"] == head and rows["broken"]["kept_copy"]


def test_revert_undoes_the_task_and_resets_it(repo: Path, ran: Path) -> None:
    """revert makes a commit that undoes the task's files and marks the task pending."""
    landed = git(repo, "rev-parse", "HEAD").strip()
    result = CliRunner().invoke(
        main, ["revert", str(ran), "add", "--repo", str(repo)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "pending again" in result.output
    assert not (repo / "src" / "a.py").exists()
    body = git(repo, "log", "-1", "--format=%B")
    assert body.startswith('Revert "rev/add"') and f"Conductor-Reverts: {landed}" in body
    assert git(repo, "status", "--porcelain") == ""
    status = CliRunner().invoke(
        main, ["status", str(ran), "--repo", str(repo), "--json"], catch_exceptions=False
    )
    rows = {r["task"]: r for r in json.loads(status.output)["tasks"]}
    assert rows["add"]["status"] == "pending" and rows["add"]["commit"] is None


def test_revert_refuses_when_the_files_changed_since(repo: Path, ran: Path) -> None:
    """A path changed after the landing is a conflict: nothing is reverted, the paths named."""
    (repo / "src" / "a.py").write_text("mine\n")
    result = CliRunner().invoke(main, ["revert", str(ran), "add", "--repo", str(repo)])
    assert result.exit_code == 1
    assert "src/a.py" in result.output and "Traceback" not in result.output
    assert (repo / "src" / "a.py").read_text() == "mine\n"


def test_revert_of_a_task_without_commit_is_a_user_error(repo: Path, ran: Path) -> None:
    """A task that never landed has nothing to revert: exit 2 with the reason."""
    result = CliRunner().invoke(main, ["revert", str(ran), "broken", "--repo", str(repo)])
    assert result.exit_code == 2
    assert "no landed commit" in result.output


def test_revert_of_a_commit_no_longer_in_head_is_refused(repo: Path, ran: Path) -> None:
    """A task whose commit the person rebased or amended away is not reverted: exit 2."""
    git(repo, "commit", "-q", "--amend", "-m", "amended")
    result = CliRunner().invoke(main, ["revert", str(ran), "add", "--repo", str(repo)])
    assert result.exit_code == 2
    assert "not in HEAD's history" in result.output


def test_a_revert_cut_off_after_head_moved_is_finished_by_the_next_run(
    repo: Path, ran: Path
) -> None:
    """A revert killed after moving HEAD (its REVERTING on the bus, no TASK_RESET, files and
    index stale) is finished by the next `conductor run`: files, index and bus agree."""
    from conductor.bus import Bus
    from conductor.copies import Checkout
    from conductor.landing import change_to_dict, commit_changes, inverse, land
    from conductor.messages import MessageType
    from conductor.paths import StateDir

    state_root = Path(os.environ["CONDUCTOR_STATE_DIR"])
    sd = StateDir.for_track(repo, "rev", state_root)
    checkout = Checkout.find(repo)
    sha = git(repo, "rev-parse", "HEAD").strip()
    changes = inverse(commit_changes(checkout, sha))
    with Bus.for_state(sd, "rev") as bus:

        def record(commit: str, parent: str | None, branch: str | None) -> None:
            bus.post(
                MessageType.REVERTING,
                task="add",
                payload={"commit": commit, "parent": parent, "branch": branch, "reverts": sha,
                         "changes": [change_to_dict(c) for c in changes]},
            )

        land(checkout, changes, message="Revert\n", lock=state_root / ".land.lock",
             before_move=record)
    # As if killed right after HEAD moved: the file back, the index stale.
    (repo / "src").mkdir(exist_ok=True)
    (repo / "src" / "a.py").write_text("a = 1\n")
    git(repo, "update-index", "--add", "src/a.py")
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("add", Step(writes={"src/a.py": "a = 1\n"}))
    options = RunOptions(repo=repo, state_root=state_root, executors=lambda task: executor,
                         handle_signals=False)
    anyio.run(run_track, parse_track(TRACK), options)
    with Bus.for_state(sd, "rev") as bus:
        resets = [m for m in bus.read() if m.type == "TASK_RESET" and m.task == "add"]
    assert resets and resets[0].payload["reverted"] == sha
    assert git(repo, "log", "--format=%s").splitlines()[:3] == ["rev/add", "Revert", "rev/add"]
    assert git(repo, "status", "--porcelain") == ""
