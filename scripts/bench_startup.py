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

For reference it also prints ``python -c "import click"``, below which no command that loads
click can start (``--version`` and ``--help`` do not load it), and the libraries a run loads
(click, asyncio and anyio with an empty event loop, yaml, filelock, psutil, structlog, pydantic)
before any of conductor's code; beside each wall-time ratio it prints the ratio of CPU time
(user and system time of the process and its children, medians too), which a busy machine
disturbs less; the verdict is on wall time.

Then it says where a one-task run's time goes: the CPU time of each phase of ``conductor run``
(the interpreter's start, each group of imports, loading the track, the run itself), medians
over the rounds, each phase measured in a fresh process.

The commands run with their bytecode cached, as an installed package has it (pip compiles it
on install): when the environment forbids writing bytecode (``PYTHONDONTWRITEBYTECODE``), the
cache goes to a scratch ``PYTHONPYCACHEPREFIX`` for the benchmark's processes, the bare
interpreter's included. ``--no-bytecode-cache`` measures the environment as it is.

Usage::

    python scripts/bench_startup.py [--rounds 15] [--no-bytecode-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``argv`` in ``cwd`` to its exit (it must exit 0); return the wall seconds and the CPU
    seconds it and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def medians(samples: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``timed`` samples."""
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def prepare(repo: Path, cmd: list[str], env: dict[str, str]) -> Path:
    """A repository with one commit and a one-task shell track that has run once."""
    track = write_track(repo / "track.yaml", TRACK, [{"id": "hello", "run": "true"}])
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "add", "track.yaml"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "track"], cwd=repo, check=True)
    timed([*cmd, "run", str(track)], repo, env)
    return track


LIBRARIES = """\
import sys
sys.modules["rich"] = None  # as conductor loads structlog (conductor.logs)
import click, asyncio, anyio, yaml, filelock, psutil, structlog, pydantic
async def nothing(): pass
anyio.run(nothing)
import gc; gc.freeze()  # as conductor exits (conductor.cli.console)
"""
"""The libraries a one-task shell run loads, and an empty event loop."""

PHASES = """\
import json, sys, time
clock = time.process_time
marks = [("interpreter start", clock())]
def mark(name): marks.append((name, clock()))
out, track, state = sys.argv[1:4]
import click, conductor.cli.app; mark("click and conductor.cli")
import asyncio, anyio, anyio._backends._asyncio; mark("asyncio, anyio")
import yaml, filelock, psutil; mark("yaml, filelock, psutil")
from conductor.logs import load_structlog; load_structlog(); mark("structlog")
import pydantic, conductor.track; mark("pydantic, conductor.track (models)")
import conductor.scheduler, conductor.cli.run_cmds, conductor.progress, conductor.render
mark("conductor's other modules")
from pathlib import Path
conductor.track.load_track(Path(track)); mark("loading the track (schema built)")
try:
    conductor.cli.app.main(["run", track, "--state-dir", state], prog_name="conductor")
except SystemExit:
    pass
mark("the run")
with open(out, "w") as f:
    json.dump(marks, f)
import gc; gc.freeze()  # as conductor exits (conductor.cli.console)
"""
"""Marks the CPU time of each phase of a one-task run, in the order the run goes through
them (imports first, as the run would, so each group costs what it adds)."""


def phases(repo: Path, track: Path, env: dict[str, str], rounds: int) -> list[tuple[str, float]]:
    """Median CPU seconds of each phase of ``conductor run TRACK`` (``PHASES``), and of what
    follows the run: the interpreter's exit, and the processes the run started (git, the
    task's command)."""
    samples: dict[str, list[float]] = {}
    order: list[str] = []
    for i in range(rounds):
        out = repo / "phases.json"
        state = repo / "phase-runs" / str(i)
        argv = [sys.executable, "-c", PHASES, str(out), str(track), str(state)]
        _, total = timed(argv, repo, env)
        previous = 0.0
        marks = [*json.loads(out.read_text()), ["the exit, and the run's child processes", total]]
        for name, at in marks:
            samples.setdefault(name, []).append(at - previous)
            previous = at
            if i == 0:
                order.append(name)
    return [(name, statistics.median(samples[name])) for name in order]


def bytecode_env(scratch: Path, cached: bool) -> tuple[dict[str, str], str]:
    """The environment the commands run in, and a line saying how bytecode is handled."""
    env = dict(os.environ)
    if not cached:
        return env, "bytecode: as the environment has it"
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env["PYTHONPYCACHEPREFIX"] = str(scratch)
        return env, f"bytecode: cached in {scratch} (PYTHONDONTWRITEBYTECODE is set here)"
    return env, "bytecode: cached (as written next to the sources)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="do not cache bytecode where the environment forbids writing it",
    )
    args = parser.parse_args()

    cmd = conductor_command()
    repo = scratch_repo("startup")
    env, bytecode = bytecode_env(repo / "pycache", not args.no_bytecode_cache)
    try:
        track = prepare(repo, cmd, env)
        timed([*cmd, "--help"], repo, env)  # bytecode of the command-line layer too
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
        bare: list[tuple[float, float]] = []
        floor: list[tuple[float, float]] = []
        libraries: list[tuple[float, float]] = []
        times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in commands}
        for i in range(args.rounds):
            floor.append(timed([sys.executable, "-c", "import click"], repo, env))
            libraries.append(timed([sys.executable, "-c", LIBRARIES], repo, env))
            for name, _, argv in commands:
                bare.append(timed([sys.executable, "-c", "pass"], repo, env))
                argv = [str(runs / str(i)) if a == "<fresh>" else a for a in argv]
                times[name].append(timed([*cmd, *argv], repo, env))

        base, base_cpu = medians(bare)
        print(f"command: {' '.join(cmd)}  ({args.rounds} rounds, medians, taking turns)")
        print(bytecode)
        print(
            f"bare interpreter (python -c pass): {base * 1000:6.1f} ms "
            f"(cpu {base_cpu * 1000:.1f} ms)"
        )
        click_only, click_cpu = medians(floor)
        print(
            f"{'(python -c import click)':<26} {click_only * 1000:6.1f} ms  "
            f"{click_only / base:5.1f}x  cpu {click_cpu / base_cpu:4.1f}x  "
            "(for reference: any command that loads click starts above this)"
        )
        libs, libs_cpu = medians(libraries)
        print(
            f"{'(libraries a run loads)':<26} {libs * 1000:6.1f} ms  "
            f"{libs / base:5.1f}x  cpu {libs_cpu / base_cpu:4.1f}x  "
            "(for reference: a run starts above this, before any of conductor's code)"
        )
        failed = 0
        for name, bar, _ in commands:
            median, cpu = medians(times[name])
            ratio = median / base
            ok = ratio <= bar
            failed += not ok
            print(
                f"{name:<26} {median * 1000:6.1f} ms  {ratio:5.1f}x  cpu {cpu / base_cpu:4.1f}x  "
                f"(bar ≤ {bar:g}x)  {verdict(ok)}"
            )
        print("\nwhere a one-task run's time goes (cpu, medians):")
        total = 0.0
        for name, seconds in phases(repo, track, env, args.rounds):
            total += seconds
            print(f"  {name:<40} {seconds * 1000:6.1f} ms  {seconds / base_cpu:5.1f}x")
        print(f"  {'total':<40} {total * 1000:6.1f} ms  {total / base_cpu:5.1f}x")
        return 1 if failed else 0
    finally:
        shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
