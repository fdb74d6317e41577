"""Worker templates: where they come from, how they include each other, how they render.

A worker template is a markdown file with YAML frontmatter::

    ---
    name: code-worker              # must equal the file name without .md
    description: One line saying what this worker is for.
    lifecycle: ephemeral           # the rendered skill lives only as long as the attempt
    specialization: code           # what the template adds to the base protocol
    tools: [Read, Write, Edit, Glob, Grep, Bash]   # default tools (inherited via extends)
    model: null                    # default model, or null (inherited via extends)
    extends: task-worker           # optional: the template whose tools/model are inherited
    ---
    {{> task-worker}}

    ## Specialisation: ...

**Includes.** A line holding only ``{{> NAME}}`` is replaced by the body of template ``NAME``
(its frontmatter dropped), before any placeholder is substituted. Includes nest; a cycle or an
unknown name is an error. ``extends`` does not place text: it names the template whose
``tools`` and ``model`` apply when this one does not set them.

**Placeholders.** ``{name}`` is replaced by a value (``PLACEHOLDERS`` lists them); ``{{`` and
``}}`` write literal braces. Values are inserted as they are and never scanned again. Rendering
is strict: an unknown placeholder, a malformed one (``{task id}``), a stray brace or a known
placeholder without a value is a ``TemplateError`` naming the template file and line.
``check_templates`` renders every agent task's worker with stand-in runtime values so that these
errors surface when a track is validated, not when it runs.

**Layers.** Templates are looked up in the track's ``templates:`` directory, then the
repository's ``worker_templates/``, then the templates shipped with conductor; the first layer
holding a name wins. Every ``*.md`` file except ``README.md`` in those directories is a
template. A task of type ``T`` uses ``T-worker`` when any layer has it (so a repository's
``docs-worker.md`` serves ``docs`` tasks), else ``task-worker``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

import conductor
from conductor.agents import (
    AgentError,
    AgentRegistry,
    ResolvedAgent,
    TaskSpec,
    TrackSpec,
    frontmatter_doc,
    read_frontmatter,
)
from conductor.contract import (
    LOCK_FILE,
    READ_MESSAGES,
    REPORT_COMPLETE,
    REPORT_FAILED,
    REPORT_PROGRESS,
    UNLOCK_FILE,
    qualified,
)
from conductor.errors import StateError, TemplateError, UserError
from conductor.paths import StateDir, check_repo_path, refuse_symlink
from conductor.yamldoc import validate

Layer = Literal["track", "repo", "built-in"]

BASE_TEMPLATE = "task-worker"
"""The template every other one falls back to: the execution protocol."""

TYPE_TEMPLATES: dict[str, str] = {
    "code": "code-worker",
    "ui": "ui-worker",
    "integration": "integration-worker",
    "test": "test-worker",
}
"""Task types with a specialised built-in template; every other type uses ``task-worker``."""

REPO_TEMPLATES_DIR = "worker_templates"
"""A repository's own templates, relative to its root."""

SKILL_FILE = "SKILL.md"
"""Name of the rendered skill in a worker directory."""

DEFAULT_TOOL_NAMES: dict[str, str] = {
    "progress_tool": qualified(REPORT_PROGRESS),
    "lock_tool": qualified(LOCK_FILE),
    "unlock_tool": qualified(UNLOCK_FILE),
    "read_messages_tool": qualified(READ_MESSAGES),
    "complete_tool": qualified(REPORT_COMPLETE),
    "fail_tool": qualified(REPORT_FAILED),
}
"""The names the worker sees for conductor's tools, by placeholder."""

PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "task_id",
        "task_name",
        "task_type",
        "track_id",
        "track_description",
        "worker_id",
        "attempt",
        "max_attempts",
        "files",
        "depends_on",
        "unblocks",
        "acceptance",
        "verify",
        "instructions",
        "agent_name",
        "agent_role",
        "agent_goal",
        "agent_prompt",
        "feedback",
        "bus_dir",
        "post_command",
        *DEFAULT_TOOL_NAMES,
    }
)
"""Every name a template may use as ``{name}``."""

