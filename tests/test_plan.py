"""Planning: levels, priorities, the critical path, file conflicts, renderers, speed."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conductor.plan import (
    Plan,
    conflicting_pairs,
    files_overlap,
    format_duration,
    make_plan,
    overlapping_pairs,
    patterns_overlap,
    render_dot,
    render_json,
    render_mermaid,
    render_text,
)
from conductor.track import Task, Track, load_track, parse_track

ROOT = Path(__file__).resolve().parents[1]


def parse(text: str) -> Track:
    return parse_track(textwrap.dedent(text), guard=False)


DIAMOND = """\
track: dia
tasks:
  - id: top
  - id: left
    depends_on: [top]
  - id: right
    depends_on: [top]
  - id: bottom
    depends_on: [left, right]
  - id: alone
"""


# --------------------------------------------------------------------------- levels, priority


def test_levels_are_topological_in_file_order() -> None:
    """Tasks sit one level below their deepest dependency; file order within a level."""
    plan = make_plan(parse(DIAMOND))
    assert plan.levels == [["top", "alone"], ["left", "right"], ["bottom"]]


def test_priority_without_estimates_counts_tasks() -> None:
    """Without estimates, priority is the number of tasks on the longest path to the end."""
    plan = make_plan(parse(DIAMOND))
    assert plan.priority == {"top": 3.0, "left": 2.0, "right": 2.0, "bottom": 1.0, "alone": 1.0}
    assert list(plan.priority) == ["top", "left", "right", "bottom", "alone"]


def test_critical_path_follows_estimates() -> None:
    """The critical path is the longest chain by estimated duration, and its length is the sum."""
    plan = make_plan(
        parse(
            """\
            track: est
            tasks:
              - {id: top, estimated_duration: 10m}
              - {id: left, depends_on: [top], estimated_duration: 5m}
              - {id: right, depends_on: [top], estimated_duration: 1h}
              - {id: bottom, depends_on: [left, right], estimated_duration: 30s}
              - {id: alone, estimated_duration: 2h}
            """
        )
    )
    assert plan.critical_path == ["alone"]
    assert plan.critical_length == 7200.0
    assert plan.priority["top"] == 600 + 3600 + 30
    assert plan.priority["left"] == 300 + 30


def test_critical_path_through_the_diamond() -> None:
    """Ties break by file order: the first of equally long branches is chosen."""
    plan = make_plan(parse(DIAMOND))
    assert plan.critical_path == ["top", "left", "bottom"]
    assert plan.critical_length == 3.0


def test_unestimated_tasks_count_one_second() -> None:
    """Tasks without an estimate count 1.0 next to estimated ones."""
    plan = make_plan(
        parse(
            "track: m\ntasks:\n  - {id: a, estimated_duration: 10}\n  - {id: b, depends_on: [a]}\n"
        )
    )
    assert plan.priority == {"a": 11.0, "b": 1.0}
    assert plan.critical_path == ["a", "b"]


def test_plan_is_frozen() -> None:
    """A Plan cannot be reassigned field by field."""
    plan = make_plan(parse(DIAMOND))
    with pytest.raises(AttributeError):
        plan.levels = []  # type: ignore[misc]


def test_plan_invariants_on_random_dags() -> None:
    """On random DAGs: levels partition the tasks, dependencies sit in earlier levels,
    priority = own duration + max dependent priority, the critical path is a chain."""
    rng = random.Random(7)
    for _ in range(30):
        n = rng.randint(1, 40)
        tasks = []
        for i in range(n):
            deps = rng.sample(range(i), rng.randint(0, min(i, 3))) if i else []
            est = rng.choice([None, rng.randint(1, 100)])
            tasks.append(
                Task(id=f"t{i}", depends_on=[f"t{d}" for d in deps], estimated_duration=est)
            )
        track = Track(id="r", tasks=tasks)
        plan = make_plan(track)
        where = {tid: i for i, level in enumerate(plan.levels) for tid in level}
        assert sorted(where) == sorted(track.task_ids())
        assert sum(len(level) for level in plan.levels) == n
        for task in tasks:
            assert all(where[d] < where[task.id] for d in task.depends_on)
            if task.depends_on:
                assert max(where[d] for d in task.depends_on) == where[task.id] - 1
            own = task.estimated_duration if task.estimated_duration is not None else 1.0
            tail = max((plan.priority[c] for c in track.dependents(task.id)), default=0.0)
            assert plan.priority[task.id] == pytest.approx(own + tail)
        chain = plan.critical_path
        assert plan.critical_length == max(plan.priority.values())
        assert all(b in track.dependents(a) for a, b in itertools.pairwise(chain))
        assert track.dependents(chain[-1]) == []


# --------------------------------------------------------------------------- overlap


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("src/x.py", "src/x.py", True),
        ("src/", "src/x.py", True),
        ("src", "src/lib/x.py", True),
        ("src/a", "src/ab", False),
        ("src/x.py", "src/y.py", False),
        ("src/x.py", "src/*.py", True),
        ("src/lib/x.py", "src/*.py", False),
        ("src/lib/x.py", "src/lib/*.md", False),
        ("docs", "*.md", False),
        ("**/*.py", "setup.py", True),
        ("src/*.py", "src/a/b.py", False),
        ("src/*.py", "src/*.md", False),
        ("src/*.py", "src/a*", True),
        ("src/**/*.ts", "src/ui/*.ts", True),
        ("lib/*/x1.py", "lib/*/x2.py", False),
        ("sr?", "src/x.py", True),
        ("a/[bc].py", "a/[de].py", False),
        ("a/[bc].py", "a/[c-z].py", True),
        ("a/[!b].py", "a/b.py", False),
        ("a/[!b].py", "a/c.py", True),
        ("a/[!b].py", "a/[!c].py", True),
        ("a/[!bc].py", "a/[bc].py", False),
        ("src/comp*/", "src/comp1/a.ts", True),
        (".", "anything/at/all", True),
        ("*", "x", True),
        ("a[", "a[", True),
        ("a[", "ab", False),
    ],
)
def test_patterns_overlap(a: str, b: str, expected: bool) -> None:
    """Overlap reads gitwildmatch globs (``*`` stays in one directory), symmetrically."""
    assert patterns_overlap(a, b) is expected
    assert patterns_overlap(b, a) is expected


def test_files_overlap_reports_the_narrower_pattern() -> None:
    """files_overlap names what two file lists share, preferring the narrower pattern."""
    assert files_overlap(["src/x.py", "README.md"], ["src/*.py"]) == ["src/x.py"]
    assert files_overlap(["src/"], ["src/x.py"]) == ["src/x.py"]
    assert files_overlap(["a.txt"], ["b.txt"]) == []
    assert files_overlap(["src/*.py"], ["src/a*"]) == ["src/*.py", "src/a*"]


def test_files_overlap_ignores_shared() -> None:
    """Paths matching a shared glob are ignored on both sides."""
    assert files_overlap(["package.json", "src/a.ts"], ["package.json"], ["package.json"]) == []
    assert files_overlap(["locks/a.lock"], ["locks/a.lock"], ["locks/"]) == []
    assert files_overlap(["x.json"], ["x.json"], ["*.json"]) == []
    assert files_overlap(["src/x.py"], ["src/x.py"], ["*.json"]) == ["src/x.py"]


def test_shared_globs_use_the_same_dialect() -> None:
    """A shared ``*.json`` (gitwildmatch: root only) does not share ``src/x.json``."""
    assert files_overlap(["src/x.json"], ["src/x.json"], ["*.json"]) == ["src/x.json"]
    assert files_overlap(["src/x.json"], ["src/x.json"], ["**/*.json"]) == []


_SEGMENTS = st.sampled_from(
    ["src", "lib", "a", "b", "x.py", "y.md", "*", "*.py", "a*", "?", "[ab]", "[!a]*", "**"]
)
_PATTERNS = st.lists(_SEGMENTS, min_size=1, max_size=3).map("/".join) | st.sampled_from(
    ["src/", "a/", ".", "**/*.py", "src/**"]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_PATTERNS, max_size=3), max_size=12))
def test_indexed_pairs_match_all_pairs(files: list[list[str]]) -> None:
    """The prefix/tail index finds exactly the pairs an all-pairs comparison finds."""
    items = [(f"t{i}", fs) for i, fs in enumerate(files)]
    fast = {(a, b) for a, b, _ in overlapping_pairs(items)}
    slow = {
        (items[i][0], items[j][0])
        for i in range(len(items))
        for j in range(i + 1, len(items))
        if files_overlap(items[i][1], items[j][1])
    }
    assert fast == slow


# --------------------------------------------------------------------------- conflicts

CONFLICTS = """\
track: c
tasks:
  - {id: a, files: [src/x.py, package.json]}
  - {id: b, files: ["src/*.py"]}
  - {id: c, files: [docs/]}
  - {id: d, files: [docs/guide.md], depends_on: [e]}
  - {id: e, files: [package.json], depends_on: [c]}
  - {id: f}
