"""Track files: load a YAML track, validate it strictly, and query its DAG of tasks.

Two formats load onto the same model:

- **native**: ``track``, ``description``, ``defaults``, ``max_parallel``, ``agents``, ``tasks``
  and the Claude settings (``budget_usd``, ``model``, ``permission_mode``, ...);
- **seed**: ``track`` plus ``dag: {nodes: [...], parallel_groups: [...]}``, the format of the
  orchestrator skill conductor grew from. A node is a task.

Every problem in a file becomes one ``TrackError`` naming the file, the line and the field,
e.g. ``tracks/x.yaml:14: tasks[3].depends_on: unknown task 'buidl' (did you mean 'build'?)``.
Lines come from the YAML node tree: ``conductor.yamldoc`` builds plain data from the composed
nodes and records the line of every key and list item by its path
(``("tasks", 3, "depends_on")``); a pydantic error's ``loc`` is mapped to the nearest recorded
path.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import deque
from collections.abc import Sequence
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from conductor.errors import ConductorError, TrackError, UserError
from conductor.globs import first_overlapping_pair
from conductor.paths import check_name, check_repo_path, track_file
from conductor.yamldoc import Doc as _Doc
from conductor.yamldoc import DocPath, first_of, read_yaml, validate
from conductor.yamldoc import describe as _describe
from conductor.yamldoc import fmt_path as _fmt_path
from conductor.yamldoc import suggest as _suggest

ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""Task, group, agent and track ids (seed ids like ``1.1`` included); never ``..``."""
TYPE_RE = re.compile(r"[a-z][a-z0-9_-]*")
"""Task types: ``code``, ``ui``, ``integration``, ``test``, ``docs``, ``config``, ..."""

PermissionMode = Literal["default", "acceptEdits", "bypassPermissions", "plan", "dontAsk"]
SettingSource = Literal["user", "project", "local"]
Isolation = Literal["copy", "checkout"]

MAX_NAME = 1000
"""Longest task name: it travels in bus messages, which have a size limit."""
MAX_COMMAND = 100_000
"""Longest ``verify`` command, in characters: each is posted in a VERIFY_RESULT message, and
even escaped as JSON (six bytes a character at worst) it fits the bus's 1 MiB message limit,
so `validate` refuses a command no run could record."""


def _on_off(value: Any) -> Any:
    """``on``/``off`` (YAML reads them as booleans; quoted they are strings) and booleans."""
    if isinstance(value, str) and value.strip().lower() in ("on", "off"):
        return value.strip().lower() == "on"
    return value


OnOff = Annotated[bool, BeforeValidator(_on_off), Field(strict=True)]

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_PARALLEL = 4
DEFAULT_TYPE = "code"

_EMPTY = "the file is empty; a track needs at least `track:` and `tasks:`"

