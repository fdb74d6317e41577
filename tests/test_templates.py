"""Worker templates: layers, type mapping, includes, strict rendering, SKILL.md writing."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import conductor
from conductor.agents import AgentRegistry, ResolvedAgent, TaskSpec, TrackSpec
from conductor.errors import StateError, TemplateError, UserError
from conductor.templates import (
    DEFAULT_TOOL_NAMES,
    PLACEHOLDERS,
    SourceLine,
    TemplateSet,
    builtin_templates_dir,
    bullets,
    check_templates,
    substitute,
    write_skill,
)

# --- stand-ins with the attributes of conductor.track's Track, Task and Agent ---------------


@dataclass
class Agent:
    name: str
    role: str | None = None
    goal: str | None = None
    system_prompt: str | None = None
    tools: list[str] | None = None
    model: str | None = None
    description: str | None = None


@dataclass
class Task:
    id: str
    name: str | None = None
    type: str | None = "code"
    depends_on: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)
    agent: str | None = None
    instructions: str | None = None
    run: str | None = None
    timeout: float | None = None
    max_attempts: int = 3
    model: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    permission_mode: str | None = None
    tools: list[str] | None = None


@dataclass
class Track:
    id: str
    tasks: list[Task]
    description: str | None = None
    agents: dict[str, Agent] = field(default_factory=dict)
    templates: str | None = None
    model: str | None = None
    source: Path | None = None

    def task(self, task_id: str) -> Task:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

    def dependents(self, task_id: str) -> list[str]:
        return [t.id for t in self.tasks if task_id in t.depends_on]


def demo_track(**track_kw: Any) -> Track:
    api = Task(
        "api",
        "Design the items API",
        "code",
        files=["src/api/*.py", "tests/test_api.py"],
        acceptance=["GET /items returns JSON", "errors are 4xx with a message"],
        verify=["pytest -q tests/test_api.py", "ruff check src"],
        instructions="Add the items endpoint.",
    )
    page = Task("page", "Items page", "ui", depends_on=["api"], files=["web/items.tsx"])
    return Track("demo", [api, page], description="A demo track", **track_kw)


AGENT = ResolvedAgent(
    name="api-designer",
    role="API designer",
    goal="Design it well.",
    system_prompt="You design APIs.",
    tools=None,
    model=None,
    source="inferred",
)


def render(ts: TemplateSet, track: TrackSpec, task: TaskSpec, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "track": track,
        "task": task,
        "agent": AGENT,
        "attempt": 1,
        "worker_id": f"{task.id}.1",
        "feedback": None,
        "bus_dir": Path("/state/demo/bus"),
    }
    args.update(kw)
    return ts.render(**args)


HEADER = (
    "---\nname: {name}\ndescription: A test template.\nlifecycle: ephemeral\n"
    "specialization: test\ntools: [Read]\nmodel: null\n---\n"
)


def write_template(directory: Path, name: str, body: str, header: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.md"
    path.write_text((header if header is not None else HEADER).format(name=name) + body)
    return path


# --- where templates come from ---------------------------------------------------------------


def test_builtin_dir_is_the_checkout_worker_templates() -> None:
    """Running from a checkout, the built-in templates are the top-level worker_templates/."""
    found = builtin_templates_dir()
    assert found == Path(conductor.__file__).resolve().parent.parent / "worker_templates"
    assert {p.stem for p in found.glob("*.md")} >= {
        "task-worker",
        "code-worker",
        "ui-worker",
        "integration-worker",
        "test-worker",
    }


def test_builtin_dir_prefers_installed_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed from a wheel, templates are found next to the package in _worker_templates."""
    package = tmp_path / "site" / "conductor"
    (package / "_worker_templates").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    monkeypatch.setattr(conductor, "__file__", str(package / "__init__.py"))
    assert builtin_templates_dir() == (package / "_worker_templates").resolve()


@pytest.mark.parametrize(
    ("task_type", "template"),
    [
        ("code", "code-worker"),
        ("ui", "ui-worker"),
        ("integration", "integration-worker"),
        ("test", "test-worker"),
        ("docs", "task-worker"),
        ("config", "task-worker"),
        ("research", "task-worker"),
        ("", "task-worker"),
        (None, "task-worker"),
        ("CODE", "code-worker"),
    ],
)
def test_type_maps_to_template(tmp_path: Path, task_type: str | None, template: str) -> None:
    """Each task type picks its specialised template; every other type uses task-worker."""
    assert TemplateSet(tmp_path).template_for(task_type) == template


