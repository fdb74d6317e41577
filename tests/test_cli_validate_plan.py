"""`conductor validate` and `conductor plan`: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from clikit import invoke

from conductor.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "tracks" / "hello" / "track.yaml"
SEED = ROOT / "tracks" / "seed-example" / "track.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "track.yaml"
    path.write_text(text)
    return path


def test_validate_ok() -> None:
    """A valid track prints ok with its id and counts, and exits 0."""
    result = invoke("validate", str(HELLO))
    assert result.exit_code == 0
    assert result.stdout == "ok: hello: 6 tasks, 0 agents\n"


def test_validate_a_directory() -> None:
    """TRACK may be a directory holding track.yaml."""
    result = invoke("validate", str(SEED.parent))
    assert result.exit_code == 0
    assert result.stdout == "ok: auth-refactor: 7 tasks, 0 agents\n"


def test_validate_refuses_an_agent_defined_nowhere(tmp_path: Path) -> None:
    """A task naming an agent defined nowhere is an error at its line, naming --adhoc."""
    path = write(
        tmp_path,
        "track: n\nagents:\n  dev: {role: Developer}\ntasks:\n  - {id: a, agent: dev}\n"
        "  - id: b\n    agent: reviewer\n",
    )
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert f"{path}:7: tasks.b.agent: agent 'reviewer'" in result.output
    assert "--adhoc" in result.output


def test_validate_adhoc_says_which_agents_will_be_inferred(tmp_path: Path) -> None:
    """With --adhoc, agents defined nowhere are notes: they will be inferred."""
    path = write(
        tmp_path,
        "track: n\nagents:\n  dev: {role: Developer}\ntasks:\n  - {id: a, agent: dev}\n"
        "  - id: b\n    agent: reviewer\n",
    )
    result = invoke("validate", "--adhoc", str(path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "ok: n: 2 tasks, 1 agent"
    assert lines[1] == "note: agent 'reviewer' (used by b) will be inferred when the track runs"


def test_validate_json(tmp_path: Path) -> None:
    """--json prints one object with ok, counts and notes."""
    path = write(tmp_path, "track: j\nadhoc: true\ntasks: [{id: a, agent: ghost}]\n")
    result = invoke("validate", str(path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["track"] == "j"
    assert (data["tasks"], data["agents"]) == (1, 0)
    assert len(data["notes"]) == 1 and "ghost" in data["notes"][0]


def test_validate_error_exits_2_with_location(tmp_path: Path) -> None:
    """An invalid track prints error: file:line: field: message on stderr and exits 2."""
    path = write(
        tmp_path, "track: e\ntasks:\n  - id: build\n  - id: test\n    depends_on: [buidl]\n"
    )
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {path}:5: tasks[1].depends_on: unknown task 'buidl' (did you mean 'build'?)\n"
    )


def test_validate_json_error(tmp_path: Path) -> None:
    """--json on an invalid track prints ok false with the error, and still exits 2."""
    path = write(tmp_path, "track: e\ntasks:\n  - {id: a, depends_on: [a]}\n")
    result = invoke("validate", "--json", str(path))
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["line"] == 3
    assert "depends on itself" in data["error"]
    assert "error:" in result.stderr


def test_validate_missing_file(tmp_path: Path) -> None:
    """A missing file is a user error (exit 2), not a traceback."""
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "no such track file" in result.stderr


def test_validate_yaml_syntax_error(tmp_path: Path) -> None:
    """A YAML syntax error names the line."""
    path = write(tmp_path, "track: s\ntasks:\n  - id: [a\n")
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}:4: invalid YAML")


def test_plan_text() -> None:
    """plan prints levels, the critical path and conflicts."""
    result = invoke("plan", str(HELLO))
    assert result.exit_code == 0
    out = result.stdout
    assert "  2. greet-en, greet-fr, greet-de\n" in out
    assert "critical path (4 tasks):\n  prepare -> greet-en -> combine -> report\n" in out
    assert "never run together: no file conflicts" in out


def test_plan_text_shows_conflicts(tmp_path: Path) -> None:
    """Tasks sharing files are listed as never run together, with the files."""
    path = write(
        tmp_path,
        "track: c\ntasks:\n  - {id: a, files: [src/x.py]}\n  - {id: b, files: ['src/*.py']}\n",
    )
    result = invoke("plan", str(path))
    assert result.exit_code == 0
    assert "never run together (overlapping files):\n  a, b (src/x.py)\n" in result.stdout


@pytest.mark.parametrize(
    ("fmt", "start"),
    [("dot", 'digraph "auth-refactor" {'), ("mermaid", "flowchart LR"), ("json", "{")],
)
def test_plan_formats(fmt: str, start: str) -> None:
    """--format dot, mermaid and json render the same plan."""
    result = invoke("plan", str(SEED), "--format", fmt)
    assert result.exit_code == 0
    assert result.stdout.startswith(start)
    if fmt == "json":
        assert json.loads(result.stdout)["critical_path"] == ["1.1", "2.1", "3.1"]


def test_plan_error_exits_2(tmp_path: Path) -> None:
    """plan on an invalid track exits 2 with the located error."""
    path = write(
        tmp_path, "track: c\ntasks:\n  - {id: a, depends_on: [b]}\n  - {id: b, depends_on: [a]}\n"
    )
    result = invoke("plan", str(path))
    assert result.exit_code == 2
    assert "dependency cycle: a -> b -> a" in result.stderr


def test_plan_rejects_unknown_format() -> None:
    """An unknown --format is a usage error (exit 2)."""
    result = CliRunner().invoke(main, ["plan", str(HELLO), "--format", "svg"])
    assert result.exit_code == 2
    assert "svg" in result.output


# --- worker templates seen through validate / plan --show-prompt --------------------------

CLAUDE_TRACK = """\
track: prompts
tasks:
  - id: api
    name: Build the API
    type: code
    files: [src/api.py]
    acceptance: [GET /health returns 200]
    verify: ["python -m pytest -q tests/test_api.py"]
