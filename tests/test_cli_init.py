"""`conductor init`: a starter track and its offline script, runnable at once."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from reportkit import git_repo, offline_env

from conductor.cli import main
from conductor.sandbox import unavailable


def init(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["init", "--repo", str(repo), *args], catch_exceptions=False)


def conductor(repo: Path, state: Path, argv: list[str], env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conductor", *argv],
        cwd=repo, env=offline_env(state, env), capture_output=True, text=True, timeout=300,
        check=False,
    )


def test_starter_track_runs_offline_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command `init` prints runs the starter track to completion with no key or network;
    its Claude task lands one commit, and logs and report show what it did."""
    if unavailable() is not None:
        pytest.skip(f"Claude tasks need the sandbox: {unavailable()}")
    repo, state = git_repo(tmp_path / "repo"), tmp_path / "state"
    monkeypatch.chdir(repo)  # the printed paths are relative to where init ran
    result = init(repo)
    assert result.exit_code == 0, result.output
    track_dir = repo / "tracks" / "starter"
    assert sorted(p.name for p in track_dir.iterdir()) == [
        ".gitignore", "fake-claude.yaml", "track.yaml",
    ]
    command = next(x.strip() for x in result.output.splitlines() if "CONDUCTOR_FAKE_SCRIPT=" in x)
    *assignments, _, run, target = shlex.split(command)
    assert (run, target) == ("run", "tracks/starter")
    env = dict(a.split("=", 1) for a in assignments)
    ran = conductor(repo, state, ["run", target], env)
    assert ran.returncode == 0, ran.stdout + ran.stderr[-3000:]
    assert "3 complete" in ran.stdout
    note = (repo / "starter-out" / "NOTE.md").read_text()
    count = (repo / "starter-out" / "file-count.txt").read_text().strip()
    assert note.startswith("# About this repository") and count in note
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(log) == 2 and "note" in log[0]
    logs = conductor(repo, state, ["logs", "starter", "note"])
    assert "▸ Bash: cat starter-out/file-count.txt" in logs.stdout
    assert "outcome: complete" in logs.stdout
    report = json.loads(conductor(repo, state, ["report", target, "--json"]).stdout)
    assert report["counts"] == {"complete": 3}
    again = conductor(repo, state, ["run", target], env)
    assert again.returncode == 0  # nothing left to do


def test_init_validates_what_it_writes(tmp_path: Path) -> None:
    """The starter track passes `conductor validate` as written, under another --name too."""
    repo = git_repo(tmp_path / "repo")
    assert init(repo, "--name", "demo").exit_code == 0
    checked = conductor(repo, tmp_path / "state", ["validate", "tracks/demo"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = (repo / "tracks" / "demo" / "track.yaml").read_text()
    assert "track: demo" in text and "demo-out/NOTE.md" in text


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    """A second init refuses (exit 2) naming the file, and changes nothing; --force rewrites."""
    repo = git_repo(tmp_path / "repo")
    assert init(repo).exit_code == 0
    track = repo / "tracks" / "starter" / "track.yaml"
    track.write_text("# mine\n")
    again = init(repo)
    assert again.exit_code == 2
    assert "track.yaml" in again.output and "--force" in again.output
    assert track.read_text() == "# mine\n"
    assert init(repo, "--force").exit_code == 0
    assert track.read_text().startswith("# A starter track")


def test_init_refuses_a_bad_name(tmp_path: Path) -> None:
    """A name that is not one path component: exit 2, nothing written."""
    repo = git_repo(tmp_path / "repo")
    result = init(repo, "--name", "../escape")
    assert result.exit_code == 2 and "track name" in result.output
    assert not (repo / "tracks").exists()