def test_repo_type_worker_template_is_used(tmp_path: Path) -> None:
    """A repository's docs-worker.md makes docs tasks use it."""
    path = write_template(tmp_path / "worker_templates", "docs-worker", "Docs for {task_id}\n")
    ts = TemplateSet(tmp_path)
    assert ts.template_for("docs") == "docs-worker"
    assert ts.source_of("docs-worker") == path
    assert ts.layer_of("docs-worker") == "repo"
    track = Track("t", [Task("readme", type="docs")])
    assert render(ts, track, track.tasks[0]).body == "Docs for readme\n"


def test_precedence_track_over_repo_over_builtin(tmp_path: Path) -> None:
    """The track's templates dir beats the repo's worker_templates/, which beats the built-ins."""
    write_template(tmp_path / "worker_templates", "code-worker", "repo {task_id}\n")
    write_template(tmp_path / "worker_templates", "ui-worker", "repo ui\n")
    track_path = write_template(tmp_path / "tpl", "code-worker", "track {task_id}\n")
    track = demo_track(templates="tpl")
    ts = TemplateSet(tmp_path, track)
    assert ts.source_of("code-worker") == track_path
    assert ts.layer_of("code-worker") == "track"
    assert ts.layer_of("ui-worker") == "repo"
    assert ts.layer_of("test-worker") == "built-in"
    assert render(ts, track, track.tasks[0]).body == "track api\n"
    assert render(ts, track, track.tasks[1]).body == "repo ui\n"
    assert TemplateSet(tmp_path).layer_of("code-worker") == "repo"


def test_track_templates_dir_must_exist_and_stay_in_repo(tmp_path: Path) -> None:
    """A missing or escaping templates: directory is an error naming the track and the field."""
    source = tmp_path / "track.yaml"
    with pytest.raises(TemplateError) as missing:
        TemplateSet(tmp_path, demo_track(templates="nope", source=source))
    assert missing.value.field == "templates" and missing.value.path == source
    with pytest.raises(TemplateError, match="climbs out"):
        TemplateSet(tmp_path, demo_track(templates="../elsewhere", source=source))


def test_readme_and_hidden_files_are_not_templates(tmp_path: Path) -> None:
    """README.md and dot files in a templates directory are ignored."""
    d = tmp_path / "worker_templates"
    d.mkdir()
    (d / "README.md").write_text("# How to write templates\n")
    (d / ".draft.md").write_text("nothing")
    ts = TemplateSet(tmp_path)
    assert "README" not in ts.names() and ".draft" not in ts.names()
    ts.check()


def test_bad_template_file_name_is_an_error(tmp_path: Path) -> None:
    """A template file name outside lowercase/digits/-/_ is rejected, naming the file."""
    path = write_template(tmp_path / "worker_templates", "Docs Worker", "x\n")
    with pytest.raises(TemplateError) as err:
        TemplateSet(tmp_path)
    assert err.value.path == path


# --- includes --------------------------------------------------------------------------------


def test_specialised_templates_include_base_protocol_first(tmp_path: Path) -> None:
    """code/ui/integration/test workers carry the whole base protocol before their own section."""
    ts = TemplateSet(tmp_path)
    base = [line.text for line in ts.expand("task-worker")]
    for name in ("code-worker", "ui-worker", "integration-worker", "test-worker"):
        lines = [line.text for line in ts.expand(name)]
        assert lines[: len(base)] == base, name
        rest = "\n".join(lines[len(base) :])
        assert "## Specialisation" in rest
        assert "{{>" not in "\n".join(lines)


def test_include_keeps_origin_lines(tmp_path: Path) -> None:
    """Expanded lines remember the file and line they were written on."""
    d = tmp_path / "worker_templates"
    part = write_template(d, "part", "part one\npart two\n")
    main = write_template(d, "main-worker", "top\n{{> part}}\nbottom\n")
    lines = TemplateSet(tmp_path).expand("main-worker")
    assert [(line.text, line.path, line.lineno) for line in lines] == [
        ("top", main, 9),
        ("part one", part, 9),
        ("part two", part, 10),
        ("bottom", main, 11),
    ]


