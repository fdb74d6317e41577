"""Agent resolution: track agents, .claude/agents files, inference, per-type defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conductor import agents as agents_mod
from conductor.agents import AgentError, AgentRegistry, humanize, specialism, task_goal
from conductor.errors import UserError

# --- stand-ins with the attributes of conductor.track's Track, Task and Agent ---------------


@dataclass
class Agent:
    name: str
    role: str | None = None
    goal: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    model: str | None = None
    description: str | None = None


@dataclass
class Task:
    id: str
    name: str | None = None
    type: str | None = "code"
    depends_on: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)
    agent: str | None = None
    instructions: str | None = None
    run: str | None = None
    max_attempts: int = 3
    model: str | None = None
    tools: list[str] | None = None


@dataclass
class Track:
    id: str
    tasks: list[Task]
    description: str | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    templates: str | None = None
    model: str | None = None
    source: Path | None = None
    adhoc: bool = False
    inferred_agents: dict[str, Agent] = field(default_factory=dict)

    def task(self, task_id: str) -> Task:
        return next(t for t in self.tasks if t.id == task_id)

    def agent_line(self, task_id: str) -> int | None:
        return 7 if self.source else None

    def dependents(self, task_id: str) -> list[str]:
        return [t.id for t in self.tasks if task_id in t.depends_on]


def agent_file(repo: Path, filename: str, text: str) -> Path:
    directory = repo / ".claude" / "agents"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(text)
    return path


REVIEWER = """---
name: code-reviewer
description: Reviews changes for correctness and security. Use after code changes.
tools: Read, Grep, Glob
model: sonnet
color: red
---
You are a senior code reviewer.

Check every change for correctness first.
"""


def api_task(**kw: object) -> Task:
    task = Task(
        "api",
        "Design the items API",
        acceptance=["GET /items returns JSON.", "errors are 4xx with a message"],
    )
    for key, value in kw.items():
        setattr(task, key, value)
    return task


# --- from the track --------------------------------------------------------------------------


def test_track_agent_is_used_as_declared(tmp_path: Path) -> None:
    """A name in the track's agents: resolves to that definition, source track."""
    declared = Agent(
        "api-designer",
        role="Senior API designer",
        goal="A clean REST API",
        system_prompt="You design APIs.",
        tools=["Read", "Write"],
        model="opus",
        description="Designs APIs",
    )
    source = tmp_path / "track.yaml"
    track = Track("t", [api_task(agent="api-designer")], agents={"api-designer": declared})
    track.source = source
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "track" and not agent.inferred
    assert (agent.name, agent.role, agent.goal) == (
        "api-designer",
        "Senior API designer",
        "A clean REST API",
    )
    assert agent.system_prompt == "You design APIs."
    assert agent.tools == ["Read", "Write"] and agent.model == "opus"
    assert agent.description == "Designs APIs" and agent.origin == source


def test_track_agent_gaps_are_filled(tmp_path: Path) -> None:
    """A track agent without role, goal or prompt gets them from its name and the task."""
    track = Track(
        "t", [api_task(agent="db-migrator")], agents={"db-migrator": Agent("db-migrator")}
    )
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "track"
    assert agent.role == "DB migrator"
    assert "Design the items API" in agent.goal
    assert "You are a DB migrator." in agent.system_prompt
    assert "migrations" in agent.system_prompt
    assert agent.tools is None and agent.model is None


def test_track_agent_beats_claude_agents_file(tmp_path: Path) -> None:
    """When both define a name, the track's definition wins."""
    agent_file(tmp_path, "code-reviewer.md", REVIEWER)
    track = Track(
        "t",
        [api_task(agent="code-reviewer")],
        agents={"code-reviewer": Agent("code-reviewer", system_prompt="Track version.")},
    )
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "track" and agent.system_prompt == "Track version."


# --- from .claude/agents ---------------------------------------------------------------------


def test_claude_agents_file_is_parsed(tmp_path: Path) -> None:
    """A Claude Code subagent file gives the prompt, comma-separated tools and model."""
    path = agent_file(tmp_path, "code-reviewer.md", REVIEWER)
    track = Track("t", [api_task(agent="code-reviewer")])
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "claude-agents" and agent.origin == path
    assert agent.role == "Code reviewer"
    assert agent.system_prompt == (
        "You are a senior code reviewer.\n\nCheck every change for correctness first."
    )
    assert agent.tools == ["Read", "Grep", "Glob"]
    assert agent.model == "sonnet"
    assert agent.description is not None and agent.description.startswith("Reviews changes")
    assert "Design the items API" in agent.goal


