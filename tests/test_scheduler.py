"""The scheduler: dependency-driven dispatch, retries, verify, timeouts, resume, skips, budgets."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conductor.bus import Bus
from conductor.errors import LockHeldError
from conductor.locks import RunLock
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.testing.scripted import ScriptedExecutor, Step
from conductor.track import Track, parse_track
from conductor.workers import leftover_workers

pytestmark = pytest.mark.anyio


def make_track(text: str) -> Track:
    return parse_track(textwrap.dedent(text))


def state_of(repo: Path, track_id: str) -> StateDir:
    return StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))


def messages(repo: Path, track_id: str) -> list[dict[str, Any]]:
    with Bus.for_state(state_of(repo, track_id), track_id) as bus:
        return [m.to_dict() for m in bus.iter_all()]


def of_type(
    msgs: list[dict[str, Any]], mtype: str, task: str | None = None
) -> list[dict[str, Any]]:
    return [m for m in msgs if m["type"] == mtype and (task is None or m["task"] == task)]


async def run(track: Track, repo: Path, **kw: Any) -> RunResult:
    opts = {
        "repo": repo,
        "state_root": Path(os.environ["CONDUCTOR_STATE_DIR"]),
        "handle_signals": False,
    }
    opts.update(kw)
    return await run_track(track, RunOptions(**opts))


DIAMOND = """
track: diamond
tasks:
  - {id: a, run: "echo a >> order.txt"}
  - {id: b, run: "echo b >> order.txt", depends_on: [a]}
  - {id: c, run: "echo c >> order.txt", depends_on: [a]}
  - {id: d, run: "echo d >> order.txt", depends_on: [b, c], verify: ["test -s order.txt"]}