def test_nested_include(tmp_path: Path) -> None:
    """Included templates may include others."""
    d = tmp_path / "worker_templates"
    write_template(d, "inner", "inner\n")
    write_template(d, "middle", "{{> inner}}\nmiddle\n")
    write_template(d, "outer-worker", "{{> middle}}\nouter\n")
    assert [x.text for x in TemplateSet(tmp_path).expand("outer-worker")] == [
        "inner",
        "middle",
        "outer",
    ]


def test_unknown_include_names_file_and_line(tmp_path: Path) -> None:
    """Including a template that does not exist is an error at the include line."""
    path = write_template(tmp_path / "worker_templates", "x-worker", "a\n{{> missing}}\n")
    with pytest.raises(TemplateError, match="unknown template 'missing'") as err:
        TemplateSet(tmp_path).expand("x-worker")
    assert (err.value.path, err.value.line) == (path, 10)


def test_include_cycle_is_an_error(tmp_path: Path) -> None:
    """Templates that include each other are reported with the chain."""
    d = tmp_path / "worker_templates"
    write_template(d, "a", "{{> b}}\n")
    write_template(d, "b", "{{> a}}\n")
    with pytest.raises(TemplateError, match="include cycle: a → b → a"):
        TemplateSet(tmp_path).expand("a")
    write_template(d, "self", "{{> self}}\n")
    with pytest.raises(TemplateError, match="cycle"):
        TemplateSet(tmp_path).check()


def test_malformed_include_is_an_error(tmp_path: Path) -> None:
    """An include that is not alone on its line (or has a bad name) is rejected, not printed."""
    path = write_template(tmp_path / "worker_templates", "x-worker", "ok\n{{> two words}}\n")
    with pytest.raises(TemplateError, match="malformed include") as err:
        TemplateSet(tmp_path).load("x-worker")
    assert (err.value.path, err.value.line) == (path, 10)


# --- placeholders ----------------------------------------------------------------------------


def test_unknown_placeholder_names_file_and_line(tmp_path: Path) -> None:
    """An unknown placeholder fails with the template file, line and a suggestion."""
    path = write_template(tmp_path / "worker_templates", "x-worker", "one\ntwo {task_idd}\n")
    with pytest.raises(TemplateError) as err:
        TemplateSet(tmp_path).load("x-worker")
    assert err.value.path == path and err.value.line == 10
    assert "unknown placeholder {task_idd}" in str(err.value)
    assert "did you mean {task_id}" in str(err.value)
    assert str(err.value).startswith(f"{path}:10: ")


def test_unknown_placeholder_in_included_file_names_that_file(tmp_path: Path) -> None:
    """An error inside an included template points at the included file, not the includer."""
    d = tmp_path / "worker_templates"
    bad = write_template(d, "task-worker", "fine\n{nope}\n")
    write_template(d, "code-worker", "{{> task-worker}}\n")
    with pytest.raises(TemplateError) as err:
        TemplateSet(tmp_path).expand("code-worker")
    assert (err.value.path, err.value.line) == (bad, 10)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a { b", "stray '{'"),
        ("a } b", "stray '}'"),
        ("{task id}", "malformed placeholder"),
        ("{Task_Id}", "malformed placeholder"),
        ("{}", "malformed placeholder"),
        ("{0}", "malformed placeholder"),
        ('{"json": 1}', "malformed placeholder"),
    ],
)
def test_malformed_braces_are_errors(tmp_path: Path, line: str, message: str) -> None:
    """Stray braces and malformed placeholders are errors: literal braces must be doubled."""
    write_template(tmp_path / "worker_templates", "x-worker", f"{line}\n")
    with pytest.raises(TemplateError, match=message) as err:
        TemplateSet(tmp_path).load("x-worker")
    assert err.value.line == 9


def test_leftover_placeholder_without_value_is_an_error() -> None:
    """A known placeholder with no value at render time is an error, never left in the text."""
    line = SourceLine("hello {task_id} and {feedback}", Path("/t/x.md"), 12)
    with pytest.raises(TemplateError, match=r"\{feedback\} .* without a value") as err:
        substitute([line], {"task_id": "a"})
    assert (err.value.path, err.value.line) == (Path("/t/x.md"), 12)