def test_claude_agents_list_tools_and_inherit_model(tmp_path: Path) -> None:
    """tools may be a YAML list; model 'inherit' (or none) means no model of its own."""
    agent_file(
        tmp_path,
        "writer.md",
        "---\nname: writer\ndescription: Writes docs\ntools: [Read, Edit]\nmodel: inherit\n---\n"
        "Write clearly.\n",
    )
    agent_file(tmp_path, "bare.md", "---\nname: bare\ndescription: All tools\n---\nDo it.\n")
    track = Track("t", [api_task(agent="writer"), Task("b", agent="bare")])
    registry = AgentRegistry(track, tmp_path)
    writer = registry.resolve(track.tasks[0])
    assert writer.tools == ["Read", "Edit"] and writer.model is None
    bare = registry.resolve(track.tasks[1])
    assert bare.tools is None and bare.model is None


def test_claude_agents_matched_by_name_field(tmp_path: Path) -> None:
    """Like Claude Code, a file is found by its frontmatter name, not its file name."""
    agent_file(tmp_path, "review.md", REVIEWER)
    track = Track("t", [api_task(agent="code-reviewer"), Task("b", agent="review")])
    registry = AgentRegistry(track, tmp_path)
    assert registry.resolve(track.tasks[0]).source == "claude-agents"
    with pytest.raises(AgentError, match="did you mean 'code-reviewer'"):
        registry.resolve(track.tasks[1])
    assert set(registry.claude_agents()) == {"code-reviewer"}


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (REVIEWER.replace("color: red", "colour: red"), 6, "colour", "unknown field"),
        (REVIEWER.replace("model: sonnet\n", "model: sonnet\nbudget: 3\n"), 6, "budget", "unknown"),
        (REVIEWER.replace("tools: Read, Grep, Glob", "tools: [Read, 1]"), 4, "tools", "tool names"),
        (
            REVIEWER.replace("description: Reviews", "description:\n  - Reviews"),
            3,
            "description",
            "string",
        ),
        ("---\nname: code-reviewer\n---\nprompt\n", 1, "description", "required"),
        ("---\nname: code-reviewer\ndescription: d\n---\n\n   \n", 5, None, "body"),
        ("no frontmatter here\n", 1, None, "missing YAML frontmatter"),
        ("---\nname: code-reviewer\ndescription: [unclosed\n---\nx\n", 4, None, "invalid YAML"),
        ("---\n- code-reviewer\n---\nx\n", 2, None, "mapping"),
    ],
)
def test_claude_agents_file_errors_name_file_line_field(
    tmp_path: Path, text: str, line: int, field: str | None, message: str
) -> None:
    """A broken agent file a task uses fails with the file, the line and the field."""
    path = agent_file(tmp_path, "code-reviewer.md", text)
    track = Track("t", [api_task(agent="code-reviewer")])
    registry = AgentRegistry(track, tmp_path)
    with pytest.raises(AgentError, match=message) as err:
        registry.resolve(track.tasks[0])
    assert isinstance(err.value, UserError) and err.value.exit_code == 2
    assert err.value.path == path
    assert err.value.line == line
    assert err.value.field == field


def test_broken_unused_agent_file_is_ignored(tmp_path: Path) -> None:
    """A broken .claude/agents file no task asks for does not stop the run."""
    agent_file(tmp_path, "broken.md", "not an agent\n")
    track = Track("t", [api_task(agent="api-designer")], adhoc=True)
    assert AgentRegistry(track, tmp_path).resolve(track.tasks[0]).source == "inferred"


def test_duplicate_agent_names_are_an_error_when_used(tmp_path: Path) -> None:
    """Two files defining the same name are reported when a task uses that name."""
    agent_file(tmp_path, "a.md", REVIEWER)
    second = agent_file(tmp_path, "b.md", REVIEWER)
    track = Track("t", [api_task(agent="code-reviewer")])
    with pytest.raises(AgentError, match="also defined") as err:
        AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert err.value.path == second and err.value.field == "name"


