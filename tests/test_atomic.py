"""Writing a file whole or not at all: aside, then renamed or linked into place."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conductor.atomic import TMP_PREFIX, write_atomic, writer_pid


def test_write_replaces_whole_with_mode(tmp_path: Path) -> None:
    """The target gets the new content and the asked mode; no temporary file is left."""
    target = tmp_path / "f.json"
    target.write_text("old")
    write_atomic(target, "new ✓", mode=0o640)
    assert target.read_text() == "new ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    write_atomic(target, b"bytes", durable=True)
    assert target.read_bytes() == b"bytes"
    assert sorted(os.listdir(tmp_path)) == ["f.json"]


def test_link_never_overwrites(tmp_path: Path) -> None:
    """replace=False refuses an existing target, leaves it as it was and cleans up."""
    target = tmp_path / "lock.json"
    write_atomic(target, "first", replace=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, "second", replace=False)
    assert target.read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["lock.json"]


def test_writer_pid_names_the_writer() -> None:
    """Temporary names carry their writer's pid; other names are not temporaries."""
    assert writer_pid(f"{TMP_PREFIX}123-abcdef") == 123
    assert writer_pid(f"{TMP_PREFIX}123") is None
    assert writer_pid(f"{TMP_PREFIX}x1-ab") is None
    assert writer_pid("state.json") is None


WRITER = """
import sys
from pathlib import Path
from conductor.atomic import write_atomic
target = Path(sys.argv[1])
i = 0
print("ready", flush=True)
while True:
    i += 1
    write_atomic(target, (str(i % 10) * 1_000_000))
"""


def test_killed_writer_never_leaves_a_torn_file(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-stream leaves the target whole (one digit repeated,
    full length) and at most one temporary file, which writer_pid attributes to it."""
    target = tmp_path / "big"
    write_atomic(target, "0" * 1_000_000)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 3 and time.monotonic() < deadline:
        data = target.read_text()
        assert len(data) == 1_000_000 and data == data[0] * len(data)
        seen.add(data[0])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    data = target.read_text()
    assert len(data) == 1_000_000 and data == data[0] * len(data)
    leftovers = [name for name in os.listdir(tmp_path) if name != "big"]
    assert len(leftovers) <= 1
    assert all(writer_pid(name) == proc.pid for name in leftovers)
