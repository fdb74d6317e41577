"""Dependency-driven dispatch of a track's tasks, with resume.

``run_track(track, options)`` is the library entry point behind ``conductor run``:

1. take the track's run lock (one conductor per track), open the bus, replay it;
2. recover from whatever happened before: attempts that were in flight when a previous
   conductor died are recorded as WORKER_LOST, their orphaned processes ended, their locks
   broken and worker directories removed; tasks whose definition or ``inputs`` changed since
   they completed (hash per task, ``conductor.inputs``) with everything downstream of them,
   ``--from`` and everything downstream of it, and tasks that failed for good in an earlier
   run are reset (TASK_RESET) so they run again (``conductor.preview.stale_reasons``);
3. dispatch every task whose own dependencies are complete (or skipped), up to
   ``max_parallel``, never two tasks with overlapping ``files`` at once (unless shared), the
   task with the longest remaining path first;
4. for each attempt: TASK_DISPATCHED → path locks → worker directory → executor (with the
   task's timeout) → ``verify`` → TASK_COMPLETE or TASK_FAILED (+ TASK_RETRY) → locks released
   and worker directory removed;
5. end with TRACK_COMPLETE, TRACK_FAILED (what failed and why, what was blocked) or, on
   Ctrl-C/SIGTERM, TRACK_INTERRUPTED after terminating and recording running attempts.

Every state change is a bus message and the scheduler's own view is rebuilt by reading the bus
back (``conductor.state``), so a resumed run continues from exactly what was recorded.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc

from conductor.bus import Bus, Durability
from conductor.commands import append_log, run_command, tail
from conductor.contract import (
    ATTEMPT_ENV,
    BUS_ENV,
    PRIVATE_ENV,
    REPO_ENV,
    STATE_DIR_ENV,
    TAG_ENV,
    TASK_ENV,
    TOKEN_ENV,
    TRACK_ENV,
    WORKER_DIR_ENV,
    WORKER_ENV,
)
from conductor.copies import GitError
from conductor.errors import ConductorError, StateError, UserError
from conductor.executors.base import (
    AttemptContext,
    Executor,
    Needs,
    Outcome,
    Sandbox,
    needs_of,
)
from conductor.inputs import task_hash
from conductor.isolation import Isolation, Judgement, Workspace, printable
from conductor.landing import (
    CHANGED_IN_HEAD,
    LandConflict,
    change_to_dict,
    commit_message,
    finish_landing,
)
from conductor.limits import LimitGate, backoff_from_env, utc_text
from conductor.locks import PathLocks, RunLock, bus_notifier
from conductor.logs import ensure_logging, structlog  # structlog without rich
from conductor.messages import Message, MessageType
from conductor.paths import StateDir
from conductor.plan import is_shared, make_plan
from conductor.preview import select_tasks, stale_reasons
from conductor.processes import reap_attempt, reap_orphans, run_tag
from conductor.sandbox import INSTALL_HINT as SANDBOX_HINT
from conductor.sandbox import sandbox_wrapper
from conductor.sandbox import unavailable as sandbox_unavailable
from conductor.sentinel import LockSentinel
from conductor.state import (
    DONE,
    TaskStatus,
    TrackState,
    apply,
    load_state,
    save_cache,
)
from conductor.track import Agent, Task, Track
from conductor.watch import BusWatcher
from conductor.workers import (
    WorkerDirs,
    leftover_workers,
    new_secret,
    remove_worker_dir,
    worker_id,
)

if TYPE_CHECKING:
    from conductor.executors.api_errors import ApiStop

log = structlog.get_logger("conductor.scheduler")

ExecutorFactory = Callable[[Task], Executor]
"""Picks the executor of a task; the default runs ``run:`` in a shell and the rest in Claude."""

RunStatus = Literal["complete", "failed", "interrupted", "budget", "rejected", "auth"]

Approver = Callable[[str, dict[str, Any]], Awaitable[tuple[bool, str]]]
"""Asks a person: given the plan as text and as data, returns (approved, reason)."""

CACHE_EVERY = 5000
"""Messages between rewrites of the status cache during a run."""

RESCAN_EVERY = 30.0
"""Seconds between sweeps of the bus directory for stray files during a run."""

EXIT_CODES: dict[RunStatus, int] = {
    "complete": 0,
    "failed": 1,
    "budget": 4,
    "rejected": 6,
    "auth": 7,
    "interrupted": 130,
}


@dataclass(frozen=True)
class RunOptions:
    """How to run a track."""

    repo: Path = Path(".")
    """The repository checkout tasks run in."""
    state_root: Path | None = None
    """Root of run-state directories (default ``repo/.conductor``)."""
    max_parallel: int | None = None
    """Override the track's ``max_parallel`` (CLI ``-j``)."""
    from_task: str | None = None
    """Rerun this task and everything downstream of it."""
    only: tuple[str, ...] = ()
    """Run only these tasks and what they depend on (``conductor.preview.select_tasks``);
    empty runs every task."""
    durability: Durability = Durability.NONE
    """Bus durability: ``none`` survives kill -9, ``fsync`` survives power loss."""
    executors: ExecutorFactory | None = None
    """Executor per task; None uses the built-in shell and Claude executors."""
    wait_for_approval: bool = False
    """Dispatch nothing until a person approves this run (``conductor.approval``); the
    track's ``approval: required`` asks the same."""
    adhoc: bool = False
    """Infer agents that tasks name but nobody defined (``conductor.inference``), as the
    track's ``adhoc: true`` does; otherwise such a name is an error."""
    agent_overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    """Agent name → fixed ``role`` / ``goal`` for inference (``--agent-role``/``--agent-goal``)."""
    approver: Approver | None = None
    """Asks a person at the approval pause (the CLI's prompt on a TTY); an APPROVE or REJECT
    on the bus answers too, whichever comes first."""
    handle_signals: bool = True
    """Turn SIGINT/SIGTERM into a clean interruption (main thread only)."""
    rescan_interval: float = 0.5
    """Seconds between bus rescans (the truth when file-system events are lost)."""
    executor: Literal["local", "ray"] | None = None
    """Where attempts run (CLI ``--executor``); None uses ray when ``ray_address`` is given,
    else the track's ``executor``. Ignored when ``executors`` is given."""
    ray_address: str | None = None
    """The Ray cluster to run on with ``executor: ray`` (CLI ``--address``); None uses
    ``RAY_ADDRESS``, else a cluster started on this machine (``conductor.distributed``)."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended."""

    track: str
    """The track id."""
    status: RunStatus
    """complete, failed, interrupted, budget or rejected."""
    completed: list[str] = field(default_factory=list)
    """Tasks complete at the end (this run or an earlier one)."""
    skipped: list[str] = field(default_factory=list)
    """Tasks a person skipped."""
    failed: dict[str, str] = field(default_factory=dict)
    """Tasks that failed for good, with the reason."""
    blocked: list[str] = field(default_factory=list)
    """Tasks that could not start because something upstream failed."""
    pending: list[str] = field(default_factory=list)
    """Tasks never started (interrupted, budget)."""
    cost_usd: float = 0.0
    """Cost recorded on the bus for the whole track."""
    duration: float = 0.0
    """Seconds this run took."""
    state_dir: Path | None = None
    """The track's run-state directory."""
    reason: str = ""
    """Why a rejected run was rejected, or why the API refused a run stopped with ``auth``
    (naming the variables that carry the credentials)."""

    @property
    def exit_code(self) -> int:
        """The documented exit code for this outcome."""
        return EXIT_CODES[self.status]