"""


def test_conflicting_pairs_cover_every_task() -> None:
    """conflicting_pairs maps every task to the tasks sharing files with it, symmetrically."""
    pairs = conflicting_pairs(parse(CONFLICTS))
    assert pairs == {
        "a": {"b", "e"},
        "b": {"a"},
        "c": {"d"},
        "d": {"c"},
        "e": {"a"},
        "f": set(),
    }


def test_plan_conflicts_leave_out_pairs_the_dag_orders() -> None:
    """Plan.conflicts lists only pairs that could otherwise run together, with the files."""
    plan = make_plan(parse(CONFLICTS))
    assert plan.conflicts == [("a", "b", ["src/x.py"]), ("a", "e", ["package.json"])]


def test_track_shared_files_remove_conflicts() -> None:
    """shared_files declared by the track are not conflicts."""
    text = CONFLICTS.replace("tasks:\n", "shared_files: [package.json]\ntasks:\n", 1)
    pairs = conflicting_pairs(parse(text))
    assert pairs["a"] == {"b"} and pairs["e"] == set()


def test_group_shared_resources_apply_inside_the_group_only() -> None:
    """A group's shared_resources relieve conflicts between its own members only."""
    text = """\
    track: g
    tasks:
      - {id: a, files: [package.json]}
      - {id: b, files: [package.json]}
      - {id: c, files: [package.json]}
    parallel_groups:
      - {id: g1, tasks: [a, b], conflict_free: true, shared_resources: [package.json]}
    """
    pairs = conflicting_pairs(parse(text))
    assert pairs == {"a": {"c"}, "b": {"c"}, "c": {"a", "b"}}


