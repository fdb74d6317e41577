"""Scheduling overhead: a 2,000-task random DAG of no-op shell tasks, conductor -j8 vs make -j8.

Bar: conductor's wall time ≤ 2× make's on the same DAG, same machine, same run.
Usage: python scripts/bench_schedule.py [--tasks 2000] [--jobs 8]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time

from benchlib import conductor, random_dag, scratch_repo, verdict, write_track


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=8)
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

    started = time.perf_counter()
    subprocess.run(["make", "-s", f"-j{args.jobs}", "all"], cwd=repo, check=True)
    make_s = time.perf_counter() - started
    conductor_s, _ = conductor("run", str(track), "-j", str(args.jobs), cwd=repo)
    ratio = conductor_s / make_s
    print(f"tasks={args.tasks} jobs={args.jobs}")
    print(f"make -j{args.jobs}:      {make_s:7.2f} s  ({make_s / args.tasks * 1000:.2f} ms/task)")
    print(
        f"conductor -j{args.jobs}: {conductor_s:7.2f} s"
        f"  ({conductor_s / args.tasks * 1000:.2f} ms/task)"
    )
    print(f"ratio conductor/make: {ratio:.2f}  (bar ≤ 2.00)  {verdict(ratio <= 2.0)}")
    shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
