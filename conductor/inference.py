"""Agents inferred for tasks that name one defined nowhere (opt-in: ``--adhoc``).

A task's agent is normally defined in the track, in ``.claude/agents/`` or in
``~/.claude/agents/`` (``conductor.agents``); any other name is a validation error with a
did-you-mean. With ``--adhoc`` (or ``adhoc: true`` in the track) a run instead infers every
missing agent in one batched question (``conductor.asking``), from the tasks that name it:
role, goal, system prompt, tools and model. Each answer is checked (lengths, known tools,
a system prompt present). An agent the answer leaves out or gets wrong, or every agent when
the question fails, gets the named fallback: the stand-in made from its name alone
(``AgentRegistry.fallback``), and the run says so.

Each inferred agent is posted as ``AGENT_INFERRED`` (payload: the definition, ``cost_usd``
its share of the question, ``fallback`` with the reason when it is one), so resume and
later runs take it from the bus and never ask again; ``conductor agents promote TRACK NAME``
writes it to ``.claude/agents/NAME.md`` to keep it for good. ``--agent-role NAME=ROLE`` and
``--agent-goal NAME=GOAL`` fix one agent's role or goal: they are given to the question and
override its answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conductor.agents import AgentRegistry
from conductor.track import Agent, Task, Track

MAX_ROLE = 200
"""Longest role accepted from inference, in characters."""
MAX_GOAL = 500
"""Longest goal accepted from inference, in characters."""
KNOWN_TOOLS = frozenset(
    {
        "Bash",
        "Edit",
        "Glob",
        "Grep",
        "MultiEdit",
        "NotebookEdit",
        "Read",
        "Task",
        "TodoWrite",
        "WebFetch",
        "WebSearch",
        "Write",
    }
)
"""Claude Code's built-in tools an inferred agent may be given."""
MODELS = ("haiku", "sonnet", "opus")
"""Models an inferred agent may pick, lightest first."""
FALLBACK = "Fallback made from the name"
"""How a fallback agent's description begins (``agents promote`` warns of one)."""

SYSTEM = """You design specialist software agents for a team that works on one repository.
Read the repository as much as you need (Read, Grep, Glob). For each agent name you are given,
write a definition fit for the tasks that name it: a role (a few words, at most 200
characters), a goal (at most 500 characters), a system prompt that states the specialism,
how to work in this repository and what done means, the tools it needs from: {tools}, and
a model by the weight of its tasks: haiku for small mechanical work, sonnet for most work,
opus for hard design. Answer with exactly one definition per name."""

AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "goal": {"type": "string"},
        "system_prompt": {"type": "string"},
        "tools": {"type": "array", "items": {"type": "string"}},
        "model": {"type": "string", "enum": list(MODELS)},
    },
    "required": ["name", "role", "goal", "system_prompt", "tools", "model"],
}
"""One agent definition, as inference and the planner ask for it."""

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"agents": {"type": "array", "items": AGENT_SCHEMA}},
    "required": ["agents"],
}


@dataclass
class Inferred:
    """The agents one batched question produced."""

    agents: dict[str, Agent] = field(default_factory=dict)
    """Name → definition (fallbacks included)."""
    fallbacks: dict[str, str] = field(default_factory=dict)
    """Name → why the fallback was used."""
    cost_usd: float = 0.0
    """What the question cost."""


def missing(track: Track, repo: Path) -> dict[str, list[Task]]:
    """Agent names tasks use that are defined nowhere (nor inferred yet), with their tasks."""
    probe = track.model_copy(update={"adhoc": False})
    registry = AgentRegistry(probe, repo)
    known = set(registry.known_names()) | set(track.inferred_agents)
    out: dict[str, list[Task]] = {}
    for task in track.tasks:
        name = (task.agent or "").strip()
        if task.run or not name or name in known:
            continue
        out.setdefault(name, []).append(task)
    return out


