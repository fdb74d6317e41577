"""``conductor locks``: listing path locks (text and JSON), breaking one by hand, exit codes."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner, Result

from conductor.bus import Bus
from conductor.cli import main
from conductor.locks import HOST, PathLocks, record_name
from conductor.messages import utcnow
from conductor.paths import StateDir


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The state root (what --state-dir points at)."""
    return tmp_path / "state"


def locks_of(root: Path, track: str) -> PathLocks:
    """The path locks of ``track`` under ``root``, layout created."""
    return PathLocks(StateDir(root / track).ensure().locks)


def plant(locks: PathLocks, path: str, **fields: Any) -> None:
    """Write a record by hand, as another process or host would have."""
    record: dict[str, Any] = {
        "path": path,
        "worker": "other.1",
        "task": "other",
        "attempt": 1,
        "pid": os.getpid(),
        "host": HOST,
        "pid_start": psutil.Process().create_time(),
        "since": utcnow().isoformat(),
        "lease_expires": None,
        **fields,
    }
    (locks.directory / record_name(path)).write_text(json.dumps(record))


def run(root: Path, *args: str) -> Result:
    """Invoke ``conductor locks ... --state-dir ROOT``."""
    return CliRunner().invoke(
        main, ["locks", *args, "--state-dir", str(root)], catch_exceptions=False
    )


def bus_messages(root: Path, track: str) -> list[dict[str, Any]]:
    """Every message on a track's bus, in order, as envelopes."""
    with Bus.for_state(StateDir(root / track), track) as bus:
        return [message.to_dict() for message in bus.read()]


def test_list_one_track_as_text(root: Path) -> None:
    """Locks of one track print as a table with path, worker, task, pid, host and liveness."""
    locks = locks_of(root, "web")
    locks.acquire("src/app.py", worker="api.1", task="api", attempt=1)
    plant(locks, "gone.py", pid_start=psutil.Process().create_time() - 1000)
    plant(locks, "far.py", host="elsewhere.example", pid=7)
    result = run(root, "web")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["PATH", "WORKER", "TASK", "PID", "HOST", "SINCE", "ALIVE"]
    by_path = {line.split()[0]: line for line in lines[1:]}
    assert set(by_path) == {"far.py", "gone.py", "src/app.py"}
    assert by_path["src/app.py"].split()[1:5] == ["api.1", "api", str(os.getpid()), HOST]
    assert by_path["src/app.py"].endswith("yes")
    assert "no: holder pid" in by_path["gone.py"]
    assert by_path["far.py"].endswith("unknown (other host)")


