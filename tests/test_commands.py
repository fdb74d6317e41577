"""The shell executor's spawning: PATH lookup, environment, output to the log."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conductor import commands
from conductor.executors import shell

pytestmark = pytest.mark.anyio


def _tool(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho {text}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def test_path_lookup_follows_a_tool_that_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command is found on PATH; when the copy found first goes away, the next one runs."""
    first = _tool(tmp_path / "bin1", "conductor-probe", "first")
    _tool(tmp_path / "bin2", "conductor-probe", "second")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin1'}:{tmp_path / 'bin2'}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    log = tmp_path / "out.log"
    assert await commands.run_command("conductor-probe", cwd=tmp_path, log_path=log) == 0
    first.unlink()
    assert await commands.run_command("conductor-probe", cwd=tmp_path, log_path=log) == 0
    assert log.read_text().split() == ["first", "second"]
    missing = await commands.run_command("conductor-no-such-tool", cwd=tmp_path, log_path=log)
    assert missing == 127 and "cannot start 'conductor-no-such-tool'" in log.read_text()


async def test_children_get_the_base_environment_plus_the_attempts(tmp_path: Path) -> None:
    """The child's environment is exactly the given base with the attempt's variables on top."""
    log = tmp_path / "env.log"
    base = {"PATH": os.environ["PATH"], "ONLY_IN_BASE": "base", "OVERRIDDEN": "base"}
    code = await commands.run_command(
        "env",
        cwd=Path.cwd(),
        log_path=log,
        env={"OVERRIDDEN": "attempt", "CONDUCTOR_TASK": "t"},
        base_env=base,
    )
    assert code == 0
    lines = set(log.read_text().splitlines())
    assert {"ONLY_IN_BASE=base", "OVERRIDDEN=attempt", "CONDUCTOR_TASK=t"} <= lines
    assert not any(line.startswith("HOME=") for line in lines)


async def test_executor_environment_is_fixed_when_it_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ShellExecutor keeps the environment of its creation, so a run's children agree."""
    monkeypatch.setenv("CONDUCTOR_PROBE_VAR", "at-start")
    executor = shell.ShellExecutor()
    monkeypatch.setenv("CONDUCTOR_PROBE_VAR", "later")
    assert executor.base_env["CONDUCTOR_PROBE_VAR"] == "at-start"


def test_argv_for_gives_a_fresh_list_each_time() -> None:
    """Parsed commands are remembered, but callers may change the list they get."""
    first = commands.argv_for("echo one two")
    assert first == ["echo", "one", "two"]
    first.append("three")
    assert commands.argv_for("echo one two") == ["echo", "one", "two"]
    assert commands.argv_for("echo $HOME") == "echo $HOME"
