"""Real runs for the report, logs and status tests: a Claude track against the fake CLI (a
retry, a denied Write, a Bash call, cost) and a shell track with a flaky task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from conductor.cli import main
from conductor.testing import fake_cli_path

CLAUDE_TRACK: dict[str, Any] = {
    "track": "story",
    "description": "A <b>small</b> story & its title",
    "agents": {"tech-writer": {"role": "Technical writer", "goal": "Clear short texts."}},
    "tasks": [
        {
            "id": "greet",
            "name": "Write <script>alert(1)</script> the greeting",
            "type": "code",
            "agent": "tech-writer",
            "files": ["hello.txt"],
            "instructions": "Write hello.txt containing hello.",
            "verify": ["grep -q hello hello.txt"],
        },
        {
            "id": "title",
            "type": "docs",
            "agent": "tech-writer",
            "depends_on": ["greet"],
            "files": ["TITLE.md"],
            "instructions": "Write TITLE.md.",
            "verify": ["test -s TITLE.md"],
        },
    ],
}

CLAUDE_SCRIPT: dict[str, Any] = {
    "sessions": [
        {
            "match": "Carry out task greet (",
            "attempts": [
                [
                    {"text": "Trying a first greeting. \x1b[31mred\x1b[0m"},
                    {"bash": "echo probing the copy"},
                    {"write": {"path": "other.txt", "content": "not mine\n"}},
                    {"write": {"path": "hello.txt", "content": "bye\n"}, "cost": 0.01},
                    {
                        "mcp": {
                            "tool": "report_complete",
                            "input": {"summary": "wrote bye", "files_changed": ["hello.txt"]},
                        }
                    },
                ],
                [
                    {"text": "Fixing: verify wants hello."},
                    {"write": {"path": "hello.txt", "content": "hello\n"}, "cost": 0.02},
                    {
                        "mcp": {
                            "tool": "report_complete",
                            "input": {"summary": "wrote hello", "files_changed": ["hello.txt"]},
                        }
                    },
                ],
            ],
        },
        {
            "match": "Carry out task title (",
            "steps": [
                {"write": {"path": "TITLE.md", "content": "# Hello\n"}, "cost": 0.005},
                {
                    "mcp": {
                        "tool": "report_complete",
                        "input": {"summary": "titled", "files_changed": ["TITLE.md"]},
                    }
                },
            ],
        },
    ]
}

SHELL_TRACK: dict[str, Any] = {
    "track": "flaky",
    "defaults": {"max_attempts": 3},
    "tasks": [
        {
            "id": "flaky",
            "run": "if [ -f .tried ]; then echo second try; else touch .tried; "
            "echo first try; exit 3; fi",
            "verify": ["true"],
        },
        {"id": "after", "depends_on": ["flaky"], "run": "echo after"},
    ],
}


def git_repo(path: Path) -> Path:
    """An empty git repository with one commit."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@example.com",
         "commit", "-q", "--allow-empty", "-m", "init"],
        check=True,
    )
    return path


def offline_env(state: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an offline conductor with its state in ``state``."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
    }
    env.update(
        CONDUCTOR_STATE_DIR=str(state),
        ANTHROPIC_BASE_URL="http://127.0.0.1:9",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        CLAUDE_CONFIG_DIR=str(state.parent / "claude-config"),
    )
    env.update(extra or {})
    return env


def run_track(
    repo: Path, state: Path, track: dict[str, Any], script: dict[str, Any] | None = None
) -> subprocess.CompletedProcess[str]:
    """Write ``track`` (and the fake's ``script``) and run it to its end."""
    (repo / "track.yaml").write_text(yaml.safe_dump(track, allow_unicode=True))
    extra: dict[str, str] = {}
    if script is not None:
        script_path = repo.parent / f"{track['track']}-script.yaml"
        script_path.write_text(yaml.safe_dump(script))
        extra = {
            "CONDUCTOR_CLAUDE_CLI": str(fake_cli_path()),
            "CONDUCTOR_FAKE_SCRIPT": str(script_path),
        }
    return subprocess.run(
        [sys.executable, "-m", "conductor", "run", "track.yaml"],
        cwd=repo,
        env=offline_env(state, extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def ran(
    root: Path, track: dict[str, Any], script: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """A repository under ``root`` where ``track`` ran to its end: (repo, state root)."""
    repo, state = git_repo(root / "repo"), root / "state"
    result = run_track(repo, state, track, script)
    assert result.returncode == 0, result.stderr[-3000:]
    return repo, state


def cli(repo: Path, state: Path, *args: str) -> Result:
    """``conductor ARGS --repo REPO --state-dir STATE`` in-process."""
    return CliRunner().invoke(
        main, [*args, "--repo", str(repo), "--state-dir", str(state)], catch_exceptions=False
    )
