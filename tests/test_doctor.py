"""`conductor doctor`: one line per check with how to fix it; exit 1 when something required
is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from reportkit import git_repo

from conductor.cli import main
from conductor.sandbox import unavailable
from conductor.testing import fake_cli_path


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git checkout with a committer identity, and a HOME with no claude login."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("CONDUCTOR_CLAUDE_CLI", raising=False)
    repo = git_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo), "config", "user.name", "Ada"], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.email", "ada@example.com"], check=True)
    return repo


def doctor(repo: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["doctor", "--repo", str(repo), *args],
                              catch_exceptions=False)


def line(result: Result, name: str) -> str:
    return next(x for x in result.output.splitlines() if x[6:].startswith(name))


def test_ready_machine_passes_every_check(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a key, a CLI that starts, git, a state directory and the sandbox: exit 0."""
    if unavailable() is not None:
        pytest.skip(f"the sandbox cannot run here: {unavailable()}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    result = doctor(checkout)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 7 and lines[-1] == "ready to run tracks"
    assert all(x.startswith("ok") for x in lines[:-1]), result.output
    assert "sk-ant-test-key" not in result.output  # a secret is never printed
    assert "conductor fake" in line(result, "claude cli")
    data = json.loads(doctor(checkout, "--json").output)
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == [
        "python", "git", "state directory", "sandbox", "claude cli", "credentials",
    ]


def test_missing_credentials_fail_and_say_how_to_fix(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key or token: the credentials check fails, names both variables, exit 1; a claude
    login in ~/.claude is found but said not to be used."""
    (Path(os.environ["HOME"]) / ".claude").mkdir()
    (Path(os.environ["HOME"]) / ".claude" / ".credentials.json").write_text("{}")
    result = doctor(checkout)
    assert result.exit_code == 1
    creds = line(result, "credentials")
    assert creds.startswith("FAIL")
    assert "ANTHROPIC_API_KEY" in creds and "CLAUDE_CODE_OAUTH_TOKEN" in creds
    assert "fix: export ANTHROPIC_API_KEY" in creds and "claude setup-token" in creds
    assert ".credentials.json" in creds and "not used" in creds
    assert result.output.splitlines()[-1].startswith("something required is missing")
    data = json.loads(doctor(checkout, "--json").output)
    assert data["ok"] is False
    assert {c["name"]: c["status"] for c in data["checks"]}["credentials"] == "fail"


def test_no_credentials_is_only_a_warning_for_another_cli(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CONDUCTOR_CLAUDE_CLI naming another CLI (the offline fake), no key is a warning."""
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    result = doctor(checkout, "--json")
    checks = {c["name"]: c for c in json.loads(result.output)["checks"]}
    assert checks["credentials"]["status"] == "warn"
    assert checks["claude cli"]["status"] == "ok"


def test_a_cli_that_is_missing_or_broken_fails(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CONDUCTOR_CLAUDE_CLI naming nothing, or a CLI whose --version fails: FAIL with a fix."""
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(tmp_path / "no-such-claude"))
    missing = line(doctor(checkout), "claude cli")
    assert missing.startswith("FAIL") and "not found" in missing and "fix: set" in missing
    broken = tmp_path / "broken-claude"
    broken.write_text("#!/bin/sh\necho 'cannot load' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(broken))
    result = doctor(checkout)
    failed = line(result, "claude cli")
    assert result.exit_code == 1
    assert failed.startswith("FAIL") and "exited 3" in failed and "cannot load" in failed


def test_a_clis_escape_sequences_are_shown_not_sent_to_the_terminal(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLI whose --version output holds escape sequences is quoted with them made visible."""
    noisy = tmp_path / "noisy-claude"
    noisy.write_text("#!/bin/sh\nprintf '\\033]0;PWNED\\007\\033[31m9.9.9 (Claude Code)'\n")
    noisy.chmod(0o755)
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(noisy))
    result = doctor(checkout)
    assert "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b]0;PWNED\\x07\\x1b[31m9.9.9 (Claude Code)" in line(result, "claude cli")


def test_missing_sandbox_programs_fail_with_the_packages_to_install(
    checkout: Path, tmp_path: Path
) -> None:
    """Without bwrap and socat on PATH the sandbox check fails and names the packages."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)
    env = {**os.environ, "PATH": str(bin_dir), "ANTHROPIC_API_KEY": "sk-ant-x"}
    result = subprocess.run(
        [sys.executable, "-m", "conductor", "doctor", "--repo", str(checkout)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    sandbox = next(x for x in result.stdout.splitlines() if x[6:].startswith("sandbox"))
    assert sandbox.startswith("FAIL") and "bwrap and socat not found" in sandbox
    assert "apt-get install bubblewrap socat" in sandbox
    assert "Traceback" not in result.stderr


def test_git_problems_are_warnings(checkout: Path, tmp_path: Path) -> None:
    """A directory that is not a checkout, or a checkout without an identity: warn, not fail."""
    plain = tmp_path / "plain"
    plain.mkdir()
    not_repo = line(doctor(plain), "git")
    assert not_repo.startswith("warn") and "not a git checkout" in not_repo
    assert "git init" in not_repo
    anonymous = git_repo(tmp_path / "anon")
    nameless = line(doctor(anonymous), "git")
    assert nameless.startswith("warn") and "user.name" in nameless


def test_a_state_directory_that_is_a_symlink_fails(checkout: Path, tmp_path: Path) -> None:
    """A planted symlink at the state root is refused, with how to fix it."""
    (tmp_path / "elsewhere").mkdir()
    (checkout / ".conductor").symlink_to(tmp_path / "elsewhere")
    result = CliRunner(env={"CONDUCTOR_STATE_DIR": None}).invoke(
        main, ["doctor", "--repo", str(checkout)], catch_exceptions=False
    )
    state = line(result, "state directory")
    assert result.exit_code == 1
    assert state.startswith("FAIL") and "symbolic link" in state and "fix: remove the link" in state
