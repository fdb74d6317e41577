"""Quick commands import only what they use (scripts/bench_startup.py measures the time).

Each command runs in a fresh interpreter, which reports the modules loaded by the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_REPORT = """\
import json, sys
from conductor.cli import main
out, args = sys.argv[1], sys.argv[2:]
try:
    main(args, prog_name="conductor")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

HEAVY = ("pydantic", "claude_agent_sdk", "asyncio", "anyio", "structlog", "yaml", "watchdog")
"""Modules a command that touches one message, or none, has no use for."""


def loaded(cwd: Path, *args: str) -> set[str]:
    """Top-level packages and conductor modules loaded by ``conductor ARGS`` (it must exit 0)."""
    report = cwd / "modules.json"
    proc = subprocess.run(
        [sys.executable, "-c", _REPORT, str(report), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(report.read_text())
    assert result["code"] == 0, proc.stderr
    modules: list[str] = result["modules"]
    return {m for m in modules if m.startswith("conductor.")} | {m.split(".")[0] for m in modules}


def assert_none_of(modules: set[str], *names: str) -> None:
    """None of ``names`` was loaded."""
    assert not modules & set(names), sorted(modules & set(names))


def test_version_loads_no_library(repo: Path) -> None:
    """`--version` loads click and conductor.cli, and nothing of the library behind them."""
    modules = loaded(repo, "--version")
    assert_none_of(modules, *HEAVY, "conductor.bus", "conductor.track", "conductor.locks")


def test_help_loads_no_heavy_dependency(repo: Path) -> None:
    """`--help` lists every command without loading pydantic, asyncio or the Claude SDK."""
    assert_none_of(loaded(repo, "--help"), *HEAVY, "conductor.track", "conductor.scheduler")


def test_bus_commands_load_no_model_or_event_loop(repo: Path) -> None:
    """`bus post`, `bus ls` and `status` of a track id load neither pydantic nor asyncio."""
    for args in (
        ("bus", "post", "demo", "NOTE", "-m", "hello"),
        ("bus", "ls", "demo"),
        ("status", "demo", "--json"),
    ):
        modules = loaded(repo, *args)
        assert_none_of(modules, *HEAVY, "conductor.track", "conductor.scheduler", "filelock")


def test_locks_loads_no_model_or_event_loop(repo: Path) -> None:
    """`locks` reads lock records without pydantic, asyncio or filelock."""
    loaded(repo, "bus", "post", "demo", "NOTE", "-m", "hello")
    assert_none_of(loaded(repo, "locks"), *HEAVY, "conductor.track", "filelock")


@pytest.mark.parametrize("hook", ["pre-commit", "post-commit"])
def test_hooks_load_no_model_or_event_loop(repo: Path, hook: str) -> None:
    """The hooks' entry points load no pydantic (no track file staged) and no asyncio."""
    assert_none_of(loaded(repo, "hooks", "run", hook), *HEAVY, "conductor.track")


def test_shell_run_loads_no_claude_sdk(repo: Path) -> None:
    """`run` of a track of shell tasks never loads the Claude SDK."""
    (repo / "track.yaml").write_text("track: demo\ntasks:\n  - id: a\n    run: 'true'\n")
    modules = loaded(repo, "run", "track.yaml")
    assert "conductor.scheduler" in modules
    assert_none_of(modules, "claude_agent_sdk", "conductor.executors.claude")


def test_track_models_are_built_on_first_use() -> None:
    """Importing conductor.track compiles no pydantic model; loading a track does."""
    code = (
        "import conductor.track as t\n"
        "print(t.Track.__pydantic_complete__, t.Task.__pydantic_complete__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]
