"""Property tests: whatever a track file holds, loading returns a Track or raises TrackError."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conductor.errors import TrackError
from conductor.plan import (
    conflicting_pairs,
    make_plan,
    render_dot,
    render_json,
    render_mermaid,
    render_text,
)
from conductor.track import Track, parse_track

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [
    "track", "description", "defaults", "max_parallel", "agents", "tasks", "dag", "nodes",
    "parallel_groups", "budget_usd", "model", "permission_mode", "setting_sources", "templates",
    "shared_files", "id", "name", "type", "depends_on", "files", "acceptance", "verify", "agent",
    "instructions", "run", "timeout", "max_attempts", "max_turns", "max_budget_usd", "tools",
    "phase", "estimated_duration", "role", "goal", "system_prompt", "conflict_free",
    "shared_resources",
]  # fmt: skip

IDS = ["a", "b", "c", "1.1", "1.2", "x-y", "..", "../a", "", "a/b", ".h", "-x", "a\nb", "build"]
PATHS = ["src/x.py", "src/", "src/*.py", "*", ".", "../x", "/abs", "docs/**/*.md", "a\x00b", "~/x"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(IDS + PATHS + ["30s", "5m", "1h30m", "acceptEdits", "plan", "code", "Code!"])
    | st.text(max_size=20)
)
keys = st.sampled_from(KEYS) | st.text(max_size=8)
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


def check(text: str) -> Track | None:
    """Parse without the guard; on success the whole plan API must work too."""
    try:
        track = parse_track(text, guard=False)
    except TrackError as exc:
        assert str(exc)
        return None
    assert isinstance(track, Track)
    plan = make_plan(track)
    assert sum(len(level) for level in plan.levels) == len(track.tasks)
    conflicting_pairs(track)
    for render in (render_text, render_dot, render_mermaid, render_json):
        render(track, plan)
    for tid in track.task_ids():
        assert len(track.task_hash(tid)) == 64
        assert tid not in track.descendants(tid)
    track.notes()
    return track


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@FUZZ
@given(documents)
def test_random_documents(data: Any) -> None:
    """Random nested mappings, lists and scalars never raise anything but TrackError."""
    check(dump(data))


track_shaped = st.fixed_dictionaries(
    {"track": st.sampled_from(IDS) | scalars},
    optional={
        "description": scalars,
        "defaults": st.dictionaries(keys, scalars, max_size=4),
        "max_parallel": scalars,
        "agents": st.dictionaries(
            st.sampled_from(IDS), st.dictionaries(keys, scalars, max_size=3), max_size=3
        )
        | st.lists(st.dictionaries(keys, scalars, max_size=3), max_size=3),
        "tasks": st.lists(
            st.dictionaries(keys, scalars | st.lists(scalars, max_size=3), max_size=6), max_size=6
        ),
        "dag": st.dictionaries(
            st.sampled_from(["nodes", "parallel_groups", "edges"]), documents, max_size=2
        ),
        "parallel_groups": documents,
        "permission_mode": scalars,
        "shared_files": st.lists(st.sampled_from(PATHS), max_size=3),
    },
)


@FUZZ
@given(track_shaped)
def test_track_shaped_documents(data: dict[str, Any]) -> None:
    """Documents shaped like tracks, with wrong values anywhere, never crash the loader."""
    check(dump(data))


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    """Random task graphs: cycles, self-loops, unknown and duplicate ids, files and groups."""
    n = draw(st.integers(min_value=1, max_value=12))
    ids = [f"t{i}" for i in range(n)]
    if draw(st.booleans()):
        ids[draw(st.integers(0, n - 1))] = draw(st.sampled_from(ids + IDS))
    refs = st.sampled_from([*ids, "ghost", "t99"])
    tasks = []
    for tid in ids:
        task: dict[str, Any] = {"id": tid}
        deps = draw(st.lists(refs, max_size=3))
        if deps:
            task["depends_on"] = deps
        files = draw(st.lists(st.sampled_from([*PATHS[:6], "src/a.py", "lib/*/b.py"]), max_size=3))
        if files:
            task["files"] = files
        if draw(st.booleans()):
            task["estimated_duration"] = draw(st.sampled_from([1, 2.5, "5m", "1h", 0]))
        if draw(st.booleans()):
            task["agent"] = draw(st.sampled_from(["dev", "ghost", "x"]))
        tasks.append(task)
    groups = [
        {
            "id": f"g{i}",
            "tasks": draw(st.lists(refs, min_size=1, max_size=4)),
            "conflict_free": draw(st.booleans()),
            "shared_resources": draw(st.lists(st.sampled_from(PATHS[:5]), max_size=2)),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    doc: dict[str, Any] = {"track": "fuzz", "agents": {"dev": {"role": "r"}}}
    if draw(st.booleans()):
        doc["tasks"] = tasks
        if groups:
            doc["parallel_groups"] = groups
    else:
        doc["dag"] = {"nodes": tasks, "parallel_groups": groups}
    return doc


@FUZZ
@given(graphs())
def test_random_graphs(doc: dict[str, Any]) -> None:
    """Random graphs load or fail with TrackError; loaded ones are acyclic and consistent."""
    track = check(dump(doc))
    if track is None:
        return
    position = {tid: i for i, level in enumerate(make_plan(track).levels) for tid in level}
    for task in track.tasks:
        assert all(position[d] < position[task.id] for d in task.depends_on)


VALID = """\
track: base
defaults: {timeout: 1m}
agents:
  dev: {role: Developer}
tasks:
  - id: a
    files: [src/a.py]
    run: echo a
  - id: b
    depends_on: [a]
    agent: dev
parallel_groups:
  - {id: g, tasks: [a], conflict_free: true}
"""


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(VALID)),
            st.integers(0, 3),
            st.text(alphabet=":-[]{}&*!|>'\"#%@`,? \n\t\\x0.", max_size=3),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_text(edits: list[tuple[int, int, str]]) -> None:
    """A valid file with random characters deleted and inserted never crashes the loader."""
    text = VALID
    for at, delete, insert in edits:
        at = min(at, len(text))
        text = text[:at] + insert + text[at + delete :]
    check(text)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    """Any text at all is a Track or a TrackError."""
    check(text)


NUMBERS = st.one_of(
    st.integers(min_value=-(10**500), max_value=10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="0123456789.eE+-smhd ", max_size=30),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["timeout", "max_attempts", "max_turns", "max_budget_usd"]),
    value=NUMBERS,
)
def test_numeric_fields_never_crash_the_loader(field: str, value: Any) -> None:
    """Any number (huge, negative, NaN, infinite) or number-like text in a numeric field
    loads or is a TrackError naming the field: never another exception."""
    text = yaml.safe_dump({"track": "n", "tasks": [{"id": "a", "run": "x", field: value}]})
    try:
        parse_track(text, guard=False)
    except TrackError as exc:
        assert exc.field is not None and field in exc.field


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(["budget_usd", "max_parallel"]), value=NUMBERS)
def test_numeric_track_settings_never_crash_the_loader(field: str, value: Any) -> None:
    """The track's own numeric settings load or are a TrackError naming the field."""
    text = yaml.safe_dump({"track": "n", field: value, "tasks": [{"id": "a", "run": "x"}]})
    try:
        parse_track(text, guard=False)
    except TrackError as exc:
        assert exc.field is not None and field in exc.field
