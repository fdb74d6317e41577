"""The bundled example tracks run as the README says, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conductor.testing import fake_cli_path

ROOT = Path(__file__).resolve().parent.parent


def run(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "conductor", *args],
        cwd=repo,
        env=full,
        capture_output=True,
        text=True,
    )


def checkout(repo: Path) -> Path:
    shutil.copytree(ROOT / "tracks", repo / "tracks")
    return repo


def test_hello_example_runs_and_reruns(repo: Path) -> None:
    """tracks/hello completes offline; a second run does nothing and still exits 0."""
    checkout(repo)
    first = run(repo, "run", "tracks/hello/track.yaml")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "complete" in first.stdout
    again = run(repo, "run", "tracks/hello/track.yaml")
    assert again.returncode == 0
    status = run(repo, "status", "tracks/hello/track.yaml", "--json")
    assert status.returncode == 0 and '"complete"' in status.stdout
    assert (repo / ".conductor" / ".gitignore").read_text().strip().endswith("*")


def test_claude_offline_example(repo: Path) -> None:
    """tracks/claude-offline runs against the scripted fake claude: retry with feedback, docs."""
    checkout(repo)
    env = {
        "CONDUCTOR_CLAUDE_CLI": str(fake_cli_path()),
        "CONDUCTOR_FAKE_SCRIPT": "tracks/claude-offline/fake-claude.yaml",
    }
    result = run(repo, "run", "tracks/claude-offline/track.yaml", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (repo / "out" / "greeting.py").read_text().strip().endswith('return f"Hello, {name}!"')
    assert 'greet("Ada")' in (repo / "out" / "GREETING.md").read_text()
    ls = run(repo, "bus", "ls", "claude-offline", "--type", "TASK_COMPLETE", "--json")
    assert ls.returncode == 0 and ls.stdout.count("TASK_COMPLETE") == 2
