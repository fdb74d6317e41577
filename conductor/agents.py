"""Who does a task: resolving a task's agent into a role, a goal, a system prompt and tools.

A task's ``agent`` is looked up, in order, in:

1. the track's ``agents:`` (source ``track``);
2. ``<repo>/.claude/agents/*.md``, then ``~/.claude/agents/*.md``: Claude Code's own subagent
   format (source ``claude-agents``): YAML frontmatter with ``name``, ``description``,
   optional ``tools`` (a comma-separated string or a list) and ``model`` (``inherit`` means
   none); the body is the system prompt. Files are matched by their ``name`` field, as
   Claude Code does, and the project's win over the user's. A malformed file is an error
   naming its file and line as soon as a task names it; it is never silently replaced;
3. the agents a run inferred (``conductor.inference``; source ``inferred``), kept on the bus;
4. otherwise the name is an error with a did-you-mean, unless the track is ad hoc
   (``--adhoc`` or ``adhoc: true``): then, until a run infers it, a stand-in made from the
   name (source ``inferred``): ``api-designer`` becomes role "API designer" with a goal taken
   from the task's name and acceptance criteria and a short system prompt stating the
   specialism. The same stand-in is the named fallback when inference fails.

A task that names no agent gets the default agent of its type (source ``default``):
code → software-engineer, ui → frontend-engineer, integration → integration-engineer,
test → test-engineer, docs → technical-writer, config → devops-engineer, others → generalist.

This module also holds the structural types conductor's template and agent code expects of a
track (``TrackSpec``, ``TaskSpec``, ``AgentSpec``) and the helpers that turn a YAML or pydantic
error in user-written frontmatter into an error naming the file, the line and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import frontmatter
import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from conductor.errors import ConductorError, UserError
from conductor.yamldoc import Doc, node_lines, validate

AgentSource = Literal["track", "claude-agents", "inferred", "default"]

CLAUDE_AGENTS_DIR = Path(".claude") / "agents"
"""Where Claude Code keeps a project's subagents, relative to the repository (and a person's
own, relative to their home directory)."""


class AgentError(UserError):
    """An agent definition (a ``.claude/agents`` file) is invalid."""


# --------------------------------------------------------------------------------------------
# What this module (and conductor.templates) needs of a track. The real classes live in
# conductor.track; these protocols name only the attributes used, read-only.


class AgentSpec(Protocol):
    """A named specialist declared in a track's ``agents:``."""

    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str | None: ...
    @property
    def goal(self) -> str | None: ...
    @property
    def system_prompt(self) -> str | None: ...
    @property
    def tools(self) -> Sequence[str] | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...


class TaskSpec(Protocol):
    """One task of a track, with the track's defaults applied."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def files(self) -> Sequence[str]: ...
    @property
    def acceptance(self) -> Sequence[str]: ...
    @property
    def verify(self) -> Sequence[str]: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def instructions(self) -> str | None: ...
    @property
    def run(self) -> str | None: ...
    @property
    def max_attempts(self) -> int | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def tools(self) -> Sequence[str] | None: ...


class TrackSpec(Protocol):
    """A loaded track."""

    @property
    def id(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def agents(self) -> Mapping[str, AgentSpec]: ...
    @property
    def tasks(self) -> Sequence[TaskSpec]: ...
    @property
    def templates(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def source(self) -> Path | None: ...
    @property
    def adhoc(self) -> bool: ...
    @property
    def inferred_agents(self) -> Mapping[str, AgentSpec]: ...

    def task(self, task_id: str, /) -> TaskSpec: ...
    def agent_line(self, task_id: str, /) -> int | None: ...
    def dependents(self, task_id: str, /) -> Sequence[Any]: ...


# --------------------------------------------------------------------------------------------
# Errors in user-written frontmatter, with file, line and field.


def yaml_error(
    exc: yaml.YAMLError, path: Path, first_line: int, cls: type[ConductorError]
) -> ConductorError:
    """A YAML syntax error as ``cls``, located in the file."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + first_line if mark is not None else first_line
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return cls(f"invalid YAML frontmatter: {problem}", path=path, line=line)


def split_frontmatter(text: str) -> tuple[str, int] | None:
    """The YAML between the opening ``---`` line and the closing one, and the body's first line.

    Returns None when ``text`` does not start with a ``---`` line or the block is not closed.
    """
    lines = text.lstrip("\ufeff").split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return "\n".join(lines[1:i]) + "\n", i + 2
    return None