def test_list_as_json(root: Path) -> None:
    """--json prints every lock with alive true/false/null and why a holder is dead."""
    locks = locks_of(root, "web")
    locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    plant(locks, "old.py", lease_expires=(utcnow() - timedelta(seconds=5)).isoformat())
    plant(locks, "far.py", host="elsewhere.example")
    (locks.directory / "bad.py.json").write_text("{not json")
    result = run(root, "web", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    rows = {row["path"]: row for row in data["locks"]}
    assert rows["a.py"]["alive"] is True
    assert rows["a.py"]["worker"] == "w.1"
    assert rows["a.py"]["track"] == "web"
    assert rows["a.py"]["pid"] == os.getpid()
    assert rows["old.py"]["alive"] is False
    assert rows["old.py"]["dead_reason"].startswith("lease expired")
    assert rows["far.py"]["alive"] is None
    assert [(u["path"], u["track"]) for u in data["unreadable"]] == [("bad.py", "web")]


def test_list_all_tracks(root: Path) -> None:
    """Without TRACK, the locks of every track under the state root are listed with the track."""
    locks_of(root, "one").acquire("a.py", worker="w.1", task="w", attempt=1)
    locks_of(root, "two").acquire("b.py", worker="x.1", task="x", attempt=1)
    locks_of(root, "three")  # a track with no locks
    result = run(root)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split()[0] == "TRACK"
    assert [line.split()[:2] for line in lines[1:]] == [["one", "a.py"], ["two", "b.py"]]
    data = json.loads(run(root, "--json").output)
    assert sorted((r["track"], r["path"]) for r in data["locks"]) == [
        ("one", "a.py"),
        ("two", "b.py"),
    ]


def test_no_locks(root: Path) -> None:
    """An empty or missing state says 'no locks' and exits 0."""
    assert run(root).output.strip() == "no locks"
    locks_of(root, "web")
    result = run(root, "web")
    assert result.exit_code == 0
    assert result.output.strip() == "no locks in track web"
    assert json.loads(run(root, "web", "--json").output) == {"locks": [], "unreadable": []}


def test_break_one_lock_posts_lock_broken(root: Path) -> None:
    """--break frees the path, says what it broke, and posts LOCK_BROKEN with the reason."""
    locks = locks_of(root, "web")
    plant(locks, "far.py", host="elsewhere.example", worker="api.2", task="api", attempt=2)
    result = run(root, "web", "--break", "far.py", "--reason", "that VM was deleted")
    assert result.exit_code == 0, result.output
    assert "broke the lock on 'far.py' held by worker api.2 (task api, attempt 2" in result.output
    assert locks.holder("far.py") is None
    broken = [m for m in bus_messages(root, "web") if m["type"] == "LOCK_BROKEN"]
    assert len(broken) == 1
    assert broken[0]["payload"]["reason"] == "that VM was deleted"
    assert broken[0]["payload"]["holder"]["host"] == "elsewhere.example"
    assert (broken[0]["task"], broken[0]["worker"], broken[0]["attempt"]) == ("api", "api.2", 2)


def test_break_live_holder_warns(root: Path) -> None:
    """Breaking a lock whose holder still runs works but warns on stderr."""
    locks = locks_of(root, "web")
    locks.acquire("a.py", worker="w.1", task="w", attempt=1)
    result = run(root, "web", "--break", "a.py")
    assert result.exit_code == 0
    assert "warning: its holder" in result.stderr
    assert locks.holder("a.py") is None


def test_break_unreadable_record(root: Path) -> None:
    """--break removes an unreadable record and says so."""
    locks = locks_of(root, "web")
    (locks.directory / "bad.py.json").write_text('{"path": "bad.py", "wor')
    result = run(root, "web", "--break", "bad.py")
    assert result.exit_code == 0
    assert "removed the unreadable lock record" in result.output
    assert locks.unreadable() == []


def test_break_missing_lock_is_exit_2(root: Path) -> None:
    """--break of a path nobody holds is a user error (exit 2) with a message, no traceback."""
    locks_of(root, "web")
    result = run(root, "web", "--break", "nope.py")
    assert result.exit_code == 2
    assert "error: track web has no lock on 'nope.py'" in result.stderr
    result = run(root, "unknown-track", "--break", "nope.py")
    assert result.exit_code == 2


def test_bad_arguments_are_exit_2(root: Path) -> None:
    """--break without TRACK, a hostile track id and a path outside the repo exit 2."""
    assert run(root, "--break", "a.py").exit_code == 2
    assert run(root, "-bad").exit_code == 2
    locks_of(root, "web")
    result = run(root, "web", "--break", "../etc/passwd")
    assert result.exit_code == 2
    assert "climbs out of the repository" in result.stderr


def test_symlinked_locks_dir_is_exit_5(root: Path, tmp_path: Path) -> None:
    """A planted symlink for a track's locks directory is a state error (exit 5)."""
    sd = StateDir(root / "web").ensure()
    sd.locks.rmdir()
    (tmp_path / "elsewhere").mkdir()
    sd.locks.symlink_to(tmp_path / "elsewhere")
    result = run(root, "web")
    assert result.exit_code == 5
    assert "symbolic link" in result.stderr


def test_track_file_argument_uses_its_id(root: Path, tmp_path: Path) -> None:
    """TRACK may be a track file: its id selects the state directory."""
    track_file = tmp_path / "web.yaml"
    track_file.write_text("track: web\ntasks:\n  - id: a\n    run: echo hi\n")
    locks_of(root, "web").acquire("a.py", worker="w.1", task="w", attempt=1)
    result = run(root, str(track_file), "--json")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in json.loads(result.output)["locks"]] == ["a.py"]
