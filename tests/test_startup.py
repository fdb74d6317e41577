"""Quick commands import only what they use (scripts/bench_startup.py measures the time).

Each command runs in a fresh interpreter, which reports the modules loaded by the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def reported(script: str, cwd: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """Run ``script`` (``_REPORT`` or ``_CONSOLE``) with ARGS in a fresh interpreter; return
    its stdout and the report it wrote (it must exit 0)."""
    report = cwd / "modules.json"
    # Not measured for coverage: coverage's own imports (pathlib...) would be counted.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(report), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(report.read_text())
    assert result["code"] == 0, proc.stderr
    return proc.stdout, result


def loaded(cwd: Path, *args: str) -> set[str]:
    """Top-level packages and conductor modules loaded by ``conductor ARGS`` (it must exit 0)."""
    modules: list[str] = reported(_REPORT, cwd, *args)[1]["modules"]
    return {m for m in modules if m.startswith("conductor.")} | {m.split(".")[0] for m in modules}


def assert_none_of(modules: set[str], *names: str) -> None:
    """None of ``names`` was loaded."""
    assert not modules & set(names), sorted(modules & set(names))


def ran_track(repo: Path) -> Path:
    """``track.yaml`` (track ``demo``, one shell task) in ``repo``, run once to completion."""
    track = repo / "track.yaml"
    track.write_text("track: demo\ntasks:\n  - id: a\n    run: 'true'\n")
    loaded(repo, "run", "track.yaml")
    return track


_CONSOLE = """\
import json, sys
from conductor.cli import console
out = sys.argv[1]
sys.argv = ["conductor", *sys.argv[2:]]
console()
with open(out, "w") as f:
    json.dump({"code": 0, "modules": sorted(sys.modules)}, f)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]])
def test_console_answers_version_and_help_without_click(tmp_path: Path, args: list[str]) -> None:
    """The `conductor` command answers `--version` and `--help` without loading click."""
    stdout, result = reported(_CONSOLE, tmp_path, *args)
    assert_none_of({m.split(".")[0] for m in result["modules"]}, "click", *HEAVY)
    assert stdout.startswith("conductor, version" if args == ["--version"] else "Usage:")


