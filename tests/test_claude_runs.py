"""`conductor run` with Claude tasks end to end against the fake CLI: feedback, orphans, budget."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from fakekit import complete, conductor, rule, setup

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.testing import read_fake_log
from conductor.workers import leftover_workers


def messages(track_id: str) -> list[dict[str, Any]]:
    sd = StateDir.for_track(Path("."), track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))
    with Bus.for_state(sd, track_id) as bus:
        return [m.to_dict() for m in bus.iter_all()]


def test_verify_failure_is_fed_back_to_the_next_attempt(repo: Path, tmp_path: Path) -> None:
    """Attempt 1 writes the wrong thing and fails verify; attempt 2's prompt carries why."""
    track = {
        "track": "fb",
        "tasks": [
            {
                "id": "greet",
                "type": "code",
                "files": ["hello.txt"],
                "instructions": "Write hello.txt containing hello.",
                "verify": ["grep -q hello hello.txt"],
            }
        ],
    }
    script = {
        "sessions": [
            rule(
                "greet",
                attempts=[
                    [{"write": {"path": "hello.txt", "content": "bye\n"}}, complete("hello.txt")],
                    [{"write": {"path": "hello.txt", "content": "hello\n"}}, complete("hello.txt")],
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script)
    proc = conductor(repo, env, "run", "track.yaml")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    assert (repo / "hello.txt").read_text() == "hello\n"
    starts = [e for e in read_fake_log(tmp_path / "fake.jsonl") if e.get("event") == "start"]
    assert len(starts) == 2
    second = json.dumps(starts[1])
    assert "grep -q hello hello.txt" in second and "verify failed" in second
    assert "verify failed" not in json.dumps(starts[0])
    msgs = messages("fb")
    assert [m["type"] for m in msgs if m["type"] in ("TASK_FAILED", "TASK_COMPLETE")] == [
        "TASK_FAILED",
        "TASK_COMPLETE",
    ]
    sd = StateDir.for_track(repo, "fb", Path(os.environ["CONDUCTOR_STATE_DIR"]))
    assert leftover_workers(sd.workers) == []  # the rendered SKILL.md went with its worker dir


def test_kill9_orphaned_session_is_ended_on_resume(repo: Path, tmp_path: Path) -> None:
    """A CLI left running by a SIGKILLed conductor is ended by the resume (found by its pid)."""
    track = {"track": "orph", "tasks": [{"id": "slow", "type": "code", "files": ["s.txt"]}]}
    script = {
        "sessions": [
            rule(
                "slow",
                attempts=[
                    [{"text": "thinking"}, {"hang": True}],
                    [{"write": {"path": "s.txt", "content": "ok\n"}}, complete("s.txt")],
                ],
            )
        ]
    }
    env = setup(repo, tmp_path, track, script)
    proc = conductor(repo, env, "run", "track.yaml")
    log = tmp_path / "fake.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the session is really hanging
        if log.exists() and any(e.get("event") == "hang" for e in read_fake_log(log)):
            break
        time.sleep(0.1)
    started = [m for m in messages("orph") if m["type"] == "WORKER_STARTED"]
    assert started, "the session never started"
    cli_pid = started[0]["payload"]["cli_pid"]
    assert psutil.pid_exists(cli_pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.3)
    assert psutil.pid_exists(cli_pid), "the CLI should outlive a SIGKILLed conductor"
    again = conductor(repo, env, "run", "track.yaml")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err.decode()[-3000:]
    gone = (
        not psutil.pid_exists(cli_pid) or psutil.Process(cli_pid).status() == psutil.STATUS_ZOMBIE
    )
    assert gone
    lost = [m for m in messages("orph") if m["type"] == "WORKER_LOST"]
    assert len(lost) == 1 and lost[0]["payload"]["reaped"] is True


def test_track_budget_ends_the_run(repo: Path, tmp_path: Path) -> None:
    """Costs add up; the session that crosses budget_usd is cut by its cap; nothing new starts."""
    chain = ["one", "two", "three", "four"]
    track = {
        "track": "money",
        "budget_usd": 0.1,
        "max_parallel": 1,
        "tasks": [
            {
                "id": t,
                "type": "code",
                "files": [f"{t}.txt"],
                **({"depends_on": [chain[i - 1]]} if i else {}),
            }
            for i, t in enumerate(chain)
        ],
    }
    costs = {"one": 0.06, "two": 0.03, "three": 0.05, "four": 0.01}
    script = {
        "sessions": [
            rule(
                t,
                steps=[
                    {"write": {"path": f"{t}.txt", "content": "x\n"}, "cost": c},
                    complete(f"{t}.txt"),
                ],
            )
            for t, c in costs.items()
        ]
    }
    env = setup(repo, tmp_path, track, script)
    proc = conductor(repo, env, "run", "track.yaml")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err.decode()[-3000:]
    assert "budget" in out.decode()
    msgs = messages("money")
    assert [m["task"] for m in msgs if m["type"] == "TASK_DISPATCHED"] == ["one", "two", "three"]
    done = {m["task"]: m["payload"]["cost_usd"] for m in msgs if m["type"] == "TASK_COMPLETE"}
    assert done == pytest.approx({"one": 0.06, "two": 0.03})
    failed = next(m for m in msgs if m["type"] == "TASK_FAILED")
    assert failed["task"] == "three" and "budget" in failed["payload"]["error"]
    assert any(m["type"] == "BUDGET_EXCEEDED" for m in msgs)
    assert msgs[-1]["type"] == "TRACK_FAILED" and msgs[-1]["payload"]["status"] == "budget"
