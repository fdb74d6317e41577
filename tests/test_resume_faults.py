"""Resume after real faults: kill -9 of the conductor at random moments, Ctrl-C, orphans."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.workers import leftover_workers


def write_track(
    path: Path, track_id: str, tasks: list[dict[str, Any]], max_parallel: int = 8
) -> Path:
    path.write_text(
        yaml.safe_dump({"track": track_id, "max_parallel": max_parallel, "tasks": tasks})
    )
    return path


def start(track: Path, repo: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "conductor", "--log-format", "json", "run", str(track), *args],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def state(track_id: str) -> StateDir:
    return StateDir.for_track(Path("."), track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))


def all_messages(track_id: str) -> list[dict[str, Any]]:
    with Bus.for_state(state(track_id), track_id) as bus:
        return [m.to_dict() for m in bus.iter_all()]


def last_seq(track_id: str) -> int:
    if not state(track_id).bus.is_dir():
        return 0
    with Bus.for_state(state(track_id), track_id) as bus:
        return bus.last_seq()


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_kill9_at_random_moments_then_resume(repo: Path) -> None:
    """20+ kill -9s during a 400-task track, each resumed: every task completes exactly once."""
    rng = random.Random(20261123)
    n = 400
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        deps = sorted(rng.sample(range(max(0, i - 30), i), min(i, rng.randint(0, 3))))
        task: dict[str, Any] = {
            "id": f"t{i:03d}",
            "run": f"sleep 0.{rng.randint(5, 15):02d} && echo t{i} >> out/ran-t{i:03d}.txt",
            "depends_on": [f"t{d:03d}" for d in deps],
        }
        if i % 7 == 0:
            task["files"] = [f"out/f{i % 5}.txt"]
        tasks.append(task)
    (repo / "out").mkdir()
    track = write_track(repo / "track.yaml", "kill9", tasks)
    kills = 0
    while kills < 22:
        before = last_seq("kill9")
        proc = start(track, repo)
        # Kill at a random moment after the conductor has started writing to the bus.
        wait_for(lambda: last_seq("kill9") > before or proc.poll() is not None)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break  # finished before we could kill it
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = start(track, repo)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]
    assert kills >= 20, f"the track finished after only {kills} kills"

    msgs = all_messages("kill9")
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    completes: dict[str, int] = {}
    for m in msgs:
        if m["type"] == "TASK_COMPLETE":
            completes[m["task"]] = completes.get(m["task"], 0) + 1
    assert completes == {t["id"]: 1 for t in tasks}
    assert msgs[-1]["type"] == "TRACK_COMPLETE"
    assert sum(1 for m in msgs if m["type"] == "TRACK_STARTED") == kills + 1
    assert any(m["type"] == "WORKER_LOST" for m in msgs)
    sd = state("kill9")
    assert leftover_workers(sd.workers) == []
    assert [p.name for p in sd.locks.iterdir() if not p.name.startswith(".")] == []
    assert list(sd.quarantine.iterdir()) == []
    # Every dependency completed before its dependent was last dispatched.
    done_at = {m["task"]: m["seq"] for m in msgs if m["type"] == "TASK_COMPLETE"}
    last_dispatch = {m["task"]: m["seq"] for m in msgs if m["type"] == "TASK_DISPATCHED"}
    for t in tasks:
        for dep in t["depends_on"]:
            assert done_at[dep] < last_dispatch[t["id"]]


def test_ctrl_c_records_and_resume_finishes(repo: Path) -> None:
    """SIGINT: running attempts are ended and recorded, exit 130; a resume completes the track."""
    tasks = [
        {"id": f"s{i}", "run": f"echo $$ > pid{i}; test -f go || exec sleep 60", "files": [f"f{i}"]}
        for i in range(3)
    ] + [{"id": "end", "run": "true", "depends_on": ["s0", "s1", "s2"]}]
    track = write_track(repo / "track.yaml", "ctrlc", tasks)
    proc = start(track, repo)
    wait_for(lambda: all((repo / f"pid{i}").exists() for i in range(3)))
    pids = [int((repo / f"pid{i}").read_text()) for i in range(3)]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err.decode()[-2000:]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    msgs = all_messages("ctrlc")
    lost = [m for m in msgs if m["type"] == "WORKER_LOST"]
    assert {m["task"] for m in lost} == {"s0", "s1", "s2"}
    assert all(m["payload"]["reason"] == "interrupted" for m in lost)
    assert msgs[-1]["type"] == "TRACK_INTERRUPTED"
    sd = state("ctrlc")
    assert leftover_workers(sd.workers) == []
    assert [p for p in sd.locks.iterdir() if not p.name.startswith(".")] == []
    (repo / "go").write_text("")
    again = start(track, repo)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err.decode()[-2000:]
    msgs = all_messages("ctrlc")
    assert msgs[-1]["type"] == "TRACK_COMPLETE"


def test_resume_reaps_orphans_of_a_killed_conductor(repo: Path) -> None:
    """After kill -9 the task's orphaned process is ended by the resume, which records it lost."""
    tasks = [{"id": "a", "run": "echo $$ > pid; test -f go || exec sleep 60"}]
    track = write_track(repo / "track.yaml", "orphan", tasks)
    proc = start(track, repo)
    wait_for(lambda: (repo / "pid").exists())
    orphan = int((repo / "pid").read_text())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert psutil.pid_exists(orphan)
    (repo / "go").write_text("")
    again = start(track, repo)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err.decode()[-2000:]
    wait_for(
        lambda: (
            not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
        ),
        10,
    )
    lost = [m for m in all_messages("orphan") if m["type"] == "WORKER_LOST"]
    assert len(lost) == 1 and lost[0]["payload"]["reaped"] is True