@pytest.mark.parametrize("columns", ["40", "80", "132"])
def test_console_help_is_the_click_groups_help(columns: str) -> None:
    """`conductor --help` without click prints what the click group prints for `--help`, at
    any terminal width, and lists every command and option."""
    env = {**os.environ, "COLUMNS": columns}
    printed = [
        subprocess.run(
            [sys.executable, "-c", code, "--help"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for code in (
            "from conductor.cli import console; console()",
            "from conductor.cli import main; main(prog_name='conductor')",
        )
    ]
    assert printed[0] == printed[1]
    from conductor.cli.usage import COMMANDS

    for name in COMMANDS:
        assert f"\n  {name} " in printed[0], name
    for option in ("--version", "--log-format", "--verbose", "--help"):
        assert option in printed[0]


def test_console_version_is_the_click_groups_version() -> None:
    """`conductor --version` without click prints what click's version option prints."""
    from click.testing import CliRunner

    from conductor import __version__
    from conductor.cli import main

    console = subprocess.run(
        [sys.executable, "-m", "conductor", "--version"], capture_output=True, text=True, check=True
    )
    result = CliRunner().invoke(main, ["--version"], prog_name="conductor")
    assert result.exit_code == 0
    assert console.stdout == result.output == f"conductor, version {__version__}\n"


def test_version_loads_no_library(repo: Path) -> None:
    """`--version` loads click and conductor.cli, and nothing of the library behind them."""
    modules = loaded(repo, "--version")
    assert_none_of(modules, *HEAVY, "conductor.bus", "conductor.track", "conductor.locks")
    assert_none_of(modules, "conductor.messages", "conductor.paths", "pathlib")


def test_help_loads_no_heavy_dependency(repo: Path) -> None:
    """`--help` lists every command without loading pydantic, asyncio or the Claude SDK."""
    assert_none_of(loaded(repo, "--help"), *HEAVY, "conductor.track", "conductor.scheduler")


def test_help_loads_no_command_module(repo: Path) -> None:
    """`--help` lists the commands from conductor.cli.app's table, importing none of them."""
    modules = loaded(repo, "--help")
    commands = {m for m in modules if m.startswith("conductor.cli.")}
    commands -= {"conductor.cli.app", "conductor.cli.usage"}
    assert not commands, sorted(commands)
    assert_none_of(modules, "conductor.bus", "conductor.locks", "psutil", "pathlib")


def test_command_table_holds_each_commands_own_short_help() -> None:
    """The short help `--help` lists for each command is the one the command itself gives."""
    import click

    from conductor.cli.app import COMMANDS, main

    ctx = click.Context(main)
    for name, (_, short_help) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None, name
        assert command.get_short_help_str(10_000) == short_help, name


def test_bus_commands_load_no_model_or_event_loop(repo: Path) -> None:
    """`bus post`, `bus ls` and `status` of a track id load neither pydantic nor asyncio."""
    ran_track(repo)
    for args in (
        ("bus", "post", "demo", "NOTE", "-m", "hello"),
        ("bus", "ls", "demo"),
        ("status", "demo", "--json"),
    ):
        modules = loaded(repo, *args)
        assert_none_of(
            modules, *HEAVY, "conductor.track", "conductor.scheduler", "filelock", "psutil"
        )


def test_locks_loads_no_model_or_event_loop(repo: Path) -> None:
    """`locks` reads lock records without pydantic, asyncio or filelock."""
    ran_track(repo)
    assert_none_of(loaded(repo, "locks"), *HEAVY, "conductor.track", "filelock")


@pytest.mark.parametrize("hook", ["pre-commit", "post-commit"])
def test_hooks_load_no_model_or_event_loop(repo: Path, hook: str) -> None:
    """The hooks' entry points load no pydantic (no track file staged) and no asyncio."""
    assert_none_of(loaded(repo, "hooks", "run", hook), *HEAVY, "conductor.track")


def test_status_of_an_unchanged_track_file_builds_no_model(repo: Path) -> None:
    """`status TRACK_FILE` of a file validated before loads neither pydantic nor YAML."""
    ran_track(repo)
    assert "conductor.track" in loaded(repo, "status", "track.yaml", "--json")
    modules = loaded(repo, "status", "track.yaml", "--json")
    assert_none_of(modules, *HEAVY, "conductor.track", "conductor.scheduler", "filelock")


def test_hooks_check_no_liveness_when_no_lock_is_held(repo: Path) -> None:
    """With a file staged and a track that holds no locks, pre-commit loads neither psutil nor
    filelock; post-commit, with no track running, loads neither filelock nor the bus."""
    ran_track(repo)
    (repo / "notes.txt").write_text("a person's change\n")
    subprocess.run(["git", "add", "notes.txt"], cwd=repo, check=True)
    pre = loaded(repo, "hooks", "run", "pre-commit")
    assert "conductor.locks" in pre  # the track's locks were looked at
    assert_none_of(pre, *HEAVY, "conductor.track", "psutil", "filelock")
    post = loaded(repo, "hooks", "run", "post-commit")
    assert_none_of(post, *HEAVY, "conductor.track", "conductor.bus", "psutil", "filelock")


def test_locks_of_a_track_holding_none_loads_no_psutil(repo: Path) -> None:
    """`locks` checks holders' liveness only for records it lists: none, no psutil."""
    ran_track(repo)
    assert_none_of(loaded(repo, "locks", "demo"), *HEAVY, "psutil", "filelock")


def test_shell_run_loads_no_claude_sdk(repo: Path) -> None:
    """`run` of a track of shell tasks never loads the Claude SDK (nor, on Linux, watchdog:
    the bus is watched through inotify directly)."""
    (repo / "track.yaml").write_text("track: demo\ntasks:\n  - id: a\n    run: 'true'\n")
    modules = loaded(repo, "run", "track.yaml")
    assert "conductor.scheduler" in modules
    assert_none_of(modules, "claude_agent_sdk", "conductor.executors.claude")
    if sys.platform.startswith("linux"):
        assert_none_of(modules, "watchdog")


def test_track_models_are_built_on_first_use() -> None:
    """Importing conductor.track compiles no pydantic model; loading a track does."""
    code = (
        "import conductor.track as t\n"
        "print(t.Track.__pydantic_complete__, t.Task.__pydantic_complete__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False"]


def test_task_checks_of_a_track_id_reuse_the_track_files_outline(repo: Path) -> None:
    """`logs TRACK_ID TASK` and `bus post TRACK_ID SKIP --task TASK` check the task against the
    recorded track file through its outline: once it is saved, they build no model."""
    ran_track(repo)
    loaded(repo, "status", "track.yaml", "--json")  # saves the outline
    for args in (("logs", "demo", "a"), ("bus", "post", "demo", "SKIP", "--task", "a")):
        assert_none_of(loaded(repo, *args), *HEAVY, "conductor.track", "filelock", "psutil")


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_console_answers_a_failing_stdout_without_a_traceback(args: list[str]) -> None:
    """A full disk behind stdout is exit 1 naming the reason; a reader that has gone is exit
    1, quietly; neither is a traceback."""
    argv = [sys.executable, "-m", "conductor", *args]
    with open("/dev/full", "w") as full:
        proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "error: cannot write to stdout: No space left on device\n"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes
    try:
        proc = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr) == (1, "")
