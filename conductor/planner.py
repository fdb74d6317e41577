"""Plan a track from a goal: ``conductor plan --goal "..."``.

A planner session (``conductor.asking``: read-only, structured output) reads the repository,
the goal and any context files, and answers with a track: tasks with ``depends_on``,
``files``, ``acceptance``, ``verify``, ``type`` and ``agent``, and the specialist ``agents:``
it invented for the work (role at most 200 characters, goal at most 500, a system prompt,
tools, a model chosen by the weight of the work).

Before anything is written the answer goes through a logic check: the validation every
hand-written track gets (fields, ids, dependencies, cycles) and, on top of it, tasks that
may change the same files but are not ordered by the DAG, tasks without ``verify``,
tasks that change no files, and tasks whose agent is defined neither in the answer nor in
``.claude/agents``. Problems go back to the planner as feedback, for at most ``MAX_ROUNDS``
answers in all; then planning fails, showing the last problems. Nothing is written until a
plan passes.

When the goal is ambiguous the planner may ask questions instead of planning. On a terminal
they are put to the person and the answers sent back (``--no-questions`` skips this: the
planner is told to assume and say so in the track's description). Questions do not use up a
round.

The output is a normal track file, with a comment saying where it came from. Each answer
and the final plan, with what they cost, are on the bus of the new track (``PLAN_PROPOSED``,
``PLAN_WRITTEN``), so ``conductor bus ls TRACK`` shows how it was planned.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conductor.errors import UserError
from conductor.inference import AGENT_SCHEMA, KNOWN_TOOLS, MAX_GOAL, MAX_ROLE

MAX_ROUNDS = 3
"""Planner answers checked before planning gives up."""
MAX_QUESTION_ROUNDS = 2
"""Times the planner may ask the person questions."""
TASK_TYPES = ("code", "ui", "integration", "test", "docs", "config")
"""The task types the planner is offered (a track may use others)."""
MAX_CONTEXT_BYTES = 200_000
"""Largest context file read into the question."""
NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
"""Characters a YAML file may not hold anywhere, comments included (YAML 1.1, as PyYAML)."""

SYSTEM = """You plan work for a team of specialist software agents on one repository. Read the
repository as much as you need (Read, Grep, Glob), then answer with a track: a DAG of small
tasks that together reach the goal. Each task names the files it may change (globs, relative
to the repository root; tasks that change the same files must depend on one another),
acceptance criteria a reviewer can check, verify commands (shell commands that exit 0 only
when the task is done, run at the repository root), a type ({types}) and the agent that does
it. Invent the specialist agents the work needs: a name (lower-case, dashes), a role (at
most 200 characters), a goal (at most 500), a system prompt stating the specialism and how to
work in this repository, the tools it needs from: {tools}, and a model by the weight of its
work: haiku for small mechanical tasks, sonnet for most, opus for hard design. The track id
is short, lower-case, with dashes."""

_TASK = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "type": {"type": "string"},
        "agent": {"type": "string"},
        "depends_on": {"type": "array", "items": {"type": "string"}},
        "files": {"type": "array", "items": {"type": "string"}},
        "acceptance": {"type": "array", "items": {"type": "string"}},
        "verify": {"type": "array", "items": {"type": "string"}},
        "instructions": {"type": "string"},
    },
    "required": ["id", "name", "type", "agent", "files", "acceptance", "verify"],
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Questions for the person when the goal is too ambiguous to plan; "
            "leave empty and give the plan otherwise.",
        },
        "track": {"type": "string"},
        "description": {"type": "string"},
        "agents": {"type": "array", "items": AGENT_SCHEMA},
        "tasks": {"type": "array", "items": _TASK},
    },
    "required": ["questions", "track", "description", "agents", "tasks"],
}

NO_QUESTIONS = (
    "Do not ask questions: where the goal is ambiguous, choose the most likely meaning and say "
    "what you assumed in the description."
)
"""The note that stops the planner asking (``--no-questions``, no terminal, or asked enough)."""

Asker = Callable[[list[str]], Awaitable[list[str]]]
"""Puts the planner's questions to the person; returns one answer per question."""


