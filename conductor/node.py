"""What runs on a Ray node for one attempt (sent by ``conductor.distributed``).

``run_attempt`` is the body of the Ray task. It gets the attempt's description (``NodeJob``),
the snapshot as a git bundle (resolved from Ray's object store) and the conductor's ``Relay``
actor, and on the node:

1. fetches the bundle into the worker process's bare store (``NodeStore``; once per
   snapshot) and makes the attempt's copy from it in a private temporary directory, exactly as
   the conductor does locally (``copies.make_copy``: a clone at the snapshot, files written by
   conductor's own git);
2. runs the task's shell command (in the same bubblewrap sandbox when the attempt is
   sandboxed) or its Claude session (in Claude Code's sandbox), with a context whose ``post``,
   path locks and bus reads go back to the conductor through the relay, so messages, lock
   requests and tool calls reach the bus while the attempt runs;
3. ends whatever the attempt left running, reads what its copy holds with conductor's git
   (``copies.read_copy``; the copy's own git directory is never trusted), and returns the
   result as a commit on top of the snapshot in a git bundle, with the attempt's log,
   transcript and tool list, and the executor's ``Outcome`` (usage, cost, claim, evidence);
4. removes its temporary directory.

The verdict is not given here: the conductor applies the returned tree to its own copy of the
attempt and judges, verifies and lands it as it does for a local attempt.

This module imports ``ray``; only ``conductor.distributed`` imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import psutil
import ray

from conductor.contract import TAG_ENV
from conductor.copies import (
    MAX_CHANGE_BYTES,
    MAX_FILE_BYTES,
    Checkout,
    PrivateGit,
    Snapshot,
    make_copy,
    read_copy,
    remove_copy,
)
from conductor.errors import ConductorError
from conductor.executors.base import AttemptContext, Outcome, Sandbox
from conductor.messages import Message
from conductor.track import Task, Track

LOG_LIMIT = 32 * 2**20
"""Most bytes of each log file an attempt sends back (the end is kept)."""

NODE_DIR_ENV = "CONDUCTOR_NODE_DIR"
"""Where a node makes attempts' temporary directories (default: the system's temp dir)."""

STOP_GRACE = 30.0
"""Seconds an interrupted attempt gets to end its commands before the task gives up on it."""


@dataclass(frozen=True)
class ClaudeSpec:
    """How the node runs a Claude session: the conductor's ``ClaudeExecutor`` settings."""

    cli_path: str | None = None
    """Claude Code executable on the node; None uses the SDK's bundled CLI."""
    extra_env: dict[str, str] = field(default_factory=dict)
    """Environment the conductor's executor adds to every session."""
    api_retries: int = 3
    """Times a session that ended on an API error is run again."""
    api_backoff: float = 5.0
    """First wait before such a re-run (seconds)."""
    max_buffer_size: int = 16 << 20
    """Largest single message line accepted from the CLI."""


@dataclass(frozen=True)
class NodeJob:
    """One attempt, as sent to a node."""

    track: Track
    """The whole track."""
    task: Task
    """The task, defaults applied."""
    attempt: int
    """Attempt number."""
    worker_id: str
    """``<task>.<attempt>``."""
    kind: Literal["shell", "claude"]
    """A shell command or a Claude session."""
    snapshot: str
    """The commit the bundle brings (parentless, the snapshot's tree)."""
    tree: str
    """The snapshot's tree."""
    ref: str
    """Its ref in the bundle."""
    env: dict[str, str]
    """The attempt's ``CONDUCTOR_*`` variables and run tag (what a local attempt gets)."""
    secrets: dict[str, str] = field(default_factory=dict)
    """Credentials the Claude session needs; never given to shell commands."""
    feedback: str | None = None
    """Why the previous attempt failed."""
    budget_left_usd: float | None = None
    """Track budget unspent at dispatch."""
    sandbox: tuple[str, ...] | None = None
    """Allowed domains when the attempt is sandboxed; None when it is not."""
    locks: bool = True
    """The run has path locks (lock requests go to the conductor)."""
    claude: ClaudeSpec | None = None
    """Session settings for a Claude attempt."""


