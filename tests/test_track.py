"""Track loading and validation: formats, defaults, errors with file:line:field, hashes."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from conductor import track as track_mod
from conductor.errors import TrackError, UserError
from conductor.track import (
    Agent,
    ParallelGroup,
    Task,
    Track,
    load_track,
    parse_duration,
    parse_track,
)

SRC = Path("tracks/x.yaml")
ROOT = Path(__file__).resolve().parents[1]


def parse(text: str) -> Track:
    return parse_track(textwrap.dedent(text), source=SRC, guard=False)


def error(text: str) -> TrackError:
    with pytest.raises(TrackError) as info:
        parse(text)
    return info.value


def assert_error(text: str, line: int | None, field: str | None, *fragments: str) -> TrackError:
    """Parse ``text``, expect a TrackError at ``line`` about ``field`` mentioning ``fragments``."""
    exc = error(text)
    message = str(exc)
    assert exc.path == SRC, message
    assert exc.line == line, message
    assert exc.field == field, message
    prefix = f"{SRC}:{line}: " if line is not None else f"{SRC}: "
    if field:
        prefix += f"{field}: "
    assert message.startswith(prefix), message
    for fragment in fragments:
        assert fragment in message, message
    return exc


MINIMAL = """\
track: demo
tasks:
  - id: build
    run: make
"""


# --------------------------------------------------------------------------- loading


def test_minimal_track_gets_defaults() -> None:
    """A track with one task gets every documented default."""
    t = parse(MINIMAL)
    assert t.id == "demo"
    assert t.description == ""
    assert t.max_parallel == 4
    assert t.permission_mode == "acceptEdits"
    assert t.setting_sources == []
    assert t.agents == {}
    assert t.parallel_groups == []
    assert t.budget_usd is None and t.model is None and t.templates is None
    assert t.source == SRC
    task = t.task("build")
    assert task.name == "build"
    assert task.type == "code"
    assert task.max_attempts == 3
    assert task.depends_on == [] and task.files == [] and task.verify == []
    assert task.timeout is None and task.agent is None and task.estimated_duration is None


def test_all_native_fields_load() -> None:
    """Every native top-level and task field is accepted and typed."""
    t = parse(
        """\
        track: full
        description: Everything at once.
        max_parallel: 2
        budget_usd: 12.5
        model: claude-sonnet-4-5
        permission_mode: bypassPermissions
        setting_sources: [project]
        templates: worker_templates
        shared_files: [package-lock.json]
        agents:
          backend:
            role: Backend developer
            goal: Ship the API
            system_prompt: You write Python.
            tools: [Read, Write]
            model: claude-opus-4-1
            description: Python services
        tasks:
          - id: api
            name: Build the API
            type: integration
            depends_on: []
            files: [src/api.py, "src/api/*.py"]
            acceptance: [returns 200, handles errors]
            verify: [pytest -q]
            agent: backend
            instructions: Use FastAPI.
            timeout: 90
            max_attempts: 5
            model: claude-haiku-4-5
            max_turns: 20
            max_budget_usd: 1.5
            permission_mode: plan
            tools: [Read]
            phase: 2
            estimated_duration: 1h30m
        """
    )
    assert (t.max_parallel, t.budget_usd, t.model) == (2, 12.5, "claude-sonnet-4-5")
    assert t.permission_mode == "bypassPermissions"
    assert t.setting_sources == ["project"]
    assert t.templates == "worker_templates"
    assert t.shared_files == ["package-lock.json"]
    assert t.agents["backend"] == Agent(
        name="backend",
        role="Backend developer",
        goal="Ship the API",
        system_prompt="You write Python.",
        tools=["Read", "Write"],
        model="claude-opus-4-1",
        description="Python services",
    )
    task = t.task("api")
    assert task.files == ["src/api.py", "src/api/*.py"]
    assert task.acceptance == ["returns 200", "handles errors"]
    assert (task.timeout, task.max_attempts, task.max_turns) == (90.0, 5, 20)
    assert (task.max_budget_usd, task.permission_mode, task.tools) == (1.5, "plan", ["Read"])
    assert (task.phase, task.estimated_duration) == (2, 5400.0)
    assert t.notes() == []


def test_defaults_apply_only_where_the_task_is_silent() -> None:
    """defaults fill unset task fields; a task's own value (even null) wins."""
    t = parse(
        """\
        track: d
        defaults:
          type: docs
          timeout: 5m
          max_attempts: 2
          agent: writer
          verify: [make check]
          model: m1
          max_turns: 7
          max_budget_usd: 0.5
          permission_mode: plan
        tasks:
          - id: plain
          - id: own
            type: code
            timeout: 10s
            max_attempts: 4
            agent: coder
            verify: []
            model: m2
            max_turns: 3
            max_budget_usd: 2
            permission_mode: default
          - id: nulls
            timeout: null
            agent: null
        """
    )
    plain, own, nulls = t.tasks
    assert (plain.type, plain.timeout, plain.max_attempts, plain.agent) == (
        "docs",
        300.0,
        2,
        "writer",
    )
    assert (plain.verify, plain.model, plain.max_turns) == (["make check"], "m1", 7)
    assert (plain.max_budget_usd, plain.permission_mode) == (0.5, "plan")
    assert (own.type, own.timeout, own.max_attempts, own.agent) == ("code", 10.0, 4, "coder")
    assert (own.verify, own.model, own.max_turns) == ([], "m2", 3)
    assert (own.max_budget_usd, own.permission_mode) == (2.0, "default")
    assert nulls.timeout is None and nulls.agent is None
    assert nulls.max_attempts == 2


