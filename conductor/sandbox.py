"""The sandbox attempts in a copy run in.

Two layers, one rule: code an agent wrote or ran can write only inside its attempt's copy
and its temporary directory.

- **Claude sessions** run with Claude Code's own sandbox (claude-agent-sdk's ``sandbox``
  option): every Bash command runs under bubblewrap (Linux; Seatbelt on macOS), unsandboxed
  commands are not allowed, conductor's state directory is not readable, and Bash reaches
  the network only for the track's ``network.allowed_domains`` (default: none). The
  session's Write/Edit tools are held to the copy by conductor's file guard, and its
  Read/Grep/Glob tools, which the sandbox does not reach, are kept out of conductor's state
  by its read guard (``executors.evidence``).
- **Commands conductor runs in a copy** (``verify``, and ``run:`` of a shell task with
  ``isolation: copy``) execute the agent's code too (a test suite runs the agent's tests), so
  conductor wraps them in bubblewrap itself (``wrap``): the whole file system read-only, the
  copy and the attempt's temp directory writable, conductor's state directory hidden, a
  private PID namespace (everything the command started ends with it) and, unless the track
  allows domains, no network. (bubblewrap cannot filter by domain: a track that allows any
  domain gives these commands the host's network.)

Requirements: on Linux the ``bwrap`` and ``socat`` programs (Debian/Ubuntu packages
``bubblewrap`` and ``socat``). Where they are missing conductor refuses to run attempts in a
copy, naming what to install, unless the track says ``sandbox: off`` — then every run says
that attempts are not sandboxed.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conductor.executors.base import AttemptContext

INSTALL_HINT = (
    "install bubblewrap and socat (Debian/Ubuntu: `apt-get install bubblewrap socat`; "
    "Fedora: `dnf install bubblewrap socat`), or set `sandbox: off` in the track to run "
    "attempts unsandboxed"
)


@functools.lru_cache(maxsize=1)
def unavailable() -> str | None:
    """Why the sandbox cannot run on this machine, or None when it can."""
    if sys.platform != "linux":
        return f"conductor's sandbox needs Linux with bubblewrap (this is {sys.platform})"
    missing = [name for name in ("bwrap", "socat") if shutil.which(name) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    try:
        probe = subprocess.run(
            [*_base(network=False), "--chdir", "/", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap cannot start: {exc}"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip()[:300]
        return f"bwrap cannot create a sandbox here: {detail or probe.returncode}"
    return None


def _base(*, network: bool) -> list[str]:
    argv = [
        shutil.which("bwrap") or "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--unshare-pid",
        "--unshare-ipc",
        "--die-with-parent",
        "--new-session",
    ]
    if not network:
        argv.append("--unshare-net")
    return argv


def wrap(
    argv: Sequence[str],
    *,
    workdir: Path,
    writable: Sequence[Path] = (),
    hidden: Sequence[Path] = (),
    network: bool = False,
) -> list[str]:
    """``argv`` run in bubblewrap: read-only everywhere but ``workdir`` and ``writable``.

    ``hidden`` directories are replaced by empty ones (conductor's state directory); the
    writable ones are bound after them, so a copy inside the state directory stays reachable.
    """
    out = _base(network=network)
    for path in hidden:
        if path.is_dir():
            out += ["--tmpfs", str(path)]
    for path in (workdir, *writable):
        out += ["--bind", str(path), str(path)]
    out += ["--chdir", str(workdir), "--", *argv]
    return out


def claude_settings(
    allowed_domains: Sequence[str], hidden: Sequence[Path] = ()
) -> dict[str, Any]:
    """claude-agent-sdk ``sandbox`` settings: Bash sandboxed, no way around it, and the
    ``hidden`` directories (conductor's state) not even readable, so a command cannot take
    the bus's kernel lock. (The SDK's type does not list ``filesystem``; the CLI reads it.)"""
    settings: dict[str, Any] = {
        "enabled": True,
        "autoAllowBashIfSandboxed": True,
        "allowUnsandboxedCommands": False,
        "network": {"allowedDomains": list(allowed_domains)},
    }
    if hidden:
        settings["filesystem"] = {"denyRead": [str(path) for path in hidden]}
    return settings


def sandbox_wrapper(ctx: AttemptContext) -> Callable[[list[str]], list[str]] | None:
    """The ``wrap`` for ``commands.run_command`` that confines a command of ``ctx``'s attempt
    (None when the attempt is not sandboxed)."""
    plan = ctx.sandbox
    if plan is None:
        return None
    writable = [ctx.tmp_dir] if ctx.tmp_dir is not None else []

    def wrapper(argv: list[str]) -> list[str]:
        return wrap(
            argv,
            workdir=ctx.cwd,
            writable=writable,
            hidden=plan.hidden,
            network=bool(plan.allowed_domains),
        )

    return wrapper