@dataclass(frozen=True)
class NodeResult:
    """What a node sends back for one attempt."""

    outcome: Outcome
    """The executor's outcome (the verdict is the conductor's)."""
    node: dict[str, Any]
    """Where it ran: ``node_id``, ``node_ip``, ``host``, ``pid``."""
    commit: str | None = None
    """The result commit (the copy's tree on top of the snapshot); None when nothing
    changed or the copy was not read."""
    tree: str | None = None
    """Its tree."""
    bundle: bytes | None = None
    """A git bundle of ``commit`` whose prerequisite is the snapshot."""
    too_large: tuple[str, ...] = ()
    """Changed files over the size limits: the copy was not read."""
    logs: dict[str, bytes] = field(default_factory=dict)
    """Log files by suffix (``.log``, ``.transcript.jsonl``, ``.tools.jsonl``)."""
    ended: tuple[int, ...] = ()
    """Processes the attempt left running that the node ended."""


def node_identity() -> dict[str, Any]:
    """This Ray worker's node id, node address, host name and pid."""
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


# --------------------------------------------------------------------------- the relay


class Relay:
    """An actor carrying a node's requests to the conductor and the answers back.

    A node ``call``s and waits; the conductor ``poll``s a worker's requests, handles them
    (posting on the bus, taking locks, reading messages) and ``answer``s. Every request is
    answered in turn, so a node's messages reach the bus in the order it sent them.
    """

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[tuple[int, str, tuple[Any, ...]]]] = {}
        self._waiting: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._next = 0

    def _queue(self, worker: str) -> asyncio.Queue[tuple[int, str, tuple[Any, ...]]]:
        return self._queues.setdefault(worker, asyncio.Queue())

    async def call(self, worker: str, op: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """A node's request; returns ``(ok, value)`` once the conductor answers."""
        self._next += 1
        rid = self._next
        future: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = future
        self._queue(worker).put_nowait((rid, op, args))
        try:
            return await future
        finally:
            self._waiting.pop(rid, None)

    async def poll(self, worker: str, seconds: float) -> list[tuple[int, str, tuple[Any, ...]]]:
        """The conductor's long poll: the worker's pending requests (none after ``seconds``)."""
        queue = self._queue(worker)
        try:
            first = await asyncio.wait_for(queue.get(), seconds)
        except TimeoutError:
            return []
        batch = [first]
        while not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    async def answer(self, rid: int, ok: bool, value: Any) -> None:
        """The conductor's answer to request ``rid``."""
        future = self._waiting.get(rid)
        if future is not None and not future.done():
            future.set_result((ok, value))

    async def forget(self, worker: str) -> None:
        """Drop a finished worker's queue."""
        self._queues.pop(worker, None)


class _Link:
    """A node's side of the relay for one worker."""

    def __init__(self, relay: Any, worker: str) -> None:
        self.relay = relay
        self.worker = worker

    def call(self, op: str, *args: Any) -> Any:
        ok, value = ray.get(self.relay.call.remote(self.worker, op, args))
        if not ok:
            raise ConductorError(str(value))
        return value

    def post(self, mtype: str, *, payload: dict[str, Any] | None = None) -> Message:
        """``AttemptContext.post``: the conductor posts it on the bus as this worker."""
        message: Message = self.call("post", str(mtype), payload)
        return message


class RemoteLocks:
    """The conductor's path locks, as the file guard and the bus tools use them."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def acquire(self, path: str, *, worker: str, task: str, attempt: int) -> Any:
        """Lock ``path`` for this worker (``ConductorError`` when refused)."""
        return self._link.call("acquire", path)

    def release(self, path: str, *, worker: str) -> bool:
        """Release a lock this worker holds."""
        return bool(self._link.call("release", path))

    def holder(self, path: str) -> Any:
        """Who holds ``path``, or None."""
        return self._link.call("holder", path)

    def list(self) -> list[Any]:
        """Every lock of the run."""
        return list(self._link.call("list"))


class RemoteBus:
    """Reading the bus from a node: the messages of the track and of this task."""

    def __init__(self, link: _Link) -> None:
        self._link = link

    def read(self, after: int = 0) -> list[Message]:
        """Messages after ``after`` that concern the whole track or this task."""
        return list(self._link.call("read", after))


# --------------------------------------------------------------------------- the task


def run_attempt(job: NodeJob, bundle: bytes, relay: Any) -> NodeResult:
    """Make the attempt's copy from ``bundle``, run it, and return what it did."""
    node = node_identity()
    link = _Link(relay, job.worker_id)
    link.call("placed", node)
    base = Path(tempfile.mkdtemp(prefix=f"conductor-{job.worker_id}-",
                                 dir=os.environ.get(NODE_DIR_ENV) or None))
    try:
        return _run(job, bundle, link, node, base)
    finally:
        remove_copy(base)


def _run(job: NodeJob, bundle: bytes, link: _Link, node: dict[str, Any], base: Path) -> NodeResult:
    private, copy = _unpack(job, bundle, base)
    logs = base / "logs"
    tmp = base / "tmp"
    worker_dir = base / "worker"
    for directory in (logs, tmp, worker_dir, base / "state"):
        directory.mkdir(mode=0o700)
    log_path = logs / f"{job.worker_id}.log"
    env = {**job.env, "TMPDIR": str(tmp)}
    ctx = AttemptContext(
        track=job.track,
        task=job.task,
        attempt=job.attempt,
        worker_id=job.worker_id,
        repo=copy.path,
        worker_dir=worker_dir,
        log_path=log_path,
        state_root=base / "state",
        post=link.post,
        feedback=job.feedback,
        env=env,
        budget_left_usd=job.budget_left_usd,
        locks=RemoteLocks(link) if job.locks else None,  # type: ignore[arg-type]
        bus=RemoteBus(link),  # type: ignore[arg-type]
        workdir=copy.path,
        tmp_dir=tmp,
        sandbox=Sandbox(allowed_domains=job.sandbox) if job.sandbox is not None else None,
    )
    outcome = _execute(job, ctx)
    tag = job.env.get(TAG_ENV, "")
    ended = tuple(end_attempt(tag, job.worker_id)) if tag else ()
    outcome = replace(outcome, claimed_files=_relative(outcome.claimed_files, copy.path))
    result = NodeResult(outcome=outcome, node=node, ended=ended, logs=_logs(logs, job.worker_id))
    state = read_copy(private, copy, limit=MAX_FILE_BYTES, total=MAX_CHANGE_BYTES)
    if state.too_large:
        return replace(result, too_large=state.too_large)
    if not state.changes:
        return result
    git = private.git
    commit = git(copy.path, copy.index, "commit-tree", state.tree, "-p", job.snapshot,
                 "-m", f"conductor: result of {job.worker_id}").stdout.decode().strip()
    ref = f"refs/results/{job.worker_id}"
    out = base / "result.bundle"
    git(copy.path, copy.index, "update-ref", ref, commit)
    try:
        git(copy.path, copy.index, "bundle", "create", "-q", str(out), ref, f"^{job.snapshot}")
    finally:
        git(copy.path, copy.index, "update-ref", "-d", ref, check=False)
    return replace(result, commit=commit, tree=state.tree, bundle=out.read_bytes())


class NodeStore:
    """The snapshots one worker process received: a bare store, and conductor's git directory
    over it, kept for the process's later attempts (an attempt of a snapshot the process has
    seen fetches nothing). It lives in ``<node dir>/conductor-node-<pid>``; the stores of
    processes that are gone are removed when a process makes its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = root / "store.git"
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (self.store / "HEAD").is_file():
            _git(["init", "-q", "--bare", str(self.store)])
        self.checkout = Checkout(root=self.store, git_dir=self.store, common_dir=self.store)
        self.private = PrivateGit(root / "git", self.checkout).ensure()

    def add(self, job: NodeJob, bundle: bytes, scratch: Path) -> None:
        """Fetch the job's snapshot from ``bundle`` unless the store has it."""
        has = _git(["-C", str(self.store), "cat-file", "-e", f"{job.snapshot}^{{commit}}"],
                   check=False)
        if has.returncode == 0:
            return
        path = scratch / "snapshot.bundle"
        path.write_bytes(bundle)
        try:
            _git(["-C", str(self.store), "fetch", "-q", str(path),
                  f"{job.ref}:refs/snapshots/{job.snapshot}"])
        finally:
            path.unlink()


@functools.cache
def node_store(pid: int) -> NodeStore:
    """This worker process's ``NodeStore`` (``pid`` keys it)."""
    base = Path(os.environ.get(NODE_DIR_ENV) or tempfile.gettempdir())
    for old in base.glob("conductor-node-*"):
        number = old.name.removeprefix("conductor-node-")
        if number.isdigit() and int(number) != pid and not psutil.pid_exists(int(number)):
            remove_copy(old)
    return NodeStore(base / f"conductor-node-{pid}")


def _git(args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    proc = subprocess.run(["git", *args], capture_output=True, env=env, check=False)
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()[-500:]
        raise ConductorError(f"cannot unpack the snapshot on {socket.gethostname()}: {detail}")
    return proc


def _unpack(job: NodeJob, bundle: bytes, base: Path) -> tuple[PrivateGit, Any]:
    """The attempt's copy, made from the process's store (which gets the snapshot first)."""
    store = node_store(os.getpid())
    store.add(job, bundle, base)
    snapshot = Snapshot(commit=job.snapshot, tree=job.tree, head=job.snapshot)
    copy = make_copy(store.private, snapshot, base / "work", base / "work.index",
                     branch=f"conductor/{job.worker_id}")
    return store.private, copy


def _execute(job: NodeJob, ctx: AttemptContext) -> Outcome:
    """Run the attempt's executor on an event loop of its own thread (see ``_in_thread``)."""
    if job.sandbox is not None:
        from conductor.sandbox import unavailable

        reason = unavailable()
        if reason is not None:
            return Outcome(ok=False, error=f"{socket.gethostname()} cannot sandbox: {reason}")
    if job.kind == "shell":
        from conductor.executors.shell import ShellExecutor

        return _in_thread(ShellExecutor().execute, ctx)
    from conductor.executors.claude import ClaudeExecutor

    spec = job.claude or ClaudeSpec()
    claude = ClaudeExecutor(
        cli_path=Path(spec.cli_path) if spec.cli_path else None,
        # As locally: the executor's own variables over the conductor's environment.
        extra_env={**job.secrets, **spec.extra_env},
        max_buffer_size=spec.max_buffer_size,
        api_retries=spec.api_retries,
        api_backoff=spec.api_backoff,
    )
    return _in_thread(claude.execute, ctx)


def _in_thread(fn: Callable[[AttemptContext], Awaitable[Outcome]], ctx: AttemptContext) -> Outcome:
    """``fn(ctx)`` on an event loop in a thread of its own.

    When the Ray task is cancelled (an interrupt raised in this thread) the loop's work is
    cancelled in turn, so commands and sessions end the way they do locally, before the
    interrupt goes on.
    """
    stop = threading.Event()
    box: list[Outcome | BaseException] = []

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while not stop.is_set():  # noqa: ASYNC110 - set from the task's own thread
                    await anyio.sleep(0.2)
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                box.append(await fn(ctx))
            finally:
                tg.cancel_scope.cancel()

    def target() -> None:
        try:
            anyio.run(main)
        except BaseException as exc:  # handed to the task's thread below
            box.append(exc)

    thread = threading.Thread(target=target, name=f"attempt {ctx.worker_id}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except BaseException:
        stop.set()
        thread.join(STOP_GRACE)
        raise
    if not box:
        return Outcome(ok=False, error="the attempt was cancelled on the node")
    found = box[0]
    if isinstance(found, Outcome):
        return found
    return Outcome(ok=False, error=f"executor error on {socket.gethostname()}: {found!r}")


def _relative(claimed: Sequence[str] | None, root: Path) -> list[str] | None:
    """A claim's absolute paths inside the node's copy, made repository-relative."""
    if claimed is None:
        return None
    out = []
    for entry in claimed:
        path = Path(entry)
        if path.is_absolute():
            with contextlib.suppress(ValueError):
                entry = path.relative_to(root).as_posix()
        out.append(entry)
    return out


def _logs(directory: Path, worker: str) -> dict[str, bytes]:
    """The attempt's log files by suffix, each cut to its last ``LOG_LIMIT`` bytes."""
    found: dict[str, bytes] = {}
    for path in sorted(directory.glob(f"{worker}.*")):
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - LOG_LIMIT))
            found[path.name.removeprefix(worker)] = fh.read()
    return found


def end_attempt(tag: str, worker: str) -> list[int]:
    """End every process on this node of attempt ``worker`` of the run tagged ``tag`` (what
    its command left running, or what a lost conductor's attempt left); return their pids."""
    from conductor.processes import end_tagged

    return end_tagged(tag, worker)