def test_single_strings_become_lists() -> None:
    """acceptance, verify, depends_on and files accept one string for a list of one."""
    t = parse(
        """\
        track: s
        tasks:
          - id: a
          - id: b
            depends_on: a
            files: src/b.py
            acceptance: It works.
            verify: make test
        """
    )
    b = t.task("b")
    assert (b.depends_on, b.files, b.acceptance, b.verify) == (
        ["a"],
        ["src/b.py"],
        ["It works."],
        ["make test"],
    )


def test_repeated_dependencies_are_merged() -> None:
    """Listing a dependency twice keeps it once, in first-seen order."""
    t = parse("track: r\ntasks:\n  - id: a\n  - id: b\n  - id: c\n    depends_on: [b, a, b]\n")
    assert t.task("c").depends_on == ["b", "a"]


def test_paths_are_normalised() -> None:
    """Files lose a leading ./ and doubled slashes but keep globs."""
    t = parse("track: p\ntasks:\n  - id: a\n    files: [./src//x.py, 'docs/*.md']\n")
    assert t.task("a").files == ["src/x.py", "docs/*.md"]


def test_numeric_ids_keep_their_text() -> None:
    """Unquoted ids like 1.1 and 1.10 stay the strings written, not floats."""
    t = parse(
        """\
        track: 2024
        tasks:
          - id: 1.1
            name: 3
          - id: 1.10
            depends_on: [1.1]
        parallel_groups:
          - {id: 7, tasks: [1.1]}
        """
    )
    assert t.id == "2024"
    assert t.task_ids() == ["1.1", "1.10"]
    assert t.task("1.1").name == "3"
    assert t.task("1.10").depends_on == ["1.1"]
    assert t.parallel_groups[0] == ParallelGroup(id="7", tasks=["1.1"])


def test_track_mapping_form() -> None:
    """`track: {id, description}` is the same as `track:` plus `description:`."""
    t = parse("track: {id: meta, description: From the mapping}\ntasks: [{id: a}]\n")
    assert (t.id, t.description) == ("meta", "From the mapping")


def test_agents_as_a_list() -> None:
    """agents may be a list of mappings with `name`."""
    t = parse(
        """\
        track: al
        agents:
          - name: reviewer
            role: Reviews code
          - name: tester
        tasks: [{id: a, agent: reviewer}]
        """
    )
    assert list(t.agents) == ["reviewer", "tester"]
    assert t.agents["reviewer"].role == "Reviews code"
    assert t.notes() == []


def test_yaml_anchors_and_merge_keys() -> None:
    """Anchors, aliases and `<<` merges work, and a task may override a merged key."""
    t = parse(
        """\
        track: anchors
        tasks:
          - &base
            id: a
            timeout: 1m
            verify: [make lint]
          - <<: *base
            id: b
            depends_on: [a]
          - <<: *base
            id: c
            timeout: 2m
        """
    )
    assert t.task("b").timeout == 60.0 and t.task("b").verify == ["make lint"]
    assert t.task("c").timeout == 120.0


def test_load_track_from_file_and_directory(tmp_path: Path) -> None:
    """load_track reads a file, or track.yaml inside a directory, and records the source."""
    path = tmp_path / "track.yaml"
    path.write_text(MINIMAL)
    assert load_track(path).source == path
    assert load_track(tmp_path).source == path


def test_load_track_accepts_a_byte_order_mark(tmp_path: Path) -> None:
    """A UTF-8 BOM (common from Windows editors) is ignored."""
    path = tmp_path / "t.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_track(path).id == "demo"


def test_load_track_missing_file(tmp_path: Path) -> None:
    """A missing file is a TrackError naming it."""
    with pytest.raises(TrackError, match="no such track file") as info:
        load_track(tmp_path / "nope.yaml")
    assert info.value.path == tmp_path / "nope.yaml"


