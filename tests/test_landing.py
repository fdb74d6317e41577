"""Landing accepted changes as one commit on HEAD (conductor.landing)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conductor.copies import Change, Checkout, PrivateGit, make_copy, read_copy, take_snapshot
from conductor.landing import (
    LandConflict,
    change_from_dict,
    change_to_dict,
    commit_changes,
    commit_message,
    finish_landing,
    inverse,
    land,
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def person(tmp_path: Path) -> Path:
    """A repository with one commit."""
    repo = tmp_path / "person"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "P")
    git(repo, "config", "user.email", "p@example.com")
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    (repo / "README.md").write_text("readme\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def changes_from_copy(person: Path, tmp_path: Path, edit) -> tuple[Checkout, list[Change]]:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    checkout = Checkout.find(person)
    private = PrivateGit(state / "git", checkout).ensure()
    snap = take_snapshot(checkout, state, "t.1")
    copy = make_copy(private, snap, state / "t.1", state / "t.1.index", "conductor/t.1")
    edit(copy.path)
    return checkout, list(read_copy(private, copy).changes)


def test_land_is_one_commit_with_trailers_and_keeps_uncommitted_work(
    person: Path, tmp_path: Path
) -> None:
    """The change lands as one commit on the branch; the person's unrelated uncommitted and
    staged work stays exactly as it was, and the landed paths are clean."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")
        (root / "src" / "b.py").write_text("b = 1\n")

    (person / "README.md").write_text("my edit\n")
    (person / "notes.txt").write_text("mine\n")
    (person / "staged.txt").write_text("staged\n")
    git(person, "add", "staged.txt")
    checkout, changes = changes_from_copy(person, tmp_path, edit)
    changes = [c for c in changes if c.path.startswith("src/")]
    message = commit_message("t/build: Build", "did it", {"Conductor-Task": "build"})
    landed = land(checkout, changes, message=message, lock=tmp_path / "land.lock")
    assert git(person, "rev-parse", "HEAD").strip() == landed.commit
    assert git(person, "log", "-1", "--format=%B").strip().endswith("Conductor-Task: build")
    assert git(person, "show", "--name-only", "--format=", "HEAD").split() == [
        "src/a.py",
        "src/b.py",
    ]
    assert (person / "src" / "a.py").read_text() == "a = 2\n"
    assert (person / "README.md").read_text() == "my edit\n"
    status = git(person, "status", "--porcelain").splitlines()
    assert sorted(status) == sorted([" M README.md", "A  staged.txt", "?? notes.txt"])


def test_dirty_path_is_a_conflict_and_nothing_is_applied(person: Path, tmp_path: Path) -> None:
    """A path the person changed (before or after the snapshot) is never landed on."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    (person / "src" / "a.py").write_text("person's\n")
    head = git(person, "rev-parse", "HEAD")
    with pytest.raises(LandConflict, match="uncommitted changes") as info:
        land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert info.value.paths == ["src/a.py"]
    assert git(person, "rev-parse", "HEAD") == head
    assert (person / "src" / "a.py").read_text() == "person's\n"


def test_head_changed_since_snapshot_is_a_conflict(person: Path, tmp_path: Path) -> None:
    """A path committed by the person after the snapshot is a conflict."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    (person / "src" / "a.py").write_text("a = 9\n")
    git(person, "commit", "-qam", "mine")
    with pytest.raises(LandConflict, match="HEAD has another version"):
        land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")


