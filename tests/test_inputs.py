"""A task's `inputs:` globs: which files count, what changes the hash, and reruns by content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conductor.bus import Bus
from conductor.errors import TrackError
from conductor.inputs import input_files, inputs_digest, task_hash
from conductor.paths import StateDir
from conductor.track import parse_track


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_globs_match_like_files(tmp_path: Path) -> None:
    """Input globs use the `files` dialect: a directory covers what is under it, `*` stays
    in one directory, and .git/ and .conductor/ never count."""
    tree(
        tmp_path,
        {
            "src/a.py": "a",
            "src/sub/b.py": "b",
            "src/notes.txt": "n",
            "README.md": "r",
            ".git/config": "g",
            ".conductor/t/bus/1.json": "{}",
        },
    )
    assert input_files(["src/*.py"], tmp_path) == ["src/a.py"]
    assert input_files(["src"], tmp_path) == ["src/a.py", "src/notes.txt", "src/sub/b.py"]
    assert input_files(["**/*.py"], tmp_path) == ["src/a.py", "src/sub/b.py"]
    assert input_files(["**"], tmp_path) == [
        "README.md",
        "src/a.py",
        "src/notes.txt",
        "src/sub/b.py",
    ]
    assert input_files(["missing/**"], tmp_path) == []


def test_digest_ignores_order_and_sees_names_and_content(tmp_path: Path) -> None:
    """The digest does not depend on glob order; content, additions and renames change it."""
    tree(tmp_path, {"in/a.txt": "1", "in/b.txt": "2"})
    base = inputs_digest(["in/a.txt", "in/b.txt"], tmp_path)
    assert inputs_digest(["in/b.txt", "in/a.txt"], tmp_path) == base
    assert inputs_digest(["in"], tmp_path) == base
    os.utime(tmp_path / "in/a.txt", (1, 1))
    (tmp_path / "in/a.txt").chmod(0o755)
    assert inputs_digest(["in"], tmp_path) == base  # times and modes do not count
    (tmp_path / "in/a.txt").write_text("changed")
    changed = inputs_digest(["in"], tmp_path)
    assert changed != base
    (tmp_path / "in/a.txt").rename(tmp_path / "in/c.txt")
    assert inputs_digest(["in"], tmp_path) != changed
    renamed = inputs_digest(["in"], tmp_path)
    (tmp_path / "in/d.txt").write_text("")
    assert inputs_digest(["in"], tmp_path) != renamed


def test_ignored_files_count(repo: Path) -> None:
    """A file git ignores is an input like any other (a build output often is)."""
    (repo / ".gitignore").write_text("build/\n")
    tree(repo, {"build/out.bin": "x"})
    before = inputs_digest(["build/**"], repo)
    assert input_files(["build/**"], repo) == ["build/out.bin"]
    (repo / "build/out.bin").write_text("y")
    assert inputs_digest(["build/**"], repo) != before


def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    """A symbolic link counts as its target text; what it points to is not read or walked."""
    outside = tmp_path / "outside"
    tree(outside, {"secret.txt": "s", "dir/x.txt": "x"})
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "link.txt").symlink_to(outside / "secret.txt")
    (repo / "linkdir").symlink_to(outside / "dir")
    assert input_files(["**"], repo) == ["link.txt", "linkdir"]
    before = inputs_digest(["**"], repo)
    (outside / "secret.txt").write_text("changed")
    assert inputs_digest(["**"], repo) == before


def test_task_without_inputs_keeps_its_definition_hash(tmp_path: Path) -> None:
    """No inputs: the hash is the definition hash; `inputs: []` is the same as none."""
    track = parse_track(
        "track: t\ntasks:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true', inputs: []}\n"
    )
    assert task_hash(track, "a", tmp_path) == track.task_hash("a")
    assert task_hash(track, "b", tmp_path) == track.task_hash("b")
    other = parse_track("track: t\ntasks:\n  - {id: b, run: 'true'}\n")
    assert track.task_hash("b") == other.task_hash("b")


def test_task_hash_follows_input_content(tmp_path: Path) -> None:
    """With inputs, the task hash changes with the content and only with it."""
    track = parse_track("track: t\ntasks:\n  - {id: a, run: 'true', inputs: [data/*.csv]}\n")
    tree(tmp_path, {"data/x.csv": "1,2", "data/readme.md": "r"})
    first = task_hash(track, "a", tmp_path)
    assert first != track.task_hash("a") and first == task_hash(track, "a", tmp_path)
    (tmp_path / "data/readme.md").write_text("not an input")
    assert task_hash(track, "a", tmp_path) == first
    (tmp_path / "data/x.csv").write_text("1,3")
    assert task_hash(track, "a", tmp_path) != first


def test_inputs_outside_the_repository_are_refused() -> None:
    """An input glob climbing out with .. or absolute is a track error naming the field."""
    for bad in ("../x", "/etc/passwd"):
        with pytest.raises(TrackError) as info:
            parse_track(f"track: t\ntasks:\n  - id: a\n    run: 'true'\n    inputs: ['{bad}']\n")
        assert "inputs" in str(info.value) and ":5:" in str(info.value)


# --------------------------------------------------------------------------- runs


TRACK = textwrap.dedent(
    """\
    track: make
    tasks:
      - {id: compile, run: "cat src/a.txt > out-a.txt", inputs: [src/a.txt], files: [out-a.txt]}
      - {id: bundle, run: "cat src/b/* > out-b.txt", inputs: [src/b], files: [out-b.txt]}
      - id: link
        run: "cat out-a.txt > out-link.txt"
        depends_on: [compile]
        files: [out-link.txt]
      - {id: gen, run: "echo generated > gen.txt", files: [gen.txt]}
      - id: use
        run: "cat gen.txt > used.txt"
        depends_on: [gen]
        inputs: [gen.txt]
        files: [used.txt]
    """
)


def run(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    return subprocess.run(
        [sys.executable, "-m", "conductor", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def dispatched_after(repo: Path, seq: int) -> list[str]:
    with Bus.for_state(StateDir.for_track(repo, "make"), "make") as bus:
        return sorted(m.task or "" for m in bus.read(after=seq) if m.type == "TASK_DISPATCHED")


def last_seq(repo: Path) -> int:
    with Bus.for_state(StateDir.for_track(repo, "make"), "make") as bus:
        return bus.last_seq()


def test_a_completed_track_reruns_exactly_what_changed(repo: Path) -> None:
    """Change an input: that task and its dependents rerun, nothing else; change nothing:
    nothing reruns, including a task whose input its dependency made in the first run."""
    tree(repo, {"src/a.txt": "a1\n", "src/b/1.txt": "b1\n", "track.yaml": TRACK})
    first = run(repo, "run", "track.yaml")
    assert first.returncode == 0, first.stderr
    assert (repo / "used.txt").read_text() == "generated\n"

    seq = last_seq(repo)
    assert run(repo, "run", "track.yaml").returncode == 0
    assert dispatched_after(repo, seq) == []

    (repo / "src/a.txt").write_text("a2\n")
    dry = run(repo, "run", "track.yaml", "--dry-run", "--json")
    steps = {s["task"]: s for s in json.loads(dry.stdout)["tasks"]}
    assert steps["compile"]["action"] == "rerun"
    assert steps["compile"]["reason"] == "definition or inputs changed since it completed"
    assert steps["link"]["action"] == "rerun" and steps["bundle"]["action"] == "skip"
    seq = last_seq(repo)
    assert run(repo, "run", "track.yaml").returncode == 0
    assert dispatched_after(repo, seq) == ["compile", "link"]
    assert (repo / "out-link.txt").read_text() == "a2\n"

    (repo / "src/b/2.txt").write_text("b2\n")  # a new file under a directory input
    seq = last_seq(repo)
    assert run(repo, "run", "track.yaml").returncode == 0
    assert dispatched_after(repo, seq) == ["bundle"]
    assert (repo / "out-b.txt").read_text() == "b1\nb2\n"


def test_inputs_recorded_at_dispatch(repo: Path) -> None:
    """TASK_COMPLETE records the hash of the inputs the attempt saw, made by its dependency."""
    tree(repo, {"src/a.txt": "a\n", "src/b/1.txt": "b\n", "track.yaml": TRACK})
    assert run(repo, "run", "track.yaml", "use").returncode == 0
    track = parse_track(TRACK)
    with Bus.for_state(StateDir.for_track(repo, "make"), "make") as bus:
        done = [m for m in bus.read() if m.type == "TASK_COMPLETE" and m.task == "use"]
    assert len(done) == 1
    assert done[0].payload["hash"] == task_hash(track, "use", repo)