def test_load_track_rejects_invalid_utf8_with_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported with their line."""
    path = tmp_path / "t.yaml"
    path.write_bytes(b"track: t\ntasks:\n  - id: \xff\xfe\n")
    with pytest.raises(TrackError, match="not valid UTF-8") as info:
        load_track(path)
    assert info.value.line == 3


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (45, 45.0),
        (2.5, 2.5),
        ("90", 90.0),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("1h 30m 15s", 5415.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("10 minutes", 600.0),
        (" 7S ", 7.0),
    ],
)
def test_parse_duration_accepts(value: str | float, seconds: float) -> None:
    """Durations are seconds, or numbers with s/m/h/d units, combinable."""
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value", ["", "abc", "5 parsecs", "-5", -1, "5m-", "m5", True, math.inf, math.nan, "1e400"]
)
def test_parse_duration_rejects(value: object) -> None:
    """Anything else is a UserError, never a ValueError or a silent zero."""
    with pytest.raises(UserError):
        parse_duration(value)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- YAML-level errors


def test_yaml_syntax_error_has_line() -> None:
    """A YAML syntax error names its line."""
    assert_error("track: t\ntasks:\n  - id: a\n    depends_on: [b\n", 5, None, "invalid YAML")


def test_yaml_bad_indentation_has_line() -> None:
    """Bad indentation is a YAML error at the offending line."""
    assert_error("track: t\ntasks:\n  - id: a\n   run: x\n", 4, None, "invalid YAML")


def test_control_character_has_line() -> None:
    """A control character the YAML reader refuses is reported with its line."""
    assert_error("track: t\ntasks:\n  - id: a\x07\n", 3, None, "invalid YAML")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file(text: str) -> None:
    """An empty file says so."""
    assert_error(text, None, None, "empty")


def test_several_documents() -> None:
    """Two YAML documents in one file are refused at the second."""
    assert_error(MINIMAL + "---\ntrack: other\n", 5, None, "invalid YAML")


@pytest.mark.parametrize(("text", "what"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'")])
def test_top_level_must_be_a_mapping(text: str, what: str) -> None:
    """A top level that is not a mapping is a clear error at line 1."""
    assert_error(text, 1, None, "top level must be a mapping", what)


def test_unknown_yaml_tag() -> None:
    """A custom YAML tag is refused with its line."""
    assert_error("track: t\ntasks:\n  - id: a\n    run: !shell ls\n", 4, None, "invalid YAML")


def test_bad_explicit_scalar_tag() -> None:
    """`!!int abc` is an error at its line, not a ValueError."""
    assert_error("track: t\nmax_parallel: !!int abc\ntasks: [{id: a}]\n", 2, "max_parallel", "int")


def test_non_scalar_key() -> None:
    """A list used as a mapping key is refused at its line."""
    assert_error("track: t\ntasks:\n  - id: a\n    ? [x]\n    : 1\n", 4, "tasks[0]", "plain name")


def test_duplicate_key() -> None:
    """A key given twice in one mapping is an error naming both lines."""
    assert_error(
        "track: t\ntasks:\n  - id: a\n    run: one\n    run: two\n",
        5,
        "tasks[0].run",
        "duplicate key 'run'",
        "line 4",
    )


def test_billion_laughs_is_refused_quickly() -> None:
    """Aliases that expand exponentially are refused before they expand (expanding them would
    never end: the test's timeout is the deadline)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    text = "track: t\n" + "\n".join(lines) + "\ntasks: [{id: a}]\n"
    with pytest.raises(TrackError, match="aliases expand"):
        parse_track(text, guard=False)


def test_recursive_alias_is_refused() -> None:
    """A list that contains itself through an alias is an error, not a hang."""
    with pytest.raises(TrackError):
        parse_track("track: t\nx: &a [*a]\ntasks: [{id: a}]\n", guard=False)


def test_deep_nesting_is_refused() -> None:
    """Absurdly deep nesting is an error, not a RecursionError."""
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(TrackError):
        parse_track(f"track: t\nx: {deep}\ntasks: [{{id: a}}]\n", guard=False)
    with pytest.raises(TrackError, match="nested more than"):
        parse_track(f"track: t\nx: {'[' * 80}{']' * 80}\ntasks: [{{id: a}}]\n", guard=False)


# --------------------------------------------------------------------------- schema errors


def test_unknown_top_level_field_suggests_and_lists() -> None:
    """An unknown top-level field names itself, a suggestion, and the allowed fields."""
    exc = assert_error(
        "track: t\nmax_paralel: 2\ntasks: [{id: a}]\n",
        2,
        "max_paralel",
        "unknown field 'max_paralel'",
        "did you mean 'max_parallel'?",
        "allowed: track, description, defaults, max_parallel",
    )
    assert "shared_files" in str(exc)


def test_unknown_task_field() -> None:
    """An unknown task field is reported at its own line with the task's allowed fields."""
    assert_error(
        """\
        track: t
        tasks:
          - id: a
          - id: b
            dependson: [a]
        """,
        5,
        "tasks[1].dependson",
        "did you mean 'depends_on'?",
        "estimated_duration",
    )


@pytest.mark.parametrize(
    ("text", "line", "field", "allowed"),
    [
        (
            "track: t\ndefaults:\n  retries: 2\ntasks: [{id: a}]\n",
            3,
            "defaults.retries",
            "max_attempts",
        ),
        (
            "track: t\nagents:\n  rev:\n    prompt: x\ntasks: [{id: a}]\n",
            4,
            "agents.rev.prompt",
            "system_prompt",
        ),
        (
            "track: t\ndag:\n  nodes: [{id: a}]\n  edges: []\n",
            4,
            "dag.edges",
            "parallel_groups",
        ),
        (
            "track: t\ntasks: [{id: a}]\nparallel_groups:\n  - id: g\n    tasks: [a]\n"
            "    safe: true\n",
            6,
            "parallel_groups[0].safe",
            "conflict_free",
        ),
        ("track: {id: t, owner: me}\ntasks: [{id: a}]\n", 1, "track.owner", "description"),
    ],
)
def test_unknown_nested_fields(text: str, line: int, field: str, allowed: str) -> None:
    """Unknown fields in defaults, agents, dag, groups and the track mapping are errors."""
    assert_error(text, line, field, "unknown field", allowed)


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("track: t\nmax_parallel: four\ntasks: [{id: a}]\n", 2, "max_parallel", "integer"),
        (
            "track: t\nmax_parallel: 0\ntasks: [{id: a}]\n",
            2,
            "max_parallel",
            "greater than or equal to 1",
        ),
        (
            "track: t\ntasks:\n  - id: a\n    max_attempts: true\n",
            4,
            "tasks[0].max_attempts",
            "integer",
        ),
        (
            "track: t\ntasks:\n  - id: a\n    max_attempts: 0\n",
            4,
            "tasks[0].max_attempts",
            "greater than or equal to 1",
        ),
        ("track: t\ntasks:\n  - id: a\n    timeout: soon\n", 4, "tasks[0].timeout", "duration"),
        ("track: t\ntasks:\n  - id: a\n    timeout: 0\n", 4, "tasks[0].timeout", "more than 0"),
        (
            "track: t\ntasks:\n  - id: a\n    files: {src: x}\n",
            4,
            "tasks[0].files",
            "expected a list",
        ),
        ("track: t\ntasks:\n  - id: a\n    name: {x: 1}\n", 4, "tasks[0].name", "string"),
        ("track: t\ntasks:\n  - id: a\n    verify: [1, 2]\n", 4, "tasks[0].verify[0]", "string"),
        ("track: t\ntasks:\n  - id: a\n    phase: [1]\n", 4, "tasks[0].phase", "phase"),
        (
            "track: t\ntasks:\n  - id: a\n    permission_mode: yolo\n",
            4,
            "tasks[0].permission_mode",
            "acceptEdits",
        ),
        ("track: t\npermission_mode: yolo\ntasks: [{id: a}]\n", 2, "permission_mode", "dontAsk"),
        (
            "track: t\nsetting_sources: [global]\ntasks: [{id: a}]\n",
            2,
            "setting_sources[0]",
            "project",
        ),
        (
            "track: t\nbudget_usd: -1\ntasks: [{id: a}]\n",
            2,
            "budget_usd",
            "greater than or equal to 0",
        ),
        ("track: t\nbudget_usd: .inf\ntasks: [{id: a}]\n", 2, "budget_usd", "finite"),
        ("track: t\ntasks:\n  - id: a\n    type: Code!\n", 4, "tasks[0].type", "lower case"),
        ("track: t\ntasks:\n  - 42\n", 3, "tasks[0]", "expected a mapping"),
        ("track: t\ntasks: {a: 1}\n", 2, "tasks", "expected a list"),
        ("track: t\ntasks: [{id: a}]\nagents: [reviewer]\n", 3, "agents[0]", "needs a `name:`"),
        (
            "track: t\ntasks: [{id: a}]\nparallel_groups:\n"
            "  - {id: g, tasks: [a], conflict_free: maybe}\n",
            4,
            "parallel_groups[0].conflict_free",
            "boolean",
        ),
    ],
)
def test_wrong_types_and_values(text: str, line: int, field: str, fragment: str) -> None:
    """Wrong types and out-of-range values name the line and the field."""
    assert_error(text, line, field, fragment)


