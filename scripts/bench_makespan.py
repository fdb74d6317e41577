"""Makespan on a DAG of sleep tasks versus the lower bound max(critical path, work / parallelism).

Bar: makespan / bound ≤ 1.05.
Usage: python scripts/bench_makespan.py [--tasks 60] [--jobs 4]
"""

from __future__ import annotations

import argparse
import random
import shutil
from datetime import datetime

from benchlib import bus_messages, conductor, random_dag, scratch_repo, verdict, write_track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    deps = random_dag(args.tasks, seed=args.seed, max_deps=2, window=12)
    secs = [round(rng.uniform(0.2, 1.2), 2) for _ in range(args.tasks)]
    finish: list[float] = []
    for i, ds in enumerate(deps):
        finish.append(secs[i] + max((finish[d] for d in ds), default=0.0))
    critical = max(finish)
    work = sum(secs)
    bound = max(critical, work / args.jobs)
    repo = scratch_repo("makespan")
    tasks = [
        {
            "id": f"s{i}",
            "run": f"sleep {secs[i]}",
            "depends_on": [f"s{d}" for d in ds],
            "estimated_duration": secs[i],
        }
        for i, ds in enumerate(deps)
    ]
    track = write_track(repo / "track.yaml", "makespan", tasks, max_parallel=args.jobs)
    wall, _ = conductor("run", str(track), "-j", str(args.jobs), cwd=repo)
    msgs = bus_messages(repo / ".conductor" / "makespan" / "bus")
    stamps = [
        datetime.fromisoformat(m["ts"])
        for m in msgs
        if m["type"] in ("TASK_DISPATCHED", "TASK_COMPLETE")
    ]
    makespan = (max(stamps) - min(stamps)).total_seconds()
    ratio = makespan / bound
    print(f"tasks={args.tasks} jobs={args.jobs} work={work:.2f}s critical_path={critical:.2f}s")
    print(f"lower bound max(critical, work/jobs) = {bound:.2f} s")
    print(
        f"makespan (first dispatch → last completion) = {makespan:.2f} s"
        f"  (process wall {wall:.2f} s)"
    )
    print(f"ratio makespan/bound: {ratio:.3f}  (bar ≤ 1.05)  {verdict(ratio <= 1.05)}")
    shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