# --------------------------------------------------------------------------- durations

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)")


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``: a number of seconds, or ``"30s"``, ``"5m"``, ``"2h"``, ``"1h30m"``.

    Raises ``UserError`` for anything else, negative or not finite.
    """
    if isinstance(value, bool):
        raise UserError(f"expected a duration such as 30s, 5m or 1h, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
    elif isinstance(value, str):
        seconds = _parse_duration_text(value)
    else:
        raise UserError(f"expected a duration such as 30s, 5m or 1h, got {_describe(value)}")
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(
            f"a duration must be a finite number of seconds >= 0, got {_short(value)}"
        )
    if seconds > MAX_DURATION:
        raise UserError(f"a duration must be at most 365 days, got {_short(value)}")
    return seconds


MAX_DURATION = 365 * 24 * 3600.0
"""The longest duration a track may give (a timeout beyond it is surely a typo)."""


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_duration_text(text: str) -> float:
    stripped = text.strip()
    bad = UserError(f"expected a duration such as 30s, 5m or 1h30m, or seconds; got {text!r}")
    if not stripped:
        raise bad
    if re.fullmatch(r"\d+(?:\.\d*)?|\.\d+", stripped):
        return float(stripped)
    total, pos = 0.0, 0
    while pos < len(stripped):
        match = _DURATION_PART.match(stripped, pos)
        if match is None:
            raise bad
        unit = _DURATION_UNITS.get(match.group(2).lower())
        if unit is None:
            raise bad
        total += float(match.group(1)) * unit
        pos = match.end()
    return total


# --------------------------------------------------------------------------- field types


def _check_id(value: str, what: str) -> str:
    try:
        check_name(value, what)
    except UserError as exc:
        raise ValueError(exc.message) from None
    if not ID_RE.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} may use only letters, digits, '_', '-' and '.', must start with a"
            " letter or digit and be at most 64 characters"
        )
    return value


def _task_id(value: str) -> str:
    return _check_id(value, "task id")


def _track_id(value: str) -> str:
    return _check_id(value, "track id")


def _agent_name(value: str) -> str:
    return _check_id(value, "agent name")


def _group_id(value: str) -> str:
    return _check_id(value, "group id")


def _repo_path(value: str) -> str:
    try:
        return check_repo_path(value, "path")
    except UserError as exc:
        raise ValueError(exc.message) from None


def _task_type(value: str) -> str:
    if not TYPE_RE.fullmatch(value):
        raise ValueError(
            f"task type {value!r} must be lower case letters, digits, '_' or '-', starting with"
            " a letter (e.g. code, ui, test, docs)"
        )
    return value


def _one_or_many(value: Any) -> Any:
    """A single string where a list of strings is expected means a list of one."""
    return [value] if isinstance(value, str) else value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


def _duration(value: Any) -> Any:
    if value is None or not isinstance(value, int | float | str):
        return value
    try:
        return parse_duration(value)
    except UserError as exc:
        raise ValueError(exc.message) from None


def _list_or_empty(value: Any) -> Any:
    """A single string means a list of one; null means an empty list."""
    if value is None:
        return []
    return _one_or_many(value)


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError(f"must be more than 0 seconds, got {value:g}")
    return value


def _phase(value: Any) -> Any:
    if value is None or isinstance(value, str) or type(value) is int:
        return value
    raise ValueError(f"a phase is a number or a name, got {_describe(value)}")


RESOURCE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
"""A resource name in ``resources:`` (``cpus``, ``memory``, ``gpus`` or a custom one)."""

_MEMORY_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3,
    "gb": 1000**3, "t": 1000**4, "tb": 1000**4, "kib": 2**10, "mib": 2**20, "gib": 2**30,
    "tib": 2**40,
}
_MEMORY_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")


def _resources(value: Any) -> Any:
    """``resources:``: what one attempt needs where it runs (``executor: ray``), as names to
    non-negative amounts; ``memory`` is bytes or a size with a unit (``512MiB``, ``2GB``)."""
    if value is None:
        return value
    if not isinstance(value, dict):
        raise ValueError(f"resources is a mapping of names to amounts, got {_describe(value)}")
    amounts: dict[str, float] = {}
    for name, amount in value.items():
        if not isinstance(name, str) or not RESOURCE_RE.fullmatch(name):
            raise ValueError(f"resource name {name!r} must match {RESOURCE_RE.pattern}")
        if name == "memory" and isinstance(amount, str):
            match = _MEMORY_RE.fullmatch(amount)
            unit = match.group(2).lower() if match else ""
            if match is None or unit not in _MEMORY_UNITS:
                raise ValueError(f"memory {amount!r} is not a size like 512MiB or 2GB")
            amount = float(match.group(1)) * _MEMORY_UNITS[unit]
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            raise ValueError(f"resource {name!r} needs a number, got {_describe(amount)}")
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"resource {name!r} must be a non-negative number, got {amount}")
        amounts[name] = float(amount)
    return amounts


TaskId = Annotated[str, AfterValidator(_task_id)]
TrackId = Annotated[str, AfterValidator(_track_id)]
AgentName = Annotated[str, AfterValidator(_agent_name)]
GroupId = Annotated[str, AfterValidator(_group_id)]
RepoPath = Annotated[str, AfterValidator(_repo_path)]
TaskType = Annotated[str, AfterValidator(_task_type)]
StrList = Annotated[list[str], BeforeValidator(_one_or_many)]
Strings = Annotated[list[str], BeforeValidator(_list_or_empty)]
Command = Annotated[str, Field(max_length=MAX_COMMAND)]
Commands = Annotated[list[Command], BeforeValidator(_list_or_empty)]
CommandList = Annotated[list[Command], BeforeValidator(_one_or_many)]
TaskIdList = Annotated[list[TaskId], BeforeValidator(_list_or_empty)]
RepoPathList = Annotated[list[RepoPath], BeforeValidator(_list_or_empty)]
Count = Annotated[int, Field(strict=True, ge=1)]
Money = Annotated[float, BeforeValidator(_no_bool), Field(ge=0, allow_inf_nan=False)]
Timeout = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]
Duration = Annotated[float, BeforeValidator(_duration)]

Approval = Literal["required", "none"]
"""``approval: required`` makes every run pause for a person's APPROVE, as ``--approve`` does."""
Phase = Annotated[int | str, BeforeValidator(_phase)]
Resources = Annotated[dict[str, float], BeforeValidator(_resources)]
ExecutorKind = Literal["local", "ray"]
"""Where attempts run: this machine, or a Ray cluster (``conductor.distributed``)."""