class PlanningFailed(UserError):
    """No plan passed the logic check within the rounds allowed."""


@dataclass
class Planned:
    """A plan that passed the logic check."""

    track_id: str
    """The new track's id."""
    text: str
    """The track file."""
    rounds: int
    """Planner answers it took."""
    cost_usd: float
    """What planning cost, questions included."""
    problems_fixed: list[list[str]] = field(default_factory=list)
    """The problems each rejected answer had."""


def to_track(answer: dict[str, Any]) -> dict[str, Any]:
    """The planner's answer as a track file's data (agents keyed by name)."""
    agents: dict[str, Any] = {}
    for agent in answer.get("agents") or []:
        if isinstance(agent, dict) and isinstance(agent.get("name"), str):
            agents[agent["name"]] = {k: v for k, v in agent.items() if k != "name" and v}
    tasks = []
    for task in answer.get("tasks") or []:
        if isinstance(task, dict):
            tasks.append({k: v for k, v in task.items() if v not in (None, "", [])})
    data: dict[str, Any] = {"track": answer.get("track"), "description": answer.get("description")}
    if agents:
        data["agents"] = agents
    data["tasks"] = tasks
    return data


def render(data: dict[str, Any], goal: str) -> str:
    """The track file: a comment naming the goal, then the track as YAML."""
    head = "# Planned by `conductor plan --goal`. Read it, edit it, commit it, run it.\n"
    # A character YAML refuses even in a comment (a terminal escape pasted into the goal)
    # would make the whole file unreadable: it is shown as "?".
    shown = NON_PRINTABLE.sub("?", goal.strip())
    goal_lines = "\n".join(f"#   {line}" for line in shown.splitlines())
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return f"{head}# Goal:\n{goal_lines}\n{body}"


def check(text: str, repo: Path, path: Path) -> list[str]:
    """The logic check: every problem of the track file ``text`` (empty when it passes)."""
    from conductor.agents import AgentError, AgentRegistry
    from conductor.errors import TrackError
    from conductor.plan import make_plan
    from conductor.track import parse_track

    try:
        track = parse_track(text, path)
    except TrackError as exc:  # every problem of the file, so one round can fix them all
        return [str(problem) for problem in (exc, *exc.others)]
    problems: list[str] = []
    plan = make_plan(track)
    for a, b, files in plan.conflicts:
        problems.append(
            f"tasks {a} and {b} may change the same files ({', '.join(files)}) but neither "
            "depends on the other: order them, or split the files"
        )
    if plan.summarised:  # too many pairs to name one by one
        problems.append(
            f"{plan.classes.pair_count():,} pairs of tasks may change the same files (see "
            "`conductor plan`): order them, or split the files"
        )
    registry = AgentRegistry(track, repo)
    for task in track.tasks:
        if not task.verify:
            problems.append(f"task {task.id} has no verify command: how is it checked?")
        if not task.files:
            problems.append(f"task {task.id} lists no files: it would be unconfined")
        try:
            registry.resolve(task)
        except AgentError:
            problems.append(
                f"task {task.id} names agent {task.agent!r}, which is neither in agents: nor "
                "in .claude/agents/: no agent fits it"
            )
    for name, agent in track.agents.items():
        if len(agent.role or "") > MAX_ROLE or len(agent.goal or "") > MAX_GOAL:
            problems.append(f"agent {name}: role at most {MAX_ROLE}, goal at most {MAX_GOAL}")
        unknown = sorted(set(agent.tools or []) - KNOWN_TOOLS)
        if unknown:
            problems.append(f"agent {name}: unknown tools {', '.join(unknown)}")
    return problems


def _question(goal: str, context: list[tuple[str, str]], notes: list[str]) -> str:
    parts = [f"The goal:\n{goal.strip()}"]
    for name, text in context:
        parts.append(f"Context from {name}:\n{text}")
    parts += notes
    return "\n\n".join(parts)