def test_missing_task_id() -> None:
    """A task without an id is reported at the task's line."""
    assert_error(
        "track: t\ntasks:\n  - id: a\n  - name: b\n    run: x\n",
        4,
        "tasks[1]",
        "missing required field 'id'",
    )


def test_missing_track_id() -> None:
    """A file without `track:` says what to add."""
    assert_error("tasks: [{id: a}]\n", 1, None, "missing `track:`")


def test_tasks_and_dag_together() -> None:
    """A file with both `tasks:` and `dag:` is refused at `dag:`."""
    assert_error("track: t\ntasks: [{id: a}]\ndag:\n  nodes: [{id: b}]\n", 3, "dag", "not both")


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("track: t\n", 1, None),
        ("track: t\ntasks: []\n", 2, "tasks"),
        ("track: t\ntasks:\n", 2, "tasks"),
        ("track: t\ndag:\n  nodes: []\n", 3, "dag.nodes"),
    ],
)
def test_no_tasks(text: str, line: int, field: str | None) -> None:
    """A track without tasks is an error."""
    assert_error(text, line, field, "no tasks")


def test_description_given_twice() -> None:
    """A description both under `track:` and at the top is ambiguous."""
    assert_error(
        "track: {id: t, description: a}\ndescription: b\ntasks: [{id: a}]\n",
        2,
        "description",
        "twice",
    )


def test_several_problems_report_the_first_and_count_the_rest() -> None:
    """With several problems the first (by line) is shown and the rest are counted."""
    exc = assert_error(
        "track: t\ntasks:\n  - id: a\n    bogus: 1\n  - id: b\n    max_attempts: x\n",
        4,
        "tasks[0].bogus",
        "(and 1 more problem)",
    )
    assert "more problems" not in str(exc)


