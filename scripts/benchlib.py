"""Shared helpers for the benchmark scripts: generated tracks, timed conductor runs."""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def random_dag(n: int, *, seed: int = 7, max_deps: int = 3, window: int = 50) -> list[list[int]]:
    """Dependencies of ``n`` tasks, each on up to ``max_deps`` of the ``window`` before it."""
    rng = random.Random(seed)
    deps: list[list[int]] = []
    for i in range(n):
        k = rng.randint(0, min(max_deps, i))
        lo = max(0, i - window)
        deps.append(sorted(rng.sample(range(lo, i), k)) if k and i > lo else [])
    return deps


def write_track(
    path: Path, track_id: str, tasks: list[dict[str, Any]], max_parallel: int = 8
) -> Path:
    """Write a native track file."""
    doc = {
        "track": track_id,
        "description": f"generated: {len(tasks)} tasks",
        "max_parallel": max_parallel,
        "tasks": tasks,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def scratch_repo(prefix: str) -> Path:
    """A fresh directory (with git init) to run a generated track in."""
    path = Path(tempfile.mkdtemp(prefix=f"conductor-{prefix}-"))
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def conductor(
    *args: str, cwd: Path, check: bool = True
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the conductor CLI in ``cwd``; return wall seconds and the completed process."""
    env = {k: v for k, v in os.environ.items() if k != "CONDUCTOR_STATE_DIR"}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "conductor", "--log-format", "json", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if check and proc.returncode != 0:
        raise SystemExit(
            f"conductor {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return elapsed, proc


def children_peak_rss_mb() -> float:
    """Peak RSS of the largest child process waited for so far, in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def bus_messages(bus_dir: Path) -> list[dict[str, Any]]:
    """Every message in a bus directory, in sequence order."""
    out = []
    for name in sorted(os.listdir(bus_dir)):
        if name.endswith(".json") and name[0].isdigit():
            out.append(json.loads((bus_dir / name).read_text()))
    return out


def verdict(ok: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"
