"""Scheduling overhead: a 2,000-task random DAG of no-op shell tasks, conductor -j8 vs make -j8.

Bar: conductor's wall time ≤ 2× make's on the same DAG, same machine, same run.
Usage: python scripts/bench_schedule.py [--tasks 2000] [--jobs 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import random_dag, scratch_repo, verdict, write_track

CONDUCTOR = [sys.executable, "-m", "conductor", "--log-format", "json"]


def record_floor(root: Path, tasks: int) -> float:
    """Seconds this machine takes for just the files conductor writes per task."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from conductor.bus import Bus
    from conductor.workers import WorkerDirs, new_secret

    (root / "workers").mkdir(parents=True)
    (root / "logs").mkdir()
    bus = Bus(root / "bus", "floor")
    workers = WorkerDirs(root / "workers", new_secret(root / "workers"))
    started = time.perf_counter()
    for i in range(tasks):
        tid = f"t{i}"
        bus.post(
            "TASK_DISPATCHED", task=tid, worker=f"{tid}.1", attempt=1, payload={"hash": "x" * 64}
        )
        workers.create(tid, 1)
        os.close(os.open(root / "logs" / f"{tid}.1.log", os.O_CREAT | os.O_WRONLY, 0o600))
        bus.post(
            "TASK_COMPLETE", task=tid, worker=f"{tid}.1", attempt=1, payload={"hash": "x" * 64}
        )
        workers.remove(f"{tid}.1")
    workers.close()
    bus.close()
    return time.perf_counter() - started


BARE_SPAWNER = """
import asyncio, os, shutil, sys
total, jobs = int(sys.argv[1]), int(sys.argv[2])
exe, env = shutil.which("true"), dict(os.environ)
async def main():
    loop, done, left, running = asyncio.get_running_loop(), asyncio.Event(), total, 0
    def start():
        nonlocal left, running
        while running < jobs and left:
            left, running = left - 1, running + 1
            pid = os.posix_spawn(exe, ["true"], env, setsid=True)
            fd = os.pidfd_open(pid)
            loop.add_reader(fd, finished, fd, pid)
    def finished(fd, pid):
        nonlocal running
        loop.remove_reader(fd); os.close(fd); os.waitpid(pid, 0); running -= 1
        start()
        if not left and not running: done.set()
    start(); await done.wait()
asyncio.run(main())
"""
"""Python's own floor: one asyncio loop that only spawns and reaps the same commands, ``jobs``
at a time, with no DAG, no bus, no files and no imports beyond the standard library."""


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the command and all it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{proc.stderr[-3000:]!r}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    deps = random_dag(args.tasks)
    repo = scratch_repo("sched")
    tasks = [
        {"id": f"t{i}", "run": "true", "depends_on": [f"t{d}" for d in ds]}
        for i, ds in enumerate(deps)
    ]
    track = write_track(repo / "track.yaml", "sched", tasks, max_parallel=args.jobs)
    lines = [".PHONY: all " + " ".join(f"t{i}" for i in range(args.tasks)), ""]
    lines.append("all: " + " ".join(f"t{i}" for i in range(args.tasks)))
    for i, ds in enumerate(deps):
        lines.append(f"t{i}: " + " ".join(f"t{d}" for d in ds))
        lines.append("\ttrue")
    (repo / "Makefile").write_text("\n".join(lines) + "\n")

    print(
        f"tasks={args.tasks} jobs={args.jobs}  (rounds alternate make and conductor;"
        " this VM's disk speed swings, so the median round counts)"
    )
    ratios = []
    for n in range(args.rounds):
        # Each round gets fresh state directories and nothing is deleted until the end: on
        # ext4 without a journal, thousands of freshly deleted inodes slow every file create
        # in their block group for a while, which would charge one round's cleanup to the next.
        state = repo / f"state-{n}"
        make_s, make_cpu = timed(["make", "-s", f"-j{args.jobs}", "all"], repo)
        conductor_s, conductor_cpu = timed(
            [*CONDUCTOR, "run", str(track), "-j", str(args.jobs), "--state-dir", str(state)], repo
        )
        bare_s, bare_cpu = timed(
            [sys.executable, "-c", BARE_SPAWNER, str(args.tasks), str(args.jobs)], repo
        )
        floor_s = record_floor(repo / f"floor-{n}", args.tasks)
        ratios.append(conductor_s / make_s)
        print(
            f"round {n + 1}: make {make_s:5.2f} s ({make_s / args.tasks * 1000:.2f} ms/task)"
            f"  conductor {conductor_s:5.2f} s ({conductor_s / args.tasks * 1000:.2f} ms/task)"
            f"  ratio {ratios[-1]:.2f}"
        )
        print(
            f"         CPU make {make_cpu:4.2f} s, conductor {conductor_cpu:4.2f} s"
            f" (both with their {args.tasks} children) on {os.cpu_count()} CPUs;"
            f" bare Python spawner {bare_s:4.2f} s ({bare_s / make_s:.2f}x make,"
            f" CPU {bare_cpu:4.2f} s); files alone {floor_s:4.2f} s"
        )
    ratio = statistics.median(ratios)
    print(f"median ratio conductor/make: {ratio:.2f}  (bar ≤ 2.00)  {verdict(ratio <= 2.0)}")
    print(
        "'bare Python spawner': an asyncio loop that only spawns and reaps the same commands"
        " (no DAG, bus or files); 'files alone': the on-disk record per task (2 bus messages,"
        " worker dir, log file), written in a loop with no process"
    )
    shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