"""


async def test_diamond_runs_in_dependency_order(repo: Path) -> None:
    """Every task runs once, after its dependencies; the run leaves no worker dirs or locks."""
    result = await run(make_track(DIAMOND), repo)
    assert result.status == "complete" and result.exit_code == 0
    order = (repo / "order.txt").read_text().split()
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    msgs = messages(repo, "diamond")
    assert [len(of_type(msgs, "TASK_COMPLETE", t)) for t in "abcd"] == [1, 1, 1, 1]
    assert msgs[0]["type"] == "TRACK_STARTED" and msgs[-1]["type"] == "TRACK_COMPLETE"
    assert of_type(msgs, "VERIFY_RESULT", "d")[0]["payload"]["ok"] is True
    sd = state_of(repo, "diamond")
    assert leftover_workers(sd.workers) == []
    assert [p for p in sd.locks.iterdir() if not p.name.startswith(".")] == []
    complete = of_type(msgs, "TASK_COMPLETE", "a")[0]["payload"]
    assert complete["exit_code"] == 0 and complete["hash"]
    assert complete["log"].endswith("logs/a.1.log")


async def test_max_parallel_is_respected(repo: Path) -> None:
    """No more than max_parallel attempts are ever in flight."""
    tasks = "".join(f"  - {{id: s{i}, run: 'sleep 0.2'}}\n" for i in range(6))
    track = make_track(f"track: par\nmax_parallel: 2\ntasks:\n{tasks}")
    assert (await run(track, repo)).status == "complete"
    live = peak = 0
    for m in messages(repo, "par"):
        if m["type"] == "TASK_DISPATCHED":
            live += 1
            peak = max(peak, live)
        elif m["type"] in ("TASK_COMPLETE", "TASK_FAILED"):
            live -= 1
    assert peak == 2


async def test_overlapping_files_never_run_together(repo: Path) -> None:
    """Two tasks declaring the same file are serialised even with free slots."""
    track = make_track(
        """
        track: files
        max_parallel: 4
        tasks:
          - {id: x, run: "sleep 0.3", files: ["src/app.py"]}
          - {id: y, run: "sleep 0.3", files: ["src/*.py"]}
          - {id: z, run: "sleep 0.3", files: ["docs/readme.md"]}
        """
    )
    assert (await run(track, repo)).status == "complete"
    msgs = messages(repo, "files")
    spans = {}
    for t in "xyz":
        start = datetime.fromisoformat(of_type(msgs, "TASK_DISPATCHED", t)[0]["ts"])
        end = datetime.fromisoformat(of_type(msgs, "TASK_COMPLETE", t)[0]["ts"])
        spans[t] = (start, end)
    (xs, xe), (ys, ye) = spans["x"], spans["y"]
    assert xe <= ys or ye <= xs
    locks = of_type(msgs, "FILE_LOCK")
    assert {m["payload"]["path"] for m in locks} == {"src/app.py", "src/*.py", "docs/readme.md"}
    assert len(of_type(msgs, "FILE_UNLOCK")) == 3


async def test_tasks_sharing_a_glob_run_one_at_a_time(repo: Path) -> None:
    """Tasks in one conflict class never run two at once nor beside an overlapping class,
    while a task with unrelated files runs beside them; a failed attempt frees its class."""
    executor = ScriptedExecutor()
    executor.enqueue("s1", Step(ok=False, error="flaky"), Step(ok=True))
    shared = "".join(f"  - {{id: s{i}, files: ['src/**'], max_attempts: 2}}\n" for i in range(5))
    track = make_track(
        "track: classes\nmax_parallel: 4\ntasks:\n"
        + shared
        + "  - {id: one, files: [src/a.py]}\n"
        + "  - {id: free, files: [docs/x.md]}\n"
    )
    result = await run(track, repo, executors=lambda task: executor)
    assert result.status == "complete"
    live: set[str] = set()
    started: list[str] = []
    for m in messages(repo, "classes"):
        if m["type"] == "TASK_DISPATCHED":
            if m["task"] != "free":
                assert not live - {"free"}, f"{m['task']} started beside {live}"
            live.add(m["task"])
            started.append(m["task"])
        elif m["type"] in ("TASK_COMPLETE", "TASK_FAILED"):
            live.discard(m["task"])
    assert started.index("free") < 2, "the task with unrelated files waited for the others"
    assert [c.attempt for c in executor.calls_for("s1")] == [1, 2]


async def test_retry_then_success_feeds_back_the_failure(repo: Path) -> None:
    """A failed attempt is retried with the failure as feedback; the task completes once."""
    executor = ScriptedExecutor()
    executor.enqueue("a", Step(ok=False, error="compile error in x.py"), Step(ok=True))
    track = make_track(
        "track: retry\ntasks:\n  - {id: a, max_attempts: 3}\n  - {id: b, depends_on: [a]}\n"
    )
    result = await run(track, repo, executors=lambda task: executor)
    assert result.status == "complete"
    calls = executor.calls_for("a")
    assert [c.attempt for c in calls] == [1, 2]
    assert calls[0].feedback is None
    assert calls[1].feedback is not None and "compile error in x.py" in calls[1].feedback
    msgs = messages(repo, "retry")
    assert len(of_type(msgs, "TASK_FAILED", "a")) == 1
    assert of_type(msgs, "TASK_FAILED", "a")[0]["payload"]["final"] is False
    assert of_type(msgs, "TASK_RETRY", "a")[0]["payload"]["next_attempt"] == 2


async def test_final_failure_blocks_dependents_only(repo: Path) -> None:
    """A task failing for good blocks its dependents; independent work still completes."""
    track = make_track(
        """
        track: fail
        tasks:
          - {id: bad, run: "echo oops; exit 3", max_attempts: 2}
          - {id: after, run: "true", depends_on: [bad]}
          - {id: later, run: "true", depends_on: [after]}
          - {id: free, run: "true"}
        """
    )
    result = await run(track, repo)
    assert result.status == "failed" and result.exit_code == 1
    assert set(result.failed) == {"bad"} and "status 3" in result.failed["bad"]
    assert sorted(result.blocked) == ["after", "later"]
    assert result.completed == ["free"]
    msgs = messages(repo, "fail")
    failed = of_type(msgs, "TASK_FAILED", "bad")
    assert [m["payload"]["final"] for m in failed] == [False, True]
    assert "oops" in failed[-1]["payload"]["log_tail"]
    assert {m["task"] for m in of_type(msgs, "BLOCKED")} == {"after", "later"}
    end = msgs[-1]
    assert end["type"] == "TRACK_FAILED" and end["payload"]["blocked"] == ["after", "later"]


async def test_verify_failure_fails_the_attempt(repo: Path) -> None:
    """A verify command that exits non-zero turns a successful run into a failed attempt."""
    track = make_track(
        """
        track: verify
        tasks:
          - {id: a, run: "true", verify: ["true", "test -f missing.txt"], max_attempts: 1}
        """
    )
    result = await run(track, repo)
    assert result.status == "failed"
    assert "verify failed: `test -f missing.txt`" in result.failed["a"]
    results = of_type(messages(repo, "verify"), "VERIFY_RESULT", "a")
    assert [r["payload"]["ok"] for r in results] == [True, False]


async def test_timeout_kills_the_command(repo: Path) -> None:
    """A task over its timeout is cut, recorded as timed out, and its process is gone."""
    track = make_track(
        """
        track: slow
        tasks:
          - {id: a, run: "echo $$ > pid.txt; exec sleep 30", timeout: 0.5, max_attempts: 1}
        """
    )
    result = await run(track, repo)
    assert result.status == "failed"
    failed = of_type(messages(repo, "slow"), "TASK_FAILED", "a")[0]["payload"]
    assert failed["timed_out"] is True and "timed out" in failed["error"]
    pid = int((repo / "pid.txt").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_rerun_skips_completed_and_reruns_changed(repo: Path) -> None:
    """A second run does nothing; a changed task reruns with its dependents only."""
    assert (await run(make_track(DIAMOND), repo)).status == "complete"
    assert (await run(make_track(DIAMOND), repo)).status == "complete"
    msgs = messages(repo, "diamond")
    assert len(of_type(msgs, "TASK_DISPATCHED")) == 4
    changed = DIAMOND.replace('echo b >> order.txt"', 'echo B >> order.txt"')
    assert (await run(make_track(changed), repo)).status == "complete"
    msgs = messages(repo, "diamond")
    assert {m["task"] for m in of_type(msgs, "TASK_RESET")} == {"b", "d"}
    assert [len(of_type(msgs, "TASK_DISPATCHED", t)) for t in "abcd"] == [1, 2, 1, 2]


async def test_from_reruns_downstream(repo: Path) -> None:
    """--from reruns the task and everything downstream of it."""
    assert (await run(make_track(DIAMOND), repo)).status == "complete"
    assert (await run(make_track(DIAMOND), repo, from_task="c")).status == "complete"
    msgs = messages(repo, "diamond")
    assert [len(of_type(msgs, "TASK_DISPATCHED", t)) for t in "abcd"] == [1, 1, 2, 2]


async def test_failed_task_retried_by_a_new_run(repo: Path) -> None:
    """A task that failed for good gets fresh attempts when the track is run again."""
    track = make_track("track: again\ntasks:\n  - {id: a, run: 'test -f ok', max_attempts: 1}\n")
    assert (await run(track, repo)).status == "failed"
    (repo / "ok").write_text("")
    assert (await run(track, repo)).status == "complete"
    msgs = messages(repo, "again")
    assert of_type(msgs, "TASK_RESET", "a")[0]["payload"]["reason"].startswith("failed")


async def test_skip_by_hand_is_honoured(repo: Path) -> None:
    """A SKIP posted by a person before the run skips the task; its dependents run."""
    sd = state_of(repo, "skip").ensure()
    with Bus.for_state(sd, "skip") as bus:
        bus.post("SKIP", task="a", payload={"reason": "done by hand"})
    track = make_track(
        "track: skip\ntasks:\n"
        "  - {id: a, run: 'exit 1'}\n"
        "  - {id: b, run: 'true', depends_on: [a]}\n"
    )
    result = await run(track, repo)
    assert result.status == "complete"
    assert result.skipped == ["a"] and result.completed == ["b"]
    assert not of_type(messages(repo, "skip"), "TASK_DISPATCHED", "a")


async def test_budget_stops_new_attempts(repo: Path) -> None:
    """Once the track's budget is spent no new attempt starts and the run says so."""
    executor = ScriptedExecutor(default=Step(cost_usd=0.6))
    track = make_track(
        """
        track: budget
        budget_usd: 1.0
        max_parallel: 1
        tasks:
          - {id: a}
          - {id: b, depends_on: [a]}
          - {id: c, depends_on: [b]}
        """
    )
    result = await run(track, repo, executors=lambda task: executor)
    assert result.status == "budget" and result.exit_code == 4
    assert result.completed == ["a", "b"] and result.pending == ["c"]
    msgs = messages(repo, "budget")
    assert of_type(msgs, "BUDGET_EXCEEDED")[0]["payload"]["spent_usd"] == pytest.approx(1.2)


