"""Plan a track: parallel levels, the critical path, task priorities and file conflicts.

Execution is dependency-driven (a task starts when its own dependencies are done); the plan
says what *may* run together and what must not:

- ``levels``: topological levels; tasks in one level never depend on each other;
- ``priority``: for each task, the longest chain of work from it to the end of the track
  (its own estimated duration included; 1.0 per task without an estimate). The scheduler
  starts the ready task with the highest priority first;
- ``conflicts``: pairs of tasks whose declared ``files`` overlap (unless shared) and that the
  DAG does not already order; they never run at the same time. Globs are read as
  ``conductor.globs`` reads them (``*`` stays inside a directory, ``**/`` spans many), the
  same reading the file guard uses.

Everything is iterative and linear in tasks plus dependencies; file conflicts are found
through ``conductor.globs.overlapping_pairs``, an index on the literal prefix and tails of
each pattern, so tasks without files cost nothing and tasks in unrelated directories are never
compared.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conductor.globs import files_overlap as files_overlap
from conductor.globs import is_shared as is_shared
from conductor.globs import overlap as _overlap
from conductor.globs import overlapping_pairs as overlapping_pairs

if TYPE_CHECKING:
    from conductor.track import Track

patterns_overlap = _overlap
"""Whether two repository paths or globs could name the same file (``conductor.globs``)."""


def _conflicts(track: Track) -> list[tuple[str, str, list[str]]]:
    """Every pair of tasks whose files overlap, minus files shared by the track or a group."""
    items = [(t.id, t.files) for t in track.tasks if t.files]
    pairs = list(overlapping_pairs(items, track.shared_files))
    if not pairs or not track.parallel_groups:
        return pairs
    groups_of: dict[str, list[int]] = {}
    for gi, group in enumerate(track.parallel_groups):
        if group.shared_resources:
            for tid in group.tasks:
                groups_of.setdefault(tid, []).append(gi)
    files = {t.id: t.files for t in track.tasks}
    kept = []
    for a, b, overlap in pairs:
        for gi in set(groups_of.get(a, ())) & set(groups_of.get(b, ())):
            shared = [*track.shared_files, *track.parallel_groups[gi].shared_resources]
            overlap = files_overlap(files[a], files[b], shared)
            if not overlap:
                break
        else:
            kept.append((a, b, overlap))
    return kept


def conflicting_pairs(track: Track) -> dict[str, set[str]]:
    """For every task, the tasks it must never run concurrently with (overlapping files)."""
    result: dict[str, set[str]] = {t.id: set() for t in track.tasks}
    for a, b, _ in _conflicts(track):
        result[a].add(b)
        result[b].add(a)
    return result


@dataclass(frozen=True)
class Plan:
    """How a track can run."""

    levels: list[list[str]]
    """Topological levels, tasks in file order; a level's tasks never depend on each other."""
    critical_path: list[str]
    """The longest chain of dependent work, first task first."""
    critical_length: float
    """Its length: estimated durations in seconds, 1.0 per task without an estimate."""
    conflicts: list[tuple[str, str, list[str]]]
    """``(a, b, patterns)``: tasks with overlapping files that the DAG does not order."""
    priority: dict[str, float]
    """Longest remaining path from each task to the end of the track, the task included."""


def _duration(value: float | None) -> float:
    return value if value is not None else 1.0


def make_plan(track: Track) -> Plan:
    """Levels, priorities, critical path and conflicts of ``track`` (linear time)."""
    tasks = track.tasks
    ids = [t.id for t in tasks]
    position = {tid: i for i, tid in enumerate(ids)}
    dependents: dict[str, list[str]] = {tid: [] for tid in ids}
    pending: dict[str, int] = {}
    for t in tasks:
        pending[t.id] = len(t.depends_on)
        for dep in t.depends_on:
            dependents[dep].append(t.id)
    order: list[str] = []
    ready = deque(t.id for t in tasks if not t.depends_on)
    while ready:
        tid = ready.popleft()
        order.append(tid)
        for child in dependents[tid]:
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)

    by_id = {t.id: t for t in tasks}
    level: dict[str, int] = {}
    for tid in order:
        level[tid] = max((level[d] + 1 for d in by_id[tid].depends_on), default=0)
    levels: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for tid in ids:
        levels[level[tid]].append(tid)

    priority: dict[str, float] = {}
    for tid in reversed(order):
        tail = max((priority[c] for c in dependents[tid]), default=0.0)
        priority[tid] = _duration(by_id[tid].estimated_duration) + tail
    priority = {tid: priority[tid] for tid in ids}

    critical: list[str] = []
    if ids:
        current = max(ids, key=lambda tid: (priority[tid], -position[tid]))
        critical.append(current)
        while dependents[current]:
            current = max(dependents[current], key=lambda c: (priority[c], -position[c]))
            critical.append(current)
    critical_length = priority[critical[0]] if critical else 0.0

    conflicts = _unordered(_conflicts(track), by_id, order)
    return Plan(levels, critical, critical_length, conflicts, priority)


