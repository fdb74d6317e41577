"""Conflict planning on 20,000 tasks whose `files` share 50 overlapping globs.

Every task changes one of 50 globs (some two of them); the globs overlap within ten areas
(`src/a3/**` meets `src/a3/*.py`, `src/a3/api/*.py`, `src/a3/**/*.ts` and
`src/a3/README.md`), so a few hundred tasks all conflict pairwise. Measures, each in its own
process (wall time, and peak RSS from that child's rusage):

- `conductor plan` of the track (text output);
- building the run's conflict structures (what `conductor run` builds before it dispatches):
  the time of building the scheduler once the track is loaded, the peak RSS of the process.

Bars: ≤ 5 s and ≤ 300 MB each.
Usage: python scripts/bench_plan.py [--tasks 20000] [--globs 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import random_dag, scratch_repo, verdict, write_track

ROOT = Path(__file__).resolve().parent.parent
BAR_SECONDS = 5.0
BAR_MB = 300.0

KINDS = ("**", "*.py", "api/*.py", "**/*.ts", "README.md")
"""The globs of one area; each overlaps the area's ``**`` and some of the others."""

BUILD = """
import sys, time
from pathlib import Path
from conductor.scheduler import RunOptions, Scheduler
from conductor.track import load_track
started = time.perf_counter()
track = load_track(Path(sys.argv[1]))
loaded = time.perf_counter()
scheduler = Scheduler(track, RunOptions(repo=Path(sys.argv[2])))
print(f"{loaded - started:.2f} {time.perf_counter() - loaded:.2f}")
"""
"""Time loading the track, then building a scheduler: its plan and conflict classes."""


def globs(count: int) -> list[str]:
    """``count`` globs, five per area, overlapping inside an area."""
    return [f"src/a{i // len(KINDS)}/{KINDS[i % len(KINDS)]}" for i in range(count)]


def tasks(n: int, patterns: list[str]) -> list[dict[str, object]]:
    """``n`` shell tasks on a random DAG; task i changes glob i mod 50, every 7th one more."""
    deps = random_dag(n, max_deps=2, window=200)
    out: list[dict[str, object]] = []
    for i in range(n):
        files = [patterns[i % len(patterns)]]
        if i % 7 == 0:
            files.append(patterns[(i * 13 + 5) % len(patterns)])
        task: dict[str, object] = {"id": f"t{i}", "run": "true", "files": files}
        if deps[i]:
            task["depends_on"] = [f"t{d}" for d in deps[i]]
        out.append(task)
    return out


def measured(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.Popen[str], str]:
    """Run ``cmd``; wall seconds, peak RSS in MB of that child alone, the process, stdout."""
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    env["PYTHONPATH"] = str(ROOT)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return elapsed, usage.ru_maxrss / 1024, proc, out


def line(what: str, seconds: float, mb: float) -> str:
    ok = seconds <= BAR_SECONDS and mb <= BAR_MB
    return (
        f"{what:<34} {seconds:6.2f} s (bar ≤ {BAR_SECONDS:g} s)  {mb:6.0f} MB"
        f" (bar ≤ {BAR_MB:g} MB)  {verdict(ok)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--globs", type=int, default=50)
    args = parser.parse_args()

    repo = scratch_repo("plan")
    try:
        track = write_track(repo / "track.yaml", "plan", tasks(args.tasks, globs(args.globs)))
        print(f"{args.tasks} tasks over {args.globs} overlapping globs")
        base = [sys.executable, "-m", "conductor", "--log-format", "json"]
        seconds, mb, _, out = measured([*base, "plan", str(track)], repo)
        print(line("conductor plan", seconds, mb))
        print(f"  plan output: {len(out.splitlines())} lines, {len(out) / 1024:.0f} KiB")
        seconds, mb, _, out = measured([sys.executable, "-c", BUILD, str(track), str(repo)], repo)
        load, build = out.split()
        print(line("run's conflict structures", float(build), mb))
        print(
            f"  building the scheduler (plan, conflict classes) {build} s; the whole process"
            f" {seconds:.2f} s, of which loading the track file {load} s; RSS is the process's"
        )
    finally:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
