"""Plan a track: parallel levels, the critical path, task priorities and file conflicts.

Execution is dependency-driven (a task starts when its own dependencies are done); the plan
says what *may* run together and what must not:

- ``levels``: topological levels; tasks in one level never depend on each other;
- ``priority``: for each task, the longest chain of work from it to the end of the track
  (its own estimated duration included; 1.0 per task without an estimate). The scheduler
  starts the ready task with the highest priority first;
- ``conflicts``: pairs of tasks whose declared ``files`` overlap (unless shared) and that the
  DAG does not already order; they never run at the same time.

Everything is iterative and linear in tasks plus dependencies; file conflicts are found
through an index on the literal directory prefix of each pattern, so tasks without files cost
nothing and tasks in unrelated directories are never compared.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.track import Track

_GLOB_CHARS = frozenset("*?[")
_GLOB_RE = re.compile(r"[*?[]")

# A glob token: ("*",) any string, ("?",) any one character, ("=", c) the character c,
# ("[", negated, ranges) one character in (or, negated, not in) the inclusive code ranges.
_Token = tuple[Any, ...]
_STAR: _Token = ("*",)


def _is_glob(pattern: str) -> bool:
    return _GLOB_RE.search(pattern) is not None


def _normalise(pattern: str) -> str:
    """Drop a trailing ``/`` (a directory is its own prefix); the repository root is ``*``."""
    stripped = pattern.rstrip("/")
    return stripped if stripped not in ("", ".") else "*"


@lru_cache(maxsize=65536)
def _tokens(pattern: str) -> tuple[_Token, ...]:
    """Tokenise a glob the way ``fnmatch`` reads it (``*`` also crosses ``/``)."""
    out: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if not out or out[-1] != _STAR:
                out.append(_STAR)
        elif ch == "?":
            out.append(("?",))
        elif ch == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal '['
                out.append(("=", "["))
                continue
            body = pattern[i:j]
            i = j + 1
            negated = body.startswith("!")
            if negated:
                body = body[1:]
            ranges: list[tuple[int, int]] = []
            k = 0
            while k < len(body):
                if k + 2 < len(body) and body[k + 1] == "-":
                    lo, hi = ord(body[k]), ord(body[k + 2])
                    if lo <= hi:
                        ranges.append((lo, hi))
                    k += 3
                else:
                    ranges.append((ord(body[k]), ord(body[k])))
                    k += 1
            out.append(("[", negated, tuple(ranges)))
        else:
            out.append(("=", ch))
    return tuple(out)


def _in_ranges(code: int, ranges: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= code <= hi for lo, hi in ranges)


def _chars_compatible(a: _Token, b: _Token) -> bool:
    """Whether one character can match both single-character tokens (conservatively)."""
    if a[0] == "?" or b[0] == "?":
        return True
    if a[0] == "=" and b[0] == "=":
        return bool(a[1] == b[1])
    if a[0] == "=":
        a, b = b, a
    if b[0] == "=":
        inside = _in_ranges(ord(b[1]), a[2])
        return bool(inside != a[1])
    if a[1] and b[1]:  # two negated sets always share some character
        return True
    if not a[1] and not b[1]:
        return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a[2] for lo2, hi2 in b[2])
    positive, negative = (b, a) if a[1] else (a, b)
    for lo, hi in positive[2]:
        if hi - lo > 256:
            return True
        if any(not _in_ranges(code, negative[2]) for code in range(lo, hi + 1)):
            return True
    return False


@lru_cache(maxsize=65536)
def _intersects(p: str, q: str) -> bool:
    """Whether some string matches both globs (a search over pairs of token positions)."""
    a, b = _tokens(p), _tokens(q)
    n, m = len(a), len(b)
    seen: set[tuple[int, int]] = set()
    stack = [(0, 0)]
    while stack:
        state = stack.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j = state
        if i == n and j == m:
            return True
        ta = a[i] if i < n else None
        tb = b[j] if j < m else None
        if ta == _STAR:
            stack.append((i + 1, j))
            if tb is not None and tb != _STAR:
                stack.append((i, j + 1))
        if tb == _STAR:
            stack.append((i, j + 1))
            if ta is not None and ta != _STAR:
                stack.append((i + 1, j))
        singles = ta is not None and tb is not None and ta != _STAR and tb != _STAR
        if singles and _chars_compatible(ta, tb):  # type: ignore[arg-type]
            stack.append((i + 1, j + 1))
    return False


def _may_be_dir(pattern: str) -> bool:
    """Whether a pattern may name a directory: written with a trailing ``/``, or a literal
    path whose last segment has no extension (``src/components``, ``docs``)."""
    if pattern.endswith("/"):
        return True
    norm = _normalise(pattern)
    return not _is_glob(norm) and "." not in norm.rsplit("/", 1)[-1]


def _tail(pattern: str) -> str:
    """The literal text after the last glob character; every match ends with it."""
    for i in range(len(pattern) - 1, -1, -1):
        if pattern[i] in _GLOB_CHARS or pattern[i] == "]":
            return pattern[i + 1 :]
    return pattern


def patterns_overlap(p: str, q: str) -> bool:
    """Whether two repository paths or globs could name the same file (conservatively).

    Globs follow ``fnmatch`` (``*`` also crosses ``/``); two globs overlap if some path could
    match both. A path overlaps a glob that matches it or one of its parent directories. A
    directory (``src/``, or a literal without extension such as ``src``) stands for
    everything under it, so ``src/`` overlaps ``src/x.py`` and ``src/*.py``.
    """
    np_, nq = _normalise(p), _normalise(q)
    if np_ == nq:
        return True
    p_glob, q_glob = _is_glob(np_), _is_glob(nq)
    if not p_glob and not q_glob:
        return nq.startswith(np_ + "/") or np_.startswith(nq + "/")
    left = [np_, np_ + "/*"] if _may_be_dir(p) else [np_]
    right = [nq, nq + "/*"] if _may_be_dir(q) else [nq]
    if not p_glob or not q_glob:  # a literal path matched by a glob's parent directory
        literal, glob = (np_, nq) if not p_glob else (nq, np_)
        parts = literal.split("/")
        if any(fnmatchcase("/".join(parts[:k]), glob) for k in range(1, len(parts) + 1)):
            return True
    for a in left:
        tail_a = _tail(a)
        for b in right:
            tail_b = _tail(b)
            if not (tail_a.endswith(tail_b) or tail_b.endswith(tail_a)):
                continue  # every match of each ends with its tail: they cannot meet
            if _intersects(a, b):
                return True
    return False


def is_shared(pattern: str, shared: Sequence[str]) -> bool:
    norm = _normalise(pattern)
    for s in shared:
        s = _normalise(s)
        if norm == s or fnmatchcase(norm, s) or norm.startswith(s + "/"):
            return True
    return False


def _label(p: str, q: str) -> list[str]:
    """What to show for an overlap of ``p`` and ``q``: the narrower one, or both."""
    np_, nq = _normalise(p), _normalise(q)
    if np_ == nq:
        return [p]
    if fnmatchcase(np_, nq) or np_.startswith(nq + "/"):
        return [p]
    if fnmatchcase(nq, np_) or nq.startswith(np_ + "/"):
        return [q]
    return [p, q]


def files_overlap(a: list[str], b: list[str], shared: Sequence[str] = ()) -> list[str]:
    """The patterns through which two ``files`` lists overlap; empty when they do not.

    Patterns covered by a ``shared`` glob are ignored on both sides.
    """
    left = [p for p in a if not is_shared(p, shared)]
    right = [q for q in b if not is_shared(q, shared)]
    found: dict[str, None] = {}
    for p in left:
        for q in right:
            if patterns_overlap(p, q):
                found.update(dict.fromkeys(_label(p, q)))
    return list(found)


def _literal_key(norm: str) -> tuple[str, ...]:
    """The leading path segments of a normalised pattern that contain no glob character."""
    key: list[str] = []
    for segment in norm.split("/"):
        if _is_glob(segment):
            break
        key.append(segment)
    return tuple(key)


@dataclass
class _Entry:
    """One pattern of one item, with what the index needs to know about it."""

    index: int
    pattern: str
    norm: str
    key: tuple[str, ...]
    literal: bool
    may_be_dir: bool
    tail: str


@dataclass
class _GlobBucket:
    """Globs sharing one literal prefix, indexed by their literal tail."""

    by_tail: dict[str, list[_Entry]]
    """Exact tail -> globs."""
    by_tail_suffix: dict[str, list[_Entry]]
    """Every suffix of a tail -> globs whose tail ends with it."""
    by_last_part: dict[str, list[_Entry]]
    """The tail's last ``/``-free part -> globs."""
    entries: list[_Entry]


def _suffixes(text: str) -> list[str]:
    return [text[i:] for i in range(len(text) + 1)]


def _candidates(
    entry: _Entry, literals: dict[str, list[_Entry]], globs: dict[tuple[str, ...], _GlobBucket]
) -> Iterator[_Entry]:
    """Entries that might overlap ``entry``; every overlapping pair is produced at least once.

    Two patterns can only meet when the literal prefix of one extends the other's, and two
    globs only when one's literal tail ends with the other's; paths and globs are looked up
    through the segments of the path.
    """
    key = entry.key
    if entry.literal:
        for depth in range(1, len(key) + 1):  # equal paths and parent directories
            yield from literals.get("/".join(key[:depth]), ())
        suffixes = {s for segment in key for s in _suffixes(segment)}
        for depth in range(len(key) + 1):  # globs filed under a parent directory
            bucket = globs.get(key[:depth])
            if bucket is None:
                continue
            if entry.may_be_dir:
                yield from bucket.entries
            else:
                for suffix in suffixes:
                    yield from bucket.by_last_part.get(suffix, ())
        return
    for depth in range(1, len(key) + 1):  # directories that contain the glob's prefix
        for other in literals.get("/".join(key[:depth]), ()):
            if other.may_be_dir:
                yield other
    for depth in range(len(key) + 1):
        bucket = globs.get(key[:depth])
        if bucket is None:
            continue
        yield from bucket.by_tail_suffix.get(entry.tail, ())
        for suffix in _suffixes(entry.tail)[1:]:
            yield from bucket.by_tail.get(suffix, ())


def overlapping_pairs(
    items: Sequence[tuple[str, Sequence[str]]], shared: Sequence[str] = ()
) -> Iterator[tuple[str, str, list[str]]]:
    """Pairs ``(a, b, patterns)`` of items whose file lists overlap, in item order.

    Patterns are indexed by literal prefix and tail, so items in unrelated directories (and
    items without files) are never compared.
    """
    entries: list[_Entry] = []
    literals: dict[str, list[_Entry]] = {}
    globs: dict[tuple[str, ...], _GlobBucket] = {}
    for index, (_, files) in enumerate(items):
        for pattern in dict.fromkeys(files):
            if is_shared(pattern, shared):
                continue
            norm = _normalise(pattern)
            literal = not _is_glob(norm)
            may_be_dir = _may_be_dir(pattern)
            tail = "" if may_be_dir else _tail(norm)
            entry = _Entry(index, pattern, norm, _literal_key(norm), literal, may_be_dir, tail)
            entries.append(entry)
            if literal:
                literals.setdefault(norm, []).append(entry)
                continue
            bucket = globs.get(entry.key)
            if bucket is None:
                bucket = globs[entry.key] = _GlobBucket({}, {}, {}, [])
            bucket.entries.append(entry)
            bucket.by_tail.setdefault(tail, []).append(entry)
            bucket.by_last_part.setdefault(tail.rsplit("/", 1)[-1], []).append(entry)
            for suffix in _suffixes(tail):
                bucket.by_tail_suffix.setdefault(suffix, []).append(entry)
    found: dict[tuple[int, int], dict[str, None]] = {}
    for entry in entries:
        for other in _candidates(entry, literals, globs):
            if other.index == entry.index:
                continue
            first, second = (entry, other) if entry.index < other.index else (other, entry)
            pair = (first.index, second.index)
            if first.norm == second.norm:
                labels = [first.pattern]
            elif patterns_overlap(first.pattern, second.pattern):
                labels = _label(first.pattern, second.pattern)
            else:
                continue
            found.setdefault(pair, {}).update(dict.fromkeys(labels))
    for i, j in sorted(found):
        yield items[i][0], items[j][0], list(found[(i, j)])


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
