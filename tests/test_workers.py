"""Worker directories and tokens."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conductor.errors import UserError
from conductor.workers import (
    SPARE_PREFIX,
    WorkerDirs,
    create_worker_dir,
    leftover_workers,
    new_secret,
    remove_worker_dir,
    verify_token,
)


def test_token_names_its_worker_only(tmp_path: Path) -> None:
    """A worker's token verifies as that worker (task and attempt from its id) and no other."""
    _, token_a = create_worker_dir(tmp_path, "build.api", 2)
    _, token_b = create_worker_dir(tmp_path, "test", 1)
    record = verify_token(tmp_path, "build.api.2", token_a)
    assert (record.task, record.attempt, record.worker) == ("build.api", 2, "build.api.2")
    with pytest.raises(UserError, match="does not belong"):
        verify_token(tmp_path, "test.1", token_a)
    with pytest.raises(UserError, match="does not belong"):
        verify_token(tmp_path, "build.api.2", "")
    assert verify_token(tmp_path, "test.1", token_b).task == "test"


def test_new_run_voids_old_tokens(tmp_path: Path) -> None:
    """A fresh run secret makes every earlier token invalid."""
    _, old = create_worker_dir(tmp_path, "a", 1)
    secret = new_secret(tmp_path)
    _, fresh = create_worker_dir(tmp_path, "a", 1, secret)
    assert fresh != old
    with pytest.raises(UserError):
        verify_token(tmp_path, "a.1", old)
    assert verify_token(tmp_path, "a.1", fresh).attempt == 1


def test_ended_worker_cannot_post(tmp_path: Path) -> None:
    """Once its directory is removed the worker is not running, whatever its token."""
    path, token = create_worker_dir(tmp_path, "a", 1)
    remove_worker_dir(path)
    with pytest.raises(UserError, match="not running"):
        verify_token(tmp_path, "a.1", token)
    assert leftover_workers(tmp_path) == []


def test_leftover_dir_replaced_and_symlink_not_followed(tmp_path: Path) -> None:
    """A leftover dir of a worker is replaced; a planted symlink is unlinked, not followed."""
    path, _ = create_worker_dir(tmp_path, "a", 1)
    (path / "SKILL.md").write_text("old")
    path2, _ = create_worker_dir(tmp_path, "a", 1)
    assert path2 == path and list(path.iterdir()) == []
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    link = tmp_path / "b.1"
    link.symlink_to(victim)
    remove_worker_dir(link)
    assert not link.exists() and (victim / "keep.txt").read_text() == "keep"


def _spares(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(SPARE_PREFIX))


def test_ended_empty_dir_is_reused_not_freed(tmp_path: Path) -> None:
    """An empty worker dir becomes a spare and the next worker gets that same inode."""
    dirs = WorkerDirs(tmp_path, new_secret(tmp_path))
    first, _ = dirs.create("a", 1)
    inode = first.stat().st_ino
    dirs.remove("a.1")
    assert not first.exists() and leftover_workers(tmp_path) == []
    assert len(_spares(tmp_path)) == 1
    second, token = dirs.create("b", 1)
    assert second == tmp_path / "b.1" and second.stat().st_ino == inode
    assert _spares(tmp_path) == [] and list(second.iterdir()) == []
    assert verify_token(tmp_path, "b.1", token).task == "b"
    dirs.remove("b.1")
    dirs.close()
    assert _spares(tmp_path) == [] and leftover_workers(tmp_path) == []