def read_context(paths: list[Path]) -> list[tuple[str, str]]:
    """The context files, read (each at most ``MAX_CONTEXT_BYTES``)."""
    out = []
    for path in paths:
        try:
            data = path.read_bytes()[:MAX_CONTEXT_BYTES]
        except OSError as exc:
            raise UserError(f"cannot read the context file: {exc.strerror}", path=path) from exc
        out.append((str(path), data.decode("utf-8", "replace")))
    return out


async def plan_goal(
    goal: str,
    repo: Path,
    *,
    context: list[tuple[str, str]] | None = None,
    asker: Asker | None = None,
    model: str | None = None,
    max_budget_usd: float | None = None,
    record: Callable[[str, str, dict[str, Any]], None] | None = None,
    taken: Callable[[str], str | None] | None = None,
    state_root: Path | None = None,
) -> Planned:
    """Plan ``goal`` until an answer passes the logic check; raise ``PlanningFailed``.

    ``record(track_id, type, payload)`` is told of each answer (``PLAN_PROPOSED``).
    ``taken(track_id)`` says why a plan's id cannot be used (its file exists), or None: such
    a plan goes back like one with problems, so a paid-for plan is never thrown away. The
    planner reads the repository, never ``state_root`` (conductor's state).
    """
    from conductor.asking import AskError, ask

    if not goal.strip():
        raise UserError("the goal is empty: say what the track should achieve")
    notes: list[str] = []
    if asker is None:
        notes.append(NO_QUESTIONS)
    system = SYSTEM.format(types=", ".join(TASK_TYPES), tools=", ".join(sorted(KNOWN_TOOLS)))
    cost = 0.0
    rounds = 0
    questions_asked = 0
    fixed: list[list[str]] = []
    problems: list[str] = []
    while rounds < MAX_ROUNDS:
        try:
            answer = await ask(
                _question(goal, context or [], notes),
                SCHEMA,
                system=system,
                cwd=repo,
                model=model,
                max_budget_usd=max_budget_usd,
                state_root=state_root,
            )
        except AskError as exc:
            cost += exc.cost_usd
            raise PlanningFailed(f"the planner failed: {exc.message}") from exc
        cost += answer.cost_usd
        data = answer.data if isinstance(answer.data, dict) else {}
        asked = [q for q in data.get("questions") or [] if isinstance(q, str) and q.strip()]
        if asked and asker is not None and questions_asked < MAX_QUESTION_ROUNDS:
            questions_asked += 1
            replies = await asker(asked)
            notes.append(
                "The person answered your questions:\n"
                + "\n".join(f"Q: {q}\nA: {a}" for q, a in zip(asked, replies, strict=False))
            )
            if questions_asked == MAX_QUESTION_ROUNDS:  # told, so it plans instead of asking
                notes.append(NO_QUESTIONS)
            continue
        rounds += 1
        track_data = to_track(data)
        text = render(track_data, goal)
        # Problems name the answer, not a file: nothing is written until a plan passes
        # (the answer itself is on the bus, in PLAN_PROPOSED).
        problems = check(text, repo, Path(f"<plan, round {rounds}>"))
        if not problems and taken is not None:
            problems = [why] if (why := taken(str(track_data["track"]))) else []
        if record is not None and isinstance(track_data.get("track"), str):
            record(
                str(track_data["track"]),
                "PLAN_PROPOSED",
                {"round": rounds, "problems": problems, "cost_usd": answer.cost_usd,
                 "track": track_data},
            )
        if not problems:
            return Planned(str(track_data["track"]), text, rounds, cost, fixed)
        fixed.append(problems)
        notes.append(
            f"Your plan (round {rounds}) has these problems; answer again with all of them "
            "fixed:\n" + "\n".join(f"- {p}" for p in problems)
        )
    shown = "\n".join(f"  - {p}" for p in problems)
    raise PlanningFailed(
        f"no plan passed the logic check in {MAX_ROUNDS} rounds (${cost:.4f} spent); "
        f"the last problems:\n{shown}"
    )
