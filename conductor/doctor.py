"""``conductor doctor``: check what conductor needs on this machine, and say how to fix it.

Each check gives one line: ``ok``, ``warn`` (works, but something deserves attention) or
``fail`` (something required is missing). Required: git, a state directory
that can be written on a local filesystem, the sandbox's programs (bubblewrap and socat on
Linux), a Claude Code CLI that starts, and credentials for it. Without credentials a Claude
task cannot run, so that is a failure too, except when ``CONDUCTOR_CLAUDE_CLI`` names another
CLI (such as the offline fake), which may need none: then it is a warning. The repository
being a git checkout with a committer identity is a warning: shell tasks run anywhere.

Nothing here reaches the network: the CLI is only asked for ``--version``, with its own
empty config directory, so the person's ``~/.claude.json`` is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from conductor.paths import STATE_ROOT_NAME
from conductor.terminal import visible

Status = Literal["ok", "warn", "fail"]

CREDENTIAL_ENV = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")
"""Environment variables a Claude session authenticates with."""
CLI_ENV = "CONDUCTOR_CLAUDE_CLI"
"""Names the Claude Code executable instead of the bundled one (``conductor.executors.claude``)."""
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smbfs", "smb3", "sshfs", "fuse.sshfs", "9p", "afs", "lustre"}
)
"""Filesystems where the kernel locks the state directory relies on are not dependable."""


@dataclass(frozen=True)
class Check:
    """The result of one check."""

    name: str
    """What was checked, in a word or two."""
    status: Status
    """``ok``, ``warn`` or ``fail``."""
    detail: str
    """What was found."""
    fix: str = ""
    """How to fix it (empty when ``ok``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


def run_checks(
    repo: Path,
    state_root: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> list[Check]:
    """Every check, in the order a person should fix them."""
    env = os.environ if environ is None else environ
    return [
        check_python(),
        check_git(repo),
        check_state_dir(state_root if state_root is not None else repo / STATE_ROOT_NAME),
        check_sandbox(),
        check_cli(env),
        check_credentials(env, home if home is not None else Path.home()),
    ]


def failed(checks: list[Check]) -> bool:
    """Whether a required check failed (``doctor`` then exits 1)."""
    return any(c.status == "fail" for c in checks)


def check_python() -> Check:
    """Which Python conductor runs on (installing it already required 3.11 or newer)."""
    version = ".".join(str(n) for n in sys.version_info[:3])
    return Check("python", "ok", f"Python {version} ({sys.executable})")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def check_git(repo: Path) -> Check:
    """git is installed; the repository is a checkout and git knows who commits."""
    if shutil.which("git") is None:
        return Check(
            "git", "fail", "git not found on PATH",
            "install git (Debian/Ubuntu: `apt-get install git`)",
        )
    version = _git(repo, "--version")
    found = version.stdout.strip() if version is not None else "git"
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return Check(
            "git", "warn", f"{found}; {repo} is not a git checkout",
            f"Claude tasks need one: `git init {repo}` and commit, or run from a checkout",
        )
    name = _git(repo, "config", "user.name")
    email = _git(repo, "config", "user.email")
    if not (name and name.stdout.strip() and email and email.stdout.strip()):
        return Check(
            "git", "warn", f"{found}; checkout {top.stdout.strip()}, but no user.name/user.email",
            "landed commits name `conductor` as their committer until you set "
            "`git config user.name` and `git config user.email`",
        )
    return Check("git", "ok", f"{found}; checkout {top.stdout.strip()}")


def _filesystem(path: Path) -> str | None:
    """The filesystem type ``path`` lives on (Linux ``/proc/self/mounts``), if known."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    real = str(path.resolve())
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_state_dir(root: Path) -> Check:
    """The state root is a directory (or can be made), not a symlink, writable and local."""
    elsewhere = "point --state-dir / CONDUCTOR_STATE_DIR elsewhere"
    if root.is_symlink():
        return Check(
            "state directory", "fail", f"{root} is a symbolic link",
            f"remove the link (conductor refuses planted redirects), or {elsewhere}",
        )
    probe_dir = root
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return Check(
            "state directory", "fail", f"{probe_dir} is not a directory",
            f"remove it, or {elsewhere}",
        )
    try:
        fd, name = tempfile.mkstemp(prefix=".doctor.", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return Check(
            "state directory", "fail", f"cannot write in {probe_dir}: {exc.strerror or exc}",
            f"make it writable, or {elsewhere}",
        )
    kind = _filesystem(probe_dir)
    where = f"{root.absolute()}" + ("" if root.exists() else " (created on the first run)")
    if kind in NETWORK_FILESYSTEMS:
        return Check(
            "state directory", "warn", f"{where} is on {kind}",
            "the kernel locks conductor relies on are not dependable there: point "
            "--state-dir / CONDUCTOR_STATE_DIR at a local filesystem",
        )
    return Check("state directory", "ok", where + (f" on {kind}" if kind else ""))


def check_sandbox() -> Check:
    """bubblewrap and socat are there and bwrap can make a sandbox."""
    from conductor.sandbox import INSTALL_HINT, unavailable

    why = unavailable()
    if why is None:
        return Check("sandbox", "ok", "bubblewrap can create a sandbox; socat found")
    return Check("sandbox", "fail", why, INSTALL_HINT)


def _cli_path(env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The CLI conductor would start, and where that choice comes from."""
    named = env.get(CLI_ENV, "").strip()
    if named:
        found = shutil.which(named) if os.sep not in named else named
        return (Path(found) if found else None), f"{CLI_ENV}={named}"
    from conductor.testing.fake_api import bundled_cli_path

    return bundled_cli_path(), "the CLI bundled with claude-agent-sdk"


def check_cli(env: Mapping[str, str]) -> Check:
    """The Claude Code CLI conductor would start exists and answers ``--version``."""
    path, source = _cli_path(env)
    if path is None or not path.is_file() or not os.access(path, os.X_OK):
        where = f" ({path})" if path is not None else ""
        fix = (
            f"set {CLI_ENV} to an executable `claude` (a path or a command on PATH)"
            if source.startswith(CLI_ENV)
            else "reinstall it: `pip install --force-reinstall claude-agent-sdk`, or set "
            f"{CLI_ENV} to a `claude` on PATH"
        )
        return Check("claude cli", "fail", f"{source}: not found or not executable{where}", fix)
    with tempfile.TemporaryDirectory(prefix="conductor-doctor-") as config:
        run_env = {
            **env,
            "CLAUDE_CONFIG_DIR": config,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
        try:
            out = subprocess.run(
                [str(path), "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                env=run_env,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Check(
                "claude cli", "fail", f"{path} does not start: {exc}",
                f"reinstall claude-agent-sdk or set {CLI_ENV} to a working `claude`",
            )
    if out.returncode != 0:
        said = (out.stderr or out.stdout).strip().splitlines()
        return Check(
            "claude cli", "fail",
            f"{path} --version exited {out.returncode}: {said[0] if said else ''}".rstrip(": "),
            f"reinstall claude-agent-sdk or set {CLI_ENV} to a working `claude`",
        )
    version = out.stdout.strip().splitlines()[0] if out.stdout.strip() else "?"
    return Check("claude cli", "ok", f"{version} ({source}: {path})")


def check_credentials(env: Mapping[str, str], home: Path) -> Check:
    """An API key or OAuth token is in the environment (a ``claude`` login is not used)."""
    have = [name for name in CREDENTIAL_ENV if env.get(name, "").strip()]
    if have:
        detail = f"{' and '.join(have)} set"
        key = env.get("ANTHROPIC_API_KEY", "").strip()
        if key and not key.startswith("sk-ant-"):
            return Check(
                "credentials", "warn", f"{detail}, but ANTHROPIC_API_KEY does not look like a key "
                "(it should start with sk-ant-)",
                "copy the key again from console.anthropic.com",
            )
        base = env.get("ANTHROPIC_BASE_URL", "").strip()
        if base:
            detail += f"; requests go to ANTHROPIC_BASE_URL={base}"
        return Check("credentials", "ok", detail)
    login = [
        str(p) for p in (home / ".claude" / ".credentials.json", home / ".claude.json")
        if p.is_file()
    ]
    fix = (
        "export ANTHROPIC_API_KEY (console.anthropic.com), or run `claude setup-token` and "
        "export the CLAUDE_CODE_OAUTH_TOKEN it prints"
    )
    detail = "neither ANTHROPIC_API_KEY nor CLAUDE_CODE_OAUTH_TOKEN is set"
    if login:
        detail += (
            f"; a `claude` login was found ({login[0]}), but each session has its own config "
            "directory, so it is not used"
        )
    if env.get(CLI_ENV, "").strip():
        return Check(
            "credentials", "warn",
            f"{detail} (fine for the CLI {CLI_ENV} names if it needs none, such as the "
            "offline fake)",
            fix,
        )
    return Check("credentials", "fail", f"{detail}: Claude tasks cannot run", fix)


def render(checks: list[Check]) -> list[str]:
    """One line per check, with its fix when it is not ok, for the terminal."""
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}[c.status]
        fix = f" — fix: {c.fix}" if c.fix and c.status != "ok" else ""
        # A CLI's or git's own output is quoted in details: its escape sequences are shown.
        lines.append(visible(f"{mark}  {c.name:<{width}}  {c.detail}{fix}"))
    return lines

