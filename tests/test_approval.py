"""Approval belongs to one run: the pause, its answers, the prompt and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner

from conductor.approval import render, summary
from conductor.bus import Bus
from conductor.cli import main
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.track import Track, parse_track

DEADLINE = 180.0


def make_track(text: str) -> Track:
    return parse_track(textwrap.dedent(text))


def state_of(repo: Path, track_id: str) -> StateDir:
    return StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))


def types(repo: Path, track_id: str) -> list[str]:
    with Bus.for_state(state_of(repo, track_id), track_id) as bus:
        return [m.type for m in bus.iter_all()]


def payload_of(repo: Path, track_id: str, mtype: str) -> list[dict[str, Any]]:
    with Bus.for_state(state_of(repo, track_id), track_id) as bus:
        return [m.payload for m in bus.iter_all() if m.type == mtype]


async def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await anyio.sleep(0.05)


def options(repo: Path, **kw: Any) -> RunOptions:
    return RunOptions(
        repo=repo,
        state_root=Path(os.environ["CONDUCTOR_STATE_DIR"]),
        handle_signals=False,
        rescan_interval=0.05,
        **kw,
    )


GATE = "track: gate\ntasks:\n  - {id: a, run: 'true'}\n  - {id: b, run: 'true', depends_on: [a]}\n"

pytestmark = pytest.mark.anyio


async def test_an_approve_posted_before_the_run_asked_counts_for_nothing(repo: Path) -> None:
    """A stale APPROVE does not start the run; a REJECT after the request ends it with 6."""
    with Bus.for_state(state_of(repo, "gate").ensure(), "gate") as bus:
        bus.post("APPROVE", payload={"text": "last week"})
    result: list[RunResult] = []

    async def runner() -> None:
        result.append(await run_track(make_track(GATE), options(repo, wait_for_approval=True)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await wait_for(lambda: "APPROVAL_REQUESTED" in types(repo, "gate"), "the request")
        with Bus.for_state(state_of(repo, "gate"), "gate") as bus:
            bus.post("REJECT", payload={"text": "not today"})
    assert result[0].status == "rejected" and result[0].exit_code == 6
    assert result[0].reason == "not today"
    assert "TASK_DISPATCHED" not in types(repo, "gate")
    assert payload_of(repo, "gate", "TRACK_FAILED")[-1]["rejected"] == "not today"


async def test_approve_after_the_request_runs_the_track(repo: Path) -> None:
    """An APPROVE posted after APPROVAL_REQUESTED starts the run; the request holds the plan."""
    result: list[RunResult] = []

    async def runner() -> None:
        result.append(await run_track(make_track(GATE), options(repo, wait_for_approval=True)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        await wait_for(lambda: "APPROVAL_REQUESTED" in types(repo, "gate"), "the request")
        with Bus.for_state(state_of(repo, "gate"), "gate") as bus:
            bus.post("APPROVE", payload={"by": "test"})
    assert result[0].status == "complete"
    seen = types(repo, "gate")
    assert seen.index("APPROVAL_REQUESTED") < seen.index("APPROVE") < seen.index("TASK_DISPATCHED")
    plan = payload_of(repo, "gate", "APPROVAL_REQUESTED")[0]
    assert plan["levels"] == [["a"], ["b"]] and [t["id"] for t in plan["tasks"]] == ["a", "b"]


async def test_every_run_asks_again(repo: Path) -> None:
    """The answer to one run never carries over: a rerun with approval waits for its own."""

    async def approver(text: str, plan: dict[str, Any]) -> tuple[bool, str]:
        return True, "fine"

    ask = options(repo, approver=approver, wait_for_approval=True)
    first = await run_track(make_track(GATE), ask)
    assert first.status == "complete"
    changed = GATE.replace("run: 'true'}\n  - {id: b", "run: 'true '}\n  - {id: b")

    async def refuser(text: str, plan: dict[str, Any]) -> tuple[bool, str]:
        return False, "no more"

    ask = options(repo, approver=refuser, wait_for_approval=True)
    second = await run_track(make_track(changed), ask)
    assert second.status == "rejected" and second.reason == "no more"
    assert types(repo, "gate").count("APPROVAL_REQUESTED") == 2
    assert payload_of(repo, "gate", "APPROVE")[0] == {"reason": "fine", "by": "prompt"}


async def test_the_approver_sees_the_rendered_plan(repo: Path) -> None:
    """The approver gets the plan as text: groups, tasks, verify commands."""
    shown: list[str] = []

    async def approver(text: str, plan: dict[str, Any]) -> tuple[bool, str]:
        shown.append(text)
        return True, ""

    track = make_track(
        "track: shown\ntasks:\n  - {id: a, run: 'true', verify: ['test -d .'], files: [src/]}\n"
    )
    result = await run_track(track, options(repo, approver=approver, wait_for_approval=True))
    assert result.status == "complete"
    assert "1. a" in shown[0] and "verify: test -d ." in shown[0] and "files: src" in shown[0]
    assert "cost:" not in shown[0]


async def test_approval_timeout_ends_the_wait_as_a_rejection(repo: Path) -> None:
    """`approval: required` with `approval_timeout` ends an unanswered wait with exit 6."""
    track = make_track(
        "track: late\napproval: required\napproval_timeout: 0.2s\n"
        "tasks:\n  - {id: a, run: 'true'}\n"
    )
    result = await run_track(track, options(repo))
    assert result.status == "rejected" and result.exit_code == 6
    rejected = payload_of(repo, "late", "REJECT")
    assert rejected[0]["by"] == "timeout" and "within" in rejected[0]["reason"]
    assert "TASK_DISPATCHED" not in types(repo, "late")


async def test_nothing_to_run_asks_nothing(repo: Path) -> None:
    """A track already complete does not pause for approval."""
    track = make_track("track: done\ntasks:\n  - {id: a, run: 'true'}\n")
    assert (await run_track(track, options(repo))).status == "complete"
    again = await run_track(track, options(repo, wait_for_approval=True))
    assert again.status == "complete"
    assert "APPROVAL_REQUESTED" not in types(repo, "done")


def test_estimate_is_the_capped_upper_bound(repo: Path) -> None:
    """The estimate sums each Claude task's cap (which spans its attempts), never above
    budget_usd."""
    track = make_track(
        """
        track: cost
        budget_usd: 5
        tasks:
          - {id: a, instructions: x, max_budget_usd: 1, max_attempts: 2}
          - {id: b, instructions: y, max_budget_usd: 0.5, max_attempts: 1}
          - {id: c, run: 'true'}
        """
    )
    plan = summary(track, repo, ["a", "b", "c"])
    assert plan["estimate"]["capped_usd"] == pytest.approx(1.5)
    assert plan["estimate"]["at_most_usd"] == pytest.approx(1.5)
    assert "at most $1.50" in render("cost", plan)
    tight = summary(track.model_copy(update={"budget_usd": 1.0}), repo, ["a", "b"])
    assert tight["estimate"]["at_most_usd"] == pytest.approx(1.0)
    uncapped = make_track("track: u\ntasks:\n  - {id: a, instructions: x}\n")
    loose = summary(uncapped, repo, ["a"])
    assert loose["estimate"]["at_most_usd"] is None and loose["estimate"]["uncapped"] == ["a"]


def cli(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--repo", str(repo)], catch_exceptions=False)


def test_approve_with_no_waiting_run_is_an_error(repo: Path) -> None:
    """`conductor approve` refuses when no run waits, and posts nothing."""
    with Bus.for_state(state_of(repo, "idle").ensure(), "idle") as bus:
        bus.post("NOTE", payload={"text": "hello"})
    res = cli(repo, "approve", "idle")
    assert res.exit_code == 2 and "no run of track 'idle' is waiting" in res.output
    assert types(repo, "idle") == ["NOTE"]


def _track_file(repo: Path) -> Path:
    path = repo / "gate.yaml"
    path.write_text(GATE)
    return path


def _waiting_run(repo: Path, output: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """`run --approve` off a terminal (stdout and stderr to ``output``), once it has asked."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "--approve", str(_track_file(repo))],
        cwd=repo,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=output,
    )
    deadline = time.monotonic() + DEADLINE
    try:
        while not (
            state_of(repo, "gate").bus.is_dir() and "APPROVAL_REQUESTED" in types(repo, "gate")
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never asked for approval"
            time.sleep(0.05)
    except BaseException:
        proc.kill()
        proc.wait(timeout=DEADLINE)
        raise
    return proc


def test_reject_from_another_shell_ends_the_run_with_6(repo: Path) -> None:
    """A waiting `run --approve` (not a terminal) ends with exit 6 on `conductor reject`."""
    proc = _waiting_run(repo, subprocess.PIPE)
    try:
        res = cli(repo, "reject", "gate", "-m", "wrong branch")
        assert res.exit_code == 0, res.output
        _, err = proc.communicate(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 6, err.decode()
    assert b"conductor approve gate" in err and b"1. a" in err
    assert payload_of(repo, "gate", "REJECT")[0] == {"reason": "wrong branch", "by": "cli"}


def test_the_prompt_on_a_terminal_asks_and_records_why(repo: Path) -> None:
    """On a terminal `run --approve` shows the plan and asks y/n; "n" asks why, exit 6."""
    proc, leader, screen = _prompting_run(repo)
    try:
        assert b"1. a" in screen and b"2. b" in screen
        os.write(leader, b"n\n")
        _read_until(leader, proc, b"Why not", screen)
        os.write(leader, b"too risky\n")
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.returncode == 6
    assert payload_of(repo, "gate", "REJECT")[0] == {"reason": "too risky", "by": "prompt"}


def _read_until(
    leader: int, proc: subprocess.Popen[bytes], text: bytes, screen: bytes = b""
) -> bytes:
    """What the terminal showed, ``screen`` first, read until it shows ``text``."""
    deadline = time.monotonic() + DEADLINE
    while text not in screen:
        assert time.monotonic() < deadline, screen.decode(errors="replace")
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            assert proc.poll() is None, screen.decode(errors="replace")
            time.sleep(0.05)
        screen += chunk
    return screen


def _prompting_run(repo: Path) -> tuple[subprocess.Popen[bytes], int, bytes]:
    """`run --approve` on a pseudo-terminal, once it shows the y/n question: the process, the
    terminal's leader side and what it showed."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "run", "--approve", str(_track_file(repo))],
        cwd=repo,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    try:
        return proc, leader, _read_until(leader, proc, b"Approve this run?")
    except BaseException:
        proc.kill()
        proc.wait(timeout=DEADLINE)
        os.close(leader)
        raise


def _drain(leader: int, proc: subprocess.Popen[bytes]) -> None:
    """Keep reading the terminal so the child never blocks writing, until it exits."""
    deadline = time.monotonic() + DEADLINE
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            time.sleep(0.05)


def test_ctrl_c_at_the_prompt_ends_the_run_at_once(repo: Path) -> None:
    """SIGINT while `run --approve` waits at its terminal prompt exits 130, not a hang."""
    import signal

    proc, leader, _ = _prompting_run(repo)
    try:
        proc.send_signal(signal.SIGINT)
        _drain(leader, proc)
        assert proc.wait(timeout=DEADLINE) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert "TRACK_INTERRUPTED" in types(repo, "gate")


def test_end_of_input_at_the_prompt_answers_no(repo: Path) -> None:
    """Ctrl-D at the y/n question is its default, no: a REJECT, exit 6, no traceback."""
    proc, leader, _ = _prompting_run(repo)
    try:
        os.write(leader, b"\x04")
        _drain(leader, proc)
        assert proc.wait(timeout=DEADLINE) == 6
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    reject = payload_of(repo, "gate", "REJECT")
    assert reject == [{"reason": "rejected at the prompt (end of input)", "by": "prompt"}]


def test_an_answer_about_one_task_is_refused_not_posted(repo: Path) -> None:
    """APPROVE or REJECT with --task would count for nothing: `bus post` refuses it (exit 2)."""
    track = _track_file(repo)
    for mtype in ("APPROVE", "REJECT"):
        res = cli(repo, "bus", "post", str(track), mtype, "--task", "a", "-m", "no")
        assert res.exit_code == 2 and "for the whole track" in res.output
    assert not state_of(repo, "gate").bus.is_dir() or types(repo, "gate") == []


def test_reject_needs_a_reason(repo: Path) -> None:
    """`conductor reject -m ""` is refused before anything is looked up or posted."""
    res = cli(repo, "reject", "gate", "-m", "  ")
    assert res.exit_code == 2 and "-m REASON" in res.output


def test_status_says_a_run_waits_for_approval(repo: Path) -> None:
    """`status` names the wait and the commands that end it; --json has approval pending."""
    import json

    proc = _waiting_run(repo)
    try:
        res = cli(repo, "status", "gate")
        assert res.exit_code == 0, res.output
        assert "waiting for approval: conductor approve gate" in res.output
        shown = json.loads(cli(repo, "status", "gate", "--json").output)
        assert shown["approval"] == "pending"
        assert cli(repo, "approve", "gate").exit_code == 0
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    shown = json.loads(cli(repo, "status", "gate", "--json").output)
    assert shown["approval"] is None and "waiting" not in cli(repo, "status", "gate").output


def test_approve_refuses_when_the_run_that_asked_was_killed(repo: Path) -> None:
    """After kill -9 of a waiting run, `approve` says nobody waits (exit 2) and posts nothing."""
    proc = _waiting_run(repo)
    proc.kill()
    proc.wait(timeout=DEADLINE)
    before = types(repo, "gate")
    res = cli(repo, "approve", "gate")
    assert res.exit_code == 2 and "the conductor that asked is gone" in res.output
    assert types(repo, "gate") == before


def test_an_approval_timeout_of_zero_is_refused() -> None:
    """approval_timeout: 0 would reject every run at once: an error at its line."""
    from conductor.errors import TrackError

    with pytest.raises(TrackError, match=r":2: approval_timeout: must be more than 0"):
        make_track("track: z\napproval_timeout: 0\ntasks:\n  - {id: a, run: 'true'}\n")


def test_a_huge_plan_is_cut_to_fit_the_bus(repo: Path) -> None:
    """The plan of a very large track is cut (first tasks, counts) to fit one message."""
    from conductor.approval import MAX_SUMMARY_BYTES

    lines = ["track: big", "tasks:"]
    for n in range(3000):
        lines.append(f"  - {{id: t{n}, run: 'true', verify: ['{'x' * 200}'], files: [f{n}/]}}")
    track = make_track("\n".join(lines) + "\n")
    plan = summary(track, repo, [t.id for t in track.tasks])
    assert len(json.dumps(plan).encode()) <= MAX_SUMMARY_BYTES
    assert plan["more_tasks"] > 0 and len(plan["tasks"]) + plan["more_tasks"] == 3000
    shown = render("big", plan)
    assert "3000 tasks to run" in shown and f"and {plan['more_tasks']} more" in shown
