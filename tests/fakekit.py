"""``conductor run`` of Claude tracks in a subprocess, against the offline fake CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conductor.testing import fake_cli_path


def rule(task: str, **kw: Any) -> dict[str, Any]:
    """A fake-CLI script rule matching the prompt of ``task``'s sessions."""
    return {"match": f"Carry out task {task} (", **kw}


def complete(*files: str) -> dict[str, Any]:
    """The step of a session reporting completion, naming ``files``."""
    return {
        "mcp": {
            "tool": "report_complete",
            "input": {"summary": "done", "files_changed": list(files)},
        }
    }


def setup(
    repo: Path, tmp_path: Path, track: dict[str, Any], script: dict[str, Any], **env_kw: str
) -> dict[str, str]:
    """Write ``track`` into ``repo`` and the fake's ``script`` into ``tmp_path``; the
    environment (with ``env_kw``) that makes conductor's sessions play the script."""
    (repo / "track.yaml").write_text(yaml.safe_dump(track))
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    env = dict(os.environ)
    env.update(
        CONDUCTOR_CLAUDE_CLI=str(fake_cli_path()),
        CONDUCTOR_FAKE_SCRIPT=str(tmp_path / "script.yaml"),
        CONDUCTOR_FAKE_LOG=str(tmp_path / "fake.jsonl"),
        CONDUCTOR_CLAUDE_API_BACKOFF="0.01",
        **env_kw,
    )
    return env


def conductor(repo: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``conductor --log-format json ARGS`` started in ``repo``, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "conductor", "--log-format", "json", *args],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
