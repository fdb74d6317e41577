"""What a person sees during `conductor run`: the live view on a terminal, plain lines in a
pipe, failure reasons in the summary, a clean Ctrl-C, and `bus tail -f` ending with the run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pyte
import yaml

from conductor.testing import fake_cli_path

BIN = str(Path(sys.executable).parent)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def write_track(repo: Path, track: dict[str, Any]) -> Path:
    path = repo / "track.yaml"
    path.write_text(yaml.safe_dump(track, sort_keys=False))
    return path


def conductor(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conductor", *args],
        cwd=repo,
        env=env or environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def state(track_id: str) -> Path:
    return Path(os.environ["CONDUCTOR_STATE_DIR"]) / track_id


def wait_until(check: Callable[[], bool], what: str, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def bus_has(track_id: str, mtype: str) -> bool:
    bus = state(track_id) / "bus"
    return bus.is_dir() and any(f".{mtype}." in name for name in os.listdir(bus))


WAITER = "conductor bus post PROGRESS -m 'waiting for go' >/dev/null; " \
    "while [ ! -f go ]; do sleep 0.05; done; echo released"


def test_plain_lines_in_a_pipe_and_logs_in_the_file(repo: Path) -> None:
    """Not a terminal: one line per task start and end, then the summary; no structured log
    line on the screen, and the log lines in the track's logs/conductor.log."""
    write_track(repo, {"track": "piped", "tasks": [
        {"id": "one", "run": "echo one"},
        {"id": "two", "run": "echo two", "depends_on": ["one"]},
    ]})
    proc = conductor(repo, "run", "track.yaml")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == ""
    lines = out.splitlines()
    assert [line.split()[1:3] for line in lines[:4]] == [
        ["start", "one"], ["done", "one"], ["start", "two"], ["done", "two"]
    ]
    assert lines[4].startswith("track piped: complete in ") and lines[4].endswith("2 complete")
    logged = [json.loads(line) for line in (state("piped") / "logs" / "conductor.log").open()]
    assert [e["task_id"] for e in logged if e["event"] == "task complete"] == ["one", "two"]


def test_log_format_json_also_puts_log_lines_on_stderr(repo: Path) -> None:
    """``--log-format json`` asks for machine-readable lines on stderr: they are there."""
    write_track(repo, {"track": "jsonlog", "tasks": [{"id": "one", "run": "true"}]})
    proc = conductor(repo, "--log-format", "json", "run", "track.yaml", "--progress", "none")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert [json.loads(line)["event"] for line in err.splitlines()] == ["task complete"]
    assert out.splitlines()[0].startswith("track jsonlog: complete")


def test_a_missing_script_is_tried_once_and_the_summary_says_why(repo: Path) -> None:
    """A missing script exits 127 once, not three times; the summary names the cause and
    quotes the complaint, and the task's dependents are blocked."""
    write_track(repo, {"track": "nosuch", "tasks": [
        {"id": "build", "run": "./scripts/build.sh --release"},
        {"id": "ship", "run": "true", "depends_on": ["build"]},
    ]})
    proc = conductor(repo, "run", "track.yaml")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    lines = out.splitlines()
    assert sum(1 for line in lines if line.split()[1:3] == ["start", "build"]) == 1
    summary = lines[lines.index(next(x for x in lines if x.startswith("track nosuch:"))):]
    assert summary[1] == "  failed   build  command not found (exit 127)"
    assert "./scripts/build.sh" in summary[2] and "No such file or directory" in summary[2]
    assert "  blocked  ship" in summary
    assert any(line.startswith("  logs: ") for line in summary)


def test_bus_tail_follow_ends_when_the_run_ends(repo: Path) -> None:
    """``bus tail -f`` prints the run as it goes and exits after its TRACK_COMPLETE."""
    write_track(repo, {"track": "tailed", "tasks": [{"id": "wait", "run": WAITER}]})
    run = conductor(repo, "run", "track.yaml", "--progress", "none")
    try:
        wait_until(lambda: bus_has("tailed", "PROGRESS"), "the task's progress")
        tail = conductor(repo, "bus", "tail", "tailed", "-f", "-n", "1")
        assert tail.stdout is not None
        first = tail.stdout.readline()  # the one old message: it follows from here on
        assert "PROGRESS" in first
        (repo / "go").touch()
        rest, _ = tail.communicate(timeout=120)
        assert tail.returncode == 0
        assert rest.splitlines()[-1].split()[3] == "TRACK_COMPLETE"
        assert "TASK_COMPLETE" in rest
    finally:
        (repo / "go").touch()
        run.communicate(timeout=120)