class _Model(BaseModel):
    """Base of every model a person writes: unknown fields are errors.

    Models are compiled on first use (``defer_build``), not when the module is imported.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)


# --------------------------------------------------------------------------- public models


class Agent(_Model):
    """A specialist a task can name: from the track's ``agents:``, or defined elsewhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: AgentName
    role: str | None = None
    goal: str | None = None
    system_prompt: str | None = None
    tools: StrList | None = None
    model: str | None = None
    description: str | None = None


class Network(_Model):
    """What sandboxed commands of the track may reach (``network:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_domains: Strings = Field(default_factory=list)


class Review(_Model):
    """``review:``: after verify passes, a reviewer session scores the attempt's diff
    (``conductor.review``); below ``threshold`` the task goes back to its worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentName | None = None
    """The reviewer: an agent whose system prompt and model the review uses (default: a
    generic code reviewer)."""
    criteria: Strings = Field(default_factory=list)
    """What to score, 0–100 each (default: the task's ``acceptance``)."""
    threshold: Annotated[int, Field(ge=0, le=100, strict=True)] = 70
    """The lowest mean score that passes."""
    max_rounds: Annotated[int, Field(ge=1, le=3, strict=True)] = 3
    """Reviews of one task before a rejection fails it for good (at most 3)."""