# --------------------------------------------------------------------------- ids and paths


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"../x"', "path separator"),
        ('"a/b"', "path separator"),
        ('"a..b"', "'..'"),
        ('".hidden"', "'.'"),
        ('"-x"', "'-'"),
        ('"a\\nb"', "newline"),
        ('"a\\0b"', "NUL"),
        ('"a b"', "letters, digits"),
        ('"' + "x" * 65 + '"', "64 characters"),
        ('""', "empty"),
    ],
)
def test_unsafe_task_ids(value: str, fragment: str) -> None:
    """Task ids that could escape the state directory or break names are refused."""
    assert_error(f"track: t\ntasks:\n  - id: {value}\n", 3, "tasks[0].id", fragment)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"../secrets"', "climbs out"),
        ('"src/../../etc"', "climbs out"),
        ('"/etc/passwd"', "absolute"),
        ('"~/.ssh/id_rsa"', "absolute"),
        ('"C:\\\\x"', "absolute"),
        ('"a\\0b"', "NUL"),
        ('"a\\nb"', "newline"),
    ],
)
def test_unsafe_file_paths(value: str, fragment: str) -> None:
    """File paths that could leave the repository are refused at their list item."""
    assert_error(
        f"track: t\ntasks:\n  - id: a\n    files:\n      - ok.py\n      - {value}\n",
        6,
        "tasks[0].files[1]",
        fragment,
    )


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ('track: "../evil"\ntasks: [{id: a}]\n', 1, "track"),
        ("track: t\ntemplates: /etc\ntasks: [{id: a}]\n", 2, "templates"),
        ("track: t\nshared_files: [../x]\ntasks: [{id: a}]\n", 2, "shared_files[0]"),
        ("track: t\ntasks:\n  - id: a\n    agent: ../../x\n", 4, "tasks[0].agent"),
        ("track: t\nagents:\n  ../x: {}\ntasks: [{id: a}]\n", 3, "agents.../x"),
        (
            "track: t\ntasks: [{id: a}]\nparallel_groups:\n"
            "  - {id: g, tasks: [a], shared_resources: [/x]}\n",
            4,
            "parallel_groups[0].shared_resources[0]",
        ),
    ],
)
def test_unsafe_names_elsewhere(text: str, line: int, field: str) -> None:
    """Track ids, agent names, templates and shared paths are checked the same way."""
    assert_error(text, line, field)


# --------------------------------------------------------------------------- graph errors


def test_unknown_dependency_names_line_and_suggests() -> None:
    """An unknown dependency is reported at its own list item with a suggestion."""
    assert_error(
        """\
        track: t
        tasks:
          - id: build
          - id: test
            depends_on:
              - build
              - buidl
        """,
        7,
        "tasks[1].depends_on",
        "unknown task 'buidl'",
        "(did you mean 'build'?)",
    )


def test_self_dependency() -> None:
    """A task that depends on itself is refused."""
    assert_error(
        "track: t\ntasks:\n  - id: a\n    depends_on: [a]\n",
        4,
        "tasks[0].depends_on",
        "depends on itself",
    )


def test_duplicate_task_id_names_both_lines() -> None:
    """A duplicate task id names the line of the duplicate and of the first definition."""
    assert_error(
        "track: t\ntasks:\n  - id: a\n  - id: b\n  - id: a\n",
        5,
        "tasks[2].id",
        "duplicate task id 'a'",
        "first defined at line 3",
    )


def test_cycle_is_printed() -> None:
    """A cycle is printed as a -> b -> c -> a, starting at its first task in the file."""
    assert_error(
        """\
        track: t
        tasks:
          - id: start
          - id: a
            depends_on: [start, b]
          - id: b
            depends_on: [c]
          - id: c
            depends_on: [a]
        """,
        5,
        "tasks[1].depends_on",
        "dependency cycle: a -> b -> c -> a",
    )


def test_two_task_cycle() -> None:
    """A two-task cycle is found too."""
    assert_error(
        "track: t\ntasks:\n  - {id: x, depends_on: [y]}\n  - {id: y, depends_on: [x]}\n",
        3,
        "tasks[0].depends_on",
        "x -> y -> x",
    )


def test_long_cycle_in_a_big_graph_is_found() -> None:
    """A 5,000-task chain closed into a cycle is reported without recursion."""
    lines = ["track: t", "tasks:", "  - {id: t0, depends_on: [t4999]}"]
    lines += [f"  - {{id: t{i}, depends_on: [t{i - 1}]}}" for i in range(1, 5000)]
    with pytest.raises(TrackError, match="dependency cycle: t0 -> t4999 -> t4998"):
        parse_track("\n".join(lines) + "\n", guard=False)


# --------------------------------------------------------------------------- parallel groups

GROUPED = """\
track: g
tasks:
  - id: a
    files: [src/a.py, package.json]
  - id: b
    files: [src/b.py, package.json]
  - id: c
    depends_on: [a]
  - id: d
    depends_on: [c]
"""