def test_second_run_exits_3_naming_the_holder(repo: Path) -> None:
    """A second `conductor run` of a running track exits 3 and names the holder's pid."""
    tasks = [{"id": "a", "run": "echo started > started; exec sleep 60"}]
    track = write_track(repo / "track.yaml", "twice", tasks)
    first = start(track, repo)
    try:
        wait_for(lambda: (repo / "started").exists())
        second = start(track, repo)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 3
        assert f"pid {first.pid}" in err.decode()
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(
    __import__("conductor.sandbox").sandbox.unavailable() is not None, reason="no sandbox"
)
def test_kill9_during_isolated_attempts_lands_each_task_once(repo: Path) -> None:
    """kill -9 at random moments of a track whose attempts work in copies and land commits:
    after resuming, every task completed once, landed exactly one commit, the checkout is
    clean and holds every task's work once, and no copy or snapshot ref is left."""
    rng = random.Random(20261130)
    subprocess.run(["git", "-C", str(repo), "config", "user.name", "P"], check=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.email", "p@x"], check=True)
    n = 24
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        task: dict[str, Any] = {"id": f"t{i:02d}", "isolation": "copy"}
        if i % 3 == 0:  # a chain: each appends to the file the previous one landed
            task["run"] = f"sleep 0.{rng.randint(1, 3)} && echo t{i:02d} >> chain.txt"
            task["files"] = ["chain.txt"]
            if i:
                task["depends_on"] = [f"t{i - 3:02d}"]
        else:
            task["run"] = (
                f"sleep 0.{rng.randint(1, 3)} && mkdir -p out && echo t{i:02d} > out/t{i:02d}.txt"
            )
            task["files"] = [f"out/t{i:02d}.txt"]
        tasks.append(task)
    track = write_track(repo / "track.yaml", "iso9", tasks, max_parallel=4)
    subprocess.run(["git", "-C", str(repo), "add", "track.yaml"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "track"], check=True)
    kills = 0
    while kills < 12:
        before = last_seq("iso9")
        proc = start(track, repo)
        wait_for(lambda: last_seq("iso9") > before or proc.poll() is not None)  # noqa: B023
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    final = start(track, repo)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]
    assert kills >= 6, f"the track finished after only {kills} kills"

    msgs = all_messages("iso9")
    completes = [m for m in msgs if m["type"] == "TASK_COMPLETE"]
    assert sorted(m["task"] for m in completes) == [t["id"] for t in tasks]
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%H %s"], check=True, capture_output=True,
        text=True,
    ).stdout.splitlines()
    subjects = [line.split(" ", 1)[1] for line in log]
    for t in tasks:
        assert subjects.count(f"iso9/{t['id']}") == 1, (t["id"], subjects)
    by_subject = {line.split(" ", 1)[1]: line.split()[0] for line in log}
    for m in completes:
        assert m["payload"]["commit"] == by_subject[f"iso9/{m['task']}"]
    status = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], check=True, capture_output=True,
        text=True,
    ).stdout
    assert status == ""
    chain = [f"t{i:02d}" for i in range(0, n, 3)]
    assert (repo / "chain.txt").read_text().split() == chain
    for i in range(n):
        if i % 3:
            assert (repo / "out" / f"t{i:02d}.txt").read_text() == f"t{i:02d}\n"
    sd = state("iso9")
    copies = sd.root / "copies"
    assert not copies.exists() or [p.name for p in copies.iterdir()] == []
    refs = subprocess.run(
        ["git", "-C", str(repo), "for-each-ref", "refs/conductor/"], check=True,
        capture_output=True, text=True,
    ).stdout
    assert refs == ""
