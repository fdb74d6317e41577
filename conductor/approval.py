"""Approval belongs to one run: what a run shows a person before it starts anything.

A run with approval (``run --approve``, or ``approval: required`` in the track) posts
APPROVAL_REQUESTED after validation and recovery, with the plan of what it is about to do as
its payload, and dispatches nothing until the first APPROVE or REJECT for the whole track that
follows that message (``conductor.state``). An APPROVE posted before the run asked, by an
earlier run or last week, answers nothing. The answer comes from the prompt on a TTY
(``conductor run`` asks y/n, and a reason for no) or from another shell: ``conductor approve
TRACK`` / ``conductor reject TRACK -m REASON``, which post on the bus. A REJECT ends the run
with exit 6 and its reason on the bus; ``approval_timeout`` ends an unanswered wait the same
way, the conductor posting the REJECT itself.

The cost estimate is an upper bound from what the track caps: every Claude task's
``max_budget_usd`` (which caps all its attempts together), never more than the track's
``budget_usd``. Claude tasks without a cap are listed as uncapped, with their model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.bus import Bus
    from conductor.messages import Message
    from conductor.paths import StateDir
    from conductor.track import Track


def summary(track: Track, repo: Path, to_run: list[str]) -> dict[str, Any]:
    """What a run of ``track`` that will run the tasks ``to_run`` shows before it starts."""
    from conductor.agents import AgentError, AgentRegistry
    from conductor.plan import make_plan

    wanted = set(to_run)
    registry = AgentRegistry(track, repo)
    tasks: list[dict[str, Any]] = []
    agents: dict[str, str] = {}
    capped = 0.0
    uncapped: list[str] = []
    for task in track.tasks:
        if task.id not in wanted:
            continue
        row: dict[str, Any] = {"id": task.id, "files": task.files, "verify": task.verify}
        if task.run:
            row["run"] = task.run
        else:
            try:
                agent = registry.resolve(task)
            except AgentError as exc:
                row["agent"] = task.agent
                row["agent_error"] = exc.message
            else:
                row["agent"] = agent.name
                agents[agent.name] = agent.source
                row["model"] = task.model or agent.model or track.model
            if task.max_budget_usd is None:
                uncapped.append(task.id)
            else:
                capped += task.max_budget_usd  # all its attempts together
        tasks.append(row)
    most = capped if not uncapped else None
    if track.budget_usd is not None:
        most = track.budget_usd if most is None else min(most, track.budget_usd)
    levels = [[tid for tid in level if tid in wanted] for level in make_plan(track).levels]
    plan = {
        "track": track.id,
        "tasks": tasks,
        "levels": [level for level in levels if level],
        "agents": agents,
        "estimate": {"at_most_usd": most, "capped_usd": capped, "uncapped": uncapped},
        "budget_usd": track.budget_usd,
    }
    return _fitted(plan)


MAX_SUMMARY_BYTES = 256 * 1024
"""Largest plan put on the bus; a bigger one keeps the first tasks' details and the counts
(``conductor plan TRACK`` shows the rest)."""


def _fitted(plan: dict[str, Any]) -> dict[str, Any]:
    """``plan``, cut to ``MAX_SUMMARY_BYTES`` of JSON by dropping later tasks' details."""
    import json

    def size(data: dict[str, Any]) -> int:
        return len(json.dumps(data, ensure_ascii=False).encode())

    if size(plan) <= MAX_SUMMARY_BYTES:
        return plan
    tasks = plan["tasks"]
    levels = plan["levels"]
    keep = len(tasks)
    while keep > 0:
        keep //= 2
        cut = {
            **plan,
            "tasks": tasks[:keep],
            "levels": [level[:20] for level in levels[:50]],
            "more_tasks": len(tasks) - keep,
            "uncapped_count": len(plan["estimate"]["uncapped"]),
            "estimate": {**plan["estimate"], "uncapped": plan["estimate"]["uncapped"][:50]},
        }
        if size(cut) <= MAX_SUMMARY_BYTES:
            return cut
    return cut


def render(track_id: str, plan: dict[str, Any]) -> str:
    """The summary for a person, as ``run`` prints it before asking."""
    count = len(plan["tasks"]) + int(plan.get("more_tasks", 0))
    tasks = "1 task" if count == 1 else f"{count} tasks"
    lines = [f"track {track_id}: {tasks} to run, waiting for approval"]
    lines.append("groups (each starts when its own dependencies are done):")
    for number, level in enumerate(plan["levels"], 1):
        lines.append(f"  {number}. {', '.join(level)}")
    if plan["agents"]:
        lines.append("agents:")
        for name, source in plan["agents"].items():
            lines.append(f"  {name} ({source})")
    lines.append("tasks:")
    for row in plan["tasks"]:
        doer = f"$ {row['run']}" if "run" in row else f"agent {row.get('agent') or 'default'}"
        if row.get("model"):
            doer += f", model {row['model']}"
        lines.append(f"  {row['id']}: {doer}")
        if row.get("agent_error"):
            lines.append(f"    agent problem: {row['agent_error']}")
        if row["files"]:
            lines.append(f"    files: {', '.join(row['files'])}")
        for command in row["verify"]:
            lines.append(f"    verify: {command}")
    if plan.get("more_tasks"):
        lines.append(f"  ... and {plan['more_tasks']} more (`conductor plan TRACK` lists them)")
    estimate = plan["estimate"]
    if not any("run" not in row for row in plan["tasks"]):
        pass  # shell commands only: nothing is priced
    elif estimate["at_most_usd"] is not None:
        lines.append(f"cost: at most ${estimate['at_most_usd']:.2f}")
    elif estimate["uncapped"]:
        lines.append(
            f"cost: ${estimate['capped_usd']:.2f} capped, plus uncapped tasks "
            f"{', '.join(estimate['uncapped'])} (no max_budget_usd, no budget_usd)"
        )
    return "\n".join(lines) + "\n"


def answer(
    bus: Bus,
    cache_dir: Path,
    *,
    approved: bool,
    reason: str,
    by: str,
    state_dir: StateDir | None = None,
) -> Message:
    """Answer the run waiting for approval on ``bus``: post APPROVE or REJECT for the track.

    Raises ``UserError`` when no run is waiting: an answer must follow the request it answers
    (a stale APPROVE would count for nothing, so it is refused rather than posted). Given
    ``state_dir``, a request whose conductor is gone (killed while it waited) is not waiting
    either: the next run asks again.
    """
    from conductor.errors import UserError
    from conductor.messages import MessageType
    from conductor.state import load_state

    state = load_state(bus, cache_dir, bus.track)
    if state.approval != "pending":
        raise UserError(
            f"no run of track {bus.track!r} is waiting for approval "
            "(`conductor run --approve` asks for it)"
        )
    if state_dir is not None:
        from conductor.liveness import runner

        who = runner(state_dir, bus.track, runs=state.runs, ended=state.ended)
        if who.status != "running":
            raise UserError(
                f"no run of track {bus.track!r} is waiting for approval: the conductor that "
                "asked is gone (`conductor run` asks again)"
            )
    kind = MessageType.APPROVE if approved else MessageType.REJECT
    return bus.post(kind, payload={"reason": reason, "by": by})