def _pairwise(track: Track) -> dict[str, set[str]]:
    """Conflicts by comparing every pair of tasks, the definition the classes must match."""
    out: dict[str, set[str]] = {t.id: set() for t in track.tasks}
    for a, b in itertools.combinations(track.tasks, 2):
        overlap = files_overlap(a.files, b.files, track.shared_files)
        for group in track.parallel_groups:
            if overlap and a.id in group.tasks and b.id in group.tasks and group.shared_resources:
                shared = [*track.shared_files, *group.shared_resources]
                overlap = files_overlap(a.files, b.files, shared)
        if overlap:
            out[a.id].add(b.id)
            out[b.id].add(a.id)
    return out


GLOBS = ["src/**", "src/*.py", "src/a.py", "docs/", "docs/x.md", "package.json", "*.json"]


@settings(max_examples=150, deadline=None)
@given(
    files=st.lists(st.lists(st.sampled_from(GLOBS), max_size=3), min_size=1, max_size=9),
    shared=st.lists(st.sampled_from(GLOBS), max_size=1),
    group=st.sets(st.integers(0, 8)),
    relief=st.lists(st.sampled_from(GLOBS), max_size=2),
)
def test_conflict_classes_match_pairwise_comparison(
    files: list[list[str]], shared: list[str], group: set[int], relief: list[str]
) -> None:
    """Conflicts found by class of equal file sets are exactly those of comparing every pair,
    with track-wide and group-wide shared files."""
    tasks = [Task(id=f"t{i}", files=f) for i, f in enumerate(files)]
    members = [f"t{i}" for i in sorted(group) if i < len(files)]
    groups = [{"id": "g", "tasks": members, "shared_resources": relief}] if members else []
    track = Track.model_validate(
        {"id": "p", "tasks": tasks, "shared_files": shared, "parallel_groups": groups}
    )
    assert conflicting_pairs(track) == _pairwise(track)
    plan = make_plan(track)
    assert {(a, b) for a, b, _ in plan.conflicts} == {
        (a, b)
        for a, others in _pairwise(track).items()
        for b in others
        if int(a[1:]) < int(b[1:])
    }


def test_tasks_with_the_same_files_form_one_class() -> None:
    """Tasks listing the same files (in any order) share a class that meets itself and the
    classes their files overlap."""
    track = parse(
        """        track: k
        tasks:
          - {id: a, files: ["src/**", docs/]}
          - {id: b, files: [docs/, "src/**"]}
          - {id: c, files: [src/x.py]}
          - {id: d, files: [lib/]}
          - {id: e, files: [lib/]}
          - {id: f}
        shared_files: [lib/]
        """
    )
    classes = make_plan(track).classes
    assert classes.members == [["a", "b"], ["c"], ["d", "e"]]
    assert classes.of_task == {"a": 0, "b": 0, "c": 1, "d": 2, "e": 2}
    assert classes.meets[0] == {0: ["src/**", "docs"], 1: ["src/x.py"]}
    assert classes.meets[1] == {0: ["src/x.py"]}
    assert classes.meets[2] == {}
    assert classes.pair_count() == 3


