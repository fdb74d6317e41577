"""Run a command (a shell task's ``run:``, a ``verify`` command) as a child process.

A command without shell syntax is executed directly (as make does); anything else runs under
``/bin/sh -c``. Each child gets its own session (process group) so a timeout or Ctrl-C ends the
whole tree: SIGTERM to the group, then SIGKILL after ``conductor.processes.TERM_GRACE``.
Processes a command left behind outside its group are ``conductor.processes``'s to reap.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import anyio

from conductor.errors import StateError
from conductor.paths import open_state_file
from conductor.processes import TERM_GRACE

_SHELL_CHARS = frozenset("|&;<>()$`\\\"'*?[#~=%{}\n")


def argv_for(command: str) -> list[str] | str:
    """An argv to exec directly when ``command`` has no shell syntax, else the string."""
    parsed = _parse(command)
    return list(parsed) if isinstance(parsed, tuple) else parsed


@functools.lru_cache(maxsize=1024)
def _parse(command: str) -> tuple[str, ...] | str:
    if any(ch in _SHELL_CHARS for ch in command):
        return command
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    return tuple(argv) if argv else command


def _which(name: str, path: str | None) -> str | None:
    """``name`` resolved on ``path`` the way ``execvp`` would, remembered per (name, path).

    Spawning by absolute path spares the child a failed exec per ``PATH`` entry before the
    right one, which the conductor waits out on every spawn. ``None``: not found (the spawn
    then searches itself and reports the error).
    """
    key = (name, path)
    if key in _WHICH:
        return _WHICH[key]
    if "/" in name:
        found: str | None = name  # exec uses a path with a slash as it is
    else:
        hit = shutil.which(name, path=path)
        found = os.path.abspath(hit) if hit else None
    if len(_WHICH) >= 1024:
        _WHICH.clear()
    _WHICH[key] = found
    return found


_WHICH: dict[tuple[str, str | None], str | None] = {}


def open_log(path: Path) -> BinaryIO:
    """Open an attempt's log for appending (local disk: a quick call, fine inside async code);
    a symlink or FIFO planted under its name is refused (``StateError``), never followed."""
    fd = open_state_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    return os.fdopen(fd, "ab")


def append_log(path: Path, text: str) -> None:
    """Append ``text`` to an attempt's log."""
    with open_log(path) as fh:
        fh.write(text.encode())


def tail(path: Path, limit: int = 2000) -> str:
    """The last ``limit`` characters of a log file ('' if missing or not a regular file)."""
    try:
        with os.fdopen(open_state_file(path, os.O_RDONLY), "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read().decode("utf-8", "replace")
    except (OSError, StateError):
        return ""


async def run_command(
    command: str,
    *,
    cwd: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> int:
    """Run ``command`` with output appended to ``log_path``; return its exit code.

    The child's environment is ``base_env`` (default: this process's environment now) with
    ``env`` on top. ``wrap`` turns the argv into another (the sandbox's). Cancelling the
    caller terminates the process group and waits for it.
    """
    full_env = {**(os.environ if base_env is None else base_env), **(env or {})}
    argv = argv_for(command)
    if wrap is not None:
        argv = wrap(["/bin/sh", "-c", argv] if isinstance(argv, str) else argv)
    if _HAVE_PIDFD:
        return await _run_spawned(argv, command, cwd=cwd, log_path=log_path, env=full_env)
    with open_log(log_path) as log:
        try:
            process = await anyio.open_process(
                argv,
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"conductor: cannot start {command!r}: {exc.strerror or exc}\n".encode())
            return _not_started(exc)
    try:
        return await process.wait()
    finally:
        if process.returncode is None:
            with anyio.CancelScope(shield=True):
                await _terminate_group(process.pid, process)


def _not_started(exc: OSError) -> int:
    """The exit code a POSIX shell gives a command it cannot start: 126 when the file is not
    executable, 127 when there is no such command."""
    return 126 if isinstance(exc, PermissionError) or exc.errno == errno.ENOEXEC else 127


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


_HAVE_PIDFD = sys.platform == "linux" and _pidfd_works()
"""Linux with pidfds: spawn with posix_spawn and wait on a pidfd (no thread, no transport)."""


async def _run_spawned(
    argv: list[str] | str, command: str, *, cwd: Path, log_path: Path, env: dict[str, str]
) -> int:
    """posix_spawn in a new session, stdout/stderr to the log; wait on a pidfd.

    posix_spawn has no working-directory argument here, so a command for another directory
    goes through ``sh -c 'cd DIR && exec ...'``.
    """
    args = _argv_in(cwd, argv)
    with open_log(log_path) as log:
        try:
            pid = _spawn(args, env, log.fileno())
        except OSError as exc:
            log.write(f"conductor: cannot start {command!r}: {exc.strerror or exc}\n".encode())
            return _not_started(exc)
    pidfd = os.pidfd_open(pid)
    try:
        await anyio.wait_readable(pidfd)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _end_spawned(pid, pidfd)
        raise
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, 0)  # noqa: ASYNC222 - the pidfd said it exited: no wait
    return os.waitstatus_to_exitcode(status)


def _spawn(args: list[str], env: dict[str, str], log_fd: int) -> int:
    """posix_spawn ``args`` in a new session, stdin from /dev/null, output to ``log_fd``."""
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log_fd, 1),
        (os.POSIX_SPAWN_DUP2, log_fd, 2),
    ]
    search = os.environ.get("PATH")  # what posix_spawnp searches: this process's PATH
    path = _which(args[0], search)
    if path is not None:
        try:
            return os.posix_spawn(path, args, env, setsid=True, file_actions=file_actions)
        except OSError:
            _WHICH.pop((args[0], search), None)  # moved or removed since: search again
    return os.posix_spawnp(args[0], args, env, setsid=True, file_actions=file_actions)


def _argv_in(cwd: Path, argv: list[str] | str) -> list[str]:
    args = ["/bin/sh", "-c", argv] if isinstance(argv, str) else argv
    if os.path.realpath(cwd) == os.getcwd():
        return args
    return ["/bin/sh", "-c", 'cd -- "$0" && exec "$@"', str(cwd), *args]


async def _end_group(pgid: int, exited: Callable[[], Awaitable[object]]) -> None:
    """SIGTERM the process group; SIGKILL it if ``exited()`` has not returned in the grace."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        with anyio.move_on_after(TERM_GRACE):
            await exited()
            return


async def _end_spawned(pid: int, pidfd: int) -> None:
    """End a posix_spawn'ed command's group and reap the child."""
    await _end_group(pid, lambda: anyio.wait_readable(pidfd))
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # noqa: ASYNC222 - exited (pidfd readable) or SIGKILLed: quick


async def _terminate_group(pgid: int, process: anyio.abc.Process) -> None:
    """End an anyio process's group and reap it."""
    await _end_group(pgid, process.wait)
    await process.wait()
