"""`conductor run` and `status` against a hostile state directory, as a person runs them.

Planted FIFOs and symlinks, a state directory that cannot be written, files planted under the
names the conductor posts next, and processes an attempt leaves behind: each ends in a clear
message and the documented exit code, never a hang or a traceback.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from conductor.testing import fake_cli_path, read_fake_log

DEADLINE = 120
"""Seconds a command gets before the test calls it hung (generous: the machine may be busy)."""

SHELL_TRACK = "track: hs\ntasks:\n  - {id: a, run: 'echo hello'}\n"


def cli(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI in ``repo``; a command that outlives ``DEADLINE`` fails the test as hung."""
    full = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    full.update(env or {})
    try:
        return subprocess.run(
            [sys.executable, "-m", "conductor", *args],
            cwd=repo,
            env=full,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"conductor {' '.join(args)} hung: {exc}")


def state(repo: Path) -> Path:
    return repo / ".conductor" / "hs"


def plant_fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable even for root (``chattr +i``); skip where that is impossible."""
    if os.geteuid() != 0:
        path.chmod(0o500)
        try:
            yield
        finally:
            path.chmod(0o700)
        return
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot make {path} read-only as root here: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# --------------------------------------------------------------------------- planted files


def test_fifo_at_an_attempt_log_fails_the_attempt_without_blocking(repo: Path) -> None:
    """A FIFO planted at logs/<task>.1.log is refused (not opened for writing, so nothing
    blocks): the attempt fails with a message naming it, and the FIFO is left as it was."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    fifo = state(repo) / "logs" / "a.1.log"
    plant_fifo(fifo)
    done = cli(repo, "run", "track.yaml")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert f"refusing to use {fifo}: it is not a regular file" in done.stdout + done.stderr
    assert fifo.is_fifo()


def test_symlink_at_an_attempt_log_is_not_followed(repo: Path, tmp_path: Path) -> None:
    """A symlink planted at logs/<task>.1.log is refused; its target is never written."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    link = state(repo) / "logs" / "a.1.log"
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    done = cli(repo, "run", "track.yaml")
    assert done.returncode == 1
    assert "it is a symbolic link" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert victim.read_text() == "untouched\n"


@pytest.mark.parametrize(
    "name", ["cache/state.json", "cache/outline.json", "run.json", "logs/conductor.log"]
)
def test_fifo_at_a_state_file_never_hangs_run_or_status(repo: Path, name: str) -> None:
    """A FIFO at a cache or record file of the state directory hangs neither `run` nor
    `status`: both finish, without a traceback."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    plant_fifo(state(repo) / name)
    ran = cli(repo, "run", "track.yaml")
    assert ran.returncode in (0, 5), ran.stderr
    assert "Traceback" not in ran.stderr
    shown = cli(repo, "status", "track.yaml")
    assert shown.returncode in (0, 5), shown.stderr
    assert "Traceback" not in shown.stderr


def test_fifo_at_the_status_cache_of_a_finished_run(repo: Path) -> None:
    """`status` on a finished run whose cache was replaced by a FIFO reads the bus instead."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    assert cli(repo, "run", "track.yaml").returncode == 0
    cache = state(repo) / "cache" / "state.json"
    cache.unlink()
    os.mkfifo(cache)
    shown = cli(repo, "status", "track.yaml")
    assert shown.returncode == 0, shown.stderr
    assert "1 complete" in shown.stdout


# --------------------------------------------------------------------------- unwritable state


@pytest.mark.parametrize("directory", ["bus", "logs", "workers", "."])
def test_read_only_state_directory_is_a_state_error(repo: Path, directory: str) -> None:
    """A bus, log, workers or state directory nobody may write to ends the run with exit 5
    and a message naming the state directory, never a traceback."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    assert cli(repo, "run", "track.yaml").returncode == 0
    with immutable(state(repo) / directory):
        done = cli(repo, "run", "track.yaml", "--from", "a")
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr
    assert f"cannot write to the state directory {state(repo)}" in done.stderr