POST_COMMAND = "conductor bus post"
"""The shell form of posting on the bus; a worker's identity and token come from its
environment (CONDUCTOR_WORKER, CONDUCTOR_WORKER_TOKEN)."""

NONE_TEXT = "(none)"
"""How an empty list or missing text renders."""

_INCLUDE = re.compile(r"^\s*\{\{>\s*([^{}\s]*)\s*\}\}\s*$")
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}\n]*)\}|[{}]")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TEMPLATE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_MAX_INCLUDE_DEPTH = 8


def builtin_templates_dir() -> Path:
    """The templates shipped with conductor.

    Installed from a wheel they sit next to the package (``conductor/_worker_templates``);
    running from a checkout they are the repository's top-level ``worker_templates/``.
    """
    package = Path(conductor.__file__).resolve().parent
    installed = package / "_worker_templates"
    if installed.is_dir():
        return installed
    return package.parent / REPO_TEMPLATES_DIR


class TemplateMeta(BaseModel):
    """The frontmatter of a worker template."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    name: str
    description: str
    lifecycle: Literal["ephemeral"]
    specialization: str
    tools: list[str] | None = None
    model: str | None = None
    extends: str | None = None

    @field_validator("name", "description", "specialization")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("tools")
    @classmethod
    def _tool_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not item.strip() for item in value):
            raise ValueError("tool names must not be empty")
        return value


@dataclass(frozen=True)
class SourceLine:
    """One line of template text and where it was written."""

    text: str
    """The line, without its newline."""
    path: Path
    """The template file it comes from."""
    lineno: int
    """Its 1-based line number in that file."""


@dataclass(frozen=True)
class Template:
    """One parsed template file (includes not yet expanded)."""

    name: str
    """Its name: the file name without ``.md``."""
    path: Path
    """The file."""
    layer: Layer
    """The layer it was found in."""
    meta: TemplateMeta
    """Its validated frontmatter."""
    frontmatter_text: str
    """The frontmatter as written (between the ``---`` lines)."""
    key_lines: Mapping[str, int]
    """The file line of each frontmatter field."""
    body: tuple[SourceLine, ...]
    """The body lines, with their file line numbers."""


@dataclass(frozen=True)
class RenderedWorker:
    """A worker's skill, ready to be written to ``SKILL.md`` and handed to its session."""

    template: str
    """The template's name."""
    path: Path
    """The template file."""
    frontmatter: dict[str, Any]
    """The rendered skill's frontmatter."""
    body: str
    """The rendered markdown, without frontmatter."""
    text: str
    """The whole ``SKILL.md``: frontmatter and body."""
    tools: list[str]
    """Tools the session gets: the agent's, else the task's, else the template's."""
    model: str | None
    """Model: the task's, else the agent's, else the track's, else the template's."""


def _frontmatter_error(
    message: str, path: Path, line: int | None = None, field: str | None = None
) -> TemplateError:
    return TemplateError(message, path=path, line=line, field=field)


def parse_template(path: Path, layer: Layer) -> Template:
    """Read and validate one template file (frontmatter and placeholder syntax)."""
    doc = read_frontmatter(path, TemplateError, "template")
    text, fm_text, raw, body_line = doc.text, doc.fm_text, doc.data, doc.body_line
    fm_doc = frontmatter_doc(path, doc, TemplateError)
    key_lines = {str(key[0]): line for key, line in fm_doc.lines.items() if len(key) == 1}
    meta = validate(fm_doc, TemplateMeta, raw)
    if meta.name != path.stem:
        raise _frontmatter_error(
            f"name {meta.name!r} does not match the file name {path.name!r}",
            path,
            key_lines.get("name"),
            "name",
        )
    lines = text.lstrip("\ufeff").split("\n")[body_line - 1 :]
    if lines and lines[-1] == "":
        lines.pop()
    body = tuple(SourceLine(line.rstrip("\r"), path, body_line + i) for i, line in enumerate(lines))
    template = Template(path.stem, path, layer, meta, fm_text, key_lines, body)
    for line in body:
        if _INCLUDE.match(line.text):
            continue
        if line.text.lstrip().startswith("{{>"):
            raise TemplateError(
                "malformed include: write it alone on its line as {{> template-name}}",
                path=line.path,
                line=line.lineno,
            )
        _scan(line, None)
    return template