def test_valid_groups_load() -> None:
    """Groups of independent tasks whose shared file is declared load as ParallelGroup."""
    t = parse(
        GROUPED
        + "parallel_groups:\n"
        + "  - {id: g1, tasks: [a, b], conflict_free: true, shared_resources: [package.json]}\n"
    )
    assert t.parallel_groups == [
        ParallelGroup(
            id="g1", tasks=["a", "b"], conflict_free=True, shared_resources=["package.json"]
        )
    ]


def test_group_shared_by_track_shared_files() -> None:
    """Track-level shared_files also make a conflict-free claim true."""
    text = GROUPED.replace("tasks:\n", "shared_files: ['*.json']\ntasks:\n", 1)
    t = parse(text + "parallel_groups:\n  - {id: g1, tasks: [a, b], conflict_free: true}\n")
    assert t.shared_files == ["*.json"]


def test_group_with_unknown_task() -> None:
    """A group naming an unknown task is refused at that item, with a suggestion."""
    assert_error(
        GROUPED + "parallel_groups:\n  - id: g1\n    tasks:\n      - a\n      - bb\n",
        15,
        "parallel_groups[0].tasks",
        "unknown task 'bb'",
        "did you mean 'b'?",
    )


def test_group_contradicting_the_dag() -> None:
    """A group listing a task and its (transitive) dependency is refused."""
    assert_error(
        GROUPED + "parallel_groups:\n  - id: g1\n    tasks: [a, b, d]\n",
        13,
        "parallel_groups[0].tasks",
        "'d' depends on 'a'",
        "cannot run in parallel",
    )


def test_conflict_free_group_with_overlapping_files() -> None:
    """conflict_free with overlapping files not covered by shared_resources is refused."""
    assert_error(
        GROUPED + "parallel_groups:\n  - id: g1\n    tasks: [a, b]\n    conflict_free: true\n",
        14,
        "parallel_groups[0].conflict_free",
        "'a' and 'b' both change package.json",
    )


def test_conflict_free_group_of_thousands_sharing_a_glob() -> None:
    """A conflict_free group of 3,000 tasks changing one glob names its first two tasks (tasks
    with equal files are compared once, not pair by pair); shared_resources relieve it."""
    tasks = "".join(f"  - {{id: t{i}, run: 'true', files: ['src/**']}}\n" for i in range(3000))
    ids = ", ".join(f"t{i}" for i in range(3000))
    text = f"track: many\ntasks:\n{tasks}parallel_groups:\n  - {{id: g, tasks: [{ids}]"
    with pytest.raises(TrackError, match="'t0' and 't1' both change src/\\*\\*"):
        parse(text + ", conflict_free: true}\n")
    relieved = parse(text + ", conflict_free: true, shared_resources: ['src/**']}\n")
    assert relieved.parallel_groups[0].conflict_free


def test_overlap_without_conflict_free_claim_is_fine() -> None:
    """Without conflict_free a group may contain tasks with overlapping files."""
    t = parse(GROUPED + "parallel_groups:\n  - {id: g1, tasks: [a, b]}\n")
    assert not t.parallel_groups[0].conflict_free


def test_duplicate_group_id() -> None:
    """Two groups with one id are refused, naming the first."""
    assert_error(
        GROUPED + "parallel_groups:\n  - {id: g1, tasks: [a]}\n  - {id: g1, tasks: [b]}\n",
        13,
        "parallel_groups[1].id",
        "duplicate group id 'g1'",
        "line 12",
    )


# --------------------------------------------------------------------------- agents


def test_duplicate_agent_key() -> None:
    """An agent defined twice in the mapping is refused with both lines."""
    assert_error(
        "track: t\nagents:\n  rev: {}\n  dev: {}\n  rev: {role: x}\ntasks: [{id: a}]\n",
        5,
        "agents.rev",
        "duplicate agent 'rev'",
        "line 3",
    )


def test_duplicate_agent_in_list() -> None:
    """An agent defined twice in the list form is refused with both lines."""
    assert_error(
        "track: t\nagents:\n  - name: rev\n  - name: rev\ntasks: [{id: a}]\n",
        4,
        "agents[1].name",
        "duplicate agent 'rev'",
        "line 3",
    )


def test_agent_list_errors_point_into_the_list() -> None:
    """A bad field of an agent given as a list item points at that item's line."""
    assert_error(
        "track: t\nagents:\n  - name: rev\n    tools: 3\ntasks: [{id: a}]\n",
        4,
        "agents.rev.tools",
        "list",
    )


def test_agent_name_must_match_its_key() -> None:
    """An agent whose `name` differs from its key is refused."""
    assert_error(
        "track: t\nagents:\n  rev:\n    name: other\ntasks: [{id: a}]\n",
        4,
        "agents.rev.name",
        "'other'",
    )


def test_undefined_agents_are_notes_not_errors() -> None:
    """Tasks naming agents the track does not define load, with one note per agent and a line."""
    t = parse(
        """\
        track: t
        agents:
          known: {}
        tasks:
          - id: a
            agent: known
          - id: b
            agent: reviewer
          - id: c
            agent: reviewer
        """
    )
    notes = t.notes()
    assert len(notes) == 1
    assert notes[0].startswith(f"{SRC}:8: tasks[1].agent: agent 'reviewer' (used by b, c)")
    assert "not defined" in notes[0]