async def test_second_conductor_refused(repo: Path) -> None:
    """While one conductor holds a track, another run fails naming the holder's pid."""
    sd = state_of(repo, "diamond").ensure()
    with RunLock(sd, "diamond"), pytest.raises(LockHeldError, match=str(os.getpid())):
        await run(make_track(DIAMOND), repo)


async def test_worker_env_lets_a_task_post(repo: Path) -> None:
    """A shell task can post PROGRESS as itself through `conductor bus post`."""
    command = f"{sys.executable} -m conductor bus post PROGRESS --payload '{{\"step\": 1}}'"
    track = make_track(f"track: envpost\ntasks:\n  - id: a\n    run: {json.dumps(command)}\n")
    result = await run(track, repo)
    assert result.status == "complete", result.failed
    progress = of_type(messages(repo, "envpost"), "PROGRESS", "a")
    assert progress and progress[0]["worker"] == "a.1" and progress[0]["payload"] == {"step": 1}


def test_result_exit_codes() -> None:
    """RunResult's exit codes are the documented ones."""
    statuses = ("complete", "failed", "budget", "rejected", "interrupted")
    codes = {s: RunResult(track="t", status=s).exit_code for s in statuses}  # type: ignore[arg-type]
    assert codes == {"complete": 0, "failed": 1, "budget": 4, "rejected": 6, "interrupted": 130}


