"""Snapshots, copies and the diff of a copy (conductor.copies)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conductor.copies import (
    Checkout,
    PrivateGit,
    ignored_paths,
    make_copy,
    read_copy,
    remove_copy,
    take_snapshot,
)
from conductor.errors import UserError


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def person(tmp_path: Path) -> Path:
    """A repository with a commit, an ignore rule, an executable and uncommitted work."""
    repo = tmp_path / "person"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "P")
    git(repo, "config", "user.email", "p@example.com")
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    (repo / "README.md").write_text("readme\n")
    (repo / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (repo / "run.sh").chmod(0o755)
    (repo / ".gitignore").write_text("*.log\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def copy_of(person: Path, tmp_path: Path, name: str = "t.1"):  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    checkout = Checkout.find(person)
    private = PrivateGit(state / "git", checkout).ensure()
    snapshot = take_snapshot(checkout, state, name)
    copy = make_copy(private, snapshot, state / name, state / f"{name}.index", f"conductor/{name}")
    return checkout, private, copy


def test_clean_checkout_snapshot_is_head(person: Path, tmp_path: Path) -> None:
    """A clean checkout's snapshot is HEAD itself: no commit is made."""
    checkout = Checkout.find(person)
    snap = take_snapshot(checkout, tmp_path, "t.1")
    assert snap.clean and snap.commit == git(person, "rev-parse", "HEAD").strip()


def test_snapshot_has_uncommitted_work_and_touches_nothing(person: Path, tmp_path: Path) -> None:
    """Tracked changes and non-ignored untracked files are in the snapshot; ignored files are
    not; the person's index, branch and status are untouched."""
    (person / "README.md").write_text("changed\n")
    (person / "new.txt").write_text("new\n")
    (person / "debug.log").write_text("ignored\n")
    git(person, "add", "README.md")
    before = (git(person, "status", "--porcelain"), git(person, "rev-parse", "HEAD"))
    index_before = (person / ".git" / "index").read_bytes()
    snap = take_snapshot(Checkout.find(person), tmp_path, "t.1")
    assert not snap.clean
    files = git(person, "ls-tree", "-r", "--name-only", snap.commit).split()
    assert "new.txt" in files and "debug.log" not in files
    assert git(person, "show", f"{snap.commit}:README.md") == "changed\n"
    assert (git(person, "status", "--porcelain"), git(person, "rev-parse", "HEAD")) == before
    assert (person / ".git" / "index").read_bytes() == index_before


def test_copy_is_a_clone_with_its_own_branch(person: Path, tmp_path: Path) -> None:
    """The copy holds the snapshot's files with their modes, on its own branch, and its own
    git directory: a commit there does not reach the person's repository."""
    (person / "new.txt").write_text("new\n")
    _, _, copy = copy_of(person, tmp_path)
    assert (copy.path / "new.txt").read_text() == "new\n"
    assert os.access(copy.path / "run.sh", os.X_OK)
    assert git(copy.path, "symbolic-ref", "HEAD").strip() == "refs/heads/conductor/t.1"
    assert git(copy.path, "status", "--porcelain") == ""
    (copy.path / "src" / "a.py").write_text("a = 2\n")
    git(copy.path, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "agent")
    assert "conductor/t.1" not in git(person, "branch", "--list")
    assert git(person, "log", "--oneline").count("\n") == 1


def test_read_copy_sees_every_kind_of_change(person: Path, tmp_path: Path) -> None:
    """Additions, modifications, deletions, mode changes and symlinks are changes; ignored
    files are not."""
    _, private, copy = copy_of(person, tmp_path)
    root = copy.path
    (root / "src" / "a.py").write_text("a = 2\n")
    (root / "src" / "b.py").write_text("b = 1\n")
    (root / "README.md").unlink()
    (root / "run.sh").chmod(0o644)
    os.symlink("a.py", root / "src" / "link")
    (root / "out.log").write_text("ignored\n")
    state = read_copy(private, copy)
    got = {c.path: c.status for c in state.changes}
    assert got == {"README.md": "D", "run.sh": "M", "src/a.py": "M", "src/b.py": "A",
                   "src/link": "A"}
    link = next(c for c in state.changes if c.path == "src/link")
    assert link.new_mode == "120000"
    assert ignored_paths(private, copy) == ["out.log"]