def test_default_agent_undefined_is_noted() -> None:
    """An undefined agent coming from defaults is noted too."""
    t = parse("track: t\ndefaults: {agent: helper}\ntasks: [{id: a}, {id: b}]\n")
    assert len(t.notes()) == 1 and "'helper' (used by a, b)" in t.notes()[0]


# --------------------------------------------------------------------------- guard


def test_unexpected_exceptions_become_track_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug while loading still reaches the user as a TrackError; guard=False shows it."""

    def boom(*args: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(track_mod, "_graph_problems", boom)
    with pytest.raises(TrackError, match="RuntimeError: kaboom") as info:
        parse_track(MINIMAL, source=SRC)
    assert info.value.path == SRC
    with pytest.raises(RuntimeError):
        parse_track(MINIMAL, source=SRC, guard=False)


# --------------------------------------------------------------------------- seed format

SEED = ROOT / "tracks" / "seed-example" / "track.yaml"


def test_seed_example_maps_onto_the_model() -> None:
    """The seed `dag:` example loads: nodes become tasks, groups keep their claims."""
    t = load_track(SEED)
    assert t.id == "auth-refactor"
    assert t.task_ids() == ["1.1", "1.2", "1.3", "2.1", "2.2", "3.1", "3.2"]
    first = t.task("1.1")
    assert (first.name, first.type, first.phase) == ("Token service", "code", 1)
    assert first.estimated_duration == 1800.0
    assert len(first.acceptance) == 2
    assert t.task("1.2").acceptance == ["The `jwt_auth` flag exists and defaults to off."]
    assert t.task("2.1").depends_on == ["1.1", "1.2", "1.3"]
    assert all(task.run is None and task.agent is None for task in t.tasks)
    assert [g.id for g in t.parallel_groups] == ["foundations", "surfaces", "finish"]
    assert t.parallel_groups[0].shared_resources == ["package.json"]
    assert t.budget_usd == 20


def test_seed_errors_point_into_the_dag() -> None:
    """Errors in seed nodes name dag.nodes[i] and the node's line."""
    assert_error(
        """\
        track: s
        dag:
          nodes:
            - {id: "1.1", name: One}
            - id: "1.2"
              depends_on: ["1.3"]
        """,
        6,
        "dag.nodes[1].depends_on",
        "unknown task '1.3'",
    )


def test_seed_nodes_accept_native_task_fields() -> None:
    """A seed node may use native task fields such as run and verify."""
    t = parse("track: s\ndag:\n  nodes:\n    - {id: a, run: 'true', verify: 'true', timeout: 5s}\n")
    assert (t.task("a").run, t.task("a").verify, t.task("a").timeout) == ("true", ["true"], 5.0)


def test_seed_groups_contradicting_the_dag() -> None:
    """Seed parallel groups are checked against the DAG like native ones."""
    assert_error(
        """\
        track: s
        dag:
          nodes:
            - {id: a}
            - {id: b, depends_on: [a]}
          parallel_groups:
            - {id: g, tasks: [a, b]}
        """,
        7,
        "dag.parallel_groups[0].tasks",
        "'b' depends on 'a'",
    )


def test_seed_without_nodes() -> None:
    """A dag without nodes is a missing-field error at `dag:`."""
    assert_error(
        "track: s\ndag:\n  parallel_groups: []\n", 2, "dag", "missing required field 'nodes'"
    )


# --------------------------------------------------------------------------- Track API

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


def test_task_lookup_and_order() -> None:
    """task() finds a task; task_ids() keeps file order."""
    t = parse(DIAMOND)
    assert t.task_ids() == ["top", "left", "right", "bottom", "alone"]
    assert t.task("left").depends_on == ["top"]


def test_unknown_task_is_a_user_error() -> None:
    """Asking for an unknown task raises UserError with a suggestion, never KeyError."""
    t = parse(DIAMOND)
    with pytest.raises(UserError, match=r"no task 'lefft'.*did you mean 'left'"):
        t.task("lefft")
    with pytest.raises(UserError):
        t.dependents("nope")
    with pytest.raises(UserError):
        t.descendants("nope")
    with pytest.raises(UserError):
        t.task_hash("nope")


def test_dependents_and_descendants() -> None:
    """dependents are direct (file order); descendants are transitive, without the task."""
    t = parse(DIAMOND)
    assert t.dependents("top") == ["left", "right"]
    assert t.dependents("bottom") == []
    assert t.descendants("top") == {"left", "right", "bottom"}
    assert t.descendants("left") == {"bottom"}
    assert t.descendants("alone") == set()


def test_models_are_frozen() -> None:
    """Tracks and tasks cannot be changed after loading (hashes and indexes stay true)."""
    t = parse(DIAMOND)
    with pytest.raises(ValidationError):
        t.task("top").run = "x"
    with pytest.raises(ValidationError):
        t.max_parallel = 9