async def test_shared_files_run_together_unlocked(repo: Path) -> None:
    """Files declared shared are neither a conflict nor locked: both tasks run at once."""
    track = make_track(
        """
        track: shared
        max_parallel: 2
        shared_files: [package.json]
        tasks:
          - {id: x, run: "sleep 0.4", files: [package.json, src/x.js]}
          - {id: y, run: "sleep 0.4", files: [package.json, src/y.js]}
        """
    )
    result = await run(track, repo)
    assert result.status == "complete", result.failed
    msgs = messages(repo, "shared")
    starts = [datetime.fromisoformat(m["ts"]) for m in of_type(msgs, "TASK_DISPATCHED")]
    ends = [datetime.fromisoformat(m["ts"]) for m in of_type(msgs, "TASK_COMPLETE")]
    assert max(starts) < min(ends), "the two tasks overlapped in time"
    locked = {m["payload"]["path"] for m in of_type(msgs, "FILE_LOCK")}
    assert locked == {"src/x.js", "src/y.js"}


async def test_stray_file_in_bus_is_quarantined_not_fatal(repo: Path) -> None:
    """A half-written or hand-made file in the bus is quarantined at start; the run goes on."""
    sd = state_of(repo, "stray").ensure()
    with Bus.for_state(sd, "stray") as bus:
        bus.post("NOTE", payload={"text": "before"})
    (sd.bus / "000000002.TASK_COMPLETE.a.1.json").write_text('{"seq": 2, "type": "TASK_COM')
    (sd.bus / "notes.txt").write_text("hello")
    track = make_track("track: stray\ntasks:\n  - {id: a, run: 'true'}\n")
    result = await run(track, repo)
    assert result.status == "complete"
    quarantined = sorted(p.name for p in sd.quarantine.iterdir())
    assert any("notes.txt" in n for n in quarantined)
    assert any("000000002" in n for n in quarantined)
    msgs = messages(repo, "stray")
    assert [m["seq"] for m in msgs] == list(range(1, len(msgs) + 1))
    assert len(of_type(msgs, "TASK_COMPLETE", "a")) == 1