class Task(_Model):
    """One node of the DAG, with the track's ``defaults`` already applied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: TaskId
    name: Annotated[str, Field(max_length=MAX_NAME)] = ""
    type: TaskType = DEFAULT_TYPE
    depends_on: TaskIdList = Field(default_factory=list)
    files: RepoPathList = Field(default_factory=list)
    inputs: RepoPathList = Field(default_factory=list)
    acceptance: Strings = Field(default_factory=list)
    verify: Commands = Field(default_factory=list)
    agent: AgentName | None = None
    instructions: str | None = None
    run: str | None = None
    timeout: Timeout | None = None
    max_attempts: Count = DEFAULT_MAX_ATTEMPTS
    model: str | None = None
    max_turns: Count | None = None
    max_budget_usd: Money | None = None
    permission_mode: PermissionMode | None = None
    tools: StrList | None = None
    phase: Phase | None = None
    estimated_duration: Duration | None = None
    isolation: Isolation | None = None
    resources: Resources | None = None
    review: Review | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("id"), str):
            return {**data, "name": data["id"]}
        return data

    @field_validator("depends_on")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _claude_tasks_use_copies(self) -> Task:
        if self.isolation == "checkout" and not self.run:
            raise ValueError(
                "isolation: checkout is only for shell tasks (`run:`); a Claude task always "
                "works in its own copy of the repository"
            )
        if self.review is not None and not self.in_copy:
            raise ValueError(
                "review: reads the attempt's diff from its own copy: give this shell task "
                "isolation: copy"
            )
        return self

    @property
    def reviewed(self) -> bool:
        """A reviewer scores the attempts (``review:``, or the defaults' for work in a copy)."""
        return self.review is not None

    @property
    def in_copy(self) -> bool:
        """The attempt works in its own copy: Claude tasks always, shell tasks when asked."""
        return not self.run or self.isolation == "copy"


class ParallelGroup(_Model):
    """Tasks a track states may run at the same time (seed format ``parallel_groups``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: GroupId
    tasks: TaskIdList
    conflict_free: Annotated[bool, Field(strict=True)] = False
    shared_resources: RepoPathList = Field(default_factory=list)


class Track(_Model):
    """A validated track: tasks in file order with defaults applied, agents, settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: TrackId
    description: str = ""
    max_parallel: Count = DEFAULT_MAX_PARALLEL
    agents: dict[str, Agent] = Field(default_factory=dict)
    tasks: list[Task] = Field(default_factory=list)
    parallel_groups: list[ParallelGroup] = Field(default_factory=list)
    budget_usd: Money | None = None
    model: str | None = None
    permission_mode: PermissionMode = "acceptEdits"
    setting_sources: list[SettingSource] = Field(default_factory=list)
    templates: RepoPath | None = None
    shared_files: RepoPathList = Field(default_factory=list)
    sandbox: OnOff = True
    network: Network = Field(default_factory=lambda: Network())
    approval: Approval = "none"
    approval_timeout: Duration | None = None
    executor: ExecutorKind = "local"
    adhoc: Annotated[bool, Field(strict=True)] = False
    inferred_agents: dict[str, Agent] = Field(default_factory=dict)
    """Agents a run inferred for tasks naming one defined nowhere (``conductor.inference``);
    never written in a track file."""
    source: Path | None = None

    _by_id: dict[str, Task] = PrivateAttr(default_factory=dict)
    _dependents: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _hashes: dict[str, str] = PrivateAttr(default_factory=dict)
    _notes: list[str] | None = PrivateAttr(default=None)
    _agent_lines: dict[str, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_graph(self) -> Track:
        for name, agent in self.agents.items():
            if name != agent.name:
                raise ValueError(f"agent key {name!r} differs from its name {agent.name!r}")
        problems = _graph_problems(self.tasks)
        if problems:
            index, field, message, _, other = problems[0]
            if other is not None:
                message += f" (first defined as tasks[{other}])"
            raise ValueError(f"tasks[{index}].{field[0]}: {message}")
        known = {t.id for t in self.tasks}
        for group in self.parallel_groups:
            for tid in group.tasks:
                if tid not in known:
                    raise ValueError(f"parallel group {group.id!r} names unknown task {tid!r}")
        return self

    def model_post_init(self, context: Any, /) -> None:
        """Index tasks by id and by dependency."""
        self._by_id = {t.id: t for t in self.tasks}
        dependents: dict[str, list[str]] = {t.id: [] for t in self.tasks}
        for task in self.tasks:
            for dep in task.depends_on:
                if dep in dependents:  # unknown ones are refused by the validator
                    dependents[dep].append(task.id)
        self._dependents = dependents

    def task(self, task_id: str) -> Task:
        """The task ``task_id``; raises ``UserError`` (with a suggestion) if there is none."""
        try:
            return self._by_id[task_id]
        except (KeyError, TypeError):
            raise UserError(
                f"track {self.id!r} has no task {task_id!r}{_suggest(task_id, self._by_id)}",
                task_id=task_id if isinstance(task_id, str) else None,
            ) from None

    def task_ids(self) -> list[str]:
        """Task ids in file order."""
        return [t.id for t in self.tasks]

    def dependents(self, task_id: str) -> list[str]:
        """Tasks that depend directly on ``task_id``, in file order."""
        self.task(task_id)
        return list(self._dependents[task_id])

    def descendants(self, task_id: str) -> set[str]:
        """Every task that depends on ``task_id``, directly or not (not itself)."""
        self.task(task_id)
        seen: set[str] = set()
        queue = deque(self._dependents[task_id])
        while queue:
            tid = queue.popleft()
            if tid not in seen:
                seen.add(tid)
                queue.extend(self._dependents[tid])
        return seen

    def task_hash(self, task_id: str) -> str:
        """sha256 of the task's canonical JSON (defaults applied, keys sorted, nulls left out).

        It changes exactly when the task's definition changes; key order in the file and
        fields left at null do not matter, nor does an empty ``inputs``. The content of the
        files ``inputs`` names is added by ``conductor.inputs.task_hash``.
        """
        cached = self._hashes.get(task_id)
        if cached is None:
            dumped = self.task(task_id).model_dump(mode="json")
            data = {
                k: v for k, v in dumped.items() if v is not None and (v or k != "inputs")
            }
            canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            cached = hashlib.sha256(canonical.encode()).hexdigest()
            self._hashes[task_id] = cached
        return cached

    def agent_line(self, task_id: str) -> int | None:
        """The line of ``task_id``'s ``agent:`` in the track file, when loaded from one."""
        return self._agent_lines.get(task_id)

    def notes(self) -> list[str]:
        """Things worth telling the user that are not errors (tasks naming undefined agents)."""
        if self._notes is None:
            self._notes = _agent_notes(self, None)
        return list(self._notes)


# --------------------------------------------------------------------------- file models


class _Defaults(_Model):
    """``defaults:``: settings applied to every task that does not set them."""

    type: TaskType | None = None
    timeout: Timeout | None = None
    max_attempts: Count | None = None
    agent: AgentName | None = None
    verify: CommandList | None = None
    model: str | None = None
    max_turns: Count | None = None
    max_budget_usd: Money | None = None
    permission_mode: PermissionMode | None = None
    isolation: Isolation | None = None
    resources: Resources | None = None
    review: Review | None = None


class _AgentSpec(_Model):
    """One entry of ``agents:`` (the name is its key)."""

    name: AgentName | None = None
    role: str | None = None
    goal: str | None = None
    system_prompt: str | None = None
    tools: StrList | None = None
    model: str | None = None
    description: str | None = None


class _TrackMeta(_Model):
    """``track:`` written as a mapping."""

    id: TrackId
    name: str | None = None
    description: str | None = None


class _Dag(_Model):
    """Seed format ``dag:``."""

    nodes: list[Task]
    parallel_groups: list[ParallelGroup] = Field(default_factory=list)


class _TrackFile(_Model):
    """A whole track file as written."""

    track: TrackId
    description: str = ""
    defaults: _Defaults = Field(default_factory=_Defaults)
    max_parallel: Count = DEFAULT_MAX_PARALLEL
    agents: dict[AgentName, _AgentSpec] = Field(default_factory=dict)
    tasks: list[Task] | None = None
    dag: _Dag | None = None
    parallel_groups: list[ParallelGroup] = Field(default_factory=list)
    budget_usd: Money | None = None
    model: str | None = None
    permission_mode: PermissionMode = "acceptEdits"
    setting_sources: list[SettingSource] = Field(default_factory=list)
    templates: RepoPath | None = None
    shared_files: RepoPathList = Field(default_factory=list)
    sandbox: OnOff = True
    network: Network = Field(default_factory=lambda: Network())
    approval: Approval = "none"
    approval_timeout: Timeout | None = None  # 0 would reject every run at once
    executor: ExecutorKind = "local"
    adhoc: Annotated[bool, Field(strict=True)] = False


_DEFAULTABLE = tuple(_Defaults.model_fields)


# --------------------------------------------------------------------------- loading


def load_track(path: Path) -> Track:
    """Load and validate the track at ``path`` (a file, or a directory with ``track.yaml``,
    or else ``track.yml``).

    Raises ``TrackError`` for every problem in the file, naming its line and field.
    """
    path = track_file(Path(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrackError("no such track file", path=path) from None
    except OSError as exc:
        raise TrackError(f"cannot read the track file: {exc.strerror or exc}", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TrackError("the file is not valid UTF-8", path=path, line=line) from None
    return parse_track(text, source=path)


def parse_track(text: str, source: Path | None = None, *, guard: bool = True) -> Track:
    """Validate a track from YAML ``text``; ``source`` names it in errors and on the Track.

    Raises ``TrackError``. With ``guard`` (the default) any unexpected exception is also
    turned into a ``TrackError``, so a user's file never produces a traceback; tests pass
    ``guard=False`` to see such bugs.
    """
    display = source if source is not None else Path("<track>")
    if not guard:
        return _parse(text, source, display)
    try:
        return _parse(text, source, display)
    except TrackError:
        raise
    except Exception as exc:
        raise TrackError(
            f"could not load the track ({type(exc).__name__}: {exc}); this is a bug in"
            " conductor, please report it with the file",
            path=display,
        ) from exc


def _parse(text: str, source: Path | None, display: Path) -> Track:
    doc = read_yaml(text, display, empty=_EMPTY)
    data = doc.data
    if not isinstance(data, dict):
        raise doc.error(
            (), f"the top level must be a mapping with `track:` and `tasks:`, not {_describe(data)}"
        )
    data = dict(data)
    for section in _OPTIONAL_SECTIONS:  # `agents:` with everything commented out is empty
        if section in data and data[section] is None:
            del data[section]
    _prepare_track_meta(doc, data)
    _prepare_agents(doc, data)
    if "tasks" in data and "dag" in data:
        raise doc.error(
            ("dag",),
            "a track has either `tasks:` (native format) or `dag:` (seed format), not both",
        )
    if "tasks" not in data and "dag" not in data:
        raise doc.error((), "the track has no tasks: add a `tasks:` list (or `dag: nodes:`)")
    spec = validate(doc, _TrackFile, data, ())

    raw_tasks: list[Task] = []
    task_path: DocPath = ("tasks",)
    if spec.tasks is not None:
        raw_tasks = spec.tasks
    elif spec.dag is not None:
        raw_tasks, task_path = spec.dag.nodes, ("dag", "nodes")
    elif "dag" in data:
        task_path = ("dag",)
    if not raw_tasks:
        raise doc.error(task_path, "the track has no tasks")
    for name, agent_spec in spec.agents.items():
        if agent_spec.name is not None and agent_spec.name != name:
            raise doc.error(
                ("agents", name, "name"), f"agent {name!r} has a different name {agent_spec.name!r}"
            )
    groups: list[tuple[ParallelGroup, DocPath]] = [
        (g, ("parallel_groups", i)) for i, g in enumerate(spec.parallel_groups)
    ]
    if spec.dag is not None:
        groups += [
            (g, ("dag", "parallel_groups", i)) for i, g in enumerate(spec.dag.parallel_groups)
        ]

    tasks = [_apply_defaults(task, spec.defaults) for task in raw_tasks]
    problems: list[ConductorError] = []
    for index, field, message, at, other in _graph_problems(tasks):
        prefix = (*task_path, index)
        if other is not None:
            message += f" (first defined at line {doc.line((*task_path, other, 'id'))})"
        problems.append(doc.error((*prefix, *field), message, at=(*prefix, *at)))
    if not problems:
        problems += _group_problems(doc, tasks, task_path, groups, spec.shared_files)
    if problems:
        raise first_of(problems)

    agents = {
        name: Agent(name=name, **a.model_dump(exclude={"name"})) for name, a in spec.agents.items()
    }
    track = Track(
        id=spec.track,
        description=spec.description,
        max_parallel=spec.max_parallel,
        agents=agents,
        tasks=tasks,
        parallel_groups=[g for g, _ in groups],
        budget_usd=spec.budget_usd,
        model=spec.model,
        permission_mode=spec.permission_mode,
        setting_sources=spec.setting_sources,
        templates=spec.templates,
        shared_files=spec.shared_files,
        sandbox=spec.sandbox,
        network=spec.network,
        approval=spec.approval,
        approval_timeout=spec.approval_timeout,
        executor=spec.executor,
        adhoc=spec.adhoc,
        source=source,
    )
    track._notes = _agent_notes(track, (doc, task_path))
    track._agent_lines = {
        task.id: line
        for index, task in enumerate(tasks)
        if task.agent is not None
        and (line := doc.line((*task_path, index, "agent"))) is not None
    }
    return track


_OPTIONAL_SECTIONS = (
    "description",
    "defaults",
    "agents",
    "parallel_groups",
    "setting_sources",
    "shared_files",
)


def _prepare_track_meta(doc: _Doc, data: dict[str, Any]) -> None:
    """``track: {id: ..., description: ...}`` is the same as ``track: id`` + ``description:``."""
    meta = data.get("track")
    if not isinstance(meta, dict):
        if "track" not in data:
            raise doc.error((), "missing `track:` (the track's id, e.g. `track: auth-refactor`)")
        return
    parsed = validate(doc, _TrackMeta, meta, ("track",))
    data["track"] = parsed.id
    if parsed.description is not None:
        if "description" in data:
            raise doc.error(
                ("description",), "the description is given twice (also under `track:`)"
            )
        data["description"] = parsed.description


def _prepare_agents(doc: _Doc, data: dict[str, Any]) -> None:
    """``agents:`` as a list of ``{name: ..., ...}`` is the same as a mapping by name."""
    agents = data.get("agents")
    if not isinstance(agents, list):
        return
    by_name: dict[str, Any] = {}
    names: dict[int, str] = {}
    for i, item in enumerate(agents):
        path = ("agents", i)
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise doc.error(path, "each agent in a list needs a `name:`")
        name = item["name"]
        if name in by_name:
            first = doc.line(("agents", list(by_name).index(name)))
            raise doc.error((*path, "name"), f"duplicate agent {name!r} (first at line {first})")
        by_name[name], names[i] = item, name
    for key, line in list(doc.lines.items()):  # errors about agents.<name>... keep their lines
        if len(key) >= 2 and key[0] == "agents" and isinstance(key[1], int) and key[1] in names:
            doc.lines.setdefault(("agents", names[key[1]], *key[2:]), line)
    data["agents"] = by_name


def _apply_defaults(task: Task, defaults: _Defaults) -> Task:
    update = {
        name: getattr(defaults, name)
        for name in _DEFAULTABLE
        if name not in task.model_fields_set and getattr(defaults, name) is not None
    }
    if "review" in update and task.run and update.get("isolation", task.isolation) != "copy":
        del update["review"]  # the defaults' review is for work done in a copy
    return task.model_copy(update=update) if update else task


# --------------------------------------------------------------------------- graph checks

_Problem = tuple[int, DocPath, str, DocPath, int | None]
"""(task index, field under the task, message, where to take the line from, other task index)."""


def _graph_problems(tasks: Sequence[Task]) -> list[_Problem]:
    """Duplicate ids, unknown or self dependencies, and (if none of those) one cycle."""
    problems: list[_Problem] = []
    first: dict[str, int] = {}
    for index, task in enumerate(tasks):
        if task.id in first:
            message = f"duplicate task id {task.id!r}"
            problems.append((index, ("id",), message, ("id",), first[task.id]))
        else:
            first[task.id] = index
    for index, task in enumerate(tasks):
        for j, dep in enumerate(task.depends_on):
            if dep == task.id:
                message = f"task {dep!r} depends on itself"
                problems.append((index, ("depends_on",), message, ("depends_on", j), None))
            elif dep not in first:
                message = f"unknown task {dep!r}{_suggest(dep, first)}"
                problems.append((index, ("depends_on",), message, ("depends_on", j), None))
    if problems:
        return problems
    cycle = _find_cycle(tasks)
    if cycle:
        order = {t.id: i for i, t in enumerate(tasks)}
        index = order[cycle[0]]
        j = tasks[index].depends_on.index(cycle[1])
        text = " -> ".join([*cycle, cycle[0]])
        message = f"dependency cycle: {text} (each task depends on the next)"
        problems.append((index, ("depends_on",), message, ("depends_on", j), None))
    return problems


def _find_cycle(tasks: Sequence[Task]) -> list[str] | None:
    """One dependency cycle ``[a, b, c]`` (a depends on b, b on c, c on a), or None; the
    cycle starts at its first task in file order."""
    order = {t.id: i for i, t in enumerate(tasks)}
    try:
        TopologicalSorter({t.id: t.depends_on for t in tasks}).prepare()
    except CycleError as exc:
        # graphlib lists each node before one that depends on it, the first node again last.
        cycle = list(reversed(exc.args[1][1:]))
        start = min(range(len(cycle)), key=lambda i: order.get(cycle[i], len(order)))
        return cycle[start:] + cycle[:start]
    return None


def _group_problems(
    doc: _Doc,
    tasks: Sequence[Task],
    task_path: DocPath,
    groups: Sequence[tuple[ParallelGroup, DocPath]],
    shared_files: Sequence[str],
) -> list[ConductorError]:
    """Parallel groups that contradict the DAG or their own ``conflict_free`` claim."""
    if not groups:
        return []
    problems: list[ConductorError] = []
    by_id = {t.id: t for t in tasks}
    first_group: dict[str, int] = {}
    for group, path in groups:
        line = doc.line((*path, "id")) or 0
        if group.id in first_group:
            message = f"duplicate group id {group.id!r} (first at line {first_group[group.id]})"
            problems.append(doc.error((*path, "id"), message))
        first_group.setdefault(group.id, line)
        for j, tid in enumerate(group.tasks):
            if tid not in by_id:
                problems.append(
                    doc.error(
                        (*path, "tasks"),
                        f"group {group.id!r} names unknown task {tid!r}{_suggest(tid, by_id)}",
                        at=(*path, "tasks", j),
                    )
                )
    if problems:
        return problems

    # Ancestors among grouped tasks, as bitsets, computed once in topological (file-safe) order.
    members = list(dict.fromkeys(tid for g, _ in groups for tid in g.tasks))
    bit = {tid: 1 << i for i, tid in enumerate(members)}
    reach: dict[str, int] = {}
    for tid in _topological(tasks):
        mask = 0
        for dep in by_id[tid].depends_on:
            mask |= reach[dep] | bit.get(dep, 0)
        reach[tid] = mask
    for group, path in groups:
        group_mask = 0
        for tid in group.tasks:
            group_mask |= bit[tid]
        for tid in group.tasks:
            hit = reach[tid] & group_mask
            if hit:
                other = members[(hit & -hit).bit_length() - 1]
                problems.append(
                    doc.error(
                        (*path, "tasks"),
                        f"group {group.id!r} lists {tid!r} and {other!r}, but {tid!r} depends on"
                        f" {other!r}, so they cannot run in parallel",
                    )
                )
                break
        if group.conflict_free:
            shared = [*group.shared_resources, *shared_files]
            items = [(tid, by_id[tid].files) for tid in dict.fromkeys(group.tasks)]
            first = first_overlapping_pair(items, shared)
            if first is not None:
                a, b, overlap = first
                problems.append(
                    doc.error(
                        (*path, "conflict_free"),
                        f"group {group.id!r} is conflict_free but {a!r} and {b!r} both change"
                        f" {', '.join(overlap)}; list it in shared_resources or drop conflict_free",
                    )
                )
    return problems


def _topological(tasks: Sequence[Task]) -> list[str]:
    """Task ids so that every task comes after its dependencies (the graph is acyclic)."""
    return list(TopologicalSorter({t.id: t.depends_on for t in tasks}).static_order())


def _agent_notes(track: Track, where: tuple[_Doc, DocPath] | None) -> list[str]:
    """One note per agent name that tasks use but the track does not define."""
    users: dict[str, list[int]] = {}
    for index, task in enumerate(track.tasks):
        if task.agent is not None and task.agent not in track.agents:
            users.setdefault(task.agent, []).append(index)
    notes = []
    for name, indexes in users.items():
        ids = [track.tasks[i].id for i in indexes]
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        text = (
            f"agent {name!r} (used by {shown}) is not defined in this track; it is taken"
            " from .claude/agents/ (or inferred, with --adhoc)"
        )
        if where is not None:
            doc, task_path = where
            path = (*task_path, indexes[0], "agent")
            line = doc.line(path)
            text = f"{doc.display}:{line}: {_fmt_path(path)}: {text}"
        notes.append(text)
    return notes
