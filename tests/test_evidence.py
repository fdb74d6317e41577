"""Evidence: globs, path normalisation, the file guard and the claim verdict.

What a copy changed is tested in tests/test_copies.py and tests/test_isolation.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conductor.executors.evidence import (
    Claim,
    Evidence,
    FileGuard,
    ReadGuard,
    expects_change,
    judge,
    locks_covering,
    matches_globs,
    repo_relative,
)
from conductor.locks import PathLocks


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
    )


@pytest.fixture
def gitrepo(tmp_path: Path) -> Path:
    """A git repository with two committed files."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    (repo / "src" / "a.py").write_text("a = 1\n")
    (repo / "README.md").write_text("hello\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "init")
    return repo


@pytest.mark.parametrize(
    ("path", "globs", "expected"),
    [
        ("src/a.py", ["src/*.py"], True),
        ("src/pkg/a.py", ["src/*.py"], False),
        ("src/pkg/a.py", ["src/**/*.py"], True),
        ("src/a.py", ["src/**/*.py"], True),
        ("src/a.py", ["src/**"], True),
        ("src/a.py", ["src/"], True),
        ("src/a.py", ["src"], True),
        ("srcx/a.py", ["src"], False),
        ("README.md", ["README.md"], True),
        ("docs/README.md", ["README.md"], False),
        ("docs/x.md", ["**/*.md"], True),
        ("x.md", ["**/*.md"], True),
        ("a1.txt", ["a?.txt"], True),
        ("ab.txt", ["a[0-9].txt"], False),
        ("a.py", ["./a.py"], True),
    ],
)
def test_matches_globs(path: str, globs: list[str], expected: bool) -> None:
    """Globs: ``*`` stays in one directory, ``**`` spans many, a directory covers its tree."""
    assert matches_globs(path, globs) is expected


@given(st.lists(st.sampled_from(["a", "b", "c.py", "d"]), min_size=1, max_size=5))
def test_literal_glob_matches_itself(parts: list[str]) -> None:
    """A literal path always matches itself and nothing that merely shares its prefix."""
    path = "/".join(parts)
    assert matches_globs(path, [path])
    assert not matches_globs(path + "x", [path])


def test_repo_relative_normalises_and_refuses(tmp_path: Path) -> None:
    """Relative and absolute paths inside the repository are normalised; escapes are refused."""
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    assert repo_relative(repo, "src/a.py").rel == "src/a.py"
    assert repo_relative(repo, str(repo / "src" / ".." / "b.py")).rel == "b.py"
    assert repo_relative(repo, "./src//a.py").rel == "src/a.py"
    out = repo_relative(repo, "../elsewhere.txt")
    assert out.rel is None and "outside the repository" in (out.reason or "")
    assert repo_relative(repo, "/etc/passwd").rel is None
    assert repo_relative(repo, ".git/config").reason is not None
    (repo / "link").symlink_to(tmp_path)
    assert repo_relative(repo, "link/x.txt").rel is None


def test_guard_denies_outside_files_and_repo(tmp_path: Path) -> None:
    """The guard allows declared files, refuses others, the repository's outside and state dir."""
    repo = tmp_path / "repo"
    (repo / ".conductor").mkdir(parents=True)
    guard = FileGuard(
        repo=repo, globs=("src/**",), worker="t.1", extra_forbidden=(repo / ".conductor",)
    )
    assert guard.check("src/a.py") == ("src/a.py", None)
    assert guard.check(str(repo / "src" / "deep" / "b.py")) == ("src/deep/b.py", None)
    rel, reason = guard.check("docs/x.md")
    assert rel == "docs/x.md" and reason and "outside this task's files" in reason
    assert guard.check("../x")[1]
    assert guard.check(".conductor/t/bus/1.json")[1]
    unconfined = FileGuard(repo=repo, globs=(), worker="t.1")
    assert unconfined.check("anything/at/all.txt") == ("anything/at/all.txt", None)
    assert unconfined.check("/tmp/x")[1]


def test_guard_denies_files_locked_by_another_worker(tmp_path: Path) -> None:
    """A file locked by another worker is refused; the worker's own lock is not in the way."""
    locks = PathLocks(tmp_path / "locks")
    locks.acquire("a.py", worker="other.1", task="other", attempt=1)
    locks.acquire("lib/*.py", worker="other.1", task="other", attempt=1)
    locks.acquire("mine.py", worker="me.1", task="me", attempt=1)
    repo = tmp_path / "repo"
    repo.mkdir()
    guard = FileGuard(repo=repo, globs=(), worker="me.1", locks=locks_covering(locks))
    _rel, reason = guard.check("a.py")
    assert reason and "locked by worker other.1" in reason and "(task other)" in reason
    assert guard.check("lib/x.py")[1], "a glob lock covers the files it matches"
    assert guard.check("mine.py") == ("mine.py", None)
    assert guard.check("b.py") == ("b.py", None)
    own = FileGuard(repo=repo, globs=(), worker="other.1", locks=locks_covering(locks))
    assert own.check("a.py") == ("a.py", None)


def test_evidence_counts_each_call_once_and_skips_conductor_tools() -> None:
    """A tool call seen by hook and stream counts once; conductor's own tools do not count."""
    ev = Evidence()
    ev.record_tool_use("Write", "tu1")
    ev.record_tool_use("Write", "tu1")
    ev.record_tool_use("Bash", "tu2")
    ev.record_tool_use("mcp__conductor__report_complete", "tu3")
    assert ev.tool_calls == 2
    assert ev.tool_counts == {"Write": 1, "Bash": 1}


@pytest.mark.parametrize(
    ("kind", "has_files", "expected"),
    [
        ("code", False, True),
        ("ui", True, True),
        ("test", False, True),
        ("integration", False, True),
        ("docs", True, True),
        ("docs", False, False),
        ("config", True, True),
        ("research", True, False),
        ("review", False, False),
        ("analysis", True, False),
        (None, True, True),
        (None, False, False),
    ],
)
def test_expects_change(kind: str | None, has_files: bool, expected: bool) -> None:
    """Which task types must show a file change for a completion claim to stand."""
    assert expects_change(kind, has_files) is expected


def test_judge_rules() -> None:
    """No claim, a failure claim and no tool calls are each rejected with a reason."""
    ev = Evidence()
    assert judge(ev).error == "session ended without reporting completion"
    ev.claim = Claim(complete=False, summary="cannot build")
    assert "cannot build" in (judge(ev).error or "")
    ev.claim = Claim(complete=True, summary="done", files_changed=["a.py"])
    assert judge(ev).error == "no evidence: no tool calls"
    ev.record_tool_use("Write", "t1")
    verdict = judge(ev)
    assert verdict.ok and verdict.summary == "done"




# ----------------------------------------------------------------------------- the read guard


@pytest.fixture
def state_layout(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """(checkout, state root, the attempt's copy inside it, its temp dir)."""
    checkout, state = tmp_path / "repo", tmp_path / "repo" / ".conductor"
    copy, tmp = state / "t" / "copies" / "a.1", state / "t" / "copies" / "a.1.tmp"
    for d in (checkout, copy, tmp):
        d.mkdir(parents=True)
    return checkout, state, copy, tmp


def test_read_guard_keeps_an_attempt_out_of_the_state_but_its_own_copy(
    state_layout: tuple[Path, Path, Path, Path],
) -> None:
    """Inside the state only the attempt's copy and temp dir are readable; outside it all is,
    and a symlink or `..` is judged by where it lands."""
    checkout, state, copy, tmp = state_layout
    guard = ReadGuard(hidden=(state,), open=(copy, tmp))
    (copy / "out").symlink_to(state / "t" / "bus")
    (copy / "deep").symlink_to("/usr/share/doc")

    def refused(tool: str, **tool_input: str) -> str | None:
        verdict = guard.check(tool, tool_input, copy)
        return None if verdict is None else verdict[1]

    assert refused("Read", file_path=str(copy / "src" / "a.py")) is None
    assert refused("Read", file_path="src/a.py") is None
    assert refused("Read", file_path=str(tmp / "scratch")) is None
    assert refused("Read", file_path=str(checkout / "README.md")) is None
    assert refused("Read", file_path="/etc/hostname") is None
    assert refused("Grep", pattern="x") is None
    for tool, call in [
        ("Read", {"file_path": str(state / "t" / "workers" / ".secret")}),
        ("Read", {"file_path": "../../bus/000000001.TRACK_STARTED.-.-.json"}),
        ("Read", {"file_path": "out/000000001.TRACK_STARTED.-.-.json"}),
        ("NotebookRead", {"notebook_path": str(state / "other" / "n.ipynb")}),
        ("Grep", {"pattern": "x", "path": str(state / "t" / "logs")}),
        ("LS", {"path": "../a.2"}),
        ("Glob", {"pattern": "../../../other/**"}),
        ("Glob", {"pattern": f"{state}/**/*.json"}),
        ("Grep", {"pattern": "x", "path": "~root/../../.."}),  # a directory `~root` to the CLI
        ("Grep", {"pattern": "x", "path": "deep/../../bus"}),  # `..` by the text, as the CLI
        ("Glob", {"pattern": "**", "path": f" {state}"}),  # the CLI trims the path
        ("Grep", {"pattern": "x", "path": f"\ufeff\u3000{state}/other\n"}),
    ]:
        reason = refused(tool, **call)
        assert reason is not None and "conductor's state directory" in reason, (tool, call)


def test_read_guard_refuses_searches_above_the_working_directory_that_reach_the_state(
    state_layout: tuple[Path, Path, Path, Path],
) -> None:
    """A search rooted above the working directory that contains the state is refused; one at
    or below it is not (a question asked in the checkout, whose `.conductor/` is ignored)."""
    checkout, state, copy, _ = state_layout
    guard = ReadGuard(hidden=(state,))
    assert guard.check("Grep", {"pattern": "x"}, checkout) is None
    assert guard.check("Glob", {"pattern": "**/*.py", "path": str(checkout)}, checkout) is None
    assert guard.check("Grep", {"pattern": "x", "path": "/"}, checkout) is not None
    assert guard.check("Glob", {"pattern": "**", "path": ".."}, checkout) is not None
    assert guard.check("Read", {"file_path": str(state / "t" / "x")}, checkout) is not None
    in_copy = ReadGuard(hidden=(state,), open=(copy,))
    assert in_copy.check("Grep", {"pattern": "x", "path": str(checkout)}, copy) is not None


def test_read_guard_gives_claude_code_rules_for_all_of_the_state_but_the_open_directories(
    state_layout: tuple[Path, Path, Path, Path],
) -> None:
    """The deny rules name every entry of the state beside the path to the open directories
    (so Grep and Glob leave them out of results); with none open, the state as a whole."""
    checkout, state, copy, tmp = state_layout
    for name in ("bus", "workers"):
        (state / "t" / name).mkdir()
    (state / "other").mkdir()
    (state / ".gitignore").write_text("*\n")
    (state / "t" / "copies" / "b.1").mkdir()
    rules = ReadGuard(hidden=(state,), open=(copy, tmp)).deny_rules()
    assert rules == [
        f"Read(/{state}/.gitignore)",
        f"Read(/{state}/other/**)",
        f"Read(/{state}/t/bus/**)",
        f"Read(/{state}/t/copies/b.1/**)",
        f"Read(/{state}/t/workers/**)",
    ]
    assert ReadGuard(hidden=(state,)).deny_rules() == [f"Read(/{state}/**)"]
    odd = checkout / "st(a)te"
    odd.mkdir()
    assert ReadGuard(hidden=(odd,)).deny_rules() == []  # the hook alone guards it...
    refused = ReadGuard(hidden=(odd,)).check("Grep", {"pattern": "x"}, checkout)
    assert refused is not None  # ...so a search that holds it is refused, even at the cwd
    assert ReadGuard(hidden=(state,)).check("Grep", {"pattern": "x"}, checkout) is None