def _scan(line: SourceLine, values: Mapping[str, str] | None) -> str:
    """Substitute one line (or only check its syntax when ``values`` is None)."""
    out: list[str] = []
    pos = 0
    for match in _TOKEN.finditer(line.text):
        out.append(line.text[pos : match.start()])
        pos = match.end()
        token = match.group(0)
        column = match.start() + 1
        if token == "{{":
            out.append("{")
        elif token == "}}":
            out.append("}")
        elif match.group(1) is None:
            raise TemplateError(
                f"stray {token!r} at column {column}; write {token * 2!r} for a literal brace",
                path=line.path,
                line=line.lineno,
            )
        else:
            name = match.group(1)
            if not _NAME.match(name):
                raise TemplateError(
                    f"malformed placeholder {token} at column {column}; placeholders are "
                    "{lower_snake_name} and literal braces are written {{ and }}",
                    path=line.path,
                    line=line.lineno,
                )
            if name not in PLACEHOLDERS:
                close = difflib.get_close_matches(name, sorted(PLACEHOLDERS), n=1)
                hint = f"; did you mean {{{close[0]}}}?" if close else ""
                raise TemplateError(
                    f"unknown placeholder {token} at column {column}{hint}",
                    path=line.path,
                    line=line.lineno,
                )
            if values is not None:
                if name not in values:
                    raise TemplateError(
                        f"placeholder {token} at column {column} was left without a value",
                        path=line.path,
                        line=line.lineno,
                    )
                out.append(values[name])
    out.append(line.text[pos:])
    return "".join(out)


def substitute(lines: Iterable[SourceLine], values: Mapping[str, str]) -> str:
    """Render template lines with ``values``; strict (see the module docstring)."""
    return "\n".join(_scan(line, values) for line in lines)


