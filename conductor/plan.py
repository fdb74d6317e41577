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

Everything is iterative and linear in tasks plus dependencies. File conflicts are kept by
class (``ConflictClasses``): tasks with the same set of ``files`` (and the same groups with
``shared_resources``) form one class, and overlap is decided once per pair of distinct classes
through ``conductor.globs.overlapping_index_pairs``, an index on the literal prefix and tails of
each pattern, so tasks without files cost nothing, tasks in unrelated directories are never
compared, and 400 tasks sharing one glob cost one class, not 79,800 pairs. The scheduler checks
conflicts per class (running attempts per class). A plan lists conflicting pairs only when at
most ``PAIRS_LISTED`` pairs conflict; above that it is ``summarised``: conflicts are shown by
set of tasks with the same files (``conflict_sets``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import TYPE_CHECKING, Any

from conductor.globs import files_overlap as files_overlap
from conductor.globs import is_shared as is_shared
from conductor.globs import overlap as _overlap
from conductor.globs import overlapping_index_pairs
from conductor.globs import overlapping_pairs as overlapping_pairs

if TYPE_CHECKING:
    from conductor.track import Track

patterns_overlap = _overlap
"""Whether two repository paths or globs could name the same file (``conductor.globs``)."""


PAIRS_LISTED = 1000
"""Above this many conflicting pairs a plan summarises conflicts by file set instead of
listing every pair (400 tasks sharing one glob are 79,800 pairs)."""


@dataclass(frozen=True)
class ConflictClasses:
    """Tasks grouped by what they may change, and which groups must never run side by side.

    Tasks with the same ``files`` (as a set) that belong to the same parallel groups with
    ``shared_resources`` form one class. Overlap is decided once per pair of classes, so
    hundreds of tasks sharing a glob cost one comparison, and memory grows with classes and
    their conflicts, never with pairs of tasks. Tasks without files are in no class.
    """

    members: list[list[str]]
    """Each class's tasks in file order; classes in the order of their first task."""
    files: list[list[str]]
    """Each class's files, as its first task lists them."""
    of_task: dict[str, int]
    """Task id -> its class."""
    meets: list[dict[int, list[str]]]
    """For each class, the classes whose tasks its tasks never run beside (itself included
    when two of its own tasks would conflict) -> the patterns through which they overlap."""

    def conflicting(self, tid: str) -> set[str]:
        """The tasks ``tid`` must never run beside."""
        c = self.of_task.get(tid)
        if c is None:
            return set()
        out = {other for d in self.meets[c] for other in self.members[d]}
        out.discard(tid)
        return out

    def pair_count(self) -> int:
        """How many pairs of tasks conflict (the DAG's ordering not taken into account)."""
        total = 0
        for c, meets in enumerate(self.meets):
            for d in meets:
                if d == c:
                    n = len(self.members[c])
                    total += n * (n - 1) // 2
                elif d > c:
                    total += len(self.members[c]) * len(self.members[d])
        return total

    def pairs(self, position: dict[str, int]) -> list[tuple[str, str, list[str]]]:
        """Every conflicting pair ``(a, b, patterns)``, ``a`` before ``b`` in ``position``,
        sorted by position; quadratic in a class's size, so mind ``pair_count`` first."""
        found: list[tuple[int, int, str, str, list[str]]] = []
        for c, meets in enumerate(self.meets):
            for d, labels in meets.items():
                if d < c:
                    continue
                for i, a in enumerate(self.members[c]):
                    others = self.members[c][i + 1 :] if d == c else self.members[d]
                    for b in others:
                        x, y = (a, b) if position[a] < position[b] else (b, a)
                        found.append((position[x], position[y], x, y, labels))
        found.sort(key=lambda row: (row[0], row[1]))
        return [(x, y, list(labels)) for _, _, x, y, labels in found]


def conflict_classes(track: Track) -> ConflictClasses:
    """The conflict classes of ``track``: overlapping files, minus files shared by the track
    or (between their own members) by a parallel group."""
    relief: dict[str, list[int]] = {}
    for gi, group in enumerate(track.parallel_groups):
        if group.shared_resources:
            for tid in dict.fromkeys(group.tasks):
                relief.setdefault(tid, []).append(gi)
    index: dict[tuple[frozenset[str], tuple[int, ...]], int] = {}
    members: list[list[str]] = []
    files: list[list[str]] = []
    groups: list[tuple[int, ...]] = []
    of_task: dict[str, int] = {}
    for t in track.tasks:
        if not t.files:
            continue
        key = (frozenset(t.files), tuple(relief.get(t.id, ())))
        c = index.get(key)
        if c is None:
            c = index[key] = len(members)
            members.append([])
            files.append(list(t.files))
            groups.append(key[1])
        members[c].append(t.id)
        of_task[t.id] = c

    def relieved(a: int, b: int, overlap: list[str]) -> list[str]:
        """``overlap`` unless a group holding both classes shares all of it."""
        for gi in set(groups[a]) & set(groups[b]):
            shared = [*track.shared_files, *track.parallel_groups[gi].shared_resources]
            overlap = files_overlap(files[a], files[b], shared)
            if not overlap:
                return []
        return overlap

    meets: list[dict[int, list[str]]] = [{} for _ in members]
    for c in range(len(members)):
        if len(members[c]) > 1:
            overlap = relieved(c, c, files_overlap(files[c], files[c], track.shared_files))
            if overlap:
                meets[c][c] = overlap
    for a, b, overlap in overlapping_index_pairs(files, track.shared_files):
        overlap = relieved(a, b, overlap)
        if overlap:
            meets[a][b] = overlap
            meets[b][a] = overlap
    for c, row in enumerate(meets):  # in class order, as pairs are listed
        meets[c] = dict(sorted(row.items()))
    return ConflictClasses(members, files, of_task, meets)


def conflicting_pairs(track: Track) -> dict[str, set[str]]:
    """For every task, the tasks it must never run concurrently with (overlapping files).

    Quadratic in the size of a group of tasks sharing files: the scheduler uses
    ``conflict_classes`` instead.
    """
    classes = conflict_classes(track)
    return {t.id: classes.conflicting(t.id) for t in track.tasks}


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
    """``(a, b, patterns)``: tasks with overlapping files that the DAG does not order. Empty
    when ``summarised``: more than ``PAIRS_LISTED`` pairs conflict."""
    priority: dict[str, float]
    """Longest remaining path from each task to the end of the track, the task included."""
    classes: ConflictClasses = field(default_factory=lambda: ConflictClasses([], [], {}, []))
    """Every conflict, by class of tasks with the same files (what the scheduler checks)."""
    summarised: bool = False
    """Too many pairs conflict to list: renderers show ``classes`` instead of ``conflicts``
    (there, pairs the DAG orders are not taken out: they never run together anyway)."""


def _duration(value: float | None) -> float:
    return value if value is not None else 1.0


def make_plan(track: Track) -> Plan:
    """Levels, priorities, critical path and conflicts of ``track`` (linear time)."""
    tasks = track.tasks
    ids = [t.id for t in tasks]
    position = {tid: i for i, tid in enumerate(ids)}
    dependents: dict[str, list[str]] = {tid: [] for tid in ids}
    for t in tasks:
        for dep in t.depends_on:
            dependents[dep].append(t.id)
    order = list(TopologicalSorter({t.id: t.depends_on for t in tasks}).static_order())

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

    classes = conflict_classes(track)
    summarised = classes.pair_count() > PAIRS_LISTED
    conflicts = [] if summarised else _unordered(classes.pairs(position), by_id, order)
    return Plan(levels, critical, critical_length, conflicts, priority, classes, summarised)


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
    if plan.summarised:
        sets = conflict_sets(plan)
        tasks = sum(len(s["tasks"]) for s in sets)
        lines.append(
            f"never run together (overlapping files; {plan.classes.pair_count():,} pairs among"
            f" {tasks:,} tasks, shown by sets of tasks with the same files):"
        )
        for s in sets:
            ids = s["tasks"]
            shown = ", ".join(ids[:SHOWN_PER_SET])
            if len(ids) > SHOWN_PER_SET:
                shown += f", … and {len(ids) - SHOWN_PER_SET:,} more"
            count = f"{len(ids):,} task{'s' if len(ids) != 1 else ''}"
            lines.append(f"  set {s['set']}: {count} ({shown}) changing {', '.join(s['files'])}")
            rules = ["never two at once"] if s["alone"] else []
            if s["with"]:
                sets_word = "sets" if len(s["with"]) > 1 else "set"
                others = ", ".join(str(w["set"]) for w in s["with"])
                rules.append(f"never beside {sets_word} {others}")
            lines.append(f"    {'; '.join(rules)}")
    elif plan.conflicts:
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


SHOWN_PER_SET = 5
"""Task ids a summarised text plan shows per set; JSON lists them all."""


def conflict_sets(plan: Plan) -> list[dict[str, Any]]:
    """Conflicts by set of tasks with the same files, numbered from 1, sets with none left
    out: ``{"set", "tasks", "files", "alone", "with": [{"set", "files"}]}``. ``alone``: two
    of the set's own tasks never run at once; ``with``: the sets it never runs beside, and
    the patterns through which they overlap."""
    classes = plan.classes
    number: dict[int, int] = {}
    for c, meets in enumerate(classes.meets):
        if meets:
            number[c] = len(number) + 1
    return [
        {
            "set": number[c],
            "tasks": classes.members[c],
            "files": classes.files[c],
            "alone": c in classes.meets[c],
            "with": [
                {"set": number[d], "files": files}
                for d, files in classes.meets[c].items()
                if d != c
            ],
        }
        for c in number
    ]


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
    if plan.summarised:
        out.append(f"  // {plan.classes.pair_count():,} conflicting pairs: see --format json")
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
    if plan.summarised:
        out.append(f"  %% {plan.classes.pair_count():,} conflicting pairs: see --format json")
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
        "conflicts_summarised": plan.summarised,
        "conflict_sets": conflict_sets(plan),
        "priority": plan.priority,
        "parallel_groups": [g.model_dump(mode="json") for g in track.parallel_groups],
    }


def render_json(track: Track, plan: Plan) -> str:
    """The plan as one JSON document."""
    return json.dumps(plan_dict(track, plan), indent=2, ensure_ascii=False) + "\n"