def test_agent_files_are_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry reads .claude/agents once; resolving many tasks reads nothing more."""
    agent_file(tmp_path, "code-reviewer.md", REVIEWER)
    agent_file(tmp_path, "writer.md", "---\nname: writer\ndescription: d\n---\nWrite.\n")
    calls: list[Path] = []
    real = agents_mod.load_claude_agent

    def counting(path: Path) -> object:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(agents_mod, "load_claude_agent", counting)
    tasks = [api_task(agent="code-reviewer") for _ in range(5)] + [Task("w", agent="writer")]
    track = Track("t", tasks)
    registry = AgentRegistry(track, tmp_path)
    for task in tasks:
        registry.resolve(task)
    assert len(calls) == 2
    (tmp_path / ".claude" / "agents" / "code-reviewer.md").unlink()
    assert registry.resolve(tasks[0]).source == "claude-agents"


# --- inference and defaults ------------------------------------------------------------------


def test_unknown_agent_is_an_error_naming_file_line_and_field(tmp_path: Path) -> None:
    """Without --adhoc an agent defined nowhere fails with the track file, line and field."""
    track = Track("t", [api_task(agent="api-desinger")], source=tmp_path / "track.yaml")
    track.agents["api-designer"] = Agent("api-designer")
    track.tasks.append(Task("b", agent="api-desinger"))
    with pytest.raises(AgentError, match=r"did you mean 'api-designer'.*--adhoc") as err:
        AgentRegistry(track, tmp_path).resolve(track.tasks[1])
    assert err.value.path == tmp_path / "track.yaml" and err.value.line == 7
    assert err.value.field == "tasks.b.agent" and err.value.exit_code == 2


def test_person_agents_are_found_and_the_project_wins(tmp_path: Path) -> None:
    """~/.claude/agents is read after the project's; the project's definition wins."""
    home = tmp_path / "home"
    agent_file(home, "writer.md", "---\nname: writer\ndescription: mine\n---\nMine.\n")
    agent_file(home, "coder.md", "---\nname: coder\ndescription: mine\n---\nCode.\n")
    agent_file(tmp_path, "writer.md", "---\nname: writer\ndescription: ours\n---\nOurs.\n")
    track = Track("t", [Task("a", agent="writer"), Task("b", agent="coder")])
    registry = AgentRegistry(track, tmp_path, home=home)
    assert registry.resolve(track.tasks[0]).system_prompt == "Ours."
    coder = registry.resolve(track.tasks[1])
    assert coder.source == "claude-agents" and coder.origin == home / ".claude/agents/coder.md"


def test_inferred_agents_of_the_run_are_used(tmp_path: Path) -> None:
    """A definition a run inferred resolves with source inferred."""
    track = Track("t", [api_task(agent="api-designer")])
    track.inferred_agents["api-designer"] = Agent(
        "api-designer", role="API designer", goal="g", system_prompt="You design APIs."
    )
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "inferred" and agent.system_prompt == "You design APIs."


def test_adhoc_stand_in_is_made_from_the_name(tmp_path: Path) -> None:
    """With adhoc, an agent nobody defined or inferred is made from its name and the task."""
    track = Track("t", [api_task(agent="api-designer")], adhoc=True)
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert agent.source == "inferred" and agent.inferred
    assert agent.name == "api-designer" and agent.role == "API designer"
    assert agent.goal == (
        'Deliver "Design the items API" so that: GET /items returns JSON; '
        "errors are 4xx with a message."
    )
    assert agent.system_prompt.startswith("You are an API designer. Your specialism: designing")
    assert agent.tools is None and agent.model is None


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("api-designer", "API designer"),
        ("frontend_engineer", "Frontend engineer"),
        ("ui-ux-reviewer", "UI UX reviewer"),
        ("GitHub-bot", "GitHub bot"),
        ("security", "Security"),
        ("  ", "Specialist"),
        ("sql.tuner", "SQL tuner"),
    ],
)
def test_humanize(name: str, role: str) -> None:
    """Agent names become readable roles, with acronyms kept upper-case."""
    assert humanize(name) == role


def test_specialism_by_keyword() -> None:
    """The specialism follows keywords in the name; unknown names get a generic line."""
    assert "threat modelling" in specialism("security-auditor")
    assert "tests that pin behaviour" in specialism("qa-engineer")
    assert "documentation" in specialism("docs-writer")
    assert specialism("bard").startswith("the work of a bard")


def test_goal_without_acceptance_and_long_goals_are_clipped() -> None:
    """A task without acceptance gets a generic goal; very long goals are clipped."""
    assert task_goal(Task("x", "Tidy up")) == (
        'Deliver "Tidy up" as its instructions describe, verified by its checks.'
    )
    long = task_goal(Task("x", "Big", acceptance=["word " * 400]))
    assert len(long) == 600 and long.endswith("…")
    assert task_goal(Task("x")).startswith('Deliver "x"')


@pytest.mark.parametrize(
    ("task_type", "name", "role"),
    [
        ("code", "software-engineer", "Software engineer"),
        ("ui", "frontend-engineer", "Frontend engineer"),
        ("integration", "integration-engineer", "Integration engineer"),
        ("test", "test-engineer", "Test engineer"),
        ("docs", "technical-writer", "Technical writer"),
        ("config", "devops-engineer", "DevOps engineer"),
        ("research", "generalist", "Software engineer"),
        (None, "generalist", "Software engineer"),
    ],
)
def test_default_agent_per_type(
    tmp_path: Path, task_type: str | None, name: str, role: str
) -> None:
    """A task that names no agent gets its type's default agent, source default."""
    track = Track("t", [Task("x", "Do it", task_type)])
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    assert (agent.name, agent.role, agent.source) == (name, role, "default")
    article = "an" if role[0] in "AEIOU" else "a"
    assert agent.system_prompt.startswith(f"You are {article} {role}.")
    assert agent.tools is None and agent.model is None


def test_blank_agent_name_means_default(tmp_path: Path) -> None:
    """An empty agent name is treated as no agent."""
    track = Track("t", [Task("x", type="docs", agent="  ")])
    assert AgentRegistry(track, tmp_path).resolve(track.tasks[0]).source == "default"
