"""Attempts on a Ray cluster: ``executor: ray`` (or ``conductor run --executor ray``).

The conductor stays where it is, the only writer of the bus and the only judge: it makes
each attempt's snapshot and local copy as it does for a local attempt. ``RayExecutor`` then

1. ships the snapshot to the cluster: a parentless commit of the snapshot's tree, as a git
   bundle put once per tree in Ray's object store (no shared file system);
2. submits the attempt as a Ray task (``conductor.node.run_attempt``) with the task's
   ``resources`` (``cpus``, ``memory``, ``gpus``, custom ones; a Claude attempt also takes one
   ``claude_sessions`` when the cluster defines that resource, to cap sessions per node);
3. while it runs, serves the node's requests through a ``Relay`` actor: WORKER_STARTED naming
   the node, PROGRESS, tool calls and claims are posted on the bus here, lock requests take
   the track's path locks here, and bus reads come from here, so the live view and budgets
   work as for a local attempt;
4. takes the node's result bundle into the checkout's object store and makes the local copy's
   working tree equal to the result tree; the scheduler then judges, verifies and lands the
   copy unchanged. The node's log, transcript and tool list become the attempt's own.

Faults. A node that dies under an attempt is a WORKER_LOST naming it that counts toward
``max_attempts``; the next attempt is placed by Ray on a live node. Ray ends the tasks of a
driver that dies (a conductor killed with ``kill -9``); the next conductor's ``recover`` also
runs a task on the node named in the lost attempt's WORKER_STARTED that ends every process
still carrying the attempt's run tag. Ray's own task retries are off: attempts are counted
by the conductor.

Secrets. Shell commands on a node get the node's environment plus the attempt's
``CONDUCTOR_*`` variables, never the conductor's environment. A Claude session gets, in the
CLI's environment only, the variables of ``SESSION_ENV`` the conductor has and what its Claude
executor adds (``ClaudeExecutor.extra_env``), sent as the task's argument through Ray (never
written to the node's disk by conductor).

``ray`` is an optional dependency (``pip install 'conductor[ray]'``); only this module and
``conductor.node`` import it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from conductor.commands import append_log
from conductor.contract import TAG_ENV
from conductor.copies import CONDUCTOR_IDENT, Checkout, GitError, PrivateGit
from conductor.errors import ConductorError, UserError
from conductor.executors.base import (
    AttemptContext,
    Executor,
    ExecutorBase,
    Needs,
    Outcome,
    needs_of,
)
from conductor.logs import get_logger
from conductor.messages import MessageType
from conductor.paths import open_state_file

if TYPE_CHECKING:
    from conductor.node import NodeJob, NodeResult
    from conductor.track import Task

log = get_logger(__name__)

INSTALL_HINT = "install it with `pip install 'conductor[ray]'`"

SESSION_ENV = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
)
"""The conductor's variables a Claude session on a node gets (when set), and nothing else."""

POLL_SECONDS = 5.0
"""Longest wait of one poll for a node's requests."""

STOP_SECONDS = 40.0
"""How long a cancelled attempt may take to end on its node before its worker is killed."""

SHIPPED_KEEP = 8
"""Snapshot bundles kept in the object store (the newest trees)."""

SHELL_CPUS = 1.0
"""CPUs a shell attempt takes when its task names none."""

CLAUDE_CPUS = 1.0
"""CPUs a Claude attempt takes when its task names none."""

RESOURCES_TTL = 30.0
"""Seconds the cluster's resource list is reused for placing attempts."""