def test_bus_tail_follow_of_a_track_file_waits_for_its_first_run(repo: Path) -> None:
    """``bus tail TRACK_FILE -f`` started before the track ever ran waits, creating nothing,
    then prints the first run from its start to its end, even when the run ended before
    the tail looked."""
    write_track(repo, {"track": "first-tail", "tasks": [{"id": "one", "run": "true"}]})
    tail = conductor(repo, "bus", "tail", "track.yaml", "-f")
    try:
        assert tail.stderr is not None
        assert "waiting for the first run of track first-tail" in tail.stderr.readline()
        assert not state("first-tail").exists()
        run = conductor(repo, "run", "track.yaml", "--progress", "none")
        run.communicate(timeout=120)
        assert run.returncode == 0
        out, _ = tail.communicate(timeout=120)
    finally:
        if tail.poll() is None:
            tail.kill()
    assert tail.returncode == 0
    lines = out.splitlines()  # the whole run, however soon it ended after the wait
    assert lines[0].split()[3] == "TRACK_STARTED" and lines[-1].split()[3] == "TRACK_COMPLETE"


def test_bus_tail_forever_goes_on_after_the_run_ends(repo: Path) -> None:
    """``bus tail -f --forever`` keeps following past the end of a run: a note posted after
    TRACK_COMPLETE is printed too."""
    write_track(repo, {"track": "forever", "tasks": [{"id": "wait", "run": WAITER}]})
    run = conductor(repo, "run", "track.yaml", "--progress", "none")
    tail = None
    try:
        wait_until(lambda: bus_has("forever", "PROGRESS"), "the task's progress")
        tail = conductor(repo, "bus", "tail", "forever", "-f", "--forever", "-n", "1")
        assert tail.stdout is not None
        assert "PROGRESS" in tail.stdout.readline()
        (repo / "go").touch()
        run.communicate(timeout=120)
        while "TRACK_COMPLETE" not in tail.stdout.readline():
            pass
        note = conductor(repo, "bus", "post", "forever", "NOTE", "-m", "after the end")
        note.communicate(timeout=60)
        assert "after the end" in tail.stdout.readline()
        assert tail.poll() is None
    finally:
        (repo / "go").touch()
        if run.poll() is None:
            run.communicate(timeout=120)
        if tail is not None:
            tail.kill()
            tail.communicate(timeout=60)


class Terminal:
    """``conductor`` in a pseudo-terminal, with a screen (pyte) that its output is drawn on."""

    def __init__(self, repo: Path, *args: str, env: dict[str, str], rows: int = 30,
                 cols: int = 120) -> None:
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.Stream(self.screen)
        self.raw = ""
        self.child = pexpect.spawn(
            sys.executable, ["-m", "conductor", *args], cwd=str(repo),
            env={**env, "TERM": "xterm-256color"}, dimensions=(rows, cols),
            encoding="utf-8", codec_errors="replace",
        )

    def pump(self) -> bool:
        """Draw what the program wrote; False once it has ended and all was read."""
        try:
            data = self.child.read_nonblocking(65536, timeout=0.1)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self.raw += data
        self.stream.feed(data)
        return True

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait_for(self, check: Callable[[list[str]], bool], what: str,
                 deadline: float = 90.0) -> list[str]:
        end = time.monotonic() + deadline
        while not check(self.lines()):
            if not self.pump() and not check(self.lines()):
                raise AssertionError(f"ended before {what}:\n" + "\n".join(self.lines()))
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what}:\n" + "\n".join(self.lines()))
        return self.lines()

    def finish(self, deadline: float = 120.0) -> int:
        end = time.monotonic() + deadline
        while self.pump():
            if time.monotonic() > end:
                raise AssertionError("did not end:\n" + "\n".join(self.lines()))
        self.child.close()
        status = self.child.exitstatus
        return int(status) if status is not None else 128 + int(self.child.signalstatus or 0)