def default_executors(
    executor: Literal["local", "ray"] = "local", address: str | None = None
) -> ExecutorFactory:
    """Shell for tasks with ``run:``, a Claude session for the others (created lazily);
    with ``executor="ray"`` each attempt runs as a Ray task on a cluster at ``address``."""
    from conductor.executors.shell import ShellExecutor

    shell = ShellExecutor()
    claude: list[Executor] = []

    def pick(task: Task) -> Executor:
        if task.run:
            return shell
        if not claude:
            from conductor.executors.claude import claude_executor_from_env

            claude.append(claude_executor_from_env())
        return claude[0]

    if executor == "ray":
        from conductor.distributed import ray_executors

        return ray_executors(pick, address)
    return pick


async def run_track(track: Track, options: RunOptions | None = None) -> RunResult:
    """Run (or resume) ``track``; raises ``LockHeldError`` if another conductor runs it.

    Before anything is written it refuses, with a ``UserError``, what ``conductor run`` refuses:
    an unknown ``from_task``, a worker template that does not render, an agent that does not
    resolve, copies outside git, a sandbox that cannot be had (``Scheduler._preflight``).
    """
    ensure_logging()  # log lines go to stderr even when the caller set nothing up
    _use_pidfd_child_watcher()
    scheduler = Scheduler(track, options or RunOptions())
    try:
        return await scheduler.run()
    except OSError as exc:
        if not _cannot_write(exc, scheduler.sd.root):
            raise
        raise _unwritable(exc, scheduler.sd.root) from exc