def test_used_or_tampered_dirs_are_removed_not_reused(tmp_path: Path) -> None:
    """A dir with files, a chmod'ed dir, a planted symlink or file: none becomes a spare."""
    dirs = WorkerDirs(tmp_path, new_secret(tmp_path))
    used, _ = dirs.create("used", 1)
    (used / "SKILL.md").write_text("x")
    opened, _ = dirs.create("opened", 1)
    opened.chmod(0o777)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    linked, _ = dirs.create("linked", 1)
    linked.rmdir()
    linked.symlink_to(victim)
    filed, _ = dirs.create("filed", 1)
    filed.rmdir()
    filed.write_text("not a dir")
    for wid in ("used.1", "opened.1", "linked.1", "filed.1", "never.1"):
        dirs.remove(wid)
    assert _spares(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [".secret", "victim"]
    assert (victim / "keep.txt").read_text() == "keep"


def test_spare_never_clobbers_a_leftover_with_files(tmp_path: Path) -> None:
    """Creating over a leftover dir with files replaces it with an empty one; no spare leaks."""
    dirs = WorkerDirs(tmp_path, new_secret(tmp_path))
    dirs.create("a", 1)
    dirs.remove("a.1")
    leftover = tmp_path / "b.1"
    leftover.mkdir(mode=0o700)
    (leftover / "old.txt").write_text("old")
    path, _ = dirs.create("b", 1)
    assert path == leftover and list(path.iterdir()) == []
    assert _spares(tmp_path) == []


def test_spares_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    """Spares left by a conductor that died are gone once the next run sets up."""
    (tmp_path / f"{SPARE_PREFIX}7").mkdir()
    (tmp_path / f"{SPARE_PREFIX}8").mkdir()
    (tmp_path / f"{SPARE_PREFIX}8" / "junk").write_text("x")
    WorkerDirs(tmp_path, new_secret(tmp_path))
    assert _spares(tmp_path) == []


def test_half_written_secret_of_a_dead_conductor_is_removed(tmp_path: Path) -> None:
    """The temporary secret file left by a conductor killed while writing it goes at the next
    run; one of a live process stays."""
    import subprocess

    from conductor.atomic import TMP_PREFIX
    from conductor.workers import new_secret

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f"{TMP_PREFIX}{dead.pid}-0a1b2c"
    stale.write_text("")
    live = tmp_path / f"{TMP_PREFIX}{os.getppid()}-0a1b2c"
    live.write_text("")
    new_secret(tmp_path)
    assert not stale.exists() and live.exists()
    assert (tmp_path / ".secret").exists()


def test_authorize_post_signs_a_worker_and_limits_a_person(tmp_path: Path) -> None:
    """With a token the post is signed by its worker and may only be a worker's type about its
    own task; without one it is a person's, who may post APPROVE, SKIP (with a task), NOTE."""
    from conductor.contract import TOKEN_ENV, WORKER_ENV
    from conductor.workers import Author, authorize_post

    dirs = WorkerDirs(tmp_path, new_secret(tmp_path))
    _, token = dirs.create("build", 2)
    env = {WORKER_ENV: "build.2", TOKEN_ENV: token}
    signed = authorize_post(tmp_path, "PROGRESS", task=None, worker=None, environ=env)
    assert signed == Author(task="build", worker="build.2", attempt=2)
    with pytest.raises(UserError, match="a worker may post only"):
        authorize_post(tmp_path, "TASK_COMPLETE", task=None, worker=None, environ=env)
    with pytest.raises(UserError, match="cannot post about 'test'"):
        authorize_post(tmp_path, "NOTE", task="test", worker=None, environ=env)
    with pytest.raises(UserError, match="cannot post as worker"):
        authorize_post(tmp_path, "NOTE", task=None, worker="test.1", environ=env)
    with pytest.raises(UserError, match="the worker id"):
        authorize_post(tmp_path, "NOTE", task=None, worker=None, environ={TOKEN_ENV: token})
    person = authorize_post(tmp_path, "NOTE", task=None, worker=None, environ={})
    assert person == Author(task=None, worker=None, attempt=None)
    with pytest.raises(UserError, match="a person may post only"):
        authorize_post(tmp_path, "PROGRESS", task=None, worker=None, environ={})
    with pytest.raises(UserError, match="SKIP needs --task"):
        authorize_post(tmp_path, "SKIP", task=None, worker=None, environ={})
    dirs.remove("build.2")
    with pytest.raises(UserError, match="not running"):
        authorize_post(tmp_path, "PROGRESS", task=None, worker=None, environ=env)
    dirs.close()
