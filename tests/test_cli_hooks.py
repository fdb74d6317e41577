"""``conductor hooks``: installed hooks run in real ``git commit``s of real repositories."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner, Result

from conductor.bus import Bus
from conductor.cli import main
from conductor.githooks import MARKER
from conductor.locks import HOST, PathLocks, RunLock, record_name
from conductor.messages import utcnow
from conductor.paths import StateDir

BAD_TRACK = textwrap.dedent(
    """\
    track: feature
    tasks:
      - id: api
        run: make api
        depends_on: [nowhere]
    """
)

GOOD_TRACK = textwrap.dedent(
    """\
    track: feature
    tasks:
      - {id: api, run: make api, files: [src/**]}
    """
)

ORIGINAL_HOOK = textwrap.dedent(
    """\
    #!/bin/sh
    # someone's own pre-commit hook
    echo ran >> "$(git rev-parse --show-toplevel)/chained-marker"
    [ ! -e "$(git rev-parse --show-toplevel)/block-me" ]
    """
)


@pytest.fixture(autouse=True)
def _git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Git without the machine's config, a fixed identity, and this conductor first on PATH."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "no-global-gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Pat Person")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "pat@example.com")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for name in ("CONDUCTOR_TRACK", "CONDUCTOR_WORKER", "CONDUCTOR_WORKER_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def root() -> Path:
    """The state root every command and hook uses (conftest points CONDUCTOR_STATE_DIR at it)."""
    return Path(os.environ["CONDUCTOR_STATE_DIR"])


def hooks(*args: str) -> Result:
    """Invoke ``conductor hooks ARGS``."""
    return CliRunner().invoke(main, ["hooks", *args], catch_exceptions=False)


def stage(repo: Path, path: str, text: str = "content\n") -> None:
    """Write ``path`` in the work tree and stage it."""
    file = repo / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    subprocess.run(["git", "-C", str(repo), "add", "--", path], check=True)


def commit(
    repo: Path, message: str = "a person's change", **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a real ``git commit`` (hooks included) in ``repo``."""
    return subprocess.run(
        ["git", "-C", str(repo), "commit", "-q", "-m", message],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


def head(repo: Path) -> str:
    """The commit ``HEAD`` points at."""
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return out.stdout.strip()


def unstage_all(repo: Path) -> None:
    """Empty the index back to ``HEAD``."""
    subprocess.run(["git", "-C", str(repo), "reset", "-q"], check=True)


def path_locks(root: Path, track: str) -> PathLocks:
    """The path locks of ``track`` under the state root, layout created."""
    return PathLocks(StateDir(root / track).ensure().locks)


def bus_messages(root: Path, track: str) -> list[dict[str, Any]]:
    """Every message on a track's bus, as envelopes (none if it has no bus)."""
    state = StateDir(root / track)
    if not state.bus.is_dir():
        return []
    with Bus.for_state(state, track) as bus:
        return [message.to_dict() for message in bus.read()]


def installed(repo: Path) -> None:
    """Install the hooks in ``repo``, checking the command worked."""
    result = hooks("install", "--repo", str(repo))
    assert result.exit_code == 0, result.output


def test_commit_of_a_locked_file_is_refused_until_the_lock_is_released(
    repo: Path, root: Path
) -> None:
    """A staged file locked by a live task refuses the commit naming task and track."""
    installed(repo)
    locks = path_locks(root, "feature")
    locks.acquire("src/app.py", worker="api.1", task="api", attempt=1)
    before = head(repo)
    stage(repo, "src/app.py")
    refused = commit(repo)
    assert refused.returncode == 1
    assert (
        "conductor: src/app.py is being changed by task api (track feature); "
        "wait for it or stop the track"
    ) in refused.stderr
    assert head(repo) == before
    unstage_all(repo)
    stage(repo, "README.md")
    assert commit(repo).returncode == 0
    locks.release("src/app.py", worker="api.1")
    stage(repo, "src/app.py")
    done = commit(repo)
    assert done.returncode == 0, done.stderr
    assert head(repo) != before


def test_a_glob_lock_covers_the_paths_under_it(repo: Path, root: Path) -> None:
    """A lock recorded as a glob refuses every staged path it matches, deletions too."""
    stage(repo, "docs/guide/old.md")
    assert commit(repo).returncode == 0
    installed(repo)
    path_locks(root, "feature").acquire("docs/**", worker="doc.1", task="docs", attempt=1)
    subprocess.run(["git", "-C", str(repo), "rm", "-q", "docs/guide/old.md"], check=True)
    refused = commit(repo)
    assert refused.returncode == 1
    assert "docs/guide/old.md is being changed by task docs (track feature)" in refused.stderr


def test_a_dead_holder_does_not_refuse(repo: Path, root: Path) -> None:
    """A lock whose holder is gone (its pid now belongs to another process) owns nothing."""
    installed(repo)
    locks = path_locks(root, "feature")
    record = {
        "path": "src/app.py",
        "worker": "api.1",
        "task": "api",
        "attempt": 1,
        "pid": os.getpid(),
        "host": HOST,
        "pid_start": psutil.Process().create_time() - 1000,
        "since": utcnow().isoformat(),
        "lease_expires": None,
    }
    (locks.directory / record_name("src/app.py")).write_text(json.dumps(record))
    stage(repo, "src/app.py")
    result = commit(repo)
    assert result.returncode == 0, result.stderr


def test_a_worker_may_commit_its_own_files(repo: Path, root: Path) -> None:
    """Inside the worker that holds the lock (CONDUCTOR_WORKER set) the commit is allowed."""
    installed(repo)
    path_locks(root, "feature").acquire("src/app.py", worker="api.1", task="api", attempt=1)
    stage(repo, "src/app.py")
    other = commit(repo, CONDUCTOR_TRACK="feature", CONDUCTOR_WORKER="web.1")
    assert other.returncode == 1
    own = commit(repo, CONDUCTOR_TRACK="feature", CONDUCTOR_WORKER="api.1")
    assert own.returncode == 0, own.stderr


def test_a_staged_invalid_track_refuses_with_file_and_line(repo: Path) -> None:
    """A bad staged track file refuses the commit with file:line: field; the index decides."""
    installed(repo)
    stage(repo, "tracks/feature.yaml", BAD_TRACK)
    (repo / "tracks/feature.yaml").write_text(GOOD_TRACK)  # fixed in the work tree only
    refused = commit(repo)
    assert refused.returncode == 1
    assert (
        "conductor: tracks/feature.yaml:5: tasks[0].depends_on: unknown task 'nowhere'"
        in refused.stderr
    )
    stage(repo, "tracks/feature.yaml", GOOD_TRACK)
    stage(repo, "config.yml", "name: not a track\nitems: [1, 2\n")  # broken, but not a track
    stage(repo, "other.yaml", "- track: a list, not a track\n")
    done = commit(repo)
    assert done.returncode == 0, done.stderr


def test_post_commit_records_on_running_tracks_only(repo: Path, root: Path) -> None:
    """PERSON_COMMIT goes to the bus of a track whose run lock is held, not to an idle one."""
    with RunLock(StateDir(root / "idle").ensure(), "idle"):
        pass  # it ran once: run.lock is there, nobody holds it
    installed(repo)
    stage(repo, "notes/plan.txt")
    stage(repo, "app.py")
    with RunLock(StateDir(root / "feature").ensure(), "feature"):
        result = commit(repo, "Fix the plan\n\nWith a body.")
    assert result.returncode == 0, result.stderr
    messages = bus_messages(root, "feature")
    assert [m["type"] for m in messages] == ["PERSON_COMMIT"]
    assert messages[0]["worker"] is None and messages[0]["task"] is None
    assert messages[0]["payload"] == {
        "sha": head(repo),
        "subject": "Fix the plan",
        "author": "Pat Person <pat@example.com>",
        "files": ["app.py", "notes/plan.txt"],
    }
    assert bus_messages(root, "idle") == []


def test_post_commit_warns_and_never_fails_the_commit(repo: Path, root: Path) -> None:
    """A bus that cannot be written (a planted symlink) is a warning; the commit is made."""
    state = StateDir(root / "feature")
    state.root.mkdir(parents=True)
    (root / "elsewhere").mkdir()
    state.bus.symlink_to(root / "elsewhere")
    installed(repo)
    before = head(repo)
    stage(repo, "a.txt")
    with RunLock(state, "feature"):
        result = commit(repo)
    assert result.returncode == 0
    assert "conductor: warning: could not record" in result.stderr
    assert "symbolic link" in result.stderr
    assert head(repo) != before


def test_an_existing_hook_is_chained_and_uninstall_restores_it(repo: Path) -> None:
    """The hook that was there still runs and can refuse; uninstall puts it back exactly."""
    original = repo / ".git" / "hooks" / "pre-commit"
    original.write_text(ORIGINAL_HOOK)
    original.chmod(0o750)
    installed(repo)
    assert MARKER in original.read_text()
    kept = original.with_name("pre-commit.pre-conductor")
    assert kept.read_text() == ORIGINAL_HOOK
    stage(repo, "a.txt")
    assert commit(repo).returncode == 0
    assert (repo / "chained-marker").read_text() == "ran\n"
    (repo / "block-me").write_text("")
    stage(repo, "b.txt")
    refused = commit(repo)
    assert refused.returncode != 0
    assert (repo / "chained-marker").read_text() == "ran\nran\n"
    result = hooks("uninstall", "--repo", str(repo))
    assert result.exit_code == 0
    assert "pre-commit: removed conductor's hook and restored the original" in result.output
    assert "post-commit: removed" in result.output
    assert original.read_bytes() == ORIGINAL_HOOK.encode()
    assert stat.S_IMODE(original.stat().st_mode) == 0o750
    assert not kept.exists() and not original.with_name("post-commit").exists()


def test_install_respects_core_hooks_path(repo: Path, root: Path) -> None:
    """With core.hooksPath set, the hooks go there and git runs them from there."""
    subprocess.run(["git", "-C", str(repo), "config", "core.hooksPath", ".githooks"], check=True)
    installed(repo)
    assert MARKER in (repo / ".githooks" / "pre-commit").read_text()
    assert not (repo / ".git" / "hooks" / "pre-commit").exists()
    status = json.loads(hooks("status", "--json", "--repo", str(repo)).output)
    assert status["hooks_dir"] == str(repo / ".githooks")
    path_locks(root, "feature").acquire("a.txt", worker="api.1", task="api", attempt=1)
    stage(repo, "a.txt")
    assert commit(repo).returncode == 1


def test_linked_worktree_installs_in_the_shared_hooks_directory(repo: Path, tmp_path: Path) -> None:
    """In a linked worktree the hooks go to the repository's common hooks directory."""
    tree = tmp_path / "linked"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(tree)], check=True)
    installed(tree)
    assert MARKER in (repo / ".git" / "hooks" / "post-commit").read_text()


def test_status_text_and_json(repo: Path) -> None:
    """Status says installed, not installed or foreign per hook, and what is chained."""
    hooks_dir = repo / ".git" / "hooks"
    result = hooks("status", "--repo", str(repo))
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"hooks directory: {hooks_dir}",
        "pre-commit   not installed",
        "post-commit  not installed",
    ]
    (hooks_dir / "post-commit").write_text("#!/bin/sh\nexit 0\n")
    text = hooks("status", "--repo", str(repo)).output
    assert "post-commit  not installed: another hook is there (not conductor's)" in text
    installed(repo)
    assert hooks("status", "--repo", str(repo)).output.splitlines()[1:] == [
        "pre-commit   installed",
        "post-commit  installed; chains post-commit.pre-conductor",
    ]
    body = json.loads(hooks("status", "--json", "--repo", str(repo)).output)
    assert body == {
        "hooks_dir": str(hooks_dir),
        "hooks": {
            "pre-commit": {
                "path": str(hooks_dir / "pre-commit"),
                "state": "installed",
                "chained": None,
            },
            "post-commit": {
                "path": str(hooks_dir / "post-commit"),
                "state": "installed",
                "chained": str(hooks_dir / "post-commit.pre-conductor"),
            },
        },
    }


def test_install_is_idempotent(repo: Path) -> None:
    """Installing twice changes nothing the second time and never chains our own hook."""
    hooks_dir = repo / ".git" / "hooks"
    (hooks_dir / "pre-commit").write_text(ORIGINAL_HOOK)
    (hooks_dir / "pre-commit").chmod(0o755)
    installed(repo)
    first = {p.name: p.read_bytes() for p in hooks_dir.iterdir()}
    again = hooks("install", "--repo", str(repo))
    assert again.exit_code == 0
    assert again.output.startswith("pre-commit: already installed")
    assert "post-commit: already installed" in again.output
    assert {p.name: p.read_bytes() for p in hooks_dir.iterdir()} == first
    assert (hooks_dir / "pre-commit.pre-conductor").read_text() == ORIGINAL_HOOK


def test_hooks_fall_back_to_the_recorded_interpreter(repo: Path, root: Path) -> None:
    """Without conductor on PATH the hook runs the Python that installed it."""
    git = shutil.which("git")
    assert git is not None
    bare_path = os.pathsep.join([str(Path(git).parent), "/usr/bin", "/bin"])
    if shutil.which("conductor", path=bare_path):
        pytest.skip("a conductor is installed system-wide")
    installed(repo)
    path_locks(root, "feature").acquire("a.txt", worker="api.1", task="api", attempt=1)
    stage(repo, "a.txt")
    refused = commit(repo, PATH=bare_path)
    assert refused.returncode == 1
    assert "a.txt is being changed by task api (track feature)" in refused.stderr


def test_hooks_run_accepts_and_ignores_file_names(repo: Path) -> None:
    """``hooks run`` takes the file names the pre-commit framework passes, and checks the index."""
    stage(repo, "tracks/feature.yaml", BAD_TRACK)
    result = hooks("run", "track-validate", "--repo", str(repo), "unrelated.yaml")
    assert result.exit_code == 1
    assert "tracks/feature.yaml:5: tasks[0].depends_on" in result.stderr
    assert hooks("run", "owned-files", "--repo", str(repo), "x.py").exit_code == 0


def test_not_a_git_repository_is_a_user_error(tmp_path: Path) -> None:
    """Installing outside a repository exits 2 with a message, not a traceback."""
    plain = tmp_path / "plain"
    plain.mkdir()
    result = hooks("install", "--repo", str(plain))
    assert result.exit_code == 2
    assert result.stderr == f"error: {plain} is not in a git repository\n"


def test_hook_run_in_a_bare_repository_is_a_user_error(tmp_path: Path) -> None:
    """`hooks run` against a bare repository, or no repository, exits 2 saying which."""
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    result = hooks("run", "pre-commit", "--repo", str(bare))
    assert result.exit_code == 2
    assert result.stderr == f"error: {bare} has no work tree (a bare repository)\n"
    plain = tmp_path / "plain"
    plain.mkdir()
    result = hooks("run", "post-commit", "--repo", str(plain))
    assert result.exit_code == 0  # a post-commit hook only warns
    assert "is not in a git repository" in result.stderr


def test_foreign_hook_beside_a_kept_original_is_refused(repo: Path) -> None:
    """A foreign hook plus a kept original: install refuses (exit 2) and touches nothing."""
    hooks_dir = repo / ".git" / "hooks"
    (hooks_dir / "post-commit").write_text("#!/bin/sh\necho new\n")
    (hooks_dir / "post-commit.pre-conductor").write_text("#!/bin/sh\necho old\n")
    result = hooks("install", "--repo", str(repo))
    assert result.exit_code == 2
    assert "move one of them away" in result.stderr
    assert not (hooks_dir / "pre-commit").exists()
    assert (hooks_dir / "post-commit").read_text() == "#!/bin/sh\necho new\n"


def test_a_hooks_path_that_is_a_file_is_a_user_error(repo: Path) -> None:
    """core.hooksPath naming a file: install exits 2 naming the directory, no traceback."""
    (repo / "not-a-dir").write_text("")
    subprocess.run(["git", "-C", str(repo), "config", "core.hooksPath", "not-a-dir"], check=True)
    result = hooks("install", "--repo", str(repo))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot change the hooks in {repo / 'not-a-dir'}: ")
    assert hooks("uninstall", "--repo", str(repo)).output.splitlines() == [
        "pre-commit: not installed",
        "post-commit: not installed",
    ]