SESSIONS_RESOURCE = "claude_sessions"
"""The custom resource a node declares to cap its Claude sessions."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise UserError(f"executor: ray needs the ray package: {INSTALL_HINT}") from exc
    return ray


def ray_executors(local: Callable[[Task], Executor], address: str | None = None) -> Callable[
    [Task], Executor
]:
    """The executor factory of ``executor: ray``: every task runs on the cluster at ``address``
    (connected now, so a bad address fails before the run starts)."""
    executor = RayExecutor(local, address)
    executor.connect()
    return lambda task: executor


class RayExecutor(ExecutorBase):
    """Runs each attempt as a Ray task; ``local`` says what a task's attempt is (shell or
    Claude, and with which settings) as it would run here."""

    def __init__(self, local: Callable[[Task], Executor], address: str | None = None) -> None:
        self.local = local
        self.address = address
        """``host:port`` of the cluster; None: ``RAY_ADDRESS``, else a new local cluster."""
        self._relay: Any = None
        self._remote: Any = None
        self._shipped: dict[str, tuple[Any, str, str, str]] = {}
        self._resources: tuple[float, dict[str, float]] = (0.0, {})
        self._ship_lock = threading.Lock()
        self._git_lock = threading.Lock()
        self._git: PrivateGit | None = None

    # ---- connection

    def connect(self) -> None:
        """Join the cluster as a driver (once); ``UserError`` when it cannot be reached."""
        ray = _ray()
        if self._relay is not None:
            return
        from conductor.node import Relay, end_attempt, run_attempt

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            kw: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            if address is None:
                kw["include_dashboard"] = False
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = ray.get_runtime_context().get_node_id()
        actor = ray.remote(num_cpus=0)(Relay).options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
        ).remote()
        self._relay = actor
        self._remote = ray.remote(max_retries=0)(run_attempt)
        self._end = ray.remote(num_cpus=0, max_retries=0)(end_attempt)
        weakref.finalize(self, _kill, actor)

    # ---- the interface

    def needs(self, task: Task) -> Needs:
        """Always a copy (the result comes back as a tree); sandbox and locks as locally."""
        local = needs_of(self.local(task), task)
        return Needs(copy=True, sandbox=local.sandbox, locks=local.locks)

    async def execute(self, ctx: AttemptContext) -> Outcome:
        """Ship the snapshot, run the attempt on a node, bring its tree into the local copy."""
        if ctx.workdir is None:
            return Outcome(ok=False, error="a Ray attempt needs its own copy", retryable=False)
        await anyio.to_thread.run_sync(self.connect)
        try:
            bundle, root, ref_name, tree = await anyio.to_thread.run_sync(self._ship, ctx)
        except (ConductorError, OSError) as exc:
            return Outcome(ok=False, error=f"cannot ship the snapshot: {exc}")
        job = self._job(ctx, root, ref_name, tree)
        ref = self._remote.options(**self._placement(ctx.task, job.kind, ctx.worker_id)).remote(
            job, bundle, self._relay
        )
        node: dict[str, Any] = {}
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._serve, ctx, node)
                try:
                    result: NodeResult = await _wait(ref)
                except Exception as exc:  # the task did not return: judged below
                    failure = exc
                finally:
                    tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._stop, ref, node, ctx)
            raise
        finally:
            self._relay.forget.remote(ctx.worker_id)
        if failure is not None:
            return self._failed(failure, node)
        try:
            await anyio.to_thread.run_sync(self._apply, ctx, result, root)
        except (ConductorError, OSError) as exc:
            return Outcome(ok=False, error=f"cannot take the attempt's result: {exc}")
        outcome = result.outcome
        if result.too_large:
            outcome = Outcome(
                ok=False,
                error="files over 100 MiB (or changes over 500 MiB together) are not landed: "
                + ", ".join(result.too_large[:20]),
                cost_usd=outcome.cost_usd,
                usage=outcome.usage,
            )
        return _with_node(outcome, result.node)

    def recover(self, started: dict[str, Any]) -> bool:
        """End what a killed conductor's attempt left on its node (by its run tag)."""
        node_id, tag, worker = (started.get(k) for k in ("node_id", "run_tag", "worker"))
        if not (isinstance(node_id, str) and isinstance(tag, str) and isinstance(worker, str)):
            return False
        try:
            self.connect()
            ray = _ray()
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            if node_id not in alive:
                return False
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            ended = ray.get(
                self._end.options(scheduling_strategy=strategy).remote(tag, worker), timeout=120
            )
        except Exception as exc:  # recovery is best effort: the run goes on
            log.warning("cannot clean up a lost attempt's node", node=node_id, error=str(exc))
            return False
        return bool(ended)

    # ---- steps

    def _job(self, ctx: AttemptContext, root: str, ref_name: str, tree: str) -> NodeJob:
        from conductor.executors.claude import ClaudeExecutor
        from conductor.node import ClaudeSpec, NodeJob

        local = self.local(ctx.task)
        claude: ClaudeSpec | None = None
        secrets: dict[str, str] = {}
        if not ctx.task.run:
            if isinstance(local, ClaudeExecutor):
                claude = ClaudeSpec(
                    cli_path=str(local.cli_path) if local.cli_path else None,
                    extra_env=dict(local.extra_env),
                    api_retries=local.api_retries,
                    api_backoff=local.api_backoff,
                    max_buffer_size=local.max_buffer_size,
                )
            secrets = {k: os.environ[k] for k in SESSION_ENV if os.environ.get(k)}
        env = {k: v for k, v in ctx.env.items() if k != "TMPDIR"}
        return NodeJob(
            track=ctx.track,
            task=ctx.task,
            attempt=ctx.attempt,
            worker_id=ctx.worker_id,
            kind="shell" if ctx.task.run else "claude",
            snapshot=root,
            tree=tree,
            ref=ref_name,
            env=env,
            secrets=secrets,
            feedback=ctx.feedback,
            budget_left_usd=ctx.budget_left_usd,
            sandbox=ctx.sandbox.allowed_domains if ctx.sandbox is not None else None,
            locks=ctx.locks is not None,
            claude=claude,
        )

    def _placement(self, task: Task, kind: str, worker: str) -> dict[str, Any]:
        """Ray options of an attempt: its resources, no Ray-side retries, a readable name."""
        wanted = dict(task.resources or {})
        options: dict[str, Any] = {
            "num_cpus": wanted.pop("cpus", SHELL_CPUS if kind == "shell" else CLAUDE_CPUS),
            "max_retries": 0,
            "name": f"conductor:{worker}",
        }
        if "gpus" in wanted:
            options["num_gpus"] = wanted.pop("gpus")
        if "memory" in wanted:
            options["memory"] = int(wanted.pop("memory"))
        known = self._cluster_resources()
        if kind == "claude" and SESSIONS_RESOURCE not in wanted and SESSIONS_RESOURCE in known:
            wanted[SESSIONS_RESOURCE] = 1.0
        missing = [name for name in wanted if name not in known]
        if missing:
            log.warning("no node has these resources yet: the attempt waits for one",
                        worker_id=worker, resources=missing)
        options["resources"] = {name: amount for name, amount in wanted.items() if amount > 0}
        return options

    def _cluster_resources(self) -> dict[str, float]:
        """The cluster's resources, asked at most every ``RESOURCES_TTL`` seconds."""
        asked, known = self._resources
        if time.monotonic() - asked > RESOURCES_TTL:
            known = dict(_ray().cluster_resources())
            self._resources = (time.monotonic(), known)
        return known

    def _private(self, ctx: AttemptContext) -> PrivateGit:
        """Conductor's git directory of this run (``conductor.isolation`` made it)."""
        with self._git_lock:
            if self._git is None:
                self._git = PrivateGit(ctx.state_root / "git", Checkout.find(ctx.repo)).ensure()
            return self._git

    def _ship(self, ctx: AttemptContext) -> tuple[Any, str, str, str]:
        """The snapshot's bundle in the object store (made once per tree), its commit, the
        bundle's ref and the tree."""
        assert ctx.workdir is not None
        private = self._private(ctx)
        index = ctx.workdir.with_name(f"{ctx.worker_id}.index")
        head = _copy_head(ctx.workdir)
        tree = private.git(ctx.workdir, index, "rev-parse", f"{head}^{{tree}}")
        key = tree.stdout.decode().strip()
        with self._ship_lock:
            found = self._shipped.get(key)
            if found is not None:
                return found
            ref_name = f"refs/conductor/ship/{key}"
            root = private.git(
                ctx.workdir, index, "commit-tree", key, "-m", f"conductor snapshot {key}"
            ).stdout.decode().strip()
            folder = ctx.state_root / "ray"
            folder.mkdir(mode=0o700, exist_ok=True)
            path = folder / f"{key}.bundle"
            try:
                private.git(ctx.workdir, index, "update-ref", ref_name, root)
                private.git(ctx.workdir, index, "bundle", "create", "-q", str(path), ref_name)
                data = path.read_bytes()
            finally:
                private.git(ctx.workdir, index, "update-ref", "-d", ref_name, check=False)
                path.unlink(missing_ok=True)
            shipped = (_ray().put(data), root, ref_name, key)
            self._shipped[key] = shipped
            while len(self._shipped) > SHIPPED_KEEP:
                del self._shipped[next(iter(self._shipped))]
            return shipped

    async def _serve(self, ctx: AttemptContext, node: dict[str, Any]) -> None:
        """Answer the node's requests until cancelled (or the relay is gone: the node's
        requests then fail, and so does its task)."""
        while True:
            try:
                batch = await _wait(self._relay.poll.remote(ctx.worker_id, POLL_SECONDS))
            except Exception as exc:
                log.error("lost the relay to the attempt's node", error=repr(exc))
                return
            for rid, op, args in batch:
                try:
                    value = await self._handle(ctx, node, op, args)
                except ConductorError as exc:
                    self._relay.answer.remote(rid, False, str(exc))
                except Exception as exc:  # the node sees the failure; the run goes on
                    log.exception("cannot serve a node's request", op=op)
                    self._relay.answer.remote(rid, False, f"conductor error: {exc!r}")
                else:
                    self._relay.answer.remote(rid, True, value)

    async def _handle(
        self, ctx: AttemptContext, node: dict[str, Any], op: str, args: tuple[Any, ...]
    ) -> Any:
        if op == "placed":
            node.update(args[0])
            return ctx.post(MessageType.WORKER_STARTED, payload=self._started(ctx, node))
        if op == "post":
            mtype, payload = args
            if mtype == MessageType.WORKER_STARTED:
                payload = {**(payload or {}), **self._started(ctx, node)}
            return ctx.post(mtype, payload=payload)
        if op == "read":
            bus = ctx.bus
            if bus is None:
                return []
            after = int(args[0])
            mine = (None, ctx.task.id)
            return await anyio.to_thread.run_sync(
                lambda: [m for m in bus.read(after=after) if m.task in mine][-200:]
            )
        locks = ctx.locks
        if locks is None:
            raise ConductorError("locks are not enabled for this run")
        wid = ctx.worker_id
        if op == "acquire":
            path = str(args[0])
            return await anyio.to_thread.run_sync(
                lambda: locks.acquire(path, worker=wid, task=ctx.task.id, attempt=ctx.attempt)
            )
        if op == "release":
            path = str(args[0])
            return await anyio.to_thread.run_sync(lambda: locks.release(path, worker=wid))
        if op == "holder":
            return await anyio.to_thread.run_sync(locks.holder, str(args[0]))
        if op == "list":
            return await anyio.to_thread.run_sync(locks.list)
        raise ConductorError(f"unknown request {op!r}")

    def _started(self, ctx: AttemptContext, node: dict[str, Any]) -> dict[str, Any]:
        """What WORKER_STARTED says about where the attempt runs (``recover`` reads it)."""
        return {
            "executor": "ray",
            "worker": ctx.worker_id,
            "node_id": node.get("node_id"),
            "node_ip": node.get("node_ip"),
            "host": node.get("host"),
            "node_pid": node.get("pid"),
            "run_tag": ctx.env.get(TAG_ENV),
        }

    def _apply(self, ctx: AttemptContext, result: NodeResult, root: str) -> None:
        """Write the node's logs here; make the local copy's working tree the result tree."""
        assert ctx.workdir is not None
        for suffix, data in result.logs.items():
            if suffix == ".log":
                append_log(ctx.log_path, data.decode(errors="replace"))
                continue
            target = ctx.log_path.with_name(ctx.log_path.name.removesuffix(".log") + suffix)
            fd = open_state_file(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        if result.ended:
            log.warning("the node ended processes the attempt left running",
                        pids=list(result.ended), node=result.node.get("node_id"))
        if result.bundle is None or result.commit is None:
            return
        private = self._private(ctx)
        index = ctx.workdir.with_name(f"{ctx.worker_id}.index")
        path = ctx.state_root / "ray" / f"{ctx.worker_id}.bundle"
        path.write_bytes(result.bundle)
        try:
            private.git(ctx.workdir, index, "bundle", "unbundle", str(path))
        finally:
            path.unlink(missing_ok=True)
        tree = private.git(ctx.workdir, index, "rev-parse", f"{result.commit}^{{tree}}")
        if tree.stdout.decode().strip() != result.tree:
            raise GitError(f"the result bundle's tree is not the one the node read ({result.tree})")
        # Files written in the copy's first second look changed to git until refreshed.
        private.git(ctx.workdir, index, "update-index", "-q", "--refresh", check=False)
        private.git(ctx.workdir, index, "read-tree", "-m", "-u", root, result.commit)

    def _stop(self, ref: Any, node: dict[str, Any], ctx: AttemptContext) -> None:
        """End a cancelled attempt on its node: interrupt, then kill, then clean up."""
        ray = _ray()
        with contextlib.suppress(Exception):
            ray.cancel(ref)
        try:
            ray.wait([ref], timeout=STOP_SECONDS)
            ready, _ = ray.wait([ref], timeout=0)
        except Exception:
            ready = [ref]
        if ready:
            return
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
        self.recover(self._started(ctx, node))

    def _failed(self, exc: Exception, node: dict[str, Any]) -> Outcome:
        """The outcome of a Ray task that did not return: an error on the node, or a lost
        worker (its node died, its process crashed)."""
        ray = _ray()
        where = node.get("node_id") or "unknown"
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = exc.cause if exc.cause is not None else exc
            text = str(cause).strip().splitlines()
            detail = text[-1] if text else repr(cause)
            return Outcome(ok=False, error=f"error on node {where}: {detail}")
        if isinstance(exc, ray.exceptions.RayError):
            died = getattr(exc, "node_id", None) or where
            what = type(exc).__name__
            lost = {"node": died, "host": node.get("host"), "node_ip": node.get("node_ip"),
                    "ray_error": what}
            return Outcome(
                ok=False, error=f"worker lost: node {died} ({what})", worker_lost=lost
            )
        log.error("unexpected error from Ray", error=repr(exc))
        return Outcome(ok=False, error=f"executor error: {exc!r}")


def _with_node(outcome: Outcome, node: dict[str, Any]) -> Outcome:
    from dataclasses import replace

    return replace(outcome, extra={**outcome.extra, "node": node.get("node_id")})


async def _wait(ref: Any) -> Any:
    """The value of a Ray object, awaited without a thread."""
    return await asyncio.wrap_future(ref.future())


def _copy_head(workdir: Path) -> str:
    """The commit the copy's branch was made at (read before anything ran in the copy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_CONFIG_NOSYSTEM": "1", **CONDUCTOR_IDENT})
    proc = subprocess.run(
        ["git", "-C", str(workdir), "-c", "core.hooksPath=/dev/null", "rev-parse", "HEAD"],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"cannot read the copy's snapshot: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode().strip()


def _kill(actor: Any) -> None:
    ray = _ray()
    if ray.is_initialized():  # a call after shutdown would start a new local instance
        with contextlib.suppress(Exception):
            ray.kill(actor)