def test_escaped_braces_render_literally(tmp_path: Path) -> None:
    """{{ and }} are literal braces; {{{task_id}}} wraps a value in braces."""
    write_template(
        tmp_path / "worker_templates",
        "code-worker",
        'json {{"id": 1}}\nliteral {{task_id}}\nwrapped {{{task_id}}}\n',
    )
    track = demo_track()
    body = render(TemplateSet(tmp_path), track, track.tasks[0]).body
    assert body == 'json {"id": 1}\nliteral {task_id}\nwrapped {api}\n'


def test_values_are_not_scanned_again(tmp_path: Path) -> None:
    """Braces inside task text (instructions, acceptance) are inserted verbatim."""
    write_template(tmp_path / "worker_templates", "code-worker", "{instructions}\n{acceptance}\n")
    track = demo_track()
    task = track.tasks[0]
    task.instructions = "Return {task_id} and {{x}} as-is"
    task.acceptance = ["dict is {}"]
    body = render(TemplateSet(tmp_path), track, task).body
    assert body == "Return {task_id} and {{x}} as-is\n- dict is {}\n"


@given(st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\n")))
def test_escaping_round_trips(text: str) -> None:
    """Any line with its braces doubled renders back to itself."""
    escaped = text.replace("{", "{{").replace("}", "}}")
    assert substitute([SourceLine(escaped, Path("x.md"), 1)], {}) == text


def test_every_placeholder_renders(tmp_path: Path) -> None:
    """A template using every known placeholder renders with no braces left."""
    body = "\n".join(f"{name}=<{{{name}}}>" for name in sorted(PLACEHOLDERS)) + "\n"
    write_template(tmp_path / "worker_templates", "code-worker", body)
    track = demo_track()
    out = render(TemplateSet(tmp_path), track, track.tasks[0], feedback="verify failed").body
    assert "{" not in out and "}" not in out
    assert "task_id=<api>" in out
    assert "unblocks=<- `page`: Items page>" in out
    assert "depends_on=<(none)>" in out
    assert "feedback=<verify failed>" in out
    assert "bus_dir=</state/demo/bus>" in out
    assert "post_command=<conductor bus post>" in out


def test_lists_render_as_bullets() -> None:
    """Lists are markdown bullets, '(none)' when empty; code items become code spans."""
    assert bullets([]) == "(none)"
    assert bullets(["", "  "]) == "(none)"
    assert bullets(["a", "b\nc"]) == "- a\n- b\n  c"
    assert bullets(["pytest -q"], code=True) == "- `pytest -q`"
    assert bullets(["echo `date`"], code=True) == "- `` echo `date` ``"
    assert bullets(["set -e\nmake"], code=True) == "- ```sh\n  set -e\n  make\n  ```"


def test_builtin_render_has_task_details(tmp_path: Path) -> None:
    """The base protocol states the task, files, acceptance, verify, tools and feedback."""
    track = demo_track()
    r = render(
        TemplateSet(tmp_path),
        track,
        track.tasks[0],
        attempt=2,
        worker_id="api.2",
        feedback="pytest failed: test_items_empty",
    )
    body = r.body
    assert body.startswith("# Task `api`: Design the items API\n")
    for expected in (
        "worker `api.2`: attempt 2 of 3",
        "- `src/api/*.py`",
        "- GET /items returns JSON",
        "- `pytest -q tests/test_api.py`",
        "- `page`: Items page",
        "Add the items endpoint.",
        "pytest failed: test_items_empty",
        "**API designer** (`api-designer`)",
        "You design APIs.",
        "branch `conductor/api.2`",
        *DEFAULT_TOOL_NAMES.values(),
    ):
        assert expected in body, expected
    assert "/state/demo/bus" not in body, "a worker is not told where the bus is"
    assert "## Specialisation: code" in body


def test_tool_names_can_be_overridden(tmp_path: Path) -> None:
    """Callers may rename the tools the protocol tells the worker to call."""
    track = demo_track()
    names = {"complete_tool": "done_tool", "fail_tool": "give_up"}
    body = render(TemplateSet(tmp_path), track, track.tasks[0], tool_names=names).body
    assert "`done_tool`" in body and "`give_up`" in body
    assert DEFAULT_TOOL_NAMES["complete_tool"] not in body
    with pytest.raises(ValueError, match="unknown tool placeholders: bogus"):
        render(TemplateSet(tmp_path), track, track.tasks[0], tool_names={"bogus": "x"})


def test_rendered_text_is_frontmatter_plus_body(tmp_path: Path) -> None:
    """SKILL.md text is YAML frontmatter naming the task and worker, then the body."""
    track = demo_track()
    r = render(TemplateSet(tmp_path), track, track.tasks[1])
    assert r.template == "ui-worker"
    assert r.path == builtin_templates_dir() / "ui-worker.md"
    head, sep, body = r.text.partition("\n---\n\n")
    assert sep and body == r.body
    front = yaml.safe_load(head.removeprefix("---\n"))
    assert front == r.frontmatter
    assert front["name"] == "ui-worker"
    assert front["lifecycle"] == "ephemeral"
    assert front["task"] == "page" and front["worker"] == "page.1" and front["track"] == "demo"
    assert "Items page" in front["description"]


# --- frontmatter validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "line", "field", "message"),
    [
        (HEADER.replace("model: null\n", "model: null\ncolour: red\n"), 8, "colour", "unknown"),
        (HEADER.replace("description: A test template.\n", ""), 1, "description", "missing"),
        (HEADER.replace("ephemeral", "persistent"), 4, "lifecycle", "ephemeral"),
        (HEADER.replace("tools: [Read]", "tools: Read"), 6, "tools", "list"),
        (HEADER.replace("tools: [Read]", "tools: [Read, 3]"), 6, "tools[1]", "string"),
        (HEADER.replace("name: {name}", "name: other"), 2, "name", "does not match"),
        (
            HEADER.replace("specialization: test", "specialization: ''"),
            5,
            "specialization",
            "empty",
        ),
    ],
)
def test_frontmatter_errors_name_file_line_field(
    tmp_path: Path, header: str, line: int, field: str, message: str
) -> None:
    """Invalid frontmatter fails with the template file, the field's line and the field."""
    path = write_template(tmp_path / "worker_templates", "x-worker", "body\n", header=header)
    with pytest.raises(TemplateError, match=message) as err:
        TemplateSet(tmp_path).load("x-worker")
    assert (err.value.path, err.value.line, err.value.field) == (path, line, field)


