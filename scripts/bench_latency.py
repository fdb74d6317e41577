"""Latency from a message posted by another process to the dependent's TASK_DISPATCHED.

Two figures, each the median over many samples:

- cross-process: a separate process (as a person or a hook would) posts a message that
  satisfies a dependency — a SKIP of gate task G_i, whose dependent D_i then starts — and we
  measure from that message's timestamp to D_i's TASK_DISPATCHED. This is the watchdog
  wake-up path: inotify → conductor → dispatch.
- in-process: a chain of no-op shell tasks; from TASK_COMPLETE of one to TASK_DISPATCHED of
  the next.

Bar: median ≤ 20 ms. Usage: python scripts/bench_latency.py [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from benchlib import bus_messages, conductor, scratch_repo, verdict, write_track


def _wait_for(bus: Path, predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bus.is_dir() and any(predicate(m) for m in bus_messages(bus)):  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise SystemExit("timed out waiting for the conductor")


def cross_process(samples: int) -> list[float]:
    repo = scratch_repo("latency")
    tasks = [{"id": "hold", "run": "sleep 600"}]
    for i in range(samples):
        tasks.append({"id": f"g{i}", "run": "true", "depends_on": ["hold"]})
        tasks.append({"id": f"d{i}", "run": "true", "depends_on": [f"g{i}"]})
    track = write_track(repo / "track.yaml", "latency", tasks, max_parallel=4)
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "--log-format", "json", "run", str(track)],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bus = repo / ".conductor" / "latency" / "bus"
    try:
        _wait_for(bus, lambda m: m["type"] == "TASK_DISPATCHED" and m["task"] == "hold")
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from conductor.bus import Bus

        poster = Bus(bus, "latency")
        for i in range(samples):
            poster.post("SKIP", task=f"g{i}", payload={"reason": "latency probe"})
            time.sleep(0.1)
        poster.post("SKIP", task="hold", payload={"reason": "done"})
        poster.close()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    msgs = bus_messages(bus)
    skip_ts = {m["task"]: datetime.fromisoformat(m["ts"]) for m in msgs if m["type"] == "SKIP"}
    lat = []
    for m in msgs:
        if m["type"] == "TASK_DISPATCHED" and m["task"].startswith("d"):
            gate = "g" + m["task"][1:]
            lat.append((datetime.fromisoformat(m["ts"]) - skip_ts[gate]).total_seconds() * 1000)
    shutil.rmtree(repo, ignore_errors=True)
    return lat


def in_process(samples: int) -> list[float]:
    repo = scratch_repo("chain")
    tasks = [{"id": "c0", "run": "true"}] + [
        {"id": f"c{i}", "run": "true", "depends_on": [f"c{i - 1}"]} for i in range(1, samples + 1)
    ]
    track = write_track(repo / "track.yaml", "chain", tasks, max_parallel=4)
    conductor("run", str(track), cwd=repo)
    msgs = bus_messages(repo / ".conductor" / "chain" / "bus")
    done = {
        m["task"]: datetime.fromisoformat(m["ts"]) for m in msgs if m["type"] == "TASK_COMPLETE"
    }
    lat = []
    for m in msgs:
        if m["type"] == "TASK_DISPATCHED" and m["task"] != "c0":
            prev = f"c{int(m['task'][1:]) - 1}"
            lat.append((datetime.fromisoformat(m["ts"]) - done[prev]).total_seconds() * 1000)
    shutil.rmtree(repo, ignore_errors=True)
    return lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    cross = cross_process(args.samples)
    local = in_process(args.samples)
    for label, lat in (
        ("cross-process post → dependent dispatched", cross),
        ("in-process TASK_COMPLETE → dependent dispatched", local),
    ):
        med = statistics.median(lat)
        p90 = sorted(lat)[int(len(lat) * 0.9) - 1]
        print(
            f"{label}: n={len(lat)} median={med:.2f} ms p90={p90:.2f} ms max={max(lat):.2f} ms"
            f"  (bar median ≤ 20 ms)  {verdict(med <= 20)}"
        )


if __name__ == "__main__":
    main()