def test_state_directory_read_only_mid_run_is_a_state_error(repo: Path) -> None:
    """A bus that becomes unwritable while tasks run ends the run with exit 5, not an
    ExceptionGroup traceback."""
    (repo / "track.yaml").write_text(
        "track: hs\ntasks:\n"
        "  - id: a\n"
        "    run: 'touch started; while [ ! -e go ]; do sleep 0.05; done'\n"
        "  - {id: b, run: 'true', depends_on: [a]}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "track.yaml"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + DEADLINE
        while not (repo / "started").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "task a never started"
            time.sleep(0.05)
        with immutable(state(repo) / "bus"):
            (repo / "go").touch()
            _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 5, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert f"cannot write to the state directory {state(repo)}" in err


def test_files_planted_under_the_next_message_names_are_a_state_error(repo: Path) -> None:
    """A task that plants files where the conductor posts next ends the run with exit 5 and
    a message naming the file, not a traceback."""
    planted = (
        "for i in $(seq 3 12); do n=$(printf %09d $i); "
        "for t in TASK_COMPLETE.a.1 TASK_FAILED.a.1 TRACK_COMPLETE.-.- TRACK_FAILED.-.-; do "
        ': > "$CONDUCTOR_BUS_DIR/$n.$t.json"; done; done'
    )
    (repo / "track.yaml").write_text(
        yaml.safe_dump({"track": "hs", "tasks": [{"id": "a", "run": planted}]})
    )
    done = cli(repo, "run", "track.yaml")
    assert done.returncode == 5, done.stderr
    assert "already exists" in done.stderr
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr


def test_a_name_the_bus_cannot_carry_is_refused_by_validate(repo: Path) -> None:
    """A task name of over 1 MiB is refused by `validate` (exit 2, file, line and field),
    so no run can start and then fail at its first post."""
    (repo / "track.yaml").write_text(
        yaml.safe_dump(
            {"track": "hs", "tasks": [{"id": "a", "run": "true", "name": "n" * ((1 << 20) + 1)}]}
        )
    )
    done = cli(repo, "validate", "track.yaml")
    assert done.returncode == 2
    assert "track.yaml:" in done.stderr and "tasks[0].name" in done.stderr
    ran = cli(repo, "run", "track.yaml")
    assert ran.returncode == 2 and not (state(repo) / "bus").exists()


@pytest.mark.parametrize("where", ["task", "defaults"])
def test_a_verify_command_the_bus_cannot_carry_is_refused_by_validate(
    repo: Path, where: str
) -> None:
    """A verify command over 1 MiB (each is posted in a VERIFY_RESULT) is refused by
    `validate` with exit 2, whether the task or the track's defaults give it."""
    command = "true " + "#" * (1 << 20)
    task: dict[str, Any] = {"id": "a", "run": "true"}
    doc: dict[str, Any] = {"track": "hs", "tasks": [task]}
    if where == "task":
        task["verify"] = [command]
    else:
        doc["defaults"] = {"verify": [command]}
    (repo / "track.yaml").write_text(yaml.safe_dump(doc))
    done = cli(repo, "validate", "track.yaml")
    assert done.returncode == 2
    field = "tasks[0].verify[0]" if where == "task" else "defaults.verify[0]"
    assert "track.yaml:" in done.stderr and field in done.stderr
    assert "at most 100000 characters" in done.stderr


# --------------------------------------------------------------------------- what attempts leave


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if marker in " ".join(cmdline) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_an_interrupted_claude_attempt_ends_what_its_bash_started(
    repo: Path, tmp_path: Path
) -> None:
    """Background jobs a Claude attempt's Bash started (`sleep &`, a `setsid` double fork)
    end when the attempt ends, here by SIGTERM to the run, not at the next run."""
    first = f"{random.randint(300, 399)}.{random.randint(1000, 9999)}"
    second = f"{random.randint(300, 399)}.{random.randint(1000, 9999)}"
    quiet = ">/dev/null 2>&1 </dev/null"
    command = (
        f"sleep {first} {quiet} & setsid sh -c 'sleep {second} {quiet} & exit 0' {quiet} &"
        " echo started"
    )
    track: dict[str, Any] = {
        "track": "hs",
        "sandbox": False,
        "tasks": [{"id": "bg", "type": "code", "files": ["x.txt"]}],
    }
    script = {
        "sessions": [{"match": "Carry out task bg (", "steps": [{"bash": command}, {"hang": True}]}]
    }
    (repo / "track.yaml").write_text(yaml.safe_dump(track))
    (tmp_path / "script.yaml").write_text(yaml.safe_dump(script))
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    env.update(
        CONDUCTOR_CLAUDE_CLI=str(fake_cli_path()),
        CONDUCTOR_FAKE_SCRIPT=str(tmp_path / "script.yaml"),
        CONDUCTOR_FAKE_LOG=str(tmp_path / "fake.jsonl"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "track.yaml"],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "fake.jsonl"
    try:
        deadline = time.monotonic() + DEADLINE
        while not (log.exists() and any(e.get("event") == "hang" for e in read_fake_log(log))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the session never reached its hang"
            time.sleep(0.1)
        while not (_marked(f"sleep {first}") and _marked(f"sleep {second}")):
            assert time.monotonic() < deadline, "the background jobs never started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err[-3000:]
    # A signal takes a moment to land on a busy machine; the jobs sleep five minutes, far
    # longer than this wait, so only the conductor can have ended them.
    deadline = time.monotonic() + 60
    while left := _marked(f"sleep {first}") + _marked(f"sleep {second}"):
        if time.monotonic() > deadline:
            for p in left:
                p.kill()
            pytest.fail(f"processes the attempt started outlived it: {left}")
        time.sleep(0.1)


@pytest.mark.parametrize("name", [".tmp-{pid}-0123456789ab", ".secret.{pid}"])
def test_an_empty_secret_left_by_a_kill_at_startup_is_removed(repo: Path, name: str) -> None:
    """An empty half-written secret of a conductor killed while starting (named as now, or as
    earlier versions named it) is removed by the next run, since its pid is dead."""
    (repo / "track.yaml").write_text(SHELL_TRACK)
    assert cli(repo, "run", "track.yaml").returncode == 0
    dead = subprocess.Popen(["true"])
    dead.wait()
    leftover = state(repo) / "workers" / name.format(pid=dead.pid)
    leftover.touch()
    assert cli(repo, "run", "track.yaml", "--from", "a").returncode == 0
    assert not leftover.exists()


def test_a_refused_state_file_is_named_once_in_the_message(tmp_path: Path) -> None:
    """The error for a planted symlink names the file once, not as a prefix and again; a
    message holding the name only inside a word is still prefixed with it."""
    from conductor.errors import StateError
    from conductor.paths import open_state_file

    link = tmp_path / "run.json"
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError) as caught:
        open_state_file(link, os.O_RDONLY)
    assert str(caught.value) == f"refusing to use {link}: it is a symbolic link"
    from conductor.errors import UserError

    assert str(UserError("no such track file", path="n")) == "n: no such track file"