def test_missing_frontmatter_is_an_error(tmp_path: Path) -> None:
    """A template without a --- block fails at line 1."""
    path = write_template(tmp_path / "worker_templates", "x-worker", "just text\n", header="")
    with pytest.raises(TemplateError, match="missing YAML frontmatter") as err:
        TemplateSet(tmp_path).load("x-worker")
    assert (err.value.path, err.value.line) == (path, 1)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    """A YAML syntax error in the frontmatter reports the file line it is on."""
    header = HEADER.replace("tools: [Read]", "tools: [Read")
    path = write_template(tmp_path / "worker_templates", "x-worker", "b\n", header=header)
    with pytest.raises(TemplateError, match="invalid YAML") as err:
        TemplateSet(tmp_path).load("x-worker")
    assert err.value.path == path and err.value.line in (6, 7)


def test_frontmatter_must_be_a_mapping(tmp_path: Path) -> None:
    """Frontmatter that is a YAML list is rejected."""
    write_template(tmp_path / "worker_templates", "x-worker", "b\n", header="---\n- a\n---\n")
    with pytest.raises(TemplateError, match="mapping"):
        TemplateSet(tmp_path).load("x-worker")


def test_extends_inherits_tools_and_model(tmp_path: Path) -> None:
    """A template that extends another and omits tools/model takes them from its base."""
    d = tmp_path / "worker_templates"
    write_template(
        d, "base", "b\n", header=HEADER.replace("[Read]", "[Read, Grep]").replace("null", "opus")
    )
    child = "---\nname: {name}\ndescription: d\nlifecycle: ephemeral\nspecialization: s\n"
    write_template(d, "child", "c\n", header=child + "extends: base\n---\n")
    write_template(d, "nulled", "c\n", header=child + "extends: base\nmodel: null\n---\n")
    ts = TemplateSet(tmp_path)
    assert ts.defaults("child") == (["Read", "Grep"], "opus")
    assert ts.defaults("nulled") == (["Read", "Grep"], None)