@dataclass(frozen=True)
class FrontmatterFile:
    """A markdown file with a YAML frontmatter block, read but not yet validated."""

    text: str
    """The whole file."""
    fm_text: str
    """The YAML between the ``---`` lines."""
    data: dict[str, Any]
    """The frontmatter, parsed: always a mapping."""
    body_line: int
    """Line number of the first body line."""


def read_frontmatter(path: Path, cls: type[ConductorError], what: str) -> FrontmatterFile:
    """Read ``path`` and parse its frontmatter; problems are ``cls`` naming file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise cls(f"cannot read {what}: {exc}", path=path) from exc
    split = split_frontmatter(text)
    if split is None:
        raise cls(
            "missing YAML frontmatter: the file must start with a '---' line and close the "
            "block with another",
            path=path,
            line=1,
        )
    fm_text, body_line = split
    try:
        data = yaml.safe_load(fm_text)
    except yaml.YAMLError as exc:
        raise yaml_error(exc, path, 2, cls) from exc
    if not isinstance(data, dict):
        raise cls("frontmatter must be a mapping of fields", path=path, line=2)
    return FrontmatterFile(text=text, fm_text=fm_text, data=data, body_line=body_line)


def frontmatter_doc(path: Path, fm: FrontmatterFile, cls: type[ConductorError]) -> Doc:
    """The frontmatter of ``fm`` (read from ``path``) as a ``conductor.yamldoc.Doc`` whose
    errors are ``cls``: the file line of each key and item, and the opening ``---`` (line 1)
    for the block as a whole. Validate it with ``conductor.yamldoc.validate``."""
    try:
        node = yaml.compose(fm.fm_text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        node = None  # read_frontmatter parsed it: this does not happen
    lines = node_lines(node, first_line=2)
    lines[()] = 1
    return Doc(fm.data, lines, path, cls)


# --------------------------------------------------------------------------------------------
# The resolved agent.


@dataclass(frozen=True)
class ResolvedAgent:
    """The specialist a worker acts as, wherever it was defined."""

    name: str
    """The agent's name (as the task wrote it, or the default agent's name)."""
    role: str
    """What it is, in a few words: "API designer"."""
    goal: str
    """What it is to achieve on this task."""
    system_prompt: str
    """Its standing instructions (the specialism)."""
    tools: list[str] | None
    """Tools it is limited to, or None to use the task's or the template's."""
    model: str | None
    """Model it asks for, or None."""
    source: AgentSource
    """Where it came from: track, claude-agents, inferred, default."""
    description: str | None = None
    """One line about the agent, when its definition has one."""
    origin: Path | None = None
    """The file that defined it (the track file or the ``.claude/agents`` file), if any."""

    @property
    def inferred(self) -> bool:
        """True when nobody defined this agent and it was made up from its name and the task."""
        return self.source == "inferred"


class ClaudeAgentFile(BaseModel):
    """Frontmatter of a Claude Code subagent file (``.claude/agents/<name>.md``).

    conductor uses name, description, tools and model; the other fields Claude Code knows are
    accepted and ignored. Anything else is an error.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str
    description: str
    tools: list[str] | None = None
    model: str | None = None
    # Accepted (in Claude Code's camelCase spelling) because Claude Code defines them; not
    # used by conductor.
    disallowedTools: Any = None
    permissionMode: Any = None
    maxTurns: Any = None
    skills: Any = None
    mcpServers: Any = None
    hooks: Any = None
    memory: Any = None
    background: Any = None
    isolation: Any = None
    color: Any = None
    effort: Any = None
    disabled: Any = None

    @field_validator("name", "description")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("tools", mode="before")
    @classmethod
    def _split_tools(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise ValueError("tools must be tool names")
            value = [item.strip() for item in value if item.strip()]
            return value or None
        return value

    @field_validator("model")
    @classmethod
    def _inherit(cls, value: str | None) -> str | None:
        if value is None or value.strip() in ("", "inherit"):
            return None
        return value.strip()


@dataclass(frozen=True)
class _ClaudeAgent:
    meta: ClaudeAgentFile
    prompt: str
    path: Path


def load_claude_agent(path: Path) -> _ClaudeAgent:
    """Parse and validate one ``.claude/agents`` file; ``AgentError`` names file/line/field."""
    doc = read_frontmatter(path, AgentError, "agent file")
    meta = validate(frontmatter_doc(path, doc, AgentError), ClaudeAgentFile, doc.data)
    post = frontmatter.loads(doc.text.lstrip("\ufeff"))  # the body, as Claude Code reads it
    prompt = str(post.content).strip()
    if not prompt:
        raise AgentError(
            "the body (the agent's system prompt) is empty", path=path, line=doc.body_line
        )
    return _ClaudeAgent(meta=meta, prompt=prompt, path=path)


# --------------------------------------------------------------------------------------------
# Inference.

_ACRONYMS = {
    "a11y": "a11y",
    "ai": "AI",
    "api": "API",
    "apis": "APIs",
    "aws": "AWS",
    "cd": "CD",
    "ci": "CI",
    "cli": "CLI",
    "css": "CSS",
    "db": "DB",
    "dba": "DBA",
    "devops": "DevOps",
    "dx": "DX",
    "gcp": "GCP",
    "graphql": "GraphQL",
    "html": "HTML",
    "http": "HTTP",
    "iam": "IAM",
    "ios": "iOS",
    "js": "JS",
    "json": "JSON",
    "k8s": "k8s",
    "llm": "LLM",
    "ml": "ML",
    "qa": "QA",
    "rest": "REST",
    "sdk": "SDK",
    "seo": "SEO",
    "sql": "SQL",
    "sre": "SRE",
    "ts": "TS",
    "ui": "UI",
    "ux": "UX",
    "yaml": "YAML",
}

_SPECIALISMS: tuple[tuple[frozenset[str], str], ...] = (
    (
        frozenset({"security", "secops", "appsec", "pentester", "auditor"}),
        "security: threat modelling, input validation, secrets handling, least privilege, and "
        "saying plainly which risks remain",
    ),
    (
        frozenset({"reviewer", "review", "critic"}),
        "reading changes critically for correctness, edge cases, security and "
        "maintainability, and backing every finding with a concrete location and a fix",
    ),
    (
        frozenset({"tester", "test", "tests", "qa", "testing", "sdet"}),
        "tests that pin behaviour down: deterministic, isolated, named after what they prove, "
        "and failing for the right reason before the fix",
    ),
    (
        frozenset({"writer", "docs", "documentation", "doc", "technical", "editor"}),
        "documentation that is accurate, task-oriented and checked against the code it "
        "describes; every example runs as written",
    ),
    (
        frozenset({"designer", "architect", "design", "architecture"}),
        "designing clear, stable interfaces and structures before they are built: naming, "
        "boundaries, error cases and versioning, with the trade-offs written down",
    ),
    (
        frozenset({"frontend", "ui", "ux", "web", "css", "accessibility", "a11y"}),
        "accessible, responsive user interfaces: semantic markup, keyboard support, clear "
        "states for loading, empty and error, and reuse of the existing design system",
    ),
    (
        frozenset({"database", "db", "dba", "sql", "data", "migration", "migrations", "schema"}),
        "schemas, queries and migrations that are safe to apply and to roll back, with "
        "indexes and constraints that match how the data is used",
    ),
    (
        frozenset(
            {
                "devops",
                "infra",
                "infrastructure",
                "ci",
                "cd",
                "sre",
                "platform",
                "deploy",
                "release",
                "build",
                "config",
                "ops",
            }
        ),
        "build, CI, deployment and configuration that are reproducible, minimal and "
        "documented, with secrets kept out of the repository",
    ),
    (
        frozenset({"performance", "perf", "optimizer", "optimiser", "profiler"}),
        "measuring before optimising and proving every improvement with numbers",
    ),
    (
        frozenset({"integration", "integrator", "connector"}),
        "joining systems through explicit contracts: schemas, error mapping, timeouts, "
        "retries and idempotency, verified from both sides",
    ),
    (
        frozenset({"backend", "api", "server", "service", "apis"}),
        "robust server-side code and well-defined APIs with explicit validation and error handling",
    ),
)

_DEFAULT_AGENTS: dict[str, tuple[str, str, str]] = {
    "code": (
        "software-engineer",
        "Software engineer",
        "correct, readable code that fits the codebase it lands in, with tests for the "
        "behaviour it changes",
    ),
    "ui": (
        "frontend-engineer",
        "Frontend engineer",
        "accessible, responsive user interfaces: semantic markup, keyboard support, clear "
        "states for loading, empty and error, and reuse of the existing design system",
    ),
    "integration": (
        "integration-engineer",
        "Integration engineer",
        "joining systems through explicit contracts: schemas, error mapping, timeouts, "
        "retries and idempotency, verified from both sides",
    ),
    "test": (
        "test-engineer",
        "Test engineer",
        "tests that pin behaviour down: deterministic, isolated, named after what they prove, "
        "and failing for the right reason before the fix",
    ),
    "docs": (
        "technical-writer",
        "Technical writer",
        "documentation that is accurate, task-oriented and checked against the code it "
        "describes; every example runs as written",
    ),
    "config": (
        "devops-engineer",
        "DevOps engineer",
        "build, CI, deployment and configuration that are reproducible, minimal and "
        "documented, with secrets kept out of the repository",
    ),
}
_GENERALIST = (
    "generalist",
    "Software engineer",
    "careful, well-verified changes of any kind, made the way the repository already does them",
)
_GOAL_LIMIT = 600


def humanize(name: str) -> str:
    """``api-designer`` → ``API designer``; ``frontend_engineer`` → ``Frontend engineer``."""
    words = [w for w in re.split(r"[-_\s.]+", name.strip()) if w]
    if not words:
        return "Specialist"
    out: list[str] = []
    for i, word in enumerate(words):
        low = word.lower()
        if low in _ACRONYMS:
            out.append(_ACRONYMS[low])
        elif word != low and word != word.capitalize():
            out.append(word)  # already mixed case, e.g. "GitHub"
        else:
            out.append(low.capitalize() if i == 0 else low)
    return " ".join(out)


def specialism(name: str) -> str:
    """The specialism an agent's name suggests, as a phrase."""
    words = {w.lower() for w in re.split(r"[-_\s.]+", name) if w}
    for keys, text in _SPECIALISMS:
        if words & keys:
            return text
    return f"the work of a {humanize(name).lower()}, done carefully and verified"


def task_goal(task: TaskSpec) -> str:
    """A goal derived from the task's name and acceptance criteria."""
    title = (task.name or task.id).strip()
    criteria = [c.strip().rstrip(".") for c in task.acceptance if c.strip()]
    if criteria:
        goal = f'Deliver "{title}" so that: ' + "; ".join(criteria) + "."
    else:
        goal = f'Deliver "{title}" as its instructions describe, verified by its checks.'
    if len(goal) > _GOAL_LIMIT:
        goal = goal[: _GOAL_LIMIT - 1].rstrip() + "…"
    return goal


def _generated_prompt(role: str, focus: str) -> str:
    article = "an" if role[:1].lower() in "aeiou" else "a"
    return (
        f"You are {article} {role}. Your specialism: {focus}.\n"
        "You work on one task of a larger plan, inside the files the task allows. Read the "
        "code around your change before writing, follow the repository's existing "
        "conventions, keep the change as small as the task allows, and report exactly what "
        "you did and how you checked it."
    )


class AgentRegistry:
    """Resolves tasks' agents for one run; ``.claude/agents/*.md`` is read once, here."""

    def __init__(self, track: TrackSpec, repo: Path, *, home: Path | None = None) -> None:
        self._track = track
        self._repo = repo
        self._claude: dict[str, _ClaudeAgent] = {}
        self._broken: dict[str, AgentError] = {}
        self._read_dir(repo / CLAUDE_AGENTS_DIR)
        user_home = home if home is not None else _home()
        if user_home is not None and user_home.resolve() != repo.resolve():
            self._read_dir(user_home / CLAUDE_AGENTS_DIR)

    def _read_dir(self, directory: Path) -> None:
        """Add the definitions in ``directory``; names already known keep their first file."""
        if directory.is_dir():
            for path in sorted(directory.glob("*.md")):
                if path.name.startswith(".") or not path.is_file():
                    continue
                try:
                    agent = load_claude_agent(path)
                except AgentError as exc:
                    # Reported only if a task asks for it: Claude Code may hold files that no
                    # task of this track uses.
                    self._broken.setdefault(path.stem, exc)
                    continue
                if agent.meta.name in self._claude:
                    first = self._claude[agent.meta.name].path
                    if first.parent != path.parent:
                        continue  # the project's definition wins over the person's own
                    self._broken.setdefault(
                        agent.meta.name,
                        AgentError(
                            f"agent {agent.meta.name!r} is also defined in {first}",
                            path=path,
                            field="name",
                        ),
                    )
                    continue
                self._claude[agent.meta.name] = agent

    def claude_agents(self) -> dict[str, Path]:
        """The valid ``.claude/agents`` definitions found, by name."""
        return {name: a.path for name, a in self._claude.items()}

    def resolve(self, task: TaskSpec) -> ResolvedAgent:
        """The agent that does ``task``; raises ``AgentError`` if its definition is broken."""
        name = (task.agent or "").strip()
        if not name:
            return self._default(task)
        declared = self._track.agents.get(name)
        if declared is not None:
            return self._from_track(name, declared, task)
        if name in self._broken:
            raise self._broken[name]
        found = self._claude.get(name)
        if found is not None:
            return self._from_claude(name, found, task)
        inferred = getattr(self._track, "inferred_agents", {}).get(name)
        if inferred is not None:
            return replace(self._from_track(name, inferred, task), source="inferred")
        if getattr(self._track, "adhoc", False):
            return self._infer(name, task)
        raise self.unknown(name, task)

    def known_names(self) -> list[str]:
        """Every agent name a task may use without ``--adhoc``."""
        return sorted({*self._track.agents, *self._claude, *self._broken})

    def unknown(self, name: str, task: TaskSpec) -> AgentError:
        """The error for a task naming an agent defined nowhere."""
        import difflib

        close = difflib.get_close_matches(name, self.known_names(), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        line_of = getattr(self._track, "agent_line", None)
        return AgentError(
            f"agent {name!r}{hint} is defined neither in the track's agents:, nor in "
            f"{CLAUDE_AGENTS_DIR}/ or ~/{CLAUDE_AGENTS_DIR}/; define it, or run with --adhoc "
            "(adhoc: true) to infer it",
            path=self._track.source,
            line=line_of(task.id) if callable(line_of) else None,
            field=f"tasks.{task.id}.agent",
            task_id=task.id,
        )

    def _from_track(self, name: str, agent: AgentSpec, task: TaskSpec) -> ResolvedAgent:
        role = (agent.role or "").strip() or humanize(name)
        prompt = (agent.system_prompt or "").strip() or _generated_prompt(role, specialism(name))
        return ResolvedAgent(
            name=name,
            role=role,
            goal=(agent.goal or "").strip() or task_goal(task),
            system_prompt=prompt,
            tools=list(agent.tools) if agent.tools else None,
            model=agent.model or None,
            source="track",
            description=agent.description,
            origin=self._track.source,
        )

    def _from_claude(self, name: str, agent: _ClaudeAgent, task: TaskSpec) -> ResolvedAgent:
        return ResolvedAgent(
            name=name,
            role=humanize(name),
            goal=task_goal(task),
            system_prompt=agent.prompt,
            tools=list(agent.meta.tools) if agent.meta.tools else None,
            model=agent.meta.model,
            source="claude-agents",
            description=agent.meta.description,
            origin=agent.path,
        )

    def fallback(self, name: str, task: TaskSpec) -> ResolvedAgent:
        """The stand-in made from the name alone (used until, or when, inference fails)."""
        return self._infer(name, task)

    def _infer(self, name: str, task: TaskSpec) -> ResolvedAgent:
        role = humanize(name)
        return ResolvedAgent(
            name=name,
            role=role,
            goal=task_goal(task),
            system_prompt=_generated_prompt(role, specialism(name)),
            tools=None,
            model=None,
            source="inferred",
            description=f"Made from the name {name!r} alone: defined nowhere, not inferred.",
        )

    def _default(self, task: TaskSpec) -> ResolvedAgent:
        name, role, focus = _DEFAULT_AGENTS.get((task.type or "").strip().lower(), _GENERALIST)
        return ResolvedAgent(
            name=name,
            role=role,
            goal=task_goal(task),
            system_prompt=_generated_prompt(role, focus),
            tools=None,
            model=None,
            source="default",
            description=f"Default agent for tasks of type {task.type or 'unspecified'!r}.",
        )


__all__ = [
    "CLAUDE_AGENTS_DIR",
    "AgentError",
    "AgentRegistry",
    "AgentSource",
    "AgentSpec",
    "ResolvedAgent",
    "TaskSpec",
    "TrackSpec",
    "humanize",
    "load_claude_agent",
    "specialism",
    "task_goal",
]


def _home() -> Path | None:
    """The person's home directory, or None when it cannot be found."""
    try:
        return Path.home()
    except RuntimeError:
        return None
