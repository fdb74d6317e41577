"""`conductor bus ls|show|tail|post`: output, --json, and who may post what."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conductor.bus import Bus
from conductor.cli import main
from conductor.paths import StateDir
from conductor.workers import create_worker_dir

TRACK = textwrap.dedent(
    """
    track: demo
    tasks:
      - {id: build, run: "true"}
      - {id: test, run: "true", depends_on: [build]}
    """
)


@pytest.fixture
def state_root(tmp_path: Path) -> Path:
    return tmp_path / "states"


@pytest.fixture
def state(tmp_path: Path, state_root: Path) -> StateDir:
    return StateDir.for_track(tmp_path, "demo", state_root).ensure()


def cli(state_root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    full_env: dict[str, str | None] = dict.fromkeys(
        ("CONDUCTOR_WORKER", "CONDUCTOR_WORKER_TOKEN", "CONDUCTOR_TRACK")
    )
    full_env.update(env or {})
    return CliRunner().invoke(
        main, [*args, "--state-dir", str(state_root)], catch_exceptions=False, env=full_env
    )


def seed(state: StateDir) -> None:
    with Bus.for_state(state, "demo") as bus:
        bus.post("TRACK_STARTED", payload={"pid": 1})
        bus.post("TASK_DISPATCHED", task="build", worker="build.1", attempt=1)
        bus.post("PROGRESS", task="build", worker="build.1", attempt=1,
                 payload={"text": "compiling\nnow", "pct": 40})
        bus.post("TASK_COMPLETE", task="build", worker="build.1", attempt=1)
        bus.post("NOTE", payload={"text": "x" * 300})


def test_ls_lists_messages(state: StateDir, state_root: Path) -> None:
    """ls prints one line per message: seq, time, type, task, worker, payload summary."""
    seed(state)
    res = cli(state_root, "bus", "ls", "demo")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert len(lines) == 5
    assert lines[0].split()[0] == "1" and "TRACK_STARTED" in lines[0] and '{"pid":1}' in lines[0]
    assert "PROGRESS" in lines[2] and "build.1" in lines[2] and "compiling now" in lines[2]
    assert lines[4].endswith("…") and len(lines[4]) < 200


def test_ls_shows_escape_sequences_in_a_payload_as_text(state: StateDir, state_root: Path) -> None:
    """A payload holding escape sequences (also C1 controls, which JSON keeps) is listed
    and shown with them made visible, not sent to the terminal."""
    with Bus.for_state(state, "demo") as bus:
        bus.post("NOTE", payload={"text": "\x1b]0;PWNED\x07\x1b[2Jhi"})
    res = cli(state_root, "bus", "ls", "demo")
    assert res.exit_code == 0, res.output
    assert "\x1b" not in res.output and "\\x1b]0;PWNED\\x07\\x1b[2Jhi" in res.output
    with Bus.for_state(state, "demo") as bus:
        seq = bus.post("NOTE", payload={"text": "c1 \x9b31m csi"}).seq
    shown = cli(state_root, "bus", "show", "demo", str(seq))
    assert "\x9b" not in shown.output and "c1 \\x9b31m csi" in shown.output


def test_ls_filters_and_json(state: StateDir, state_root: Path) -> None:
    """--type, --task and --since filter; --json prints one parseable message per line."""
    seed(state)
    res = cli(state_root, "bus", "ls", "demo", "--task", "build", "--since", "2", "--json")
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert [r["seq"] for r in rows] == [3, 4]
    res = cli(state_root, "bus", "ls", "demo", "--type", "note", "--type", "TRACK_STARTED")
    assert [line.split()[0] for line in res.output.splitlines()] == ["1", "5"]


def test_show_prints_full_message(state: StateDir, state_root: Path) -> None:
    """show prints the whole message as pretty JSON, or one line with --json."""
    seed(state)
    res = cli(state_root, "bus", "show", "demo", "3")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["payload"] == {"text": "compiling\nnow", "pct": 40} and data["seq"] == 3
    assert res.output.count("\n") > 5
    res = cli(state_root, "bus", "show", "demo", "3", "--json")
    assert json.loads(res.output) == data and res.output.count("\n") == 1


def test_show_missing_and_unknown_track(state: StateDir, state_root: Path) -> None:
    """A missing seq or a track without a bus is a clear error, exit 2, no traceback."""
    seed(state)
    res = cli(state_root, "bus", "show", "demo", "99")
    assert res.exit_code == 2 and "no message 99" in res.output and "last is 5" in res.output
    res = cli(state_root, "bus", "ls", "other")
    assert res.exit_code == 2 and "no track 'other' has run state" in res.output
    assert "Traceback" not in res.output


def test_tail_last_n(state: StateDir, state_root: Path) -> None:
    """tail -n N prints the last N messages."""
    seed(state)
    res = cli(state_root, "bus", "tail", "demo", "-n", "2", "--json")
    assert [json.loads(line)["seq"] for line in res.output.splitlines()] == [4, 5]
    res = cli(state_root, "bus", "tail", "demo")
    assert len(res.output.splitlines()) == 5


def test_person_posts_human_types(state: StateDir, state_root: Path, tmp_path: Path) -> None:
    """A person may post NOTE, APPROVE and SKIP (with a task); output names seq and file."""
    res = cli(state_root, "bus", "post", "demo", "note", "-m", "looks good")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "posted 1: 000000001.NOTE.-.-.json"
    res = cli(state_root, "bus", "post", "demo", "APPROVE", "--json")
    msg = json.loads(res.output)
    assert msg["seq"] == 2 and msg["type"] == "APPROVE" and msg["worker"] is None
    track_file = tmp_path / "track.yaml"
    track_file.write_text(TRACK)
    res = cli(state_root, "bus", "post", str(track_file), "SKIP", "--task", "build",
              "--payload", '{"reason": "done by hand"}')
    assert res.exit_code == 0, res.output
    with Bus.for_state(state, "demo") as bus:
        msgs = bus.read()
    assert [m.type for m in msgs] == ["NOTE", "APPROVE", "SKIP"]
    assert msgs[0].payload == {"text": "looks good"}
    assert (msgs[2].task, msgs[2].payload) == ("build", {"reason": "done by hand"})


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["TASK_COMPLETE", "--task", "build"], "a person may post only"),
        (["PROGRESS"], "a person may post only"),
        (["SKIP"], "SKIP needs --task"),
        (["NOTE", "--payload", "[1]"], "JSON object"),
        (["NOTE", "--payload", "{nope"], "not valid JSON"),
        (["NOTE", "--payload", "{}", "-m", "x"], "not both"),
        (["NOTE", "--task", "../x"], "task id"),
        (["not-a-type"], "unknown message type NOT-A-TYPE"),
        (["BOGUS"], "unknown message type BOGUS: a person posts APPROVE, NOTE, REJECT or SKIP"),
    ],
)
def test_person_post_refusals(
    state: StateDir, state_root: Path, args: list[str], match: str
) -> None:
    """What a person may not post is refused with exit 2 and a clear message."""
    res = cli(state_root, "bus", "post", "demo", *args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "Traceback" not in res.output
    assert re.search(match, res.output), res.output


def test_type_before_track_gets_a_hint(state_root: Path) -> None:
    """`bus post SKIP demo` (type first) says the track comes first, exit 2."""
    res = cli(state_root, "bus", "post", "SKIP", "demo", "--task", "x")
    assert res.exit_code == 2
    assert "the track comes first: conductor bus post demo SKIP" in res.output


def test_skip_task_checked_against_track_file(state_root: Path, tmp_path: Path) -> None:
    """With a track file, SKIP's --task must be one of its tasks."""
    track = tmp_path / "demo.yaml"
    track.write_text(TRACK)
    res = cli(state_root, "bus", "post", str(track), "SKIP", "--task", "buidl")
    assert res.exit_code == 2 and "buidl" in res.output and "build" in res.output
    res = cli(state_root, "bus", "post", str(track), "SKIP", "--task", "test")
    assert res.exit_code == 0, res.output
    res = cli(state_root, "bus", "ls", str(track), "--json")
    assert json.loads(res.output)["task"] == "test"