def test_agent_commits_reset_and_stash_are_judged_by_the_working_tree(
    person: Path, tmp_path: Path
) -> None:
    """Only the working tree at the end counts: a commit then reset --hard is no change."""
    _, private, copy = copy_of(person, tmp_path)
    (copy.path / "src" / "a.py").write_text("a = 2\n")
    git(copy.path, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qam", "agent")
    assert [c.path for c in read_copy(private, copy).changes] == ["src/a.py"]
    git(copy.path, "reset", "-q", "--hard", "HEAD~1")
    assert read_copy(private, copy).changes == ()


def test_hostile_config_attributes_and_hooks_never_run(person: Path, tmp_path: Path) -> None:
    """A copy's fsmonitor, clean filter, textconv and hooks are never run by conductor's git,
    and a filter attribute does not change what is read."""
    _, private, copy = copy_of(person, tmp_path)
    marker = tmp_path / "ran"
    root = copy.path
    git(root, "config", "core.fsmonitor", f"touch {marker}.fsmonitor; false")
    git(root, "config", "filter.evil.clean", f"touch {marker}.filter; cat")
    git(root, "config", "core.hooksPath", str(root / "hooks"))
    (root / "hooks").mkdir()
    for hook in ("pre-commit", "post-index-change", "reference-transaction"):
        (root / "hooks" / hook).write_text(f"#!/bin/sh\ntouch {marker}.{hook}\n")
        (root / "hooks" / hook).chmod(0o755)
    (root / ".gitattributes").write_text("* filter=evil\n")
    (root / "src" / "a.py").write_text("a = 3\n")
    state = read_copy(private, copy)
    assert {c.path for c in state.changes} >= {".gitattributes", "src/a.py"}
    assert not list(tmp_path.glob("ran*"))


def test_nested_repository_is_reported(person: Path, tmp_path: Path) -> None:
    """A git repository created inside the copy shows up as a nested repository."""
    _, private, copy = copy_of(person, tmp_path)
    inner = copy.path / "vendor"
    inner.mkdir()
    git(inner, "init", "-q")
    (inner / "x").write_text("x\n")
    git(inner, "add", "x")
    git(inner, "-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "x")
    assert read_copy(private, copy).nested_repos == ("vendor",)


def test_remove_copy_handles_read_only_directories(person: Path, tmp_path: Path) -> None:
    """A copy whose directories the agent made read-only is still removed."""
    _, _, copy = copy_of(person, tmp_path)
    locked = copy.path / "locked"
    locked.mkdir()
    (locked / "f").write_text("f")
    locked.chmod(0o500)
    remove_copy(copy.path, copy.index)
    assert not copy.path.exists() and not copy.index.exists()


def test_not_a_git_repository_is_a_user_error(tmp_path: Path) -> None:
    """Copies need git: a plain directory is refused with a clear message."""
    with pytest.raises(UserError, match="not a git repository"):
        Checkout.find(tmp_path)


def test_changes_too_large_together_are_not_read(person: Path, tmp_path: Path) -> None:
    """Files each under the limit but over the total are reported, largest first, unread."""
    _, private, copy = copy_of(person, tmp_path)
    for name, size in (("a.bin", 600), ("b.bin", 700), ("c.bin", 10)):
        (copy.path / name).write_bytes(b"x" * size)
    state = read_copy(private, copy, limit=1000, total=1200)
    assert state.changes == () and set(state.too_large) >= {"a.bin", "b.bin"}
    assert read_copy(private, copy, limit=1000, total=5000).too_large == ()