async def test_timeout_kills_the_command_without_pidfds(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where pidfds are missing, commands run through anyio and a timeout still ends them."""
    from conductor import commands

    monkeypatch.setattr(commands, "_HAVE_PIDFD", False)
    track = make_track(
        """
        track: slow2
        tasks:
          - {id: a, run: "echo $$ > pid.txt; exec sleep 30", timeout: 0.5, max_attempts: 1}
          - {id: b, run: "echo fine"}
        """
    )
    result = await run(track, repo)
    assert result.failed.keys() == {"a"} and result.completed == ["b"]
    assert of_type(messages(repo, "slow2"), "TASK_FAILED", "a")[0]["payload"]["timed_out"] is True
    with pytest.raises(ProcessLookupError):
        os.kill(int((repo / "pid.txt").read_text()), 0)


async def test_state_directory_deleted_mid_run_is_a_state_error(repo: Path) -> None:
    """A task that deletes the state directory ends the run with a StateError (exit 5), not
    a traceback from inside the task group."""
    from conductor.errors import StateError

    sd = state_of(repo, "gone")
    track = make_track(
        f"""
        track: gone
        max_parallel: 2
        tasks:
          - {{id: a, run: "sleep 0.5"}}
          - {{id: b, run: "rm -rf {sd.root}"}}
          - {{id: c, run: "true", depends_on: [a, b]}}
        """
    )
    with pytest.raises(StateError, match="state became unusable") as info:
        await run(track, repo)
    assert info.value.exit_code == 5


def _inotify_descriptors() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    return count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
async def test_runs_leave_no_inotify_descriptor_open(repo: Path) -> None:
    """Each run closes its bus watch: a process that runs many tracks never reaches the
    per-user inotify limit."""
    before = _inotify_descriptors()
    for n in range(3):
        track = make_track(f"track: ino{n}\ntasks:\n  - {{id: a, run: 'true'}}\n")
        assert (await run(track, repo)).status == "complete"
    assert _inotify_descriptors() == before


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
async def test_planted_log_file_is_refused_not_followed(
    repo: Path, tmp_path: Path, kind: str
) -> None:
    """A FIFO or symlink planted where an attempt's log goes fails that attempt with a clear
    reason: the run neither blocks on the FIFO nor writes through the link."""
    track = make_track("track: planted\ntasks:\n  - {id: a, run: 'echo hi', max_attempts: 1}\n")
    sd = state_of(repo, "planted").ensure()
    target = tmp_path / "elsewhere.txt"
    target.write_text("untouched\n")
    log = sd.logs / "a.1.log"
    if kind == "fifo":
        os.mkfifo(log)
    else:
        log.symlink_to(target)
    result = await run(track, repo)
    assert result.status == "failed"
    assert "refusing to use" in result.failed["a"]
    assert target.read_text() == "untouched\n"


def test_library_run_logs_to_stderr_not_stdout(repo: Path, tmp_path: Path) -> None:
    """run_track called from a program that set up no logging keeps stdout clean: its log
    lines go to stderr."""
    import subprocess

    program = textwrap.dedent(
        f"""
        import anyio
        from pathlib import Path
        from conductor.scheduler import RunOptions, run_track
        from conductor.track import parse_track
        track = parse_track("track: lib\\ntasks:\\n  - {{id: a, run: 'true'}}\\n")
        options = RunOptions(repo=Path({str(repo)!r}), state_root=Path({str(tmp_path)!r}),
                             handle_signals=False)
        print("result", anyio.run(run_track, track, options).status)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert proc.stdout == "result complete\n"
    assert "task complete" in proc.stderr


async def test_run_track_checks_agents_before_writing_anything(repo: Path) -> None:
    """run_track itself refuses a task naming an agent defined nowhere, and an unknown
    from_task, as the CLI does, before any run state is written."""
    from conductor.errors import UserError

    track = make_track(
        """
        track: pre
        tasks:
          - {id: a, name: Do a, agent: nobody-defined-me}
        """
    )
    with pytest.raises(UserError, match="nobody-defined-me"):
        await run(track, repo)
    shell = make_track("track: pre\ntasks:\n  - {id: a, run: 'true'}\n")
    with pytest.raises(UserError, match="nosuch"):
        await run(shell, repo, from_task="nosuch")
    assert not state_of(repo, "pre").root.exists()