def test_worker_posts_as_itself(state: StateDir, state_root: Path) -> None:
    """With a valid token the message carries the worker's task, id and attempt."""
    _, token = create_worker_dir(state.workers, "build", 2)
    env = {"CONDUCTOR_WORKER": "build.2", "CONDUCTOR_WORKER_TOKEN": token}
    res = cli(state_root, "bus", "post", "demo", "PROGRESS", "--payload", '{"pct": 10}',
              "--json", env=env)
    assert res.exit_code == 0, res.output
    msg = json.loads(res.output)
    assert (msg["task"], msg["worker"], msg["attempt"]) == ("build", "build.2", 2)
    res = cli(state_root, "bus", "post", "demo", "CLAIM_COMPLETE", "--task", "build",
              "-m", "done", env=env)
    assert res.exit_code == 0, res.output


def test_worker_shell_post_without_track_argument(state: StateDir, state_root: Path) -> None:
    """In a worker's shell TRACK defaults to $CONDUCTOR_TRACK: `conductor bus post PROGRESS`."""
    _, token = create_worker_dir(state.workers, "build", 1)
    env = {"CONDUCTOR_WORKER": "build.1", "CONDUCTOR_WORKER_TOKEN": token,
           "CONDUCTOR_TRACK": "demo"}
    res = cli(state_root, "bus", "post", "PROGRESS", "-m", "halfway", env=env)
    assert res.exit_code == 0, res.output
    with Bus.for_state(state, "demo") as bus:
        msg = bus.get(1)
    assert msg is not None and (msg.worker, msg.payload) == ("build.1", {"text": "halfway"})
    res = cli(state_root, "bus", "post", "PROGRESS")
    assert res.exit_code == 2 and "give the track and the type" in res.output


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["TASK_COMPLETE"], "a worker may post only"),
        (["TASK_FAILED"], "a worker may post only"),
        (["APPROVE"], "a worker may post only"),
        (["PROGRESS", "--task", "test"], "cannot post about 'test'"),
        (["PROGRESS", "--worker", "test.1"], "cannot post as worker"),
    ],
)
def test_worker_post_refusals(
    state: StateDir, state_root: Path, args: list[str], match: str
) -> None:
    """A worker cannot post conductor-owned types or speak for another task or worker."""
    _, token = create_worker_dir(state.workers, "build", 1)
    env = {"CONDUCTOR_WORKER": "build.1", "CONDUCTOR_WORKER_TOKEN": token}
    res = cli(state_root, "bus", "post", "demo", *args, env=env)
    assert res.exit_code == 2, res.output
    assert match in res.output
    with Bus.for_state(state, "demo") as bus:
        assert bus.last_seq() == 0


