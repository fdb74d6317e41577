"""Benchmark: many Claude worker sessions at once, against the offline fake CLI.

Runs N attempts in parallel (an anyio task group), each a ``ClaudeExecutor.execute`` of its own
tiny ``code`` task in one git repository, with a real bus and path locks. Each fake session
does a couple of turns with a short sleep, writes its file, and reports completion. Prints:

- conductor overhead per session: (wall time - scripted work) / sessions, and the conductor
  process's own CPU time per session (``getrusage(RUSAGE_SELF)``; the fake CLIs are children
  and not counted);
- peak RSS of the conductor process while all sessions are live (bar: <= 150 MB);
- processes still alive after the run (bar: 0).

With ``--sandbox`` the same sessions run the way a track runs them (``run_track``): each in
its own copy of the repository with Claude Code's sandbox settings, judged by its diff,
verified (``test -s``) inside bubblewrap and landed as a commit, so the figures include copy,
verdict, sandboxed verify and landing. (The fake CLI does not itself confine Bash; the real
CLI's sandbox is exercised by ``tests/test_real_cli_isolation.py``.)

Usage: ``python scripts/bench_sessions.py [--sessions 20] [--sleep 0.5] [--turns 2]
[--sandbox]``. Exits non-zero when a bar fails or an attempt did not succeed.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import yaml

from conductor.bus import Bus
from conductor.executors.base import AttemptContext, Outcome
from conductor.executors.claude import ClaudeExecutor
from conductor.locks import PathLocks
from conductor.messages import Message
from conductor.paths import StateDir
from conductor.testing import fake_cli_path
from conductor.track import Track, parse_track
from conductor.workers import create_worker_dir

RSS_BAR_MB = 150.0
LEAK_BAR = 0


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        check=True,
        capture_output=True,
    )


def make_track(n: int, verify: bool = False) -> Track:
    check = ', verify: ["test -s out/s{i:02d}.txt"]' if verify else ""
    tasks = "\n".join(
        f'  - {{id: s{i:02d}, type: code, files: ["out/s{i:02d}.txt"], agent: coder'
        + check.format(i=i)
        + "}"
        for i in range(n)
    )
    text = textwrap.dedent(
        f"""
        track: bench
        max_parallel: {n}
        agents:
          coder: {{role: Coder, system_prompt: Write the file., tools: [Read, Write, Edit]}}
        tasks:
        """
    )
    return parse_track(text + tasks + "\n")


def make_script(path: Path, n: int, sleep: float, turns: int) -> float:
    """Write the fake CLI script; return the scripted work (seconds) of one session."""
    rules = []
    for i in range(n):
        steps: list[dict[str, Any]] = []
        for t in range(turns):
            steps.append({"text": f"turn {t + 1}", "cost": 0.001})
            steps.append({"sleep": sleep})
        steps.append({"write": {"path": f"out/s{i:02d}.txt", "content": f"session {i}\n"}})
        steps.append(
            {
                "mcp": {
                    "tool": "report_complete",
                    "input": {"summary": "wrote it", "files_changed": [f"out/s{i:02d}.txt"]},
                }
            }
        )
        rules.append({"match": f"Carry out task s{i:02d} (", "steps": steps})
    path.write_text(yaml.safe_dump({"sessions": rules}))
    return sleep * turns


class Sampler:
    """Samples the conductor's RSS and its live children every few milliseconds."""

    def __init__(self, sessions: int) -> None:
        self.sessions = sessions
        self.me = psutil.Process()
        self.peak_rss = 0
        self.peak_rss_all_live = 0
        self.max_children = 0
        self.all_live_samples = 0

    async def run(self) -> None:
        while True:
            rss = self.me.memory_info().rss
            try:
                children = [c for c in self.me.children() if c.status() != psutil.STATUS_ZOMBIE]
            except psutil.Error:
                children = []
            self.peak_rss = max(self.peak_rss, rss)
            self.max_children = max(self.max_children, len(children))
            if len(children) >= self.sessions:
                self.all_live_samples += 1
                self.peak_rss_all_live = max(self.peak_rss_all_live, rss)
            await anyio.sleep(0.02)


