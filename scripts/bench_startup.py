"""How long conductor's commands take to start, against the bare interpreter's start.

Each command runs as a new process, exactly as a git hook, a shell task or a polling script
runs it, and is timed from start to exit. The bare interpreter (``python -c pass``, the same
interpreter) runs in the same rounds, and the commands take turns with it, so that noise from
the machine falls on all alike. Prints, per command, the median wall time over the rounds and
its ratio to the bare interpreter's median, with PASS/FAIL against the bar:

- ``--version`` and ``--help``: within 4x;
- ``bus post``, ``bus ls``, ``status``, ``locks``, ``hooks run pre-commit|post-commit``:
  within 8x;
- ``run`` of a one-task shell track (a fresh state directory each time): within 15x.

Usage::

    python scripts/bench_startup.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchlib import scratch_repo, verdict, write_track

TRACK = "startup"


def conductor_command() -> list[str]:
    """The ``conductor`` console script beside this interpreter, else ``python -m conductor``."""
    script = Path(sys.executable).parent / "conductor"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "conductor"]


def timed(argv: list[str], cwd: Path) -> float:
    """Run ``argv`` in ``cwd`` to its exit; return the wall seconds (it must exit 0)."""
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed


def prepare(repo: Path, cmd: list[str]) -> Path:
    """A repository with one commit and a one-task shell track that has run once."""
    track = write_track(repo / "track.yaml", TRACK, [{"id": "hello", "run": "true"}])
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "add", "track.yaml"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "track"], cwd=repo, check=True)
    timed([*cmd, "run", str(track)], repo)
    return track


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command")
    args = parser.parse_args()

    cmd = conductor_command()
    repo = scratch_repo("startup")
    try:
        track = prepare(repo, cmd)
        runs = repo / "runs"
        commands: list[tuple[str, float, list[str]]] = [
            ("--version", 4, ["--version"]),
            ("--help", 4, ["--help"]),
            ("bus post", 8, ["bus", "post", TRACK, "NOTE", "-m", "benchmark"]),
            ("bus ls", 8, ["bus", "ls", TRACK]),
            ("status TRACK_FILE --json", 8, ["status", str(track), "--json"]),
            ("status TRACK_ID --json", 8, ["status", TRACK, "--json"]),
            ("locks", 8, ["locks", TRACK]),
            ("hooks run pre-commit", 8, ["hooks", "run", "pre-commit"]),
            ("hooks run post-commit", 8, ["hooks", "run", "post-commit"]),
            ("run (one shell task)", 15, ["run", str(track), "--state-dir", "<fresh>"]),
        ]
        bare: list[float] = []
        times: dict[str, list[float]] = {name: [] for name, _, _ in commands}
        for i in range(args.rounds):
            for name, _, argv in commands:
                bare.append(timed([sys.executable, "-c", "pass"], repo))
                argv = [str(runs / str(i)) if a == "<fresh>" else a for a in argv]
                times[name].append(timed([*cmd, *argv], repo))

        base = statistics.median(bare)
        print(f"command: {' '.join(cmd)}  ({args.rounds} rounds, medians, taking turns)")
        print(f"bare interpreter (python -c pass): {base * 1000:6.1f} ms")
        failed = 0
        for name, bar, _ in commands:
            median = statistics.median(times[name])
            ratio = median / base
            ok = ratio <= bar
            failed += not ok
            print(
                f"{name:<26} {median * 1000:6.1f} ms  {ratio:5.1f}x  (bar ≤ {bar:g}x)  "
                f"{verdict(ok)}"
            )
        return 1 if failed else 0
    finally:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