def test_new_file_in_the_way_is_a_conflict(person: Path, tmp_path: Path) -> None:
    """An untracked (or ignored) file where the attempt adds one is never overwritten."""

    def edit(root: Path) -> None:
        (root / "new.txt").write_text("agent\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    (person / "new.txt").write_text("person\n")
    with pytest.raises(LandConflict):
        land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert (person / "new.txt").read_text() == "person\n"


def test_deletion_and_type_change_land(person: Path, tmp_path: Path) -> None:
    """Deleting a file and replacing a directory by a file both land."""

    def edit(root: Path) -> None:
        (root / "README.md").unlink()
        (root / "src" / "a.py").unlink()
        (root / "src").rmdir()
        (root / "src").write_text("now a file\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert not (person / "README.md").exists()
    assert (person / "src").read_text() == "now a file\n"
    assert git(person, "status", "--porcelain") == ""


def test_land_on_unborn_branch(tmp_path: Path) -> None:
    """A repository with no commit yet gets a root commit."""
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")

    def edit(root: Path) -> None:
        (root / "a.txt").write_text("a\n")

    checkout, changes = changes_from_copy(repo, tmp_path, edit)
    landed = land(checkout, changes, message="first\n", lock=tmp_path / "land.lock")
    assert landed.parent is None
    assert git(repo, "status", "--porcelain") == ""


def test_finish_landing_after_head_moved(person: Path, tmp_path: Path) -> None:
    """A landing cut off after HEAD moved is finished: the files are written, the index reset;
    a commit HEAD never reached finishes nothing."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")
        (root / "src" / "b.py").write_text("b\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    recorded: dict[str, str | None] = {}

    def crash(commit: str, parent: str | None, branch: str | None) -> None:
        recorded.update(commit=commit, parent=parent, branch=branch)

    landed = land(checkout, changes, message="m\n", lock=tmp_path / "land.lock",
                  before_move=crash)
    # Undo the file writes as if the conductor died right after moving HEAD.
    git(person, "reset", "-q", "HEAD~1")
    git(person, "checkout", "--", "src/a.py")
    (person / "src" / "b.py").unlink()
    git(person, "update-ref", "HEAD", landed.commit)
    payload = {"commit": recorded["commit"], "changes": [change_to_dict(c) for c in changes]}
    assert finish_landing(checkout, payload)
    assert (person / "src" / "a.py").read_text() == "a = 2\n"
    assert (person / "src" / "b.py").read_text() == "b\n"
    assert git(person, "status", "--porcelain") == ""
    assert not finish_landing(checkout, {"commit": "0" * 40, "changes": []})


def test_inverse_reverts_a_landed_commit(person: Path, tmp_path: Path) -> None:
    """The inverse of a commit's changes lands as a revert and restores the files."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")
        (root / "src" / "b.py").write_text("b\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    landed = land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    back = inverse(commit_changes(checkout, landed.commit))
    assert [change_from_dict(change_to_dict(c)) for c in back] == back
    land(checkout, back, message="revert\n", lock=tmp_path / "land.lock")
    assert (person / "src" / "a.py").read_text() == "a = 1\n"
    assert not (person / "src" / "b.py").exists()
    assert git(person, "status", "--porcelain") == ""


def test_no_landing_in_the_middle_of_a_merge(person: Path, tmp_path: Path) -> None:
    """While a merge (or rebase, cherry-pick...) is half done, nothing is landed."""

    def edit(root: Path) -> None:
        (root / "src" / "b.py").write_text("b\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    (person / ".git" / "MERGE_HEAD").write_text(git(person, "rev-parse", "HEAD"))
    with pytest.raises(LandConflict, match="middle of a merge"):
        land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert not (person / "src" / "b.py").exists()


def test_long_file_name_lands_whole(person: Path, tmp_path: Path) -> None:
    """A name near the file system's limit lands: temporary names do not grow with it."""
    name = "x" * 250 + ".py"

    def edit(root: Path) -> None:
        (root / "src" / name).write_text("long\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert (person / "src" / name).read_text() == "long\n"
    assert git(person, "status", "--porcelain") == ""


def test_resume_sweeps_files_a_killed_landing_staged(person: Path, tmp_path: Path) -> None:
    """Files staged by a landing whose process is gone are removed when it is finished."""
    checkout, _ = changes_from_copy(person, tmp_path, lambda root: None)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = person / f".conductor-land-{dead.pid}-{'ab' * 8}-0"
    stale.write_text("half")
    lookalike = person / ".conductor-land-notes.md"  # not a name landing makes: kept
    lookalike.write_text("mine")
    directory = person / f".conductor-land-{dead.pid}-{'cd' * 8}-1"
    directory.mkdir()
    assert not finish_landing(checkout, {"commit": "0" * 40, "changes": []})
    assert not stale.exists()
    assert lookalike.read_text() == "mine" and directory.is_dir()


def test_landing_commit_changes_exactly_the_attempts_paths(person: Path, tmp_path: Path) -> None:
    """The commit is checked to differ from HEAD in exactly the attempt's paths."""

    def edit(root: Path) -> None:
        (root / "src" / "b.py").write_text("b\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    landed = land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert git(person, "show", "--name-only", "--format=", landed.commit).split() == ["src/b.py"]


def test_a_path_the_checkout_ignores_is_never_landed(person: Path, tmp_path: Path) -> None:
    """A copy whose ignore rules differ (it dropped a rule) cannot write a file into a place
    the checkout ignores."""
    (person / ".gitignore").write_text("secrets/\n")
    git(person, "add", ".gitignore")
    git(person, "commit", "-qm", "ignore secrets")

    def edit(root: Path) -> None:
        (root / ".gitignore").write_text("")
        (root / "secrets").mkdir()
        (root / "secrets" / "key").write_text("planted\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    added = [c for c in changes if c.path == "secrets/key"]
    assert added, "the copy sees the file once its rule is gone"
    with pytest.raises(LandConflict, match="secrets/key: is ignored"):
        land(checkout, added, message="m\n", lock=tmp_path / "land.lock")
    assert not (person / "secrets").exists()


def test_finish_landing_after_the_person_switched_branch(person: Path, tmp_path: Path) -> None:
    """A landing cut off after HEAD moved counts as landed when the branch it moved holds
    its commit, though the person has switched to another branch since (no second landing);
    the other branch's working tree is left alone."""

    def edit(root: Path) -> None:
        (root / "src" / "b.py").write_text("b\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    recorded: dict[str, str | None] = {}

    def note(commit: str, parent: str | None, branch: str | None) -> None:
        recorded.update(commit=commit, branch=branch)

    land(checkout, changes, message="m\n", lock=tmp_path / "land.lock", before_move=note)
    assert recorded["branch"] == git(person, "symbolic-ref", "HEAD").strip()
    git(person, "switch", "-q", "-c", "other", "HEAD~1")
    payload = {"commit": recorded["commit"], "branch": recorded["branch"],
               "changes": [change_to_dict(c) for c in changes]}
    assert finish_landing(checkout, payload)
    assert not (person / "src" / "b.py").exists()
    assert not finish_landing(checkout, {**payload, "branch": "refs/heads/other"})


def test_index_held_by_another_git_is_waited_for_then_reported(
    person: Path, tmp_path: Path
) -> None:
    """A landing whose index update finds .git/index.lock held waits for it; if it stays,
    the landing is reported incomplete with the command that finishes it."""

    def edit(root: Path) -> None:
        (root / "src" / "a.py").write_text("a = 2\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    lock = person / ".git" / "index.lock"
    lock.write_text("")
    import conductor.landing as landing_module

    old = landing_module.INDEX_WAIT
    landing_module.INDEX_WAIT = 0.3
    try:
        landed = land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    finally:
        landing_module.INDEX_WAIT = old
        lock.unlink()
    assert landed.incomplete is not None and "git reset -q -- src/a.py" in landed.incomplete
    assert (person / "src" / "a.py").read_text() == "a = 2\n"


def test_a_symlink_replaced_by_a_directory_lands(person: Path, tmp_path: Path) -> None:
    """A tracked symlink the attempt replaced with a directory of files lands (the ignore
    check does not look through the link that is going away)."""
    (person / "ext").symlink_to("src")
    git(person, "add", "ext")
    git(person, "commit", "-qm", "link")

    def edit(root: Path) -> None:
        (root / "ext").unlink()
        (root / "ext").mkdir()
        (root / "ext" / "y.txt").write_text("inside\n")

    checkout, changes = changes_from_copy(person, tmp_path, edit)
    land(checkout, changes, message="m\n", lock=tmp_path / "land.lock")
    assert (person / "ext").is_dir() and not (person / "ext").is_symlink()
    assert (person / "ext" / "y.txt").read_text() == "inside\n"
    assert git(person, "status", "--porcelain") == ""