def test_track_built_in_code_is_checked() -> None:
    """A Track built directly from Task objects is checked for unknown deps and cycles."""
    t = Track(id="code", tasks=[Task(id="a"), Task(id="b", depends_on=["a"])])
    assert t.descendants("a") == {"b"} and t.task("a").name == "a"
    with pytest.raises(ValidationError, match="cycle"):
        Track(id="c", tasks=[Task(id="a", depends_on=["b"]), Task(id="b", depends_on=["a"])])
    with pytest.raises(ValidationError, match="unknown task"):
        Track(id="c", tasks=[Task(id="a", depends_on=["zz"])])
    with pytest.raises(ValidationError, match="duplicate"):
        Track(id="c", tasks=[Task(id="a"), Task(id="a")])
    with pytest.raises(ValidationError):
        Task(id="a", bogus=1)  # type: ignore[call-arg]


# --------------------------------------------------------------------------- hashes

HASHED = """\
track: h
defaults:
  timeout: 1m
tasks:
  - id: a
    run: make a
    files: [src/a.py]
  - id: b
    depends_on: [a]
    run: make b
    verify: [test -f b]
  - id: c
    timeout: 5m
    run: make c
"""


def hashes(text: str) -> dict[str, str]:
    t = parse(text)
    return {tid: t.task_hash(tid) for tid in t.task_ids()}


def test_hash_is_stable_and_hex() -> None:
    """The same definition always hashes the same: a 64-char sha256 hex digest."""
    first, second = hashes(HASHED), hashes(HASHED)
    assert first == second
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in first.values())
    assert len(set(first.values())) == 3


def test_hash_ignores_key_order_layout_and_comments() -> None:
    """Reordered keys, flow style, comments and explicit defaults do not change a hash."""
    reordered = """\
    # same track, written differently
    tasks:
      - {files: [src/a.py], run: make a, id: a}
      - verify: test -f b
        run: make b   # comment
        depends_on: [a]
        id: b
        name: b
      - {id: c, run: make c, timeout: 300, max_attempts: 3}
    defaults: {timeout: 60}
    track: h
    """
    assert hashes(reordered) == hashes(HASHED)


@pytest.mark.parametrize(
    ("old", "new", "changed"),
    [
        ("run: make a", "run: make a2", {"a"}),
        ("verify: [test -f b]", "verify: [test -f b, test -s b]", {"b"}),
        ("depends_on: [a]", "depends_on: []", {"b"}),
        ("files: [src/a.py]", "files: [src/a.py, src/x.py]", {"a"}),
        ("timeout: 1m", "timeout: 2m", {"a", "b"}),
        ("  - id: c\n", "  - id: c\n    name: See\n", {"c"}),
        ("  - id: c\n", "  - id: c\n    acceptance: works\n", {"c"}),
    ],
)
def test_hash_changes_exactly_with_the_definition(old: str, new: str, changed: set[str]) -> None:
    """Editing a task (or a default it uses) changes its hash and no other task's."""
    before = hashes(HASHED)
    assert old in HASHED
    after = hashes(HASHED.replace(old, new, 1))
    assert {tid for tid in before if before[tid] != after[tid]} == changed


def test_notes_of_a_track_built_in_code() -> None:
    """notes() works without a source file (no line then)."""
    t = Track(id="n", tasks=[Task(id="a", agent="ghost")])
    assert t.notes() == [
        "agent 'ghost' (used by a) is not defined in this track; it is taken from"
        " .claude/agents/ (or inferred, with --adhoc)"
    ]


def test_hello_example_loads() -> None:
    """The hello example is a valid track of shell tasks with verify commands."""
    t = load_track(ROOT / "tracks" / "hello")
    assert t.id == "hello" and len(t.tasks) == 6
    assert all(task.run and task.verify for task in t.tasks)
    assert t.descendants("prepare") == set(t.task_ids()) - {"prepare"}


def test_dates_as_ids_keep_their_text() -> None:
    """`track: 2024-01-01` is the text, not a date; a date where text is needed says to quote."""
    assert parse("track: 2024-01-01\ntasks: [{id: a}]\n").id == "2024-01-01"
    assert_error(
        "track: t\ntasks:\n  - {id: a, model: 2024-01-01}\n", 3, "tasks[0].model", "quote it"
    )


def test_binary_values_are_refused() -> None:
    """`!!binary` values are refused rather than silently decoded."""
    assert_error("track: t\ntasks:\n  - id: !!binary aGVsbG8=\n", 3, "tasks[0].id", "binary")


def test_empty_optional_sections() -> None:
    """Optional sections left empty (`agents:` with nothing under it) mean empty."""
    t = parse(
        "track: t\ndescription:\ndefaults:\nagents:\nparallel_groups:\nshared_files:\n"
        "tasks: [{id: a}]\n"
    )
    assert (t.description, t.agents, t.parallel_groups, t.shared_files) == ("", {}, [], [])


def test_a_task_name_the_bus_cannot_carry_is_refused() -> None:
    """A task name is posted on the bus: one over the limit is a validation error."""
    from conductor.track import MAX_NAME

    text = f"track: x\ntasks:\n  - {{id: a, run: x, name: {'n' * (MAX_NAME + 1)}}}\n"
    with pytest.raises(TrackError, match="name"):
        parse_track(text)