def question(needed: dict[str, list[Task]], overrides: dict[str, dict[str, str]]) -> str:
    """The batched question: each missing name with the tasks that use it."""
    parts = ["Define these agents:"]
    for name, tasks in needed.items():
        parts.append(f"\n## {name}")
        for key, value in overrides.get(name, {}).items():
            parts.append(f"(its {key} is fixed: {value})")
        for task in tasks:
            parts.append(f"- task {task.id} ({task.type}): {task.name}")
            for criterion in task.acceptance:
                parts.append(f"  - accept when: {criterion}")
            if task.files:
                parts.append(f"  - files: {', '.join(task.files)}")
    return "\n".join(parts)


def check(entry: Any) -> tuple[Agent | None, str]:
    """An answer's entry as an ``Agent``, or None and why it is refused."""
    if not isinstance(entry, dict):
        return None, "not an object"
    role = str(entry.get("role") or "").strip()
    goal = str(entry.get("goal") or "").strip()
    prompt = str(entry.get("system_prompt") or "").strip()
    tools = entry.get("tools") or []
    model = entry.get("model")
    if not role or len(role) > MAX_ROLE:
        return None, f"role must be 1 to {MAX_ROLE} characters"
    if not goal or len(goal) > MAX_GOAL:
        return None, f"goal must be 1 to {MAX_GOAL} characters"
    if not prompt:
        return None, "no system prompt"
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        return None, "tools must be a list of names"
    unknown = sorted(set(tools) - KNOWN_TOOLS)
    if unknown:
        return None, f"unknown tools: {', '.join(unknown)}"
    if model is not None and model not in MODELS:
        return None, f"model must be one of {', '.join(MODELS)}"
    agent = Agent(
        name=str(entry["name"]),
        role=role,
        goal=goal,
        system_prompt=prompt,
        tools=list(dict.fromkeys(tools)) or None,
        model=model,
        description=f"Inferred for this track: {role}",
    )
    return agent, ""


def fallback_agent(track: Track, repo: Path, name: str, task: Task) -> Agent:
    """The named fallback: the stand-in made from the name alone."""
    stand_in = AgentRegistry(track, repo).fallback(name, task)
    return Agent(
        name=name,
        role=stand_in.role,
        goal=stand_in.goal,
        system_prompt=stand_in.system_prompt,
        description=f"{FALLBACK} {name!r}: inference gave no usable answer.",
    )


