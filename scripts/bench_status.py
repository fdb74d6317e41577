"""`conductor status` on a 100,000-message bus, and conductor's peak RSS on a 10,000-task track.

Bars: status ≤ 1 s; peak RSS ≤ 150 MB.
Usage: python scripts/bench_status.py [--messages 100000] [--tasks 10000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from benchlib import children_peak_rss_mb, conductor, random_dag, scratch_repo, verdict, write_track

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def status_bench(n_messages: int) -> None:
    from conductor.bus import Bus

    repo = scratch_repo("status")
    n_tasks = n_messages // 10
    tasks = [{"id": f"t{i}", "run": "true"} for i in range(n_tasks)]
    track = write_track(repo / "track.yaml", "status", tasks)
    bus = Bus(repo / ".conductor" / "status" / "bus", "status")
    started = time.perf_counter()
    posted = 0
    bus.post("TRACK_STARTED", payload={"pid": 0})
    posted += 1
    for i in range(n_tasks):
        tid = f"t{i}"
        bus.post("TASK_DISPATCHED", task=tid, worker=f"{tid}.1", attempt=1, payload={"hash": "x"})
        for p in range(7):
            bus.post("PROGRESS", task=tid, worker=f"{tid}.1", attempt=1, payload={"step": p})
        bus.post("VERIFY_RESULT", task=tid, worker=f"{tid}.1", attempt=1, payload={"ok": True})
        if posted + 10 > n_messages:
            break
        bus.post(
            "TASK_COMPLETE",
            task=tid,
            worker=f"{tid}.1",
            attempt=1,
            payload={"hash": "x", "duration": 0.01},
        )
        posted += 10
    while bus.last_seq() < n_messages:
        bus.post("NOTE", payload={"text": "filler"})
    bus.close()
    print(f"bus: {n_messages} messages written in {time.perf_counter() - started:.1f} s")
    cold, _ = conductor("status", str(track), "--json", cwd=repo)
    warm, _ = conductor("status", str(track), "--json", cwd=repo)
    print(f"conductor status, no cache (first read of the whole bus): {cold:.2f} s")
    print(
        f"conductor status, cache present (as after any run):        {warm:.2f} s"
        f"  (bar ≤ 1 s)  {verdict(warm <= 1.0)}"
    )
    shutil.rmtree(repo, ignore_errors=True)


def rss_bench(n_tasks: int) -> None:
    repo = scratch_repo("rss")
    deps = random_dag(n_tasks, seed=3)
    tasks = [
        {"id": f"t{i}", "run": "true", "depends_on": [f"t{d}" for d in ds]}
        for i, ds in enumerate(deps)
    ]
    track = write_track(repo / "track.yaml", "rss", tasks, max_parallel=8)
    wall, _ = conductor("run", str(track), cwd=repo)
    peak = children_peak_rss_mb()
    print(
        f"run of {n_tasks} tasks: {wall:.1f} s, conductor peak RSS {peak:.1f} MB"
        f"  (bar ≤ 150 MB)  {verdict(peak <= 150)}"
    )
    shutil.rmtree(repo, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    args = parser.parse_args()
    rss_bench(args.tasks)  # first: ru_maxrss of children is a running maximum
    status_bench(args.messages)


if __name__ == "__main__":
    main()