def test_extends_errors(tmp_path: Path) -> None:
    """extends must name a known template, must not loop, and tools must come from somewhere."""
    d = tmp_path / "worker_templates"
    bare = "---\nname: {name}\ndescription: d\nlifecycle: ephemeral\nspecialization: s\n"
    path = write_template(d, "orphan", "x\n", header=bare + "extends: ghost\n---\n")
    with pytest.raises(TemplateError, match="unknown template 'ghost'") as err:
        TemplateSet(tmp_path).defaults("orphan")
    assert (err.value.path, err.value.line, err.value.field) == (path, 6, "extends")
    path.unlink()
    write_template(d, "loop-a", "x\n", header=bare + "extends: loop-b\n---\n")
    write_template(d, "loop-b", "x\n", header=bare + "extends: loop-a\n---\n")
    with pytest.raises(TemplateError, match="extends cycle"):
        TemplateSet(tmp_path).defaults("loop-a")
    for name in ("loop-a", "loop-b"):
        (d / f"{name}.md").unlink()
    write_template(d, "toolless", "x\n", header=bare + "---\n")
    with pytest.raises(TemplateError, match="no default tools") as err2:
        TemplateSet(tmp_path).check()
    assert err2.value.field == "tools"


# --- tools and model -------------------------------------------------------------------------


def test_tools_precedence_agent_task_template(tmp_path: Path) -> None:
    """Tools come from the agent if set, else the task, else the template's defaults."""
    track = demo_track()
    task = track.tasks[0]
    ts = TemplateSet(tmp_path)
    assert render(ts, track, task).tools == ["Read", "Write", "Edit", "Glob", "Grep", "Bash"]
    task.tools = ["Read", "Edit"]
    assert render(ts, track, task).tools == ["Read", "Edit"]
    agent = ResolvedAgent("a", "A", "g", "p", ["Read"], None, "track")
    rendered = render(ts, track, task, agent=agent)
    assert rendered.tools == ["Read"] and rendered.frontmatter["tools"] == ["Read"]


def test_model_precedence_task_agent_track_template(tmp_path: Path) -> None:
    """Model: the task's, else the agent's, else the track's, else the template's."""
    header = HEADER.replace("model: null", "model: template-model")
    write_template(tmp_path / "worker_templates", "code-worker", "x\n", header=header)
    track = demo_track()
    task = track.tasks[0]
    ts = TemplateSet(tmp_path)
    agent = ResolvedAgent("a", "A", "g", "p", None, "agent-model", "track")
    assert render(ts, track, task).model == "template-model"
    track.model = "track-model"
    assert render(ts, track, task).model == "track-model"
    assert render(ts, track, task, agent=agent).model == "agent-model"
    task.model = "task-model"
    rendered = render(ts, track, task, agent=agent)
    assert rendered.model == "task-model" and rendered.frontmatter["model"] == "task-model"


# --- check_templates -------------------------------------------------------------------------


def test_check_templates_accepts_builtins_for_every_type(tmp_path: Path) -> None:
    """Every built-in template renders for a track using every task type."""
    tasks = [
        Task(t, f"{t} task", t, acceptance=["it works"], verify=["true"])
        for t in ("code", "ui", "integration", "test", "docs", "config", "other")
    ]
    check_templates(Track("all", tasks), tmp_path)


def test_check_templates_finds_error_in_used_template(tmp_path: Path) -> None:
    """A bad placeholder in a repo override is found at validate time, with file and line."""
    path = write_template(tmp_path / "worker_templates", "code-worker", "ok\n\n{taskid}\n")
    with pytest.raises(TemplateError) as err:
        check_templates(demo_track(), tmp_path)
    assert (err.value.path, err.value.line) == (path, 11)


def test_check_templates_checks_unused_templates_too(tmp_path: Path) -> None:
    """A broken template no task uses is still reported: templates are user input."""
    write_template(tmp_path / "worker_templates", "spare", "{oops}\n")
    track = Track("t", [Task("a", type="docs")])
    with pytest.raises(TemplateError, match="oops"):
        check_templates(track, tmp_path)


def test_check_templates_skips_shell_tasks_and_reports_agent_errors(tmp_path: Path) -> None:
    """Shell tasks render nothing; a broken .claude/agents file a task uses is reported."""
    agents = tmp_path / ".claude" / "agents"
    agents.mkdir(parents=True)
    (agents / "reviewer.md").write_text("---\nname: reviewer\n---\nprompt\n")
    track = Track("t", [Task("build", run="make", agent="reviewer")])
    check_templates(track, tmp_path)
    track.tasks.append(Task("review", agent="reviewer"))
    with pytest.raises(UserError, match="description"):
        check_templates(track, tmp_path)


