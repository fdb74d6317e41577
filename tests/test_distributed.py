"""Attempts on a real multi-node Ray cluster on this machine (``conductor.distributed``).

One cluster serves the module: a head node with no CPUs (the conductor's driver and the relay
actor live there) and two worker nodes of one CPU and one ``claude_sessions`` each. Ray talks
over this machine's own addresses only; usage statistics and the dashboard are off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import yaml

from conductor.bus import Bus
from conductor.executors.base import Executor
from conductor.messages import Message
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.track import Task, parse_track

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

DEADLINE = 240.0
"""Seconds any wait in these tests may take on a loaded machine."""

NODE = {"num_cpus": 1, "resources": {"claude_sessions": 1}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A head and two worker nodes; this test process joins as the driver. The nodes keep
    their attempts' directories under this test session's temporary directory."""
    from conductor.node import NODE_DIR_ENV

    saved = {name: os.environ.get(name) for name in ("RAY_USAGE_STATS_ENABLED", NODE_DIR_ENV)}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ[NODE_DIR_ENV] = str(tmp_path_factory.mktemp("nodes"))
    made = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
    )
    try:
        for _ in range(2):
            made.add_node(**NODE)
        made.wait_for_nodes()
        ray.init(address=made.address, log_to_driver=False, logging_level="WARNING")
        yield made
    finally:
        ray.shutdown()
        made.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def messages(repo: Path, track: str, state_root: Path) -> list[Message]:
    with Bus.for_state(StateDir.for_track(repo, track, state_root), track) as bus:
        return list(bus.read())


def state_root() -> Path:
    return Path(os.environ["CONDUCTOR_STATE_DIR"])


def worker_node_ids(cluster: Any) -> set[str]:
    return {node.node_id for node in cluster.worker_nodes}