def _crowded(n: int) -> Track:
    """``n`` tasks over two overlapping globs, and one task with an unrelated file."""
    tasks = [Task(id=f"t{i}", files=["src/**" if i % 2 else "src/*.py"]) for i in range(n)]
    tasks.append(Task(id="alone", files=["README.md"]))
    return Track(id="crowd", tasks=tasks)


def test_many_conflicts_are_summarised_by_file_set() -> None:
    """Above PAIRS_LISTED pairs the plan lists sets of tasks with the same files, not pairs,
    in text, JSON, DOT and Mermaid alike."""
    track = _crowded(100)  # 4,950 pairs
    plan = make_plan(track)
    assert plan.summarised and plan.conflicts == []
    assert plan.classes.pair_count() == 4950
    text = render_text(track, plan)
    assert "never run together (overlapping files; 4,950 pairs among 100 tasks" in text
    assert "  set 1: 50 tasks (t0, t2, t4, t6, t8, … and 45 more) changing src/*.py\n" in text
    assert "    never two at once; never beside set 2\n" in text
    assert "  set 2: 50 tasks (t1, t3, t5, t7, t9, … and 45 more) changing src/**\n" in text
    assert "alone" not in text.split("never run together")[1]
    assert len(text.splitlines()) < 20
    data = json.loads(render_json(track, plan))
    assert data["conflicts"] == [] and data["conflicts_summarised"] is True
    first, second = data["conflict_sets"]
    assert first["tasks"] == [f"t{i}" for i in range(0, 100, 2)] and first["alone"] is True
    assert first["with"] == [{"set": 2, "files": ["src/*.py"]}]
    assert second["with"] == [{"set": 1, "files": ["src/*.py"]}]
    assert "4,950 conflicting pairs" in render_dot(track, plan)
    assert "4,950 conflicting pairs" in render_mermaid(track, plan)


def test_few_conflicts_are_listed_as_pairs() -> None:
    """At or below PAIRS_LISTED pairs every pair is listed, and JSON carries the sets too."""
    track = _crowded(10)  # 45 pairs
    plan = make_plan(track)
    assert not plan.summarised and len(plan.conflicts) == 45
    assert ("t0", "t1", ["src/*.py"]) in plan.conflicts
    data = json.loads(render_json(track, plan))
    assert data["conflicts_summarised"] is False and len(data["conflict_sets"]) == 2


# --------------------------------------------------------------------------- renderers


def test_render_text() -> None:
    """The text plan shows levels, the critical path with its length, and conflicts."""
    track = parse(CONFLICTS.replace("  - {id: f}", "  - {id: f, estimated_duration: 1h30m}"))
    out = render_text(track, make_plan(track))
    assert "track c: 6 tasks, max_parallel 4" in out
    assert "  1. a, b, c, f\n  2. e\n  3. d\n" in out
    assert "critical path (3 tasks, estimated 1h30m2s):\n  c -> e -> d\n" not in out
    assert "critical path (1 task, estimated 1h30m):\n  f\n" in out
    assert (
        "never run together (overlapping files):\n  a, b (src/x.py)\n  a, e (package.json)\n" in out
    )


def test_render_text_without_conflicts_or_estimates() -> None:
    """Without estimates the length is counted in tasks; no conflicts says so."""
    track = parse(DIAMOND)
    out = render_text(track, make_plan(track))
    assert "critical path (3 tasks):\n  top -> left -> bottom\n" in out
    assert "never run together: no file conflicts" in out


def test_render_text_lists_declared_groups() -> None:
    """Declared parallel groups are shown with their claims."""
    track = load_track(ROOT / "tracks" / "seed-example")
    out = render_text(track, make_plan(track))
    assert "foundations: 1.1, 1.2, 1.3 (conflict-free; shared: package.json)" in out
    assert "critical path (3 tasks, estimated 1h55m):\n  1.1 -> 2.1 -> 3.1\n" in out


def test_render_dot_escapes_and_marks_the_critical_path() -> None:
    """DOT output quotes ids and names, draws dependencies, the critical path and conflicts."""
    track = parse(
        """\
        track: dot
        tasks:
          - {id: a, name: 'Say "hi"', files: [x]}
          - {id: b, depends_on: [a]}
          - {id: c, files: [x]}
        """
    )
    out = render_dot(track, make_plan(track))
    assert out.startswith('digraph "dot" {') and out.rstrip().endswith("}")
    assert '"a" [label="a\\nSay \\"hi\\"", penwidth=2, color=red];' in out
    assert '"a" -> "b" [penwidth=2, color=red];' in out
    assert '"a" -> "c" [dir=none, style=dashed' in out
    assert out.count("{") == out.count("}")