def _use_pidfd_child_watcher() -> None:
    """On Python 3.11, wait for children with pidfds instead of a thread per child.

    asyncio's default there (``ThreadedChildWatcher``) starts a thread for every child process;
    with hundreds of short shell tasks those threads cost more than the tasks. Python 3.12+
    uses pidfds by default, and this does nothing.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    import asyncio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        if isinstance(policy.get_child_watcher(), asyncio.PidfdChildWatcher):
            return
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:
            return  # the kernel has no pidfds
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        policy.set_child_watcher(watcher)


class Scheduler:
    """One run of one track. Use ``run_track``; this class holds the run's state."""

    def __init__(self, track: Track, options: RunOptions) -> None:
        if options.only:
            track = select_tasks(track, options.only).track
        self.track = track
        self.options = options
        self.repo = options.repo.resolve()
        self.sd = StateDir.for_track(self.repo, track.id, options.state_root)
        self.max_parallel = max(1, options.max_parallel or track.max_parallel)
        self.executors = options.executors or default_executors(
            options.executor or ("ray" if options.ray_address else track.executor),
            options.ray_address,
        )
        self.plan = make_plan(track)
        self.classes = self.plan.classes
        self.class_running = [0] * len(self.classes.members)
        """Running attempts per conflict class: a task may start when no class it meets has one."""
        self.hashes = {t.id: self._hash(t.id) for t in track.tasks}
        self.shared: dict[str, list[str]] = {t.id: list(track.shared_files) for t in track.tasks}
        for group in track.parallel_groups:
            for tid in group.tasks:
                self.shared[tid].extend(group.shared_resources)
        self.tasks = {t.id: t for t in track.tasks}
        self.dependents: dict[str, list[str]] = {t.id: [] for t in track.tasks}
        for t in track.tasks:
            for dep in t.depends_on:
                self.dependents[dep].append(t.id)
        self.state = TrackState(track.id)
        self.running: dict[str, anyio.CancelScope] = {}
        self.unsatisfied: dict[str, int] = {}
        self.ready: list[tuple[float, int, str]] = []
        self.order = {tid: i for i, tid in enumerate(self.tasks)}
        self.live_cost: dict[str, float] = {}
        self.skip_requested: set[str] = set()
        self.announced_blocked: set[str] = set()
        self.interrupted = False
        self.budget_hit = False
        self._wake = anyio.Event()
        self._tracking = False
        self._announced_wait = False
        self._approval_plan: dict[str, Any] = {}
        self.limits = LimitGate(backoff=backoff_from_env())
        """Holds dispatch while the API is limited (``conductor.limits``)."""
        self.halted: ApiStop | None = None
        """The API refused the credentials: the run stops (exit 7)."""
        self._limit_logged: float | None = None
        self.gated = False
        """This run asked for approval: nothing is dispatched before an APPROVE."""
        self._cached_at = 0
        self._bus: Bus | None = None
        self._locks: PathLocks | None = None
        self._workers: WorkerDirs | None = None
        self.base_env = dict(os.environ)
        """The environment children inherit: this process's, as the run started."""
        self.isolation = Isolation(self.repo, self.sd, track.id)
        """Copies, verdicts and landings of attempts that work in a copy."""
        self._kept: dict[str, str] = {}
        """Task → worker whose failed copy is kept for inspection."""

    # --- plumbing ---------------------------------------------------------------------

    @property
    def bus(self) -> Bus:
        assert self._bus is not None, "bus used before the run started"
        return self._bus

    @property
    def locks(self) -> PathLocks:
        assert self._locks is not None, "locks used before the run started"
        return self._locks

    @property
    def workers(self) -> WorkerDirs:
        assert self._workers is not None, "worker directories used before the run started"
        return self._workers

    def post(
        self,
        mtype: str,
        *,
        task: str | None = None,
        worker: str | None = None,
        attempt: int | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Message:
        """Post a message and fold it (and anything before it) into the state."""
        msg = self.bus.post(mtype, task=task, worker=worker, attempt=attempt, payload=payload)
        if msg.seq == self.state.last_seq + 1:
            self._apply(msg)  # nothing came between: no need to read it back
        else:
            self.sync()
        return msg

    def sync(self) -> None:
        """Apply every message published since the last sync."""
        for msg in self.bus.read(after=self.state.last_seq):
            self._apply(msg)

    def _apply(self, msg: Message) -> None:
        apply(self.state, msg, self._on_transition if self._tracking else None)
        self._observe(msg)
        if msg.seq - self._cached_at >= CACHE_EVERY:
            # Keep `conductor status` fast even after this conductor is killed.
            save_cache(self.sd.cache, self.state)
            self._cached_at = msg.seq

    def _observe(self, msg: Message) -> None:
        """React to messages that are not plain state: skips of running tasks, live costs."""
        if msg.type == MessageType.PROGRESS and msg.worker is not None:
            cost = msg.payload.get("cost_usd")
            if isinstance(cost, int | float) and not isinstance(cost, bool):
                self.live_cost[msg.worker] = float(cost)
        elif msg.type == MessageType.SKIP and msg.task in self.running:
            self.skip_requested.add(msg.task)
            self.running[msg.task].cancel()
        elif msg.type == MessageType.NOTE:
            log.info("note", task_id=msg.task, text=msg.payload.get("text"))

    def kick(self) -> None:
        """Wake the dispatch loop."""
        self._wake.set()

    # --- readiness --------------------------------------------------------------------

    def _on_transition(self, tid: str, old: TaskStatus, new: TaskStatus) -> None:
        if tid not in self.tasks:
            return
        was_done, is_done = old in DONE, new in DONE
        if was_done != is_done:
            delta = -1 if is_done else 1
            for dep in self.dependents[tid]:
                self.unsatisfied[dep] += delta
                if self.unsatisfied[dep] == 0:
                    self._push(dep)
        if new is TaskStatus.PENDING:
            self._push(tid)
        if new is TaskStatus.FAILED:
            self._announce_blocked(tid)

    def _push(self, tid: str) -> None:
        if self.state.task(tid).status is TaskStatus.PENDING and self.unsatisfied[tid] == 0:
            heapq.heappush(self.ready, (-self.plan.priority.get(tid, 0.0), self.order[tid], tid))

    def _init_readiness(self) -> None:
        for tid, task in self.tasks.items():
            self.unsatisfied[tid] = sum(
                1 for dep in task.depends_on if self.state.task(dep).status not in DONE
            )
        for tid in self.tasks:
            self._push(tid)
        self._tracking = True

    def _announce_blocked(self, failed: str) -> None:
        for tid in sorted(self.track.descendants(failed), key=self.order.__getitem__):
            if (
                tid not in self.announced_blocked
                and self.state.task(tid).status is TaskStatus.PENDING
            ):
                self.announced_blocked.add(tid)
                self.bus.post(MessageType.BLOCKED, task=tid, payload={"because": failed})

    def spent(self) -> float:
        """Cost recorded so far, including live costs of running sessions."""
        return self.state.cost_usd + sum(self.live_cost.values())

    def _budget_left(self) -> float | None:
        if self.track.budget_usd is None:
            return None
        return self.track.budget_usd - self.spent()

    def _attempt_budget(self, task: Task) -> float | None:
        """What an attempt at ``task`` may spend: the track's unspent budget, and what the
        task's earlier attempts under its current definition left of its ``max_budget_usd``
        (so a retry never gets a fresh cap)."""
        caps = [self._budget_left()]
        if task.max_budget_usd is not None:
            spent = self.state.task(task.id).spent_by_hash.get(self.hashes[task.id], 0.0)
            caps.append(float(task.max_budget_usd) - spent)
        known = [c for c in caps if c is not None]
        return min(known) if known else None

    def _dispatch(self, tg: anyio.abc.TaskGroup) -> None:
        if self.gated and self.state.approval != "approved":
            return
        if self.halted is not None or self._limited():
            return
        left = self._budget_left()
        if left is not None and left <= 0:
            if not self.budget_hit and self.ready:
                self.budget_hit = True
                self.post(
                    MessageType.BUDGET_EXCEEDED,
                    payload={"budget_usd": self.track.budget_usd, "spent_usd": self.spent()},
                )
            return
        deferred: list[tuple[float, int, str]] = []
        while self.ready and len(self.running) < self.max_parallel:
            entry = heapq.heappop(self.ready)
            tid = entry[2]
            if (
                tid in self.running
                or self.state.task(tid).status is not TaskStatus.PENDING
                or self.unsatisfied[tid]
            ):
                continue
            c = self.classes.of_task.get(tid)
            if c is not None:
                if any(self.class_running[d] for d in self.classes.meets[c]):
                    deferred.append(entry)
                    continue
                self.class_running[c] += 1
            self.running[tid] = anyio.CancelScope()
            tg.start_soon(self._attempt, tid, name=f"attempt {tid}")
        # Equal entries are dropped: a task is pushed again whenever it becomes ready.
        for entry in deferred:
            heapq.heappush(self.ready, entry)

    # --- the run ----------------------------------------------------------------------

    async def run(self) -> RunResult:
        """Run the track to its end; see the module docstring."""
        started = time.monotonic()
        needs_copies = self._preflight()
        self.sd.ensure()
        with RunLock(self.sd, self.track.id):
            self._bus = Bus.for_state(self.sd, self.track.id, durability=self.options.durability)
            try:
                self._locks = PathLocks(self.sd.locks, notify=bus_notifier(self.bus))
                structlog.contextvars.bind_contextvars(track=self.track.id)
                self._load_state()
                self.post(
                    MessageType.TRACK_STARTED,
                    payload={
                        "pid": os.getpid(),
                        "host": socket.gethostname(),
                        "tasks": len(self.tasks),
                        "max_parallel": self.max_parallel,
                        "from": self.options.from_task,
                        "only": list(self.options.only) or None,
                        "source": self._source(),
                        "run": self.state.runs + 1,
                    },
                )
                if needs_copies:
                    self.isolation.prepare()
                self._recover()
                self._workers = WorkerDirs(self.sd.workers, new_secret(self.sd.workers))
                self._reset_stale()
                self._init_readiness()
                await self._infer_agents()
                self._ask_approval()
                try:
                    with self._sentinel(needs_copies):
                        await self._loop()
                except BaseExceptionGroup as group:
                    raise _state_error(group, self.sd.root) or group from group
                return self._finish(time.monotonic() - started)
            finally:
                if self._workers is not None:
                    self._workers.close()
                save_cache(self.sd.cache, self.state)
                self.bus.close()
                structlog.contextvars.unbind_contextvars("track")

    def _preflight(self) -> bool:
        """Refuse to start what cannot run (an unknown ``from_task``, a worker template that
        does not render, an agent that does not resolve) or cannot run safely (copies outside
        git, no sandbox) before anything is written; True when some attempt will need a copy.

        The template and agent checks are ``conductor validate``'s
        (``conductor.templates.check_templates``), for tracks with tasks that have no ``run``.
        """
        if self.options.from_task is not None:
            self.track.task(self.options.from_task)  # a UserError with a suggestion
        if any(not task.run or task.review is not None for task in self.track.tasks):
            from conductor.templates import check_templates

            adhoc = self.options.adhoc and not self.track.adhoc
            check_templates(
                self.track.model_copy(update={"adhoc": True}) if adhoc else self.track, self.repo
            )
        needs = [needs_of(self.executors(t), t) for t in self.track.tasks]
        copies = any(n.copy for n in needs)
        if copies:
            _ = self.isolation.checkout  # a UserError when the checkout is not a git repository
        if any(n.sandbox for n in needs):
            if not self.track.sandbox:
                log.warning(
                    "sandbox: off: attempts in a copy run unsandboxed; their commands can "
                    "write anywhere you can, including the bus"
                )
            else:
                reason = sandbox_unavailable()
                if reason is not None:
                    raise UserError(
                        f"cannot sandbox attempts: {reason}; {SANDBOX_HINT}",
                        path=self.track.source,
                    )
        return copies

    def _sentinel(self, active: bool) -> contextlib.AbstractContextManager[object]:
        """While attempts run in copies, end any of their processes that hold one of
        conductor's kernel locks (``conductor.sentinel``)."""
        if not active:
            return contextlib.nullcontext()

        def killed(pid: int, path: str) -> None:
            log.warning("ended an attempt's process that held conductor's lock", pid=pid, path=path)

        files = [
            self.sd.bus / ".lock",
            self.sd.locks / ".guard",
            self.sd.root.parent / ".land.lock",
            self.sd.run_lock,
        ]
        return LockSentinel(files, run_tag(self.sd.bus), on_kill=killed)

    def _load_state(self) -> None:
        self._rescan()
        self.state = load_state(self.bus, self.sd.cache, self.track.id)

    def _rescan(self) -> None:
        """Quarantine files in the bus directory that are not messages (the bus warns)."""
        moved = self.bus.rescan()
        if moved:
            log.warning("quarantined stray files in the bus", files=[str(p) for p in moved])

    def _recover(self) -> None:
        """Record attempts a dead conductor left in flight; end their orphans; clean up.

        An attempt whose LANDING was recorded is finished instead when its commit reached
        ``HEAD``: its TASK_COMPLETE is written now, so accepted work is never redone.
        """
        orphans = reap_orphans(self.sd.bus)
        for ts in list(self.state.tasks.values()):
            if ts.in_flight is None or ts.status is not TaskStatus.RUNNING:
                continue
            wid = ts.worker or worker_id(ts.id, ts.in_flight)
            reaped = self._reap_session(ts.id, ts.started)
            landed = ts.landing is not None and self._finish_landing(
                ts.id, wid, ts.in_flight, ts.landing
            )
            if not landed:
                self.post(
                    MessageType.WORKER_LOST,
                    task=ts.id,
                    worker=wid,
                    attempt=ts.in_flight,
                    payload={
                        "reason": "the conductor ended while the attempt ran",
                        "reaped": reaped or bool(orphans),
                    },
                )
            self.locks.break_worker(wid, reason=f"worker {wid} was lost")
            remove_worker_dir(self.sd.workers / wid)
        if orphans:
            log.warning("ended orphaned worker processes", pids=orphans)
        for leftover in leftover_workers(self.sd.workers):
            remove_worker_dir(leftover)
        self.locks.break_dead()
        for tid, ts in list(self.state.tasks.items()):
            if ts.reverting is not None:
                self._finish_revert(tid, ts.reverting)
        for wid in self.isolation.leftovers():
            self.isolation.discard(wid)
            self._post_copy_removed(wid, kept=False, reason="left by an earlier run")
        self.isolation.drop_snapshot_refs()

    def _finish_landing(self, tid: str, wid: str, attempt: int, landing: dict[str, Any]) -> bool:
        """Complete a landing a killed conductor began; True if it had landed."""
        try:
            landed = finish_landing(self.isolation.checkout, landing)
        except (ConductorError, OSError) as exc:
            log.warning("cannot finish an interrupted landing", task_id=tid, error=str(exc))
            return False
        if not landed:
            return False
        keys = ("hash", "cost_usd", "duration", "summary", "files_changed", "commit")
        payload: dict[str, Any] = {key: landing[key] for key in keys if key in landing}
        self.post(
            MessageType.TASK_COMPLETE,
            task=tid,
            worker=wid,
            attempt=attempt,
            payload={**payload, "recovered": "the landing was finished on resume"},
        )
        return True

    def _finish_revert(self, tid: str, payload: dict[str, Any]) -> None:
        """Finish a ``conductor revert`` that was cut off (``conductor.revert``)."""
        from conductor.revert import finish_revert

        try:
            finish_revert(self.isolation.checkout, self.bus, tid, payload)
        except (ConductorError, OSError) as exc:
            log.warning("cannot finish an interrupted revert", task_id=tid, error=str(exc))
        self.sync()

    def _reap_session(self, tid: str, started: dict[str, Any] | None) -> bool:
        """End what an attempt recorded in WORKER_STARTED, if it still runs."""
        if not started or tid not in self.tasks:
            return False
        recover = getattr(self.executors(self.tasks[tid]), "recover", None)
        return bool(recover(started)) if callable(recover) else False

    def _rel(self, path: Path) -> str:
        """``path`` relative to the checkout when it is inside it, else absolute."""
        try:
            return path.relative_to(self.repo).as_posix()
        except ValueError:
            return str(path)

    def _source(self) -> str | None:
        """The track file, relative to the checkout when inside it (``bus post`` reads it)."""
        if self.track.source is None:
            return None
        return self._rel(Path(os.path.abspath(self.track.source)))

    def _hash(self, tid: str) -> str:
        """The task's hash now: its definition and the content of its ``inputs``."""
        return task_hash(self.track, tid, self.repo, (self.sd.root.parent,))

    def _reset_stale(self) -> None:
        """Reset changed tasks (and downstream), ``--from`` (and downstream), failed tasks
        (``conductor.preview.stale_reasons``)."""
        reasons = stale_reasons(self.track, self.state, self.hashes, self.options.from_task)
        for tid in self.tasks:  # file order keeps the bus readable
            reason = reasons.get(tid)
            if reason is None:
                continue
            ts = self.state.task(tid)
            if ts.status is TaskStatus.PENDING and not ts.failures:
                continue
            if ts.status is TaskStatus.SKIPPED and tid != self.options.from_task:
                continue
            self.post(MessageType.TASK_RESET, task=tid, payload={"reason": reason})

    async def _loop(self) -> None:
        async with anyio.create_task_group() as tg:
            watcher = BusWatcher(self.bus, rescan_interval=self.options.rescan_interval)
            async with watcher:
                tg.start_soon(self._watch, watcher, name="bus watcher")
                tg.start_soon(self._rescan_every, RESCAN_EVERY, name="bus rescan")
                if self.options.handle_signals:
                    tg.start_soon(self._signals, tg.cancel_scope, name="signals")
                if self.gated:
                    tg.start_soon(self._approval_answers, name="approval")
                if self.state.limit_until is not None:  # a wait an earlier run began
                    self.limits.until = self.state.limit_until
                while True:
                    self.sync()
                    if self.interrupted or (self.halted is not None and not self.running):
                        break
                    self._dispatch(tg)
                    if not self.running and not self._waiting() and not self._limited():
                        break
                    with anyio.move_on_after(self.limits.remaining() or None):
                        await self._wake.wait()  # or until the API's limit resets
                    self._wake = anyio.Event()
                tg.cancel_scope.cancel()

    def _limited(self) -> bool:
        """True while a LIMIT_WAIT holds dispatch and something waits to start; says once
        per wait until when."""
        until = self.limits.until
        if self.limits.remaining() <= 0:
            if self._limit_logged is not None:
                log.info("API limit over; dispatching again")
                self._limit_logged = None
            return False
        if not self.ready:
            return False
        if self._limit_logged != until:
            self._limit_logged = until
            log.warning(
                "API limit: starting nothing new until it resets (Ctrl-C stops; run resumes)",
                until=utc_text(self.limits.until or 0.0),
            )
        return True

    def _defer(
        self, task: Task, attempt: int, wid: str, outcome: Outcome, common: dict[str, Any]
    ) -> None:
        """An attempt stopped on the API: TASK_DEFERRED (not counted), then wait out a limit
        (LIMIT_WAIT) or stop the run on refused credentials (``conductor.limits``)."""
        stop = outcome.api_stop
        assert stop is not None
        error = outcome.error or stop.describe()
        self.post(
            MessageType.TASK_DEFERRED,
            task=task.id,
            worker=wid,
            attempt=attempt,
            payload={"error": error, "counted": False, **common},
        )
        if stop.stops_run:
            if self.halted is None:
                self.halted = stop
                log.error("stopping the run", error=error)
                for scope in self.running.values():
                    scope.cancel()
            return
        self.limits.hit(stop)
        self.post(MessageType.LIMIT_WAIT, task=task.id, payload=self.limits.payload(stop, task.id))

    def _waiting(self) -> bool:
        """True while the run should idle rather than end: waiting for a person's answer."""
        if self.gated and self.state.approval == "pending":
            if not self._announced_wait:
                self._announced_wait = True
                log.info(
                    "waiting for approval",
                    hint=f"conductor approve {self.track.id} / conductor reject {self.track.id}",
                )
            return True
        return False

    async def _infer_agents(self) -> None:
        """With ``adhoc``, give each task naming an agent defined nowhere an inferred one:
        the bus's when an earlier run inferred it, else from one batched question."""
        if not (self.options.adhoc or self.track.adhoc):
            return
        from conductor.inference import infer, missing

        track = self.track.model_copy(
            update={"adhoc": True, "inferred_agents": self._inferred_on_bus()}
        )
        needed = missing(track, self.repo)
        if needed:
            result = await infer(
                track,
                self.repo,
                needed,
                overrides=self.options.agent_overrides,
                max_budget_usd=self._budget_left(),
                log_path=self.sd.logs / "agents.inference.log",
                state_root=self.sd.root.parent,
            )
            share = result.cost_usd / len(result.agents)
            for name, agent in result.agents.items():
                payload: dict[str, Any] = {
                    "agent": agent.model_dump(exclude_none=True),
                    "cost_usd": share,
                    "tasks": [task.id for task in needed[name]],
                }
                if name in result.fallbacks:
                    payload["fallback"] = result.fallbacks[name]
                    log.warning("agent fallback", agent=name, reason=result.fallbacks[name])
                else:
                    log.info("agent inferred", agent=name, role=agent.role)
                self.post(MessageType.AGENT_INFERRED, payload=payload)
        fixed = self.options.agent_overrides
        inferred = {
            name: agent.model_copy(update=fixed.get(name, {}))
            for name, agent in self._inferred_on_bus().items()
        }
        self.track = track.model_copy(update={"inferred_agents": inferred})

    def _inferred_on_bus(self) -> dict[str, Agent]:
        """The agents runs inferred, as recorded on the bus (unreadable entries skipped)."""
        out: dict[str, Agent] = {}
        for name, definition in self.state.inferred_agents.items():
            try:
                out[name] = Agent.model_validate(definition)
            except ValueError:
                log.warning("unreadable AGENT_INFERRED on the bus; inferring again", agent=name)
        return out

    def _ask_approval(self) -> None:
        """With approval asked for and something to run, post APPROVAL_REQUESTED with the
        plan of this run and hold every dispatch until an answer posted after it."""
        if not (self.options.wait_for_approval or self.track.approval == "required"):
            return
        from conductor.approval import summary

        to_run = [tid for tid in self.tasks if self.state.task(tid).status is TaskStatus.PENDING]
        if not to_run:
            return
        self._approval_plan = summary(self.track, self.repo, to_run)
        self.post(MessageType.APPROVAL_REQUESTED, payload=self._approval_plan)
        self.gated = True

    async def _approval_answers(self) -> None:
        """Ask the approver and end the wait at ``approval_timeout``, whichever answers first;
        an answer from the bus cancels both (the loop cancels this task when the run ends)."""
        async with anyio.create_task_group() as tg:
            if self.options.approver is not None:
                tg.start_soon(self._ask_approver)
            timeout = self.track.approval_timeout
            if timeout is not None:
                await anyio.sleep(timeout)
                self._answer(False, f"nobody approved the run within {timeout:g}s", "timeout")
                tg.cancel_scope.cancel()

    async def _ask_approver(self) -> None:
        from conductor.approval import render

        assert self.options.approver is not None
        plan = self._approval_plan
        approved, reason = await self.options.approver(render(self.track.id, plan), plan)
        self._answer(approved, reason, "prompt")

    def _answer(self, approved: bool, reason: str, by: str) -> None:
        """Post the answer unless one is already on the bus."""
        self.sync()
        if self.state.approval != "pending":
            return
        kind = MessageType.APPROVE if approved else MessageType.REJECT
        self.post(kind, payload={"reason": reason, "by": by})
        self.kick()

    async def _watch(self, watcher: BusWatcher) -> None:
        """Wake the loop when the bus holds messages it has not applied (another process's,
        or an executor's); the scheduler's own posts are applied as it writes them."""
        seen = self.bus.last_seq()
        while True:
            await watcher.wait(seen)
            seen = self.bus.last_seq()
            if seen > self.state.last_seq:
                self.kick()

    async def _rescan_every(self, seconds: float) -> None:
        while True:
            await anyio.sleep(seconds)
            self._rescan()

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.warning("interrupted", signal=signal.Signals(signum).name)
                self.interrupted = True
                for attempt_scope in self.running.values():
                    attempt_scope.cancel()
                self.kick()
                return

    # --- one attempt ------------------------------------------------------------------

    async def _attempt(self, tid: str) -> None:
        scope = self.running[tid]
        task = self.tasks[tid]
        ts = self.state.task(tid)
        attempt = ts.attempts + 1
        wid = worker_id(tid, attempt)
        feedback = ts.feedback if ts.failures else None
        structlog.contextvars.bind_contextvars(task_id=tid, worker_id=wid)
        if task.inputs:  # its dependencies are done: hash the inputs this attempt will see
            self.hashes[tid] = self._hash(tid)
        self.post(
            MessageType.TASK_DISPATCHED,
            task=tid,
            worker=wid,
            attempt=attempt,
            payload={"hash": self.hashes[tid], "name": task.name, "executor": _kind(task)},
        )
        started = time.monotonic()
        log_path = self.sd.logs / f"{wid}.log"
        outcome: Outcome | None = None
        run = _AttemptRun(task=task, attempt=attempt, worker=wid, started=started)
        try:
            with scope:
                outcome = await self._execute(run, feedback, log_path)
        finally:
            # No await below: a cancelled attempt still records its end and cleans up.
            try:
                self._record(task, attempt, wid, outcome, time.monotonic() - started, log_path)
            finally:
                if run.needs.locks:
                    self.locks.release_all(wid)
                self.workers.remove(wid)
                self._close_copy(run, outcome)
                self.live_cost.pop(wid, None)
                del self.running[tid]
                if (c := self.classes.of_task.get(tid)) is not None:
                    self.class_running[c] -= 1
                self.kick()

    def _close_copy(self, run: _AttemptRun, outcome: Outcome | None) -> None:
        """Remove the attempt's copy; keep a failed one. An attempt that ended (accepted or
        not) supersedes the task's older kept copy, which is removed."""
        ws = run.workspace
        if ws is None:
            return
        keep = outcome is not None and not outcome.ok
        tid = run.task.id
        if outcome is not None:
            older = self._kept.pop(tid, None)
            if older is not None and self.isolation.discard(older):
                self._post_copy_removed(older, kept=False)
        try:
            self.isolation.close(ws, keep=keep)
        except (ConductorError, OSError) as exc:
            log.warning("cannot remove the attempt's copy", error=str(exc), path=str(ws.path))
        if keep:
            self._kept[tid] = run.worker
        self._post_copy_removed(run.worker, kept=keep)

    def _post_copy_removed(self, wid: str, *, kept: bool, reason: str | None = None) -> None:
        """COPY_REMOVED for worker ``wid``'s copy (its task and attempt read from its id)."""
        task, _, attempt = wid.rpartition(".")
        payload: dict[str, Any] = {"path": self._rel(self.isolation.dir / wid), "kept": kept}
        if reason:
            payload["reason"] = reason
        self.post(
            MessageType.COPY_REMOVED,
            task=task if task in self.tasks else None,
            worker=wid,
            attempt=int(attempt) if attempt.isdigit() else None,
            payload=payload,
        )

    async def _execute(self, run: _AttemptRun, feedback: str | None, log_path: Path) -> Outcome:
        task, attempt, wid = run.task, run.attempt, run.worker
        executor = self.executors(task)
        run.needs = needs = needs_of(executor, task)
        if needs.locks:
            shared = self.shared.get(task.id, ())
            for path in task.files:
                if is_shared(path, shared):
                    continue  # declared shared: tasks may hold it together, so nobody locks it
                try:
                    self.locks.acquire(path, worker=wid, task=task.id, attempt=attempt)
                except ConductorError as exc:
                    return Outcome(ok=False, error=f"cannot lock {path}: {exc}")
        worker_dir, token = self.workers.create(task.id, attempt)
        env = {
            TRACK_ENV: self.track.id,
            TASK_ENV: task.id,
            ATTEMPT_ENV: str(attempt),
            WORKER_ENV: wid,
        }
        ws: Workspace | None = None
        if needs.copy:
            try:
                ws = await anyio.to_thread.run_sync(self.isolation.open, wid)
            except (ConductorError, OSError) as exc:
                return Outcome(ok=False, error=f"cannot make the attempt's copy: {exc}")
            run.workspace = ws
            snap = ws.copy.snapshot
            self.post(
                MessageType.COPY_MADE,
                task=task.id,
                worker=wid,
                attempt=attempt,
                payload={
                    "path": self._rel(ws.path),
                    "snapshot": snap.commit,
                    "head": snap.head,
                    "uncommitted": not snap.clean,
                    "seconds": round(time.monotonic() - run.started, 3),
                },
            )
            # An attempt in a copy never learns where the bus is, and holds no token: the
            # variables are blanked, not just left out, so this process's own do not leak.
            env.update({name: "" for name in PRIVATE_ENV})
            env.update({TAG_ENV: run_tag(self.sd.bus), "TMPDIR": str(ws.tmp)})
            # Python's byte-code caches would count as changes of the copy.
            env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
            token = ""
        else:
            env.update(
                {
                    TOKEN_ENV: token,
                    WORKER_DIR_ENV: str(worker_dir),
                    STATE_DIR_ENV: str(self.sd.root.parent),
                    BUS_ENV: str(self.sd.bus),
                    REPO_ENV: str(self.repo),
                }
            )
        sandbox = None
        if needs.sandbox and self.track.sandbox:
            sandbox = Sandbox(
                allowed_domains=tuple(self.track.network.allowed_domains),
                hidden=(self.sd.root.parent,),
            )

        def post(mtype: str, *, payload: dict[str, Any] | None = None) -> Message:
            return self.bus.post(mtype, task=task.id, worker=wid, attempt=attempt, payload=payload)

        ctx = AttemptContext(
            track=self.track,
            task=task,
            attempt=attempt,
            worker_id=wid,
            repo=self.repo,
            worker_dir=worker_dir,
            log_path=log_path,
            state_root=self.sd.root,
            post=post,
            feedback=feedback,
            token=token,
            env=env,
            budget_left_usd=self._attempt_budget(task),
            locks=self.locks,
            bus=self.bus,
            workdir=ws.path if ws is not None else None,
            tmp_dir=ws.tmp if ws is not None else None,
            sandbox=sandbox,
        )
        try:
            outcome = await self._run_executor(ctx, executor)
        finally:
            if ws is not None:
                # Nothing the attempt started outlives it, a cancelled attempt's included
                # (a timeout, a SKIP, Ctrl-C), nor goes on changing its copy while it is judged.
                with anyio.CancelScope(shield=True):
                    ended = await anyio.to_thread.run_sync(reap_attempt, self.sd.bus, wid)
                if ended:
                    log.warning("ended processes the attempt left running", pids=ended)
        if ws is not None:
            outcome = await self._judge(ctx, run, ws, outcome)
        if outcome.ok and task.verify:
            outcome = await self._verify(ctx, outcome)
        if outcome.ok and ws is not None and task.reviewed:
            outcome = await self._review(ctx, run, ws, outcome)
        if outcome.ok and ws is not None:
            with anyio.CancelScope(shield=True):
                outcome = await anyio.to_thread.run_sync(self._land, ctx, run, ws, outcome)
        return outcome

    async def _run_executor(self, ctx: AttemptContext, executor: Executor) -> Outcome:
        timeout = ctx.task.timeout
        try:
            with anyio.move_on_after(timeout) as scope:
                return await executor.execute(ctx)
        except ConductorError as exc:
            return Outcome(ok=False, error=str(exc), retryable=False)
        except OSError as exc:
            if _cannot_write(exc, self.sd.root):
                raise  # an unwritable state directory fails every attempt: the run ends (exit 5)
            log.exception("executor error")
            return Outcome(ok=False, error=f"executor error: {exc!r}")
        except Exception as exc:  # an executor bug must fail the attempt, not the run
            log.exception("executor error")
            return Outcome(ok=False, error=f"executor error: {exc!r}")
        assert scope.cancelled_caught
        return Outcome(ok=False, timed_out=True, error=f"timed out after {timeout:g}s")

    async def _judge(
        self, ctx: AttemptContext, run: _AttemptRun, ws: Workspace, outcome: Outcome
    ) -> Outcome:
        """Judge the attempt by what its copy changed (``conductor.isolation``)."""
        try:
            judgement = await anyio.to_thread.run_sync(
                self.isolation.judge, ws, ctx.task, outcome.claimed_files
            )
        except (ConductorError, OSError) as exc:
            return replace(
                outcome, ok=False, error=f"cannot read what the attempt changed: {exc}"
            )
        run.judgement = judgement
        extra = dict(outcome.extra)
        if judgement.rejected:
            extra["rejected_paths"] = list(judgement.rejected)
        outcome = replace(
            outcome, files_changed=[printable(p) for p in judgement.state.paths], extra=extra
        )
        if not outcome.ok:
            return outcome
        if judgement.error is not None:
            return replace(outcome, ok=False, error=judgement.error)
        if ctx.task.verify:
            removed = await anyio.to_thread.run_sync(self.isolation.prepare_verify, ws)
            if removed:
                append_log(
                    ctx.log_path,
                    "\nconductor: removed ignored files before verify (they would not land): "
                    f"{', '.join(removed[:20])}\n",
                )
        return outcome

    async def _review(
        self, ctx: AttemptContext, run: _AttemptRun, ws: Workspace, outcome: Outcome
    ) -> Outcome:
        """Have a reviewer score the attempt (``conductor.review``); below the threshold the
        attempt fails with the review as feedback, for good after ``max_rounds``."""
        from conductor.review import review_attempt

        task = ctx.task
        assert task.review is not None and run.judgement is not None
        rounds = self.state.task(task.id).review_rounds + 1
        diff = await anyio.to_thread.run_sync(self.isolation.diff_text, ws, run.judgement.state)
        verdict = await review_attempt(
            self.track,
            task,
            task.review,
            repo=self.repo,
            workdir=ws.path,
            diff=diff,
            log_path=ctx.log_path.with_suffix(".review.log"),
            max_budget_usd=self._budget_left(),
            state_root=self.sd.root.parent,
        )
        payload: dict[str, Any] = {
            "round": rounds,
            "max_rounds": task.review.max_rounds,
            "score": verdict.score,
            "threshold": task.review.threshold,
            "passed": verdict.passed,
            "scores": verdict.scores,
            "comments": verdict.comments,
            "agent": verdict.agent,
            "cost_usd": verdict.cost_usd,
        }
        if verdict.error:
            payload["error"] = verdict.error
        ctx.post(MessageType.REVIEW_RESULT, payload=payload)
        self.sync()
        if verdict.passed:
            return replace(outcome, extra={**outcome.extra, "review_score": verdict.score})
        final = rounds >= task.review.max_rounds
        return replace(
            outcome, ok=False, retryable=not final, error=verdict.feedback(rounds, task.review)
        )

    def _land(
        self, ctx: AttemptContext, run: _AttemptRun, ws: Workspace, outcome: Outcome
    ) -> Outcome:
        """Commit the accepted work on the checkout's HEAD (``conductor.landing``)."""
        assert run.judgement is not None
        state = run.judgement.state
        if not state.changes:
            return replace(outcome, extra={**outcome.extra, "commit": None})
        task = ctx.task
        title = f"{self.track.id}/{task.id}" + (f": {task.name}" if task.name != task.id else "")
        message = commit_message(
            title,
            outcome.summary,
            {
                "Conductor-Track": self.track.id,
                "Conductor-Task": task.id,
                "Conductor-Attempt": ctx.attempt,
                "Conductor-Agent": outcome.extra.get("agent"),
                "Conductor-Cost": f"{outcome.cost_usd:.4f} USD" if outcome.cost_usd else None,
                "Conductor-Session": outcome.session_id,
            },
        )

        def before_move(commit: str, parent: str | None, branch: str | None) -> None:
            self.post(
                MessageType.LANDING,
                task=task.id,
                worker=ctx.worker_id,
                attempt=ctx.attempt,
                payload={
                    "commit": commit,
                    "parent": parent,
                    "branch": branch,
                    "snapshot": ws.copy.snapshot.commit,
                    "changes": [change_to_dict(c) for c in state.changes],
                    "hash": self.hashes[task.id],
                    "cost_usd": outcome.cost_usd,
                    "duration": round(time.monotonic() - run.started, 3),
                    "summary": outcome.summary,
                    "files_changed": state.paths,
                },
            )

        try:
            landed = self.isolation.land(ws, state, message, before_move)
        except LandConflict as exc:
            retry = all(CHANGED_IN_HEAD in line for line in exc.message.split("; "))
            return replace(
                outcome,
                ok=False,
                error=str(exc),
                retryable=retry,
                extra={**outcome.extra, "conflicts": exc.paths},
            )
        except (GitError, OSError) as exc:
            return replace(outcome, ok=False, error=f"cannot land the attempt's work: {exc}")
        extra = {**outcome.extra, "commit": landed.commit}
        if landed.incomplete:
            extra["landing_warning"] = landed.incomplete
            log.warning("landed, but the working tree was not fully updated",
                        error=landed.incomplete)
        return replace(outcome, extra=extra)

    async def _verify(self, ctx: AttemptContext, outcome: Outcome) -> Outcome:
        results: list[dict[str, Any]] = []
        wrap = sandbox_wrapper(ctx)
        for command in ctx.task.verify:
            append_log(ctx.log_path, f"\n$ {command}   # verify\n")
            began = time.monotonic()
            with anyio.move_on_after(ctx.task.timeout) as scope:
                code = await run_command(
                    command,
                    cwd=ctx.cwd,
                    log_path=ctx.log_path,
                    env=ctx.env,
                    base_env=self.base_env,
                    wrap=wrap,
                )
            if scope.cancelled_caught:
                code = -1
            result = {
                "command": command,
                "exit_code": code,
                "ok": code == 0,
                "duration": round(time.monotonic() - began, 3),
            }
            results.append(result)
            ctx.post(MessageType.VERIFY_RESULT, payload=result)
            if code != 0:
                why = "timed out" if scope.cancelled_caught else f"exited with status {code}"
                return replace(
                    outcome,
                    ok=False,
                    error=f"verify failed: `{command}` {why}",
                    extra={**outcome.extra, "verify": results},
                )
        return replace(outcome, extra={**outcome.extra, "verify": results})

    def _record(
        self,
        task: Task,
        attempt: int,
        wid: str,
        outcome: Outcome | None,
        duration: float,
        log_path: Path,
    ) -> None:
        """Write the attempt's end on the bus (the conductor alone writes these)."""
        if outcome is None:  # cancelled: interrupted or skipped by a person
            skipped = task.id in self.skip_requested
            self.post(
                MessageType.WORKER_LOST,
                task=task.id,
                worker=wid,
                attempt=attempt,
                payload={
                    "reason": "skipped by a person"
                    if skipped
                    else "stopped: the API refused the credentials"
                    if self.halted is not None
                    else "interrupted",
                    "duration": round(duration, 3),
                },
            )
            return
        rel_log = os.path.relpath(log_path, self.repo)
        common: dict[str, Any] = {
            "duration": round(duration, 3),
            "exit_code": outcome.exit_code,
            "log": rel_log,
            "cost_usd": outcome.cost_usd,
        }
        for key, value in (
            ("usage", outcome.usage),
            ("turns", outcome.turns),
            ("session_id", outcome.session_id),
            ("summary", outcome.summary),
            ("files_changed", outcome.files_changed),
        ):
            if value:
                common[key] = value
        common.update(outcome.extra)
        if outcome.api_stop is not None and not outcome.ok:
            self._defer(task, attempt, wid, outcome, common)
            return
        self.limits.ok()
        if outcome.ok:
            self.post(
                MessageType.TASK_COMPLETE,
                task=task.id,
                worker=wid,
                attempt=attempt,
                payload={"hash": self.hashes[task.id], **common},
            )
            log.info("task complete", duration=round(duration, 3))
            return
        failures = self.state.task(task.id).failures + 1
        left = self._budget_left()
        final = (
            failures >= task.max_attempts
            or not outcome.retryable
            or (left is not None and left <= 0)
        )
        output = tail(log_path, 1500)
        error = outcome.error or "failed"
        feedback = error if not output.strip() else f"{error}\n\nLast output:\n{output}"
        lost = outcome.worker_lost  # its machine died: a WORKER_LOST that counts as a failure
        self.post(
            MessageType.TASK_FAILED if lost is None else MessageType.WORKER_LOST,
            task=task.id,
            worker=wid,
            attempt=attempt,
            payload={
                **({} if lost is None else {**lost, "counted": True, "reason": error}),
                "error": error,
                "final": final,
                "timed_out": outcome.timed_out,
                "failures": failures,
                "max_attempts": task.max_attempts,
                "log_tail": output,
                "feedback": feedback,
                **common,
            },
        )
        log.info("task failed", error=error, final=final, attempt=attempt)
        if not final:
            self.post(
                MessageType.TASK_RETRY,
                task=task.id,
                worker=wid,
                attempt=attempt,
                payload={"next_attempt": attempt + 1, "reason": error},
            )

    # --- the end ----------------------------------------------------------------------

    def _finish(self, duration: float) -> RunResult:
        view = self.state.view(self.tasks, lambda tid: self.tasks[tid].depends_on)
        by: dict[TaskStatus, list[str]] = {}
        for tid, task_status in view.items():
            by.setdefault(task_status, []).append(tid)
        failed = {
            tid: self.state.task(tid).last_error or "failed"
            for tid in by.get(TaskStatus.FAILED, [])
        }
        status: RunStatus
        unfinished = len(by.get(TaskStatus.COMPLETE, [])) + len(
            by.get(TaskStatus.SKIPPED, [])
        ) < len(view)
        left = self._budget_left()
        if unfinished and left is not None and left <= 0 and not self.budget_hit:
            self.budget_hit = True
            self.post(
                MessageType.BUDGET_EXCEEDED,
                payload={"budget_usd": self.track.budget_usd, "spent_usd": self.spent()},
            )
        if self.halted is not None:
            status = "auth"
            end = MessageType.TRACK_FAILED
        elif self.interrupted:
            status = "interrupted"
            end = MessageType.TRACK_INTERRUPTED
        elif self.gated and self.state.approval == "rejected":
            status = "rejected"
            end = MessageType.TRACK_FAILED
        elif not unfinished:
            status = "complete"
            end = MessageType.TRACK_COMPLETE
        elif self.budget_hit:
            status = "budget"
            end = MessageType.TRACK_FAILED
        else:
            status = "failed"
            end = MessageType.TRACK_FAILED
        result = RunResult(
            track=self.track.id,
            status=status,
            reason=self.state.approval_reason
            if status == "rejected"
            else self.halted.describe()
            if self.halted is not None
            else "",
            completed=by.get(TaskStatus.COMPLETE, []),
            skipped=by.get(TaskStatus.SKIPPED, []),
            failed=failed,
            blocked=by.get(TaskStatus.BLOCKED, []),
            pending=by.get(TaskStatus.PENDING, []) + by.get(TaskStatus.RUNNING, []),
            cost_usd=round(self.state.cost_usd, 6),
            duration=round(duration, 3),
            state_dir=self.sd.root,
        )
        self.post(
            end,
            payload={
                "status": status,
                "completed": len(result.completed),
                "skipped": result.skipped,
                "failed": result.failed,
                "blocked": result.blocked,
                "pending": result.pending,
                "cost_usd": result.cost_usd,
                "duration": result.duration,
                **({"rejected": result.reason} if status == "rejected" else {}),
                **({"auth": result.reason} if status == "auth" else {}),
            },
        )
        return result


_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""Why a state directory cannot be written: permissions, a read-only or full file system."""


def _cannot_write(exc: BaseException, root: Path) -> bool:
    """Whether ``exc`` says the state directory ``root`` cannot be written: a permission, a
    read-only or a full file system error on a path in it (or on one opened relative to a
    directory of it, as the bus does)."""
    if not isinstance(exc, OSError) or exc.errno not in _UNWRITABLE:
        return False
    if exc.filename is None:
        return True
    name = os.fsdecode(exc.filename)
    return not os.path.isabs(name) or Path(name).is_relative_to(root)


def _unwritable(exc: OSError, root: Path) -> StateError:
    """The error for a state directory the run cannot write (exit 5)."""
    name = os.fsdecode(exc.filename) if exc.filename is not None else ""
    where = f" ({name})" if name and os.path.isabs(name) else ""
    return StateError(
        f"cannot write to the state directory {root}{where}: {exc.strerror or exc}; make it "
        "writable (or free space) and run again to resume",
        path=root,
    )


def _state_error(group: BaseExceptionGroup[BaseException], root: Path) -> StateError | None:
    """The first ``StateError`` in ``group`` (or an ``OSError`` that says the state directory
    ``root`` cannot be written), re-worded for a run it ended (None if none)."""
    found: BaseException | None = group.subgroup(
        lambda exc: isinstance(exc, StateError) or _cannot_write(exc, root)
    )
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    if isinstance(found, OSError):
        found = _unwritable(found, root)
    if not isinstance(found, StateError):
        return None
    return StateError(
        f"the run's state became unusable while it ran ({found.message}); if the state "
        "directory was "
        "deleted (a `git clean -x`, a task's `rm`), its record of this run is lost",
        path=found.path,
    )


def _kind(task: Task) -> str:
    return "shell" if task.run else "claude"


@dataclass
class _AttemptRun:
    """What the scheduler keeps about one running attempt."""

    task: Task
    """The task."""
    attempt: int
    """The attempt number."""
    worker: str
    """The worker id."""
    started: float
    """``time.monotonic()`` at dispatch."""
    needs: Needs = field(default_factory=lambda: Needs(locks=False))
    """What its executor asked for (known once it is picked)."""
    workspace: Workspace | None = None
    """Its copy, when it works in one."""
    judgement: Judgement | None = None
    """The verdict on its copy's changes."""