def test_wrong_token_refused(state: StateDir, state_root: Path) -> None:
    """A wrong token, another worker's token, or an unknown worker is refused."""
    _, token_b = create_worker_dir(state.workers, "build", 1)
    _, token_t = create_worker_dir(state.workers, "test", 1)
    for env in (
        {"CONDUCTOR_WORKER": "build.1", "CONDUCTOR_WORKER_TOKEN": "0" * 32},
        {"CONDUCTOR_WORKER": "build.1", "CONDUCTOR_WORKER_TOKEN": token_t},
        {"CONDUCTOR_WORKER": "ghost.1", "CONDUCTOR_WORKER_TOKEN": token_b},
        {"CONDUCTOR_WORKER": "", "CONDUCTOR_WORKER_TOKEN": token_b},
    ):
        res = cli(state_root, "bus", "post", "demo", "PROGRESS", env=env)
        assert res.exit_code == 2, (env, res.output)
        assert "error:" in res.output
    with Bus.for_state(state, "demo") as bus:
        assert bus.last_seq() == 0


def test_oversized_post_is_state_error(state: StateDir, state_root: Path) -> None:
    """A payload over the bus limit exits 5 with the size and the limit."""
    res = cli(state_root, "bus", "post", "demo", "NOTE", "-m", "x" * (1 << 20))
    assert res.exit_code == 5 and "1048576" in res.output


def test_tail_follow_prints_new_messages_and_exits_0_on_ctrl_c(
    state: StateDir, state_root: Path
) -> None:
    """tail -f prints messages as they arrive and exits 0 on Ctrl-C."""
    seed(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_WORKER")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "bus", "tail", "demo", "-n", "1", "-f", "--json",
         "--state-dir", str(state_root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["seq"] == 5
        time.sleep(0.3)
        with Bus.for_state(state, "demo") as bus:
            bus.post("NOTE", payload={"text": "new one"})
            bus.post("APPROVE")
        first = json.loads(proc.stdout.readline())
        second = json.loads(proc.stdout.readline())
        assert (first["seq"], first["payload"]["text"], second["type"]) == (6, "new one", "APPROVE")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr is not None
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