def _code_span(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def bullets(items: Iterable[Any], *, code: bool = False) -> str:
    """Markdown bullets, one per item; ``(none)`` when there are none.

    With ``code`` each item is a code span (a multi-line item becomes a fenced block).
    """
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if code and "\n" in text:
            fence = "```" + "`" * max((len(r) - 2 for r in re.findall(r"`{3,}", text)), default=0)
            out.append(f"- {fence}sh")
            out.extend(f"  {row}" if row else "" for row in text.split("\n"))
            out.append(f"  {fence}")
            continue
        first, *rest = (_code_span(text) if code else text).split("\n")
        out.append(f"- {first}")
        out.extend(f"  {row}" if row.strip() else "" for row in rest)
    return "\n".join(out) if out else NONE_TEXT


def _task_ref(track: TrackSpec, ref: Any) -> str:
    task_id = str(getattr(ref, "id", ref))
    name = getattr(ref, "name", None)
    if name is None:
        try:
            name = track.task(task_id).name
        except (KeyError, LookupError, UserError):
            name = None
    return f"{_code_span(task_id)}: {name}" if name and name != task_id else _code_span(task_id)


def render_values(
    *,
    track: TrackSpec,
    task: TaskSpec,
    agent: ResolvedAgent,
    attempt: int,
    worker_id: str,
    feedback: str | None,
    bus_dir: Path,
    tool_names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The value of every placeholder for one attempt."""
    tools = dict(DEFAULT_TOOL_NAMES)
    if tool_names:
        unknown = sorted(set(tool_names) - set(DEFAULT_TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tool placeholders: {', '.join(unknown)}")
        tools.update(tool_names)
    feedback_text = (feedback or "").strip()
    return {
        "task_id": task.id,
        "task_name": (task.name or task.id).strip(),
        "task_type": (task.type or "task").strip(),
        "track_id": track.id,
        "track_description": (track.description or "").strip() or NONE_TEXT,
        "worker_id": worker_id,
        "attempt": str(attempt),
        "max_attempts": str(task.max_attempts) if task.max_attempts is not None else "1",
        "files": bullets(task.files, code=True),
        "depends_on": bullets(_task_ref(track, dep) for dep in task.depends_on),
        "unblocks": bullets(_task_ref(track, dep) for dep in track.dependents(task.id)),
        "acceptance": bullets(task.acceptance),
        "verify": bullets(task.verify, code=True),
        "instructions": (task.instructions or "").strip() or NONE_TEXT,
        "agent_name": agent.name,
        "agent_role": agent.role,
        "agent_goal": agent.goal,
        "agent_prompt": agent.system_prompt.strip(),
        "feedback": feedback_text or "(none: this is the first attempt)",
        "bus_dir": str(bus_dir),
        "post_command": POST_COMMAND,
        **tools,
    }


class TemplateSet:
    """The worker templates visible to a repository (and a track), layered."""

    def __init__(self, repo: Path, track: TrackSpec | None = None) -> None:
        self.repo = repo
        builtin = builtin_templates_dir()
        layers: list[tuple[Layer, Path]] = []
        if track is not None and track.templates:
            try:
                rel = check_repo_path(track.templates, "templates directory")
            except UserError as exc:
                raise TemplateError(exc.message, path=track.source, field="templates") from exc
            directory = repo / rel
            if not directory.is_dir():
                raise TemplateError(
                    f"templates directory {directory} does not exist",
                    path=track.source,
                    field="templates",
                )
            layers.append(("track", directory))
        repo_dir = repo / REPO_TEMPLATES_DIR
        if repo_dir.is_dir() and not _same_dir(repo_dir, builtin):
            layers.append(("repo", repo_dir))
        layers.append(("built-in", builtin))
        self.layers: tuple[tuple[Layer, Path], ...] = tuple(layers)
        """(layer, directory), highest precedence first."""
        self._files: dict[str, tuple[Layer, Path]] = {}
        for layer, directory in reversed(layers):
            for path in _template_files(directory):
                self._files[path.stem] = (layer, path)
        if BASE_TEMPLATE not in self._files:
            raise TemplateError(f"no {BASE_TEMPLATE}.md in any template directory", path=builtin)
        self._parsed: dict[str, Template] = {}

    def names(self) -> list[str]:
        """Every template name, sorted."""
        return sorted(self._files)

    def source_of(self, name: str) -> Path:
        """The file that defines ``name`` (after layering)."""
        return self._entry(name)[1]

    def layer_of(self, name: str) -> Layer:
        """The layer ``name`` comes from."""
        return self._entry(name)[0]

    def _entry(self, name: str) -> tuple[Layer, Path]:
        try:
            return self._files[name]
        except KeyError:
            raise TemplateError(
                f"no template named {name!r} (known: {', '.join(self.names())})"
            ) from None

    def template_for(self, task_type: str | None) -> str:
        """The template for tasks of ``task_type``: ``<type>-worker`` if any layer has it."""
        kind = (task_type or "").strip().lower()
        if kind:
            own = f"{kind}-worker"
            if own in self._files:
                return own
            mapped = TYPE_TEMPLATES.get(kind)
            if mapped is not None and mapped in self._files:
                return mapped
        return BASE_TEMPLATE

    def types_of(self, name: str, extra_types: Iterable[str] = ()) -> list[str]:
        """Task types (built-in ones, ``extra_types`` and ``<type>-worker`` names) mapped to it."""
        kinds = {*TYPE_TEMPLATES, "docs", "config", *extra_types}
        kinds |= {n.removesuffix("-worker") for n in self._files if n.endswith("-worker")}
        kinds.discard("task")
        return sorted(k for k in kinds if k and self.template_for(k) == name)

    def load(self, name: str) -> Template:
        """The parsed template ``name`` (cached)."""
        if name not in self._parsed:
            layer, path = self._entry(name)
            self._parsed[name] = parse_template(path, layer)
        return self._parsed[name]

    def expand(self, name: str) -> list[SourceLine]:
        """The body of ``name`` with every include replaced, lines keeping their origin."""
        return self._expand(name, ())

    def _expand(self, name: str, stack: tuple[str, ...]) -> list[SourceLine]:
        template = self.load(name)
        out: list[SourceLine] = []
        for line in template.body:
            match = _INCLUDE.match(line.text)
            if match is None:
                out.append(line)
                continue
            target = match.group(1)
            if not _TEMPLATE_NAME.match(target) or target not in self._files:
                raise TemplateError(
                    f"include of unknown template {target!r}", path=line.path, line=line.lineno
                )
            if target == name or target in stack:
                chain = " → ".join((*stack, name, target))
                raise TemplateError(f"include cycle: {chain}", path=line.path, line=line.lineno)
            if len(stack) >= _MAX_INCLUDE_DEPTH:
                raise TemplateError(
                    f"includes nested deeper than {_MAX_INCLUDE_DEPTH}",
                    path=line.path,
                    line=line.lineno,
                )
            included = self._expand(target, (*stack, name))
            while included and not included[0].text.strip():
                included.pop(0)
            while included and not included[-1].text.strip():
                included.pop()
            out.extend(included)
        return out

    def defaults(self, name: str) -> tuple[list[str], str | None]:
        """The template's default tools and model, following ``extends`` where unset."""
        seen: list[str] = []
        tools: list[str] | None = None
        model: str | None = None
        model_set = False
        current: str | None = name
        while current is not None:
            if current in seen:
                first = self.load(seen[0])
                raise TemplateError(
                    f"extends cycle: {' → '.join((*seen, current))}",
                    path=first.path,
                    line=first.key_lines.get("extends"),
                    field="extends",
                )
            seen.append(current)
            template = self.load(current)
            if tools is None and "tools" in template.meta.model_fields_set:
                tools = list(template.meta.tools or [])
            if not model_set and "model" in template.meta.model_fields_set:
                model, model_set = template.meta.model, True
            parent = template.meta.extends
            if parent is not None and parent not in self._files:
                raise TemplateError(
                    f"extends unknown template {parent!r}",
                    path=template.path,
                    line=template.key_lines.get("extends"),
                    field="extends",
                )
            current = parent
        if tools is None:
            template = self.load(name)
            raise TemplateError(
                "no default tools: set tools (or extends a template that does)",
                path=template.path,
                line=1,
                field="tools",
            )
        return tools, model

    def raw_text(self, name: str) -> str:
        """The template as written, includes expanded, placeholders untouched."""
        template = self.load(name)
        body = "\n".join(line.text for line in self.expand(name))
        return f"---\n{template.frontmatter_text}---\n{body}\n"

    def check(self) -> None:
        """Parse every template, expand its includes and resolve its defaults."""
        for name in self.names():
            self.expand(name)
            self.defaults(name)

    def render(
        self,
        *,
        track: TrackSpec,
        task: TaskSpec,
        agent: ResolvedAgent,
        attempt: int,
        worker_id: str,
        feedback: str | None,
        bus_dir: Path,
        tool_names: dict[str, str] | None = None,
    ) -> RenderedWorker:
        """Render the skill of one attempt at ``task`` as ``agent``."""
        name = self.template_for(task.type)
        template = self.load(name)
        values = render_values(
            track=track,
            task=task,
            agent=agent,
            attempt=attempt,
            worker_id=worker_id,
            feedback=feedback,
            bus_dir=bus_dir,
            tool_names=tool_names,
        )
        body = substitute(self.expand(name), values).strip("\n") + "\n"
        default_tools, default_model = self.defaults(name)
        if agent.tools:
            tools = list(agent.tools)
        elif task.tools:
            tools = list(task.tools)
        else:
            tools = default_tools
        model = task.model or agent.model or track.model or default_model
        meta = template.meta
        title = values["task_name"]
        front: dict[str, Any] = {
            "name": name,
            "description": (
                f"{meta.description} This copy is for task {task.id} ({title}), "
                f"attempt {attempt} of {values['max_attempts']}."
            ),
            "lifecycle": meta.lifecycle,
            "specialization": meta.specialization,
            "tools": tools,
            "model": model,
            "track": track.id,
            "task": task.id,
            "worker": worker_id,
            "attempt": attempt,
            "agent": agent.name,
            "agent_source": agent.source,
        }
        dumped = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=10_000)
        return RenderedWorker(
            template=name,
            path=template.path,
            frontmatter=front,
            body=body,
            text=f"---\n{dumped}---\n\n{body}",
            tools=tools,
            model=model,
        )


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _template_files(directory: Path) -> list[Path]:
    files: list[Path] = []
    if not directory.is_dir():
        return files
    for path in sorted(directory.iterdir()):
        if path.suffix != ".md" or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem.lower() == "readme":
            continue
        if not _TEMPLATE_NAME.match(path.stem):
            raise TemplateError(
                "template file names are lowercase letters, digits, '-' and '_' "
                f"(rename {path.name!r})",
                path=path,
            )
        files.append(path)
    return files


STAND_IN_FEEDBACK = "(feedback from the previous attempt would appear here)"


def check_templates(track: TrackSpec, repo: Path) -> None:
    """Validate every template and render every agent task's worker with stand-in values.

    Raises the first ``TemplateError`` (or ``AgentError`` for a broken agent definition).
    """
    templates = TemplateSet(repo, track)
    templates.check()
    agents = AgentRegistry(track, repo)
    for task in track.tasks:
        if not task.run:
            preview_worker(track, task, repo, templates=templates, agents=agents)
    for task in track.tasks:  # a reviewer defined nowhere would reject every round, paid for
        review = getattr(task, "review", None)
        if review is None or not review.agent:
            continue
        try:
            as_reviewer: Any = task  # a track's Task: a pydantic model
            agents.resolve(as_reviewer.model_copy(update={"agent": review.agent}))
        except AgentError as exc:
            if exc.path is not None and exc.path != track.source:
                raise  # a broken .claude/agents file: its own file and line
            raise AgentError(
                f"review: {exc.message}", path=track.source, field=f"tasks.{task.id}.review.agent"
            ) from exc


def preview_worker(
    track: TrackSpec,
    task: TaskSpec,
    repo: Path,
    *,
    feedback: str | None = None,
    templates: TemplateSet | None = None,
    agents: AgentRegistry | None = None,
) -> RenderedWorker:
    """Render the first attempt's worker of ``task`` as a run would (``plan --show-prompt``)."""
    templates = templates if templates is not None else TemplateSet(repo, track)
    agents = agents if agents is not None else AgentRegistry(track, repo)
    return templates.render(
        track=track,
        task=task,
        agent=agents.resolve(task),
        attempt=1,
        worker_id=f"{task.id}.1",
        feedback=feedback if feedback is not None else STAND_IN_FEEDBACK,
        bus_dir=StateDir.for_track(repo, track.id).bus,
    )


def write_skill(worker_dir: Path, rendered: RenderedWorker) -> Path:
    """Write ``<worker_dir>/SKILL.md`` (mode 0600) and return its path.

    The file is created exclusively and never through a symlink: a planted file or link is a
    ``StateError``.
    """
    refuse_symlink(worker_dir)
    path = worker_dir / SKILL_FILE
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise StateError(f"refusing to write {path}: it already exists", path=path) from exc
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}", path=path) from exc
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(rendered.text)
    return path


__all__ = [
    "BASE_TEMPLATE",
    "DEFAULT_TOOL_NAMES",
    "PLACEHOLDERS",
    "TYPE_TEMPLATES",
    "RenderedWorker",
    "SourceLine",
    "Template",
    "TemplateMeta",
    "TemplateSet",
    "builtin_templates_dir",
    "bullets",
    "check_templates",
    "parse_template",
    "render_values",
    "substitute",
    "write_skill",
]