async def wait_for(what: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    """Poll ``what`` until it returns something truthy."""
    with anyio.fail_after(deadline):
        while True:
            found = what()
            if found:
                return found
            await anyio.sleep(0.2)


def sync_wait_for(what: Callable[[], Any], deadline: float = DEADLINE) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {deadline}s")


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


FAKE_SCRIPT = {
    "sessions": [
        {
            "match": "Carry out task model (",
            "steps": [
                {"mcp": {"tool": "lock_file", "input": {"path": "src/model.py"}}},
                {"write": {"path": "src/model.py", "content": "VERSION = 1\n"}},
                {"mcp": {"tool": "report_progress", "input": {"message": "model written"}}},
                {
                    "mcp": {
                        "tool": "report_complete",
                        "input": {"summary": "wrote the model", "files_changed": ["src/model.py"]},
                    }
                },
                {"text": "Done."},
            ],
        }
    ]
}


async def test_mixed_track_completes_once_across_nodes(
    cluster: Any, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shell tasks (sandboxed in a copy, and plain) and a Claude session run as Ray tasks on
    both worker nodes; each task completes exactly once and its work lands in the checkout."""
    from conductor.testing import fake_cli_path

    script = tmp_path / "fake.yaml"
    script.write_text(yaml.safe_dump(FAKE_SCRIPT))
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    monkeypatch.setenv("CONDUCTOR_FAKE_SCRIPT", str(script))
    track = parse_track(
        yaml.safe_dump(
            {
                "track": "mixed",
                "executor": "ray",
                "max_parallel": 4,
                "tasks": [
                    {"id": "build", "run": "sleep 2; echo built > build.txt",
                     "isolation": "copy", "files": ["build.txt"]},
                    {"id": "lint", "run": "sleep 2; echo linted > lint.txt"},
                    {"id": "model", "files": ["src/**"],
                     "instructions": "Write src/model.py.",
                     "verify": ["grep -q 'VERSION = 1' src/model.py"]},
                    {"id": "docs", "depends_on": ["build", "lint", "model"],
                     "run": "test -f build.txt && test -f src/model.py && echo ok > docs.txt",
                     "resources": {"cpus": 0.5}},
                ],
            }
        )
    )
    options = RunOptions(
        repo=repo, state_root=state_root(), ray_address=cluster.address, handle_signals=False
    )
    with anyio.fail_after(DEADLINE):
        result = await run_track(track, options)
    assert result.status == "complete", result.failed
    for name, text in (("build.txt", "built"), ("lint.txt", "linted"), ("docs.txt", "ok"),
                       ("src/model.py", "VERSION = 1")):
        assert (repo / name).read_text().strip() == text
    bus = messages(repo, "mixed", state_root())
    for tid in ("build", "lint", "model", "docs"):
        assert [m.attempt for m in bus if m.type == "TASK_COMPLETE" and m.task == tid] == [1]
        assert [m.attempt for m in bus if m.type == "TASK_DISPATCHED" and m.task == tid] == [1]
    started = [m for m in bus if m.type == "WORKER_STARTED"]
    nodes = {m.payload["node_id"] for m in started}
    assert len(nodes) >= 2 and nodes <= worker_node_ids(cluster)
    session = [m for m in started if m.task == "model" and "cli_pid" in m.payload]
    assert session and session[0].payload["executor"] == "ray"
    model_types = {m.type for m in bus if m.task == "model"}
    assert {"PROGRESS", "CLAIM_COMPLETE", "VERIFY_RESULT"} <= model_types
    locked = [m.payload.get("path") for m in bus if m.type == "FILE_LOCK" and m.task == "model"]
    assert "src/model.py" in locked  # the session's own lock request, taken by the conductor
    logs = StateDir.for_track(repo, "mixed", state_root()).logs
    assert (logs / "model.1.transcript.jsonl").stat().st_size > 0
    assert git(repo, "log", "--format=%s").count("mixed/") == 4


async def test_node_removed_mid_attempt_is_lost_and_retried_elsewhere(
    cluster: Any, repo: Path
) -> None:
    """Removing the node an attempt runs on records WORKER_LOST naming that node, counted as a
    failed attempt; the retry runs on another node and the task completes once."""
    track = parse_track(
        yaml.safe_dump(
            {
                "track": "lost",
                "executor": "ray",
                "tasks": [
                    {
                        "id": "slow",
                        "isolation": "copy",
                        "max_attempts": 2,
                        "run": 'if [ "$CONDUCTOR_ATTEMPT" = 1 ]; then sleep 600; fi; '
                        "echo done > out.txt",
                    }
                ],
            }
        )
    )
    options = RunOptions(
        repo=repo, state_root=state_root(), ray_address=cluster.address, handle_signals=False
    )
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await run_track(track, options))

    def first_start() -> Message | None:
        try:
            found = messages(repo, "lost", state_root())
        except Exception:
            return None
        return next((m for m in found if m.type == "WORKER_STARTED" and m.attempt == 1), None)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            started = await wait_for(first_start)
            doomed = started.payload["node_id"]
            node = next(n for n in cluster.worker_nodes if n.node_id == doomed)
            cluster.remove_node(node)
            await wait_for(lambda: results)
    finally:
        cluster.add_node(**NODE)
        cluster.wait_for_nodes()
    assert results[0].status == "complete", results[0].failed
    assert (repo / "out.txt").read_text() == "done\n"
    bus = messages(repo, "lost", state_root())
    lost = [m for m in bus if m.type == "WORKER_LOST"]
    assert len(lost) == 1 and lost[0].attempt == 1
    assert lost[0].payload["node"] == doomed and lost[0].payload["counted"] is True
    assert doomed in lost[0].payload["reason"]
    retry = [m for m in bus if m.type == "WORKER_STARTED" and m.attempt == 2]
    assert retry and retry[0].payload["node_id"] != doomed
    assert [m.attempt for m in bus if m.type == "TASK_COMPLETE"] == [2]


async def test_shell_attempt_on_a_node_never_gets_the_conductors_secrets(
    cluster: Any, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shell command on a node sees its attempt's CONDUCTOR_* variables but not the
    conductor's credentials (those go to Claude sessions only)."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-conductor-only")
    track = parse_track(
        yaml.safe_dump({"track": "secrets", "executor": "ray",
                        "tasks": [{"id": "dump", "run": "env > env.txt"}]})
    )
    options = RunOptions(
        repo=repo, state_root=state_root(), ray_address=cluster.address, handle_signals=False
    )
    with anyio.fail_after(DEADLINE):
        result = await run_track(track, options)
    assert result.status == "complete", result.failed
    seen = (repo / "env.txt").read_text()
    assert "CONDUCTOR_WORKER=dump.1" in seen
    assert "sk-conductor-only" not in seen
    started = [m for m in messages(repo, "secrets", state_root()) if m.type == "WORKER_STARTED"]
    assert started and started[0].payload["node_id"] in worker_node_ids(cluster)


async def test_timeout_ends_the_attempt_on_its_node(
    cluster: Any, repo: Path, tmp_path: Path
) -> None:
    """A task's timeout cancels its Ray task: the command on the node ends with it and the
    attempt fails as timed out."""
    pid_file = tmp_path / "pid"
    track = parse_track(
        yaml.safe_dump(
            {
                "track": "timeout",
                "executor": "ray",
                "tasks": [{"id": "hang", "timeout": 5, "max_attempts": 1,
                           "run": f"echo $$ > {pid_file}; sleep 600"}],
            }
        )
    )
    options = RunOptions(
        repo=repo, state_root=state_root(), ray_address=cluster.address, handle_signals=False
    )
    with anyio.fail_after(DEADLINE):
        result = await run_track(track, options)
    assert result.status == "failed"
    shell = int(pid_file.read_text())
    await wait_for(lambda: dead(shell))
    bus = messages(repo, "timeout", state_root())
    failed = [m for m in bus if m.type == "TASK_FAILED"]
    assert len(failed) == 1 and failed[0].payload["timed_out"] is True
    started = [m for m in bus if m.type == "WORKER_STARTED"]
    assert started and started[0].payload["node_id"] in worker_node_ids(cluster)


def test_conductor_killed_leaves_no_attempt_running_after_resume(
    cluster: Any, repo: Path, tmp_path: Path
) -> None:
    """A conductor killed with -9 mid-attempt: Ray ends the attempt's task, resume ends what
    the command left and records the loss, and the task then completes exactly once."""
    pids = tmp_path / "pids"
    pids.mkdir()
    track_file = tmp_path / "track.yaml"
    track_file.write_text(
        yaml.safe_dump(
            {
                "track": "killed",
                "tasks": [
                    {
                        "id": "job",
                        "run": f'echo $$ > {pids}/$CONDUCTOR_ATTEMPT; '
                        'if [ "$CONDUCTOR_ATTEMPT" = 1 ]; then sleep 600; fi; echo ok > out.txt',
                    }
                ],
            }
        )
    )
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    argv = [sys.executable, "-m", "conductor", "run", str(track_file), "--address",
            cluster.address, "--repo", str(repo), "--progress", "none"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:

        def started() -> Message | None:
            try:
                found = messages(repo, "killed", state_root())
            except Exception:
                return None
            return next((m for m in found if m.type == "WORKER_STARTED"), None)

        payload = sync_wait_for(started).payload
        shell = int(sync_wait_for(lambda: (pids / "1").exists() and (pids / "1").read_text()))
        ray_worker = payload["node_pid"]
        assert not dead(ray_worker) and not dead(shell)
        first.send_signal(signal.SIGKILL)
        first.wait(60)
        sync_wait_for(lambda: dead(ray_worker))  # Ray ended the dead driver's task
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert second.returncode == 0, second.stderr[-3000:]
    assert dead(shell)
    assert (repo / "out.txt").read_text() == "ok\n"
    bus = messages(repo, "killed", state_root())
    lost = [m for m in bus if m.type == "WORKER_LOST"]
    assert [m.attempt for m in lost] == [1]
    assert [m.attempt for m in bus if m.type == "TASK_COMPLETE"] == [2]


def test_recover_ends_a_lost_attempts_processes_on_its_node(cluster: Any, tmp_path: Path) -> None:
    """``recover`` runs a task on the node a lost attempt ran on that ends every process
    carrying the attempt's run tag and worker id there."""
    from conductor.contract import TAG_ENV, WORKER_ENV
    from conductor.distributed import RayExecutor

    env = {**os.environ, TAG_ENV: "tag-for-recover", WORKER_ENV: "orphan.1"}
    orphan = subprocess.Popen(["sleep", "600"], env=env, start_new_session=True)
    try:
        executor = RayExecutor(lambda task: _unused(task), cluster.address)
        node = sorted(worker_node_ids(cluster))[0]
        started = {"node_id": node, "run_tag": "tag-for-recover", "worker": "orphan.1"}
        assert executor.recover(started) is True
        assert orphan.wait(60) is not None
        assert executor.recover({**started, "node_id": "0" * 56}) is False
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def _unused(task: Task) -> Executor:
    raise AssertionError("no attempt runs in this test")


@pytest.mark.real_cli
async def test_claude_attempt_on_a_node_runs_against_the_fake_api_and_lands(
    cluster: Any, repo: Path, tmp_path: Path
) -> None:
    """The real bundled CLI runs on a node against the fake Messages API; its tool calls and
    claim reach the bus, and the conductor verifies and lands its work."""
    from conductor.distributed import ray_executors
    from conductor.executors.claude import ClaudeExecutor
    from conductor.testing.fake_api import FakeMessagesAPI, bundled_cli_path, real_cli_env

    cli = bundled_cli_path()
    if cli is None:
        pytest.skip("no bundled Claude Code CLI")
    script = {
        "conversations": [
            {
                "match": "Carry out task model (",
                "turns": [
                    {"tool_use": {"name": "Write", "input": {"file_path": "src/model.py",
                                                             "content": "VERSION = 1\n"}}},
                    {"tool_use": {"name": "mcp__conductor__report_complete",
                                  "input": {"summary": "wrote src/model.py",
                                            "files_changed": ["src/model.py"]}}},
                    {"text": "Done."},
                ],
            }
        ]
    }
    track = parse_track(
        yaml.safe_dump(
            {
                "track": "remote-claude",
                "tasks": [
                    {"id": "model", "files": ["src/model.py"],
                     "instructions": "Create src/model.py defining VERSION = 1.",
                     "verify": ["grep -q 'VERSION = 1' src/model.py"], "max_attempts": 1},
                ],
            }
        )
    )
    with FakeMessagesAPI(script) as api:
        env = real_cli_env(api.base_url, tmp_path / "unused-config")
        for key in ("CLAUDE_CONFIG_DIR", "TMPDIR"):
            env.pop(key, None)
        claude = ClaudeExecutor(cli_path=cli, extra_env=env, api_backoff=0.01)
        options = RunOptions(
            repo=repo,
            state_root=state_root(),
            executors=ray_executors(lambda task: claude, cluster.address),
            handle_signals=False,
        )
        with anyio.fail_after(DEADLINE):
            result = await run_track(track, options)
    assert result.status == "complete", result.failed
    assert (repo / "src" / "model.py").read_text() == "VERSION = 1\n"
    bus = messages(repo, "remote-claude", state_root())
    started = [m for m in bus if m.type == "WORKER_STARTED"]
    assert started and all(m.payload["node_id"] in worker_node_ids(cluster) for m in started)
    assert any(m.type == "CLAIM_COMPLETE" for m in bus)
    done = [m for m in bus if m.type == "TASK_COMPLETE"]
    assert len(done) == 1 and done[0].payload["cost_usd"] > 0 and done[0].payload["session_id"]
    assert done[0].payload["files_changed"] == ["src/model.py"]
    assert api.requests