def _unordered(
    pairs: list[tuple[str, str, list[str]]], by_id: dict[str, Any], order: list[str]
) -> list[tuple[str, str, list[str]]]:
    """Drop pairs where one task depends (transitively) on the other: they never overlap.

    Ancestry among the tasks in ``pairs`` is kept as one bitset per task, filled in
    topological order: linear in tasks plus dependencies, times (pair tasks / 64) words.
    """
    if not pairs:
        return pairs
    bit: dict[str, int] = {}
    for a, b, _ in pairs:
        for tid in (a, b):
            if tid not in bit:
                bit[tid] = 1 << len(bit)
    ancestors: dict[str, int] = {}
    for tid in order:
        mask = 0
        for dep in by_id[tid].depends_on:
            mask |= ancestors[dep] | bit.get(dep, 0)
        ancestors[tid] = mask
    return [
        (a, b, files)
        for a, b, files in pairs
        if not ancestors[b] & bit[a] and not ancestors[a] & bit[b]
    ]


# --------------------------------------------------------------------------- rendering


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1h30m``; ``45`` -> ``45s``; ``0.5`` -> ``0.5s``."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts)


def _length_text(track: Track, plan: Plan) -> str:
    count = len(plan.critical_path)
    text = f"{count} task{'s' if count != 1 else ''}"
    if any(track.task(tid).estimated_duration is not None for tid in plan.critical_path):
        text += f", estimated {format_duration(plan.critical_length)}"
    return text


def render_text(track: Track, plan: Plan) -> str:
    """The plan for a person: levels, critical path, conflicts, declared groups."""
    lines = [f"track {track.id}: {len(track.tasks)} tasks, max_parallel {track.max_parallel}"]
    if track.description:
        lines.append(f"  {track.description.strip().splitlines()[0]}")
    lines.append("")
    lines.append("parallel levels (a task starts as soon as its own dependencies are done):")
    width = len(str(len(plan.levels)))
    for number, level in enumerate(plan.levels, 1):
        lines.append(f"  {number:>{width}}. {', '.join(level)}")
    lines.append("")
    lines.append(f"critical path ({_length_text(track, plan)}):")
    lines.append(f"  {' -> '.join(plan.critical_path)}")
    lines.append("")
    if plan.conflicts:
        lines.append("never run together (overlapping files):")
        for a, b, files in plan.conflicts:
            lines.append(f"  {a}, {b} ({', '.join(files)})")
    else:
        lines.append("never run together: no file conflicts")
    if track.parallel_groups:
        lines.append("")
        lines.append("declared parallel groups:")
        for group in track.parallel_groups:
            extra = []
            if group.conflict_free:
                extra.append("conflict-free")
            if group.shared_resources:
                extra.append(f"shared: {', '.join(group.shared_resources)}")
            suffix = f" ({'; '.join(extra)})" if extra else ""
            lines.append(f"  {group.id}: {', '.join(group.tasks)}{suffix}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_dot(track: Track, plan: Plan) -> str:
    """Graphviz DOT: dependency edges, the critical path in bold red, conflicts dashed."""
    critical = set(plan.critical_path)
    critical_edges = set(zip(plan.critical_path, plan.critical_path[1:], strict=False))
    out = [f"digraph {_dot_quote(track.id)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for task in track.tasks:
        label = task.id if task.name == task.id else f"{task.id}\n{task.name}"
        style = ", penwidth=2, color=red" if task.id in critical else ""
        out.append(f"  {_dot_quote(task.id)} [label={_dot_quote(label)}{style}];")
    for task in track.tasks:
        for dep in task.depends_on:
            style = " [penwidth=2, color=red]" if (dep, task.id) in critical_edges else ""
            out.append(f"  {_dot_quote(dep)} -> {_dot_quote(task.id)}{style};")
    for a, b, files in plan.conflicts:
        label = _dot_quote(", ".join(files))
        out.append(
            f"  {_dot_quote(a)} -> {_dot_quote(b)} [dir=none, style=dashed, color=gray,"
            f" constraint=false, label={label}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


def _mermaid_label(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def render_mermaid(track: Track, plan: Plan) -> str:
    """A Mermaid flowchart; nodes are ``t0, t1, ...`` so any task id is safe."""
    node = {t.id: f"t{i}" for i, t in enumerate(track.tasks)}
    out = ["flowchart LR"]
    for task in track.tasks:
        label = task.id if task.name == task.id else f"{task.id}: {task.name}"
        out.append(f'  {node[task.id]}["{_mermaid_label(label)}"]')
    for task in track.tasks:
        for dep in task.depends_on:
            out.append(f"  {node[dep]} --> {node[task.id]}")
    for a, b, _ in plan.conflicts:
        out.append(f"  {node[a]} -.- {node[b]}")
    if plan.critical_path:
        out.append("  classDef critical stroke:#d00,stroke-width:3px;")
        out.append(f"  class {','.join(node[t] for t in plan.critical_path)} critical;")
    return "\n".join(out) + "\n"


def plan_dict(track: Track, plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data."""
    return {
        "track": track.id,
        "tasks": len(track.tasks),
        "max_parallel": track.max_parallel,
        "levels": plan.levels,
        "critical_path": plan.critical_path,
        "critical_length": plan.critical_length,
        "conflicts": [{"tasks": [a, b], "files": files} for a, b, files in plan.conflicts],
        "priority": plan.priority,
        "parallel_groups": [g.model_dump(mode="json") for g in track.parallel_groups],
    }


def render_json(track: Track, plan: Plan) -> str:
    """The plan as one JSON document."""
    return json.dumps(plan_dict(track, plan), indent=2, ensure_ascii=False) + "\n"
