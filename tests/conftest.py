"""Fixtures every test gets: private state, no real model calls, anyio on asyncio."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the backend conductor ships with)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _private_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Point every state directory and Claude config at a temporary place."""
    root = tmp_path_factory.mktemp("conductor-state")
    monkeypatch.setenv("CONDUCTOR_STATE_DIR", str(root))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(root / "claude-config"))
    # The person's own ~/.claude/agents must not change what a test resolves.
    monkeypatch.setattr("conductor.agents._home", lambda: root / "home")
    yield


@pytest.fixture(autouse=True)
def _errors_as_for_a_person(monkeypatch: pytest.MonkeyPatch) -> None:
    """Conductor errors go through the CLI's handler, as for a person (the debugging switch
    that re-raises them is off)."""
    monkeypatch.delenv("CONDUCTOR_RAISE_ERRORS", raising=False)


@pytest.fixture(autouse=True)
def _no_real_model(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real model call fails: no key, and the API base points at a closed local port."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    if request.node.get_closest_marker("real_cli") is None:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository to run tracks in."""
    import subprocess

    path = tmp_path / "repo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        check=True,
    )
    return path
