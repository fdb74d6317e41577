"""Attempts on a Ray cluster: makespan against the bound, and the cost Ray adds per attempt.

A cluster of 3 simulated nodes on this machine (``ray.cluster_utils.Cluster``: a head with no
CPUs and 3 worker nodes of ``--slots`` CPUs each) runs a track of ``--tasks`` shell tasks that
each sleep ``--sleep`` seconds, through ``conductor run --address``. The same track then runs
with the local executor, its tasks in their own copies too (``isolation: copy``), so both do
the same snapshot, copy, verdict and bookkeeping.

- bound: ceil(tasks / (3 × slots)) × sleep, the makespan of perfect packing;
- added cost per attempt: the median attempt duration on the bus (dispatch to end) on Ray
  minus the same median with the local executor (the means, which include starting Ray's
  worker processes, are printed too).

Bars: makespan / bound ≤ 1.5; added cost per attempt ≤ 0.5 s.
Usage: python scripts/bench_ray.py [--tasks 200] [--slots 4] [--sleep 1]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from benchlib import bus_messages, conductor, scratch_repo, verdict, write_track

NODES = 3


def makespan_and_durations(bus: Path) -> tuple[float, list[float], set[str]]:
    """First dispatch to last completion, each attempt's duration, and the nodes used."""
    msgs = bus_messages(bus)
    stamps = [
        datetime.fromisoformat(m["ts"])
        for m in msgs
        if m["type"] in ("TASK_DISPATCHED", "TASK_COMPLETE")
    ]
    durations = [float(m["payload"]["duration"]) for m in msgs if m["type"] == "TASK_COMPLETE"]
    nodes = {
        str(m["payload"].get("node_id"))
        for m in msgs
        if m["type"] == "WORKER_STARTED" and m["payload"].get("node_id")
    }
    return (max(stamps) - min(stamps)).total_seconds(), durations, nodes


def phases(bus: Path) -> str:
    """Median seconds of each step of an attempt, from the bus's timestamps."""
    seen: dict[str, dict[str, datetime]] = {}
    for m in bus_messages(bus):
        if m.get("worker"):
            seen.setdefault(m["worker"], {}).setdefault(m["type"], datetime.fromisoformat(m["ts"]))
    steps = [("TASK_DISPATCHED", "COPY_MADE"), ("COPY_MADE", "WORKER_STARTED"),
             ("WORKER_STARTED", "TASK_COMPLETE")]
    parts = []
    for a, b in steps:
        spans = [(t[b] - t[a]).total_seconds() for t in seen.values() if a in t and b in t]
        if spans:
            parts.append(f"{a}→{b} {statistics.median(spans):.3f}s")
    return ", ".join(parts)


def run_track(repo: Path, tasks: list[dict[str, Any]], parallel: int, *args: str) -> Path:
    track = write_track(repo / "track.yaml", "bench", tasks, max_parallel=parallel)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    conductor("run", str(track), "--progress", "none", *args, cwd=repo)
    return repo / ".conductor" / "bench" / "bus"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4, help="CPUs of each simulated node")
    parser.add_argument("--sleep", type=float, default=1.0)
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    nodes_dir = Path(tempfile.mkdtemp(prefix="conductor-bench-nodes-"))
    os.environ["CONDUCTOR_NODE_DIR"] = str(nodes_dir)  # the nodes' copies and stores
    import ray
    from ray.cluster_utils import Cluster

    parallel = NODES * args.slots
    bound = math.ceil(args.tasks / parallel) * args.sleep
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        for _ in range(NODES):
            cluster.add_node(num_cpus=args.slots)
        cluster.wait_for_nodes()
        shell = [{"id": f"s{i}", "run": f"sleep {args.sleep:g}"} for i in range(args.tasks)]
        repo = scratch_repo("bench-ray")
        ray_bus = run_track(repo, shell, parallel, "--address", cluster.address)
        ray_span, ray_durations, nodes = makespan_and_durations(ray_bus)
        ray_phases = phases(ray_bus)
        shutil.rmtree(repo, ignore_errors=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(nodes_dir, ignore_errors=True)
    copied = [{**task, "isolation": "copy"} for task in shell]
    repo = scratch_repo("bench-local")
    local_bus = run_track(repo, copied, parallel, "--executor", "local")
    local_span, local_durations, _ = makespan_and_durations(local_bus)
    local_phases = phases(local_bus)
    shutil.rmtree(repo, ignore_errors=True)

    ratio = ray_span / bound
    added = statistics.median(ray_durations) - statistics.median(local_durations)
    added_mean = statistics.mean(ray_durations) - statistics.mean(local_durations)
    print(
        f"tasks={args.tasks} sleeping {args.sleep:g}s on {NODES} nodes x {args.slots} slots "
        f"(max_parallel {parallel}); attempts placed on {len(nodes)} nodes"
    )
    print(f"bound ceil(tasks/slots) x sleep = {bound:.2f} s")
    print(f"makespan on Ray (first dispatch → last completion) = {ray_span:.2f} s")
    print(f"makespan with the local executor (same copies)   = {local_span:.2f} s")
    print(f"ratio Ray makespan/bound: {ratio:.3f}  (bar ≤ 1.5)  {verdict(ratio <= 1.5)}")
    print(
        f"mean attempt: Ray {statistics.mean(ray_durations):.3f} s, local "
        f"{statistics.mean(local_durations):.3f} s (median Ray "
        f"{statistics.median(ray_durations):.3f} s, local "
        f"{statistics.median(local_durations):.3f} s)"
    )
    print(f"median steps on Ray: {ray_phases}")
    print(f"median steps locally: {local_phases}")
    print(f"added cost per attempt on Ray (means): {added_mean:.3f} s")
    print(
        f"added cost per attempt on Ray (medians): {added:.3f} s  (bar ≤ 0.5 s)  "
        f"{verdict(added <= 0.5)}"
    )


if __name__ == "__main__":
    main()