def test_live_view_on_a_terminal_shows_the_running_task(repo: Path) -> None:
    """On a terminal, while a slow task runs, the screen shows its row (command, attempt,
    elapsed, latest progress line) and the counts line; when it ends, an end line and the
    summary replace the table."""
    write_track(repo, {"track": "live", "tasks": [
        {"id": "waiter", "run": WAITER},
        {"id": "after", "run": "true", "depends_on": ["waiter"]},
    ]})
    term = Terminal(repo, "run", "track.yaml", env=environment())
    try:
        screen = term.wait_for(
            lambda lines: any("waiter" in x and "waiting for go" in x for x in lines),
            "the running task's row with its progress",
        )
        row = next(x for x in screen if "waiter" in x and "waiting for go" in x)
        assert "$ conductor bus post PROGRESS" in row
        assert re.search(r"waiter\s+\$ .*\s1\s+\d+\.\ds\s+waiting for go", row), row
        assert any(x.startswith("0/2 done · 1 running · 0 failed · 0 blocked") for x in screen)
        assert not any('"event"' in x for x in screen)  # no structured log line
    finally:
        (repo / "go").touch()
    assert term.finish() == 0, term.raw
    final = [x for x in term.lines() if x]
    assert any(x.startswith("✓ waiter") for x in final)
    assert any(x.startswith("track live: complete in ") for x in final)
    assert not any("running" in x and "done ·" in x for x in final)  # the table is gone


def claude_hanging(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "script.yaml"
    script.write_text(yaml.safe_dump({"sessions": [
        {"match": "Carry out task think (", "steps": [{"hang": True}]}
    ]}))
    return environment(
        CONDUCTOR_CLAUDE_CLI=str(fake_cli_path()),
        CONDUCTOR_FAKE_SCRIPT=str(script),
        CONDUCTOR_FAKE_LOG=str(tmp_path / "fake.jsonl"),
    )


HANGING = {"track": "hangs", "sandbox": "off", "tasks": [
    {"id": "think", "type": "docs", "files": ["notes.md"], "instructions": "Write notes."},
    {"id": "wait", "run": WAITER},
]}


def test_ctrl_c_on_a_terminal_stops_cleanly(repo: Path, tmp_path: Path) -> None:
    """Ctrl-C while a Claude session and a shell task run: a short interrupted message, the
    summary with how to resume, exit 130, and nothing from the SDK or Python on screen."""
    write_track(repo, HANGING)
    term = Terminal(repo, "run", "track.yaml", env=claude_hanging(tmp_path))
    term.wait_for(
        lambda lines: any(x.startswith("0/2 done · 2 running") for x in lines)
        and any("waiting for go" in x for x in lines),
        "both tasks running",
    )
    term.child.sendcontrol("c")
    assert term.finish() == 130, term.raw
    text = ANSI.sub("", term.raw)
    assert "track hangs: interrupted in " in text
    assert "run `conductor run` again to resume" in text
    for noise in ("Traceback", "Exception", "claude_agent_sdk", "asyncio", "KeyboardInterrupt"):
        assert noise not in text, text


def test_sigint_in_a_pipe_stops_cleanly(repo: Path, tmp_path: Path) -> None:
    """SIGINT to a run whose output is piped: exit 130, plain stop lines, stderr holds only
    conductor's own short lines."""
    write_track(repo, HANGING)
    proc = conductor(repo, "run", "track.yaml", env=claude_hanging(tmp_path))
    try:
        wait_until(lambda: bus_has("hangs", "WORKER_STARTED") and bus_has("hangs", "PROGRESS"),
                   "both tasks running")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        (repo / "go").touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert all(line.startswith(("warning: ", "error: ")) for line in err.splitlines()), err
    assert "Traceback" not in err and "Traceback" not in out
    stopped = [line.split()[2] for line in out.splitlines() if line.split()[1:2] == ["stopped"]]
    assert sorted(stopped) == ["think", "wait"]
    assert "run `conductor run` again to resume" in out