def test_registry_and_templates_work_together(tmp_path: Path) -> None:
    """A resolved agent's role and prompt appear in the rendered worker."""
    track = demo_track(agents={"api-designer": Agent("api-designer", system_prompt="Be RESTful.")})
    track.tasks[0].agent = "api-designer"
    agent = AgentRegistry(track, tmp_path).resolve(track.tasks[0])
    body = render(TemplateSet(tmp_path, track), track, track.tasks[0], agent=agent).body
    assert "Be RESTful." in body and "**API designer**" in body


# --- write_skill -----------------------------------------------------------------------------


def _rendered(tmp_path: Path) -> Any:
    track = demo_track()
    return render(TemplateSet(tmp_path), track, track.tasks[0])


def test_write_skill_writes_private_file(tmp_path: Path) -> None:
    """SKILL.md is written with the rendered text and mode 0600."""
    worker = tmp_path / "w"
    worker.mkdir()
    rendered = _rendered(tmp_path)
    path = write_skill(worker, rendered)
    assert path == worker / "SKILL.md"
    assert path.read_text() == rendered.text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_write_skill_refuses_planted_symlink(tmp_path: Path) -> None:
    """A symlink planted at SKILL.md is refused and its target is left untouched."""
    worker = tmp_path / "w"
    worker.mkdir()
    target = tmp_path / "victim.txt"
    target.write_text("precious")
    (worker / "SKILL.md").symlink_to(target)
    with pytest.raises(StateError):
        write_skill(worker, _rendered(tmp_path))
    assert target.read_text() == "precious"
    dangling = tmp_path / "w2"
    dangling.mkdir()
    (dangling / "SKILL.md").symlink_to(tmp_path / "does-not-exist")
    with pytest.raises(StateError):
        write_skill(dangling, _rendered(tmp_path))
    assert not (tmp_path / "does-not-exist").exists()


def test_write_skill_refuses_existing_file_and_symlinked_dir(tmp_path: Path) -> None:
    """An existing SKILL.md is not overwritten; a worker dir that is a symlink is refused."""
    worker = tmp_path / "w"
    worker.mkdir()
    (worker / "SKILL.md").write_text("old")
    with pytest.raises(StateError, match="already exists"):
        write_skill(worker, _rendered(tmp_path))
    assert (worker / "SKILL.md").read_text() == "old"
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    with pytest.raises(StateError, match="symbolic link"):
        write_skill(tmp_path / "link", _rendered(tmp_path))
    assert not (real / "SKILL.md").exists()


def test_builtin_readme_is_not_a_template(tmp_path: Path) -> None:
    """The README shipped beside the built-in templates documents them and is not one."""
    assert (builtin_templates_dir() / "README.md").is_file()
    assert "README" not in TemplateSet(tmp_path).names()


def test_check_templates_with_a_loaded_track_file(tmp_path: Path) -> None:
    """check_templates works on a track loaded from YAML, agents and overrides included."""
    from conductor.track import load_track

    (tmp_path / "track.yaml").write_text(
        "track: real\n"
        "templates: tpl\n"
        "agents:\n  api-designer: {role: API designer}\n"
        "tasks:\n"
        "  - {id: api, type: code, agent: api-designer, acceptance: [it works]}\n"
        "  - {id: guide, type: docs, depends_on: [api]}\n"
        "  - {id: build, run: make}\n"
    )
    write_template(tmp_path / "tpl", "docs-worker", "Docs for {task_id} after\n{depends_on}\n")
    track = load_track(tmp_path / "track.yaml")
    check_templates(track, tmp_path)
    ts = TemplateSet(tmp_path, track)
    agent = AgentRegistry(track, tmp_path).resolve(track.task("guide"))
    rendered = render(ts, track, track.task("guide"), agent=agent)
    assert rendered.body == "Docs for guide after\n- `api`\n"
    api = render(ts, track, track.task("api"))
    assert "- `guide`" in api.body
    write_template(tmp_path / "tpl", "docs-worker", "Docs {task}\n")
    with pytest.raises(TemplateError, match=r"tpl/docs-worker.md:9: unknown placeholder"):
        check_templates(track, tmp_path)


def test_template_tool_names_are_the_served_tools() -> None:
    """Every tool name a template tells the worker is one the session is really served."""
    from conductor.contract import qualified_tool_names
    from conductor.templates import DEFAULT_TOOL_NAMES

    assert sorted(DEFAULT_TOOL_NAMES.values()) == sorted(qualified_tool_names())