async def bench(n: int, sleep: float, turns: int, sandbox: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="conductor-bench-") as tmp:
        root = Path(tmp)
        repo = root / "repo"
        repo.mkdir()
        _git(repo, "init", "-q")
        _git(repo, "commit", "-q", "--allow-empty", "-m", "init")
        track = make_track(n, verify=sandbox)
        script = root / "script.yaml"
        work = make_script(script, n, sleep, turns)
        sd = StateDir.for_track(repo, track.id, root / "state").ensure()
        bus = Bus.for_state(sd, track.id)

        def notify(mtype: str, payload: dict[str, Any]) -> None:
            bus.post(mtype, task=payload.get("task"), worker=payload.get("worker"), payload=payload)

        locks = PathLocks(sd.locks, notify=notify)
        executor = ClaudeExecutor(
            cli_path=fake_cli_path(), extra_env={"CONDUCTOR_FAKE_SCRIPT": str(script)}
        )
        outcomes: dict[str, Outcome] = {}

        async def whole_track() -> None:
            from conductor.scheduler import RunOptions, run_track

            result = await run_track(
                track,
                RunOptions(
                    repo=repo,
                    state_root=root / "state",
                    executors=lambda task: executor,
                    handle_signals=False,
                ),
            )
            for task in track.tasks:
                error = result.failed.get(task.id)
                outcomes[task.id] = Outcome(ok=task.id in result.completed, error=error)

        async def attempt(task_id: str) -> None:
            wid = f"{task_id}.1"
            worker_dir, token = create_worker_dir(sd.workers, task_id, 1)

            def post(mtype: str, *, payload: dict[str, Any] | None = None) -> Message:
                return bus.post(mtype, task=task_id, worker=wid, attempt=1, payload=payload)

            ctx = AttemptContext(
                track=track,
                task=track.task(task_id),
                attempt=1,
                worker_id=wid,
                repo=repo,
                worker_dir=worker_dir,
                log_path=sd.logs / task_id / "1.log",
                state_root=sd.root,
                post=post,
                token=token,
                env={"CONDUCTOR_WORKER": wid, "CONDUCTOR_WORKER_TOKEN": token},
                locks=locks,
                bus=bus,
            )
            outcomes[task_id] = await executor.execute(ctx)

        sampler = Sampler(n)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        began = time.monotonic()
        async with anyio.create_task_group() as outer:
            outer.start_soon(sampler.run)
            if sandbox:
                await whole_track()
            else:
                async with anyio.create_task_group() as tg:
                    for task in track.tasks:
                        tg.start_soon(attempt, task.id)
            wall = time.monotonic() - began
            outer.cancel_scope.cancel()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        await anyio.sleep(0.2)
        leaked = [
            p
            for p in psutil.Process().children(recursive=True)
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
        bus.close()

    failed = {k: v.error for k, v in outcomes.items() if not v.ok}
    cpu_self = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    overhead = (wall - work) / n
    peak_mb = (sampler.peak_rss_all_live or sampler.peak_rss) / 2**20
    maxrss_mb = cpu1.ru_maxrss / 1024
    rss_ok = peak_mb <= RSS_BAR_MB and sampler.all_live_samples > 0
    leak_ok = len(leaked) <= LEAK_BAR

    mode = "copies + sandbox + verify + landing" if sandbox else "in the checkout, no sandbox"
    print(f"sessions                      {n} in parallel, {turns} turns, {sleep:g}s sleep each")
    print(f"mode                          {mode}")
    print(f"attempts ok                   {n - len(failed)}/{n}")
    print(f"wall time                     {wall:.2f} s (scripted work per session {work:.2f} s)")
    print(f"overhead per session          {overhead * 1000:.0f} ms  (wall - work) / sessions")
    print(f"conductor CPU per session     {cpu_self / n * 1000:.1f} ms  (RUSAGE_SELF)")
    cpu_children = children_cpu.ru_utime + children_cpu.ru_stime
    print(f"fake CLI + git CPU per session {cpu_children / n * 1000:.0f} ms  (children)")
    share = cpu_self / (cpu_self + cpu_children) if cpu_self + cpu_children else 0.0
    print(f"conductor share of all CPU    {share:.0%}  ({psutil.cpu_count()} CPUs)")
    print(
        f"peak RSS, all {n} live          {peak_mb:.1f} MB  "
        f"(samples with all live: {sampler.all_live_samples}; ru_maxrss {maxrss_mb:.1f} MB)"
    )
    print(f"leaked processes              {len(leaked)}")
    print(
        f"[{'PASS' if rss_ok else 'FAIL'}] peak RSS <= {RSS_BAR_MB:.0f} MB with {n} sessions live"
    )
    print(f"[{'PASS' if leak_ok else 'FAIL'}] leaked processes == {LEAK_BAR}")
    print(f"[{'PASS' if not failed else 'FAIL'}] every attempt succeeded")
    for task_id, error in sorted(failed.items()):
        print(f"    {task_id}: {error}")
    return 0 if rss_ok and leak_ok and not failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds slept per turn")
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument(
        "--sandbox", action="store_true", help="run as a track does: copies, sandbox, landing"
    )
    args = parser.parse_args(argv)
    return anyio.run(bench, args.sessions, args.sleep, args.turns, args.sandbox)


if __name__ == "__main__":
    sys.exit(main())