def test_render_mermaid_uses_safe_node_ids() -> None:
    """Mermaid nodes are t0, t1... with quoted, escaped labels."""
    track = load_track(ROOT / "tracks" / "seed-example")
    out = render_mermaid(track, make_plan(track))
    assert out.startswith("flowchart LR\n")
    assert '  t0["1.1: Token service"]' in out
    assert "  t0 --> t3" in out
    assert "class t0,t3,t5 critical;" in out
    quoted = parse("track: m\ntasks:\n  - {id: a, name: 'x \"y\"'}\n")
    assert "#quot;y#quot;" in render_mermaid(quoted, make_plan(quoted))


def test_render_json_round_trips_the_plan() -> None:
    """JSON output carries levels, critical path, length, conflicts and priorities."""
    track = parse(CONFLICTS)
    plan = make_plan(track)
    data = json.loads(render_json(track, plan))
    assert data["track"] == "c" and data["tasks"] == 6
    assert data["levels"] == plan.levels
    assert data["critical_path"] == plan.critical_path
    assert data["critical_length"] == plan.critical_length
    assert data["conflicts"] == [
        {"tasks": ["a", "b"], "files": ["src/x.py"]},
        {"tasks": ["a", "e"], "files": ["package.json"]},
    ]
    assert data["priority"] == plan.priority
    assert data["parallel_groups"] == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.5, "0.5s"), (45, "45s"), (60, "1m"), (5400, "1h30m"), (90061, "1d1h1m1s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Durations print compactly."""
    assert format_duration(seconds) == text


# --------------------------------------------------------------------------- speed


def _big_track(n: int, with_files: bool) -> Track:
    rng = random.Random(3)
    tasks = []
    for i in range(n):
        deps = [f"t{d}" for d in rng.sample(range(max(0, i - 50), i), min(i, 3))] if i else []
        files = [f"src/m{i % 200}/f{i}.py", f"lib/*/x{i}.py"] if with_files else []
        tasks.append(
            Task(id=f"t{i}", depends_on=deps, files=files, estimated_duration=rng.randint(1, 99))
        )
    return Track(id="big", tasks=tasks)


def test_plan_of_10000_tasks_without_files() -> None:
    """make_plan levels 10,000 tasks without files and finds no conflict (timing:
    scripts/bench_plan.py)."""
    track = _big_track(10_000, with_files=False)
    plan = make_plan(track)
    assert sum(map(len, plan.levels)) == 10_000
    assert plan.classes.members == [] and not plan.summarised
    assert not any(conflicting_pairs(track).values())


def test_plan_of_10000_tasks_with_files_in_distinct_places() -> None:
    """Files in many directories and globs with distinct tails conflict nowhere, one class per
    task."""
    track = _big_track(10_000, with_files=True)
    plan = make_plan(track)
    assert plan.conflicts == [] and not plan.summarised
    assert len(plan.classes.members) == 10_000
    assert not any(plan.classes.meets)


def test_deep_chain_needs_no_recursion() -> None:
    """A 20,000-task chain plans without hitting the recursion limit."""
    tasks = [Task(id="t0")] + [Task(id=f"t{i}", depends_on=[f"t{i - 1}"]) for i in range(1, 20_000)]
    plan = make_plan(Track(id="chain", tasks=tasks))
    assert len(plan.levels) == 20_000 and len(plan.critical_path) == 20_000


# --------------------------------------------------------------------------- the hello example


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_hello_example_runs_offline_and_reruns(tmp_path: Path) -> None:
    """Running the hello track's commands level by level works, twice, and verifies."""
    track = load_track(ROOT / "tracks" / "hello")
    plan: Plan = make_plan(track)
    assert plan.levels == [
        ["prepare"],
        ["greet-en", "greet-fr", "greet-de"],
        ["combine"],
        ["report"],
    ]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for _ in range(2):
        for level in plan.levels:
            for tid in level:
                task = track.task(tid)
                assert task.run is not None
                subprocess.run(["sh", "-c", task.run], cwd=tmp_path, env=env, check=True)
                for command in task.verify:
                    subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "build/hello/count.txt").read_text().strip() == "3"
    assert (tmp_path / "build/hello/all.txt").read_text().splitlines()[1] == "Bonjour, le monde"