"""


def test_validate_reports_a_bad_repo_template(tmp_path: Path) -> None:
    """validate renders every Claude task's worker: a repo template with an unknown
    placeholder fails with its file and line, exit 2."""
    from click.testing import CliRunner

    from conductor.cli import main

    (tmp_path / "track.yaml").write_text(CLAUDE_TRACK)
    (tmp_path / "worker_templates").mkdir()
    (tmp_path / "worker_templates" / "code-worker.md").write_text(
        "---\nname: code-worker\ndescription: x\nlifecycle: ephemeral\nspecialization: code\n"
        "tools: [Read]\nmodel: null\n---\n\nDo {task_id}.\nThen {no_such_thing}.\n"
    )
    result = CliRunner().invoke(
        main,
        ["validate", str(tmp_path / "track.yaml"), "--repo", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert "code-worker.md:11" in result.output and "no_such_thing" in result.output


def test_plan_show_prompt_prints_both_prompts(tmp_path: Path) -> None:
    """plan --show-prompt TASK prints the rendered SKILL.md and the user prompt, runs nothing."""
    from click.testing import CliRunner

    from conductor.cli import main

    (tmp_path / "track.yaml").write_text(CLAUDE_TRACK)
    result = CliRunner().invoke(
        main,
        ["plan", str(tmp_path / "track.yaml"), "--show-prompt", "api", "--repo", str(tmp_path)],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("---\nname: code-worker")
    assert "code-worker.md" in result.stderr
    assert "Build the API" in out and "src/api.py" in out and "GET /health returns 200" in out
    assert "{" + "task_id}" not in out
    assert "--- user prompt ---\nCarry out task api (Build the API)" in out
    assert not (tmp_path / ".conductor").exists()
    missing = CliRunner().invoke(
        main,
        ["plan", str(tmp_path / "track.yaml"), "--show-prompt", "nope"],
        catch_exceptions=False,
    )
    assert missing.exit_code == 2 and "nope" in missing.output