async def infer(
    track: Track,
    repo: Path,
    needed: dict[str, list[Task]],
    *,
    overrides: dict[str, dict[str, str]] | None = None,
    max_budget_usd: float | None = None,
    log_path: Path | None = None,
    state_root: Path | None = None,
) -> Inferred:
    """Infer every agent in ``needed`` with one question; fall back where it fails. The
    session reads the repository, never ``state_root`` (conductor's state)."""
    from conductor.asking import AskError, ask

    overrides = overrides or {}
    result = Inferred()
    answers: dict[str, Any] = {}
    try:
        answer = await ask(
            question(needed, overrides),
            SCHEMA,
            system=SYSTEM.format(tools=", ".join(sorted(KNOWN_TOOLS))),
            cwd=repo,
            model=track.model,
            max_budget_usd=max_budget_usd,
            log_path=log_path,
            state_root=state_root,
        )
    except AskError as exc:
        result.cost_usd = exc.cost_usd
        failure = f"inference failed: {exc.message}"
    else:
        result.cost_usd = answer.cost_usd
        failure = "inference left it out"
        entries = answer.data.get("agents") if isinstance(answer.data, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            name = entry.get("name") if isinstance(entry, dict) else None
            if isinstance(name, str) and name in needed:  # a list names nothing asked for
                answers.setdefault(name, entry)
    for name, tasks in needed.items():
        agent, why = check(answers[name]) if name in answers else (None, failure)
        if agent is None:
            agent = fallback_agent(track, repo, name, tasks[0])
            result.fallbacks[name] = why
        fixed = overrides.get(name, {})
        if fixed:
            agent = agent.model_copy(update=fixed)
        result.agents[name] = agent
    return result


def parse_overrides(roles: tuple[str, ...], goals: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``--agent-role NAME=ROLE`` / ``--agent-goal NAME=GOAL`` as name → {role, goal}."""
    from conductor.errors import UserError

    out: dict[str, dict[str, str]] = {}
    for key, values, limit in (("role", roles, MAX_ROLE), ("goal", goals, MAX_GOAL)):
        for value in values:
            name, sep, text = value.partition("=")
            if not sep or not name.strip() or not text.strip():
                raise UserError(f"--agent-{key} wants NAME={key.upper()}, got {value!r}")
            if len(text.strip()) > limit:
                raise UserError(f"--agent-{key} for {name.strip()!r}: at most {limit} characters")
            out.setdefault(name.strip(), {})[key] = text.strip()
    return out


def check_overrides(overrides: dict[str, dict[str, str]], track: Track, repo: Path) -> None:
    """Refuse ``--agent-role`` / ``--agent-goal`` for a name no task needs inferred: it would
    change nothing, and is most likely a typo."""
    from conductor.errors import UserError

    needed = missing(track.model_copy(update={"inferred_agents": {}}), repo)
    for name in overrides:
        if name not in needed:
            wanted = ", ".join(sorted(needed)) or "none"
            raise UserError(
                f"--agent-role/--agent-goal {name}=...: no task of track {track.id} names an "
                f"agent {name!r} defined nowhere (the agents it infers: {wanted})"
            )


def promote(definition: dict[str, Any], repo: Path, *, force: bool = False) -> Path:
    """Write an inferred agent to ``.claude/agents/NAME.md`` in Claude Code's format."""
    import yaml

    from conductor.agents import CLAUDE_AGENTS_DIR
    from conductor.errors import UserError
    from conductor.paths import check_name

    name = check_name(str(definition["name"]), "agent name")
    path = repo / CLAUDE_AGENTS_DIR / f"{name}.md"
    if path.exists() and not force:
        raise UserError(f"{path} exists; pass --force to replace it")
    meta: dict[str, Any] = {
        "name": name,
        "description": definition.get("role") or definition.get("description") or name,
    }
    if definition.get("tools"):
        meta["tools"] = ", ".join(definition["tools"])
    if definition.get("model"):
        meta["model"] = definition["model"]
    body = str(definition.get("system_prompt") or "").strip()
    if definition.get("goal"):
        body += f"\n\nGoal: {definition['goal']}"
    text = f"---\n{yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)}---\n\n{body}\n"
    from conductor.atomic import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o644)
    return path


def inferred_on_bus(repo: Path, track_id: str, state_root: Path | None = None) -> dict[str, Any]:
    """The agent definitions earlier runs of ``track_id`` inferred (none when it never ran)."""
    from conductor.bus import Bus
    from conductor.paths import StateDir
    from conductor.state import load_state

    sd = StateDir.for_track(repo, track_id, state_root)
    if not sd.bus.is_dir():
        return {}
    with Bus.for_state(sd, track_id) as bus:
        return load_state(bus, sd.cache, track_id).inferred_agents


def notes(track: Track, repo: Path, state_root: Path | None = None) -> list[str]:
    """What ``validate`` and ``run`` say about inferred agents of an ad hoc track."""
    if not track.adhoc:
        return []
    out = []
    earlier = inferred_on_bus(repo, track.id, state_root)
    for name, tasks in missing(track, repo).items():
        ids = ", ".join(task.id for task in tasks)
        if name in earlier:
            out.append(
                f"agent {name!r} (used by {ids}) was inferred by an earlier run and is reused; "
                f"`conductor agents promote {track.id} {name}` keeps it for good"
            )
        else:
            out.append(f"agent {name!r} (used by {ids}) will be inferred when the track runs")
    return out
