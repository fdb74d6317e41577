"""``conductor templates list|show`` and ``conductor agents list``: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from clikit import invoke

from conductor.templates import builtin_templates_dir

TRACK = """\
track: demo
description: A demo track
adhoc: true
agents:
  api-designer:
    role: Senior API designer
    system_prompt: You design APIs.
    model: opus
tasks:
  - id: api
    name: Design the API
    type: code
    agent: api-designer
    files: [src/api.py]
    acceptance: [GET /items returns JSON]
    verify: [pytest -q]
  - id: review
    type: code
    agent: code-reviewer
    depends_on: [api]
  - id: migrate
    type: config
    agent: db-migrator
  - id: guide
    type: docs
  - id: build
    run: make
"""

REVIEWER = """\
---
name: code-reviewer
description: Reviews changes.
tools: Read, Grep
---
You review code.
"""

HEADER = (
    "---\nname: {name}\ndescription: d\nlifecycle: ephemeral\nspecialization: s\n"
    "tools: [Read]\n---\n"
)


def make_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "track.yaml").write_text(TRACK)
    agents = repo / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "code-reviewer.md").write_text(REVIEWER)
    return repo


def template(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text(HEADER.format(name=name) + body)
    return path


def test_templates_list_shows_builtins_and_types(tmp_path: Path) -> None:
    """Each built-in template is listed with its layer, task types and file."""
    result = invoke("templates", "list", "--repo", str(tmp_path))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "LAYER", "TASK", "TYPES", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {
        "code-worker",
        "integration-worker",
        "task-worker",
        "test-worker",
        "ui-worker",
    }
    assert "built-in" in rows["code-worker"] and " code " in rows["code-worker"]
    assert "config, docs, (any other)" in rows["task-worker"]
    assert str(builtin_templates_dir() / "ui-worker.md") in rows["ui-worker"]


def test_templates_list_json_with_repo_override(tmp_path: Path) -> None:
    """--json lists repo overrides and new types with their layer."""
    template(tmp_path / "worker_templates", "docs-worker", "Docs {task_id}\n")
    template(tmp_path / "worker_templates", "code-worker", "Code {task_id}\n")
    result = invoke("templates", "list", "--repo", str(tmp_path), "--json")
    assert result.exit_code == 0
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["docs-worker"]["layer"] == "repo"
    assert entries["docs-worker"]["types"] == ["docs"]
    assert entries["code-worker"]["layer"] == "repo"
    assert entries["code-worker"]["path"] == str(tmp_path / "worker_templates" / "code-worker.md")
    assert entries["task-worker"]["types"] == ["config", "(any other)"]


def test_templates_list_with_track_templates_dir(tmp_path: Path) -> None:
    """--track adds the track's templates directory as the top layer."""
    repo = make_repo(tmp_path)
    (repo / "track.yaml").write_text("templates: tpl\n" + TRACK)
    template(repo / "tpl", "code-worker", "Track {task_id}\n")
    result = invoke(
        "templates", "list", "--repo", str(repo), "--track", str(repo / "track.yaml"), "--json"
    )
    assert result.exit_code == 0, result.output
    entries = {e["name"]: e for e in json.loads(result.stdout)}
    assert entries["code-worker"]["layer"] == "track"


def test_templates_show_expands_includes(tmp_path: Path) -> None:
    """show TYPE prints the template after includes, placeholders intact, source on stderr."""
    result = invoke("templates", "show", "code", "--repo", str(tmp_path))
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("---\nname: code-worker\n")
    assert "{{> task-worker}}" not in out
    assert out.index("# Task `{task_id}`: {task_name}") < out.index("## Specialisation: code")
    assert f"built-in template {builtin_templates_dir() / 'code-worker.md'}" in result.stderr
    assert f"includes {builtin_templates_dir() / 'task-worker.md'}" in result.stderr


def test_templates_show_by_name_and_fallback(tmp_path: Path) -> None:
    """show accepts a template name, and an unmapped type shows task-worker."""
    by_name = invoke("templates", "show", "ui-worker", "--repo", str(tmp_path))
    assert by_name.stdout.startswith("---\nname: ui-worker\n")
    fallback = invoke("templates", "show", "docs", "--repo", str(tmp_path))
    assert fallback.stdout.startswith("---\nname: task-worker\n")
    assert "includes" not in fallback.stderr


def test_templates_show_broken_template_exits_2(tmp_path: Path) -> None:
    """A bad placeholder in an override is a one-line error with file:line, exit code 2."""
    path = template(tmp_path / "worker_templates", "code-worker", "fine\n{task_idd}\n")
    result = invoke("templates", "show", "code", "--repo", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:9: unknown placeholder {{task_idd}}")
    assert "Traceback" not in result.output


def test_agents_list_shows_each_source(tmp_path: Path) -> None:
    """agents list shows each task's agent and where it came from."""
    repo = make_repo(tmp_path)
    result = invoke("agents", "list", str(repo / "track.yaml"), "--repo", str(repo))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK", "AGENT", "SOURCE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["api"][1:3] == ["api-designer", "track"]
    assert rows["review"][1:3] == ["code-reviewer", "claude-agents"]
    assert rows["migrate"][1:3] == ["db-migrator", "inferred"]
    assert rows["guide"][1:3] == ["technical-writer", "default"]
    assert rows["build"][1:3] == ["-", "(shell"]


def test_agents_list_json(tmp_path: Path) -> None:
    """--json gives role, goal, tools, model and the defining file."""
    repo = make_repo(tmp_path)
    result = invoke("agents", "list", str(repo / "track.yaml"), "--repo", str(repo), "--json")
    assert result.exit_code == 0
    entries = {e["task"]: e for e in json.loads(result.stdout)}
    assert entries["api"]["role"] == "Senior API designer"
    assert entries["api"]["model"] == "opus"
    assert entries["review"]["tools"] == ["Read", "Grep"]
    assert entries["review"]["origin"] == str(repo / ".claude" / "agents" / "code-reviewer.md")
    assert entries["migrate"]["role"] == "DB migrator"
    assert entries["build"] == {"task": "build", "agent": None, "source": "run"}


def test_agents_list_broken_agent_file_exits_2(tmp_path: Path) -> None:
    """A broken .claude/agents file a task uses is reported with file, line and field."""
    repo = make_repo(tmp_path)
    path = repo / ".claude" / "agents" / "code-reviewer.md"
    path.write_text(REVIEWER.replace("tools: Read, Grep", "tools: Read\nteam: core"))
    result = invoke("agents", "list", str(repo / "track.yaml"), "--repo", str(repo))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:5: team: unknown field")


def test_agents_list_missing_track_exits_2(tmp_path: Path) -> None:
    """A track file that does not exist is a user error, not a traceback."""
    result = invoke("agents", "list", str(tmp_path / "nope.yaml"), "--repo", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
