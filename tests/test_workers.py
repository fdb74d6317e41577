"""Worker directories and tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor.errors import UserError
from conductor.workers import (
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
