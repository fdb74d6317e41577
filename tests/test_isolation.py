"""Attempts in their own copy through the scheduler: verdict by diff, verify, landing, resume."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from conductor.bus import Bus
from conductor.errors import UserError
from conductor.messages import MessageType
from conductor.paths import StateDir
from conductor.sandbox import unavailable
from conductor.scheduler import RunOptions, RunResult, run_track
from conductor.testing.scripted import ScriptedExecutor, Step
from conductor.track import Track, parse_track

pytestmark = pytest.mark.anyio

needs_sandbox = pytest.mark.skipif(unavailable() is not None, reason=f"{unavailable()}")


def ran(directory: Path) -> list[str]:
    """Marker files a planted program would have left."""
    return [name for name in os.listdir(directory) if name.startswith("ran.")]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_track(text: str) -> Track:
    return parse_track(textwrap.dedent(text))


def state_of(repo: Path, track_id: str) -> StateDir:
    return StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))


def messages(repo: Path, track_id: str) -> list[Any]:
    with Bus.for_state(state_of(repo, track_id), track_id) as bus:
        return bus.read()


def of_type(msgs: list[Any], mtype: str, task: str | None = None) -> list[Any]:
    return [m for m in msgs if m.type == mtype and (task is None or m.task == task)]


async def run(track: Track, repo: Path, executor: Any, **kw: Any) -> RunResult:
    opts: dict[str, Any] = {
        "repo": repo,
        "state_root": Path(os.environ["CONDUCTOR_STATE_DIR"]),
        "handle_signals": False,
        "executors": lambda task: executor,
    }
    opts.update(kw)
    return await run_track(track, RunOptions(**opts))


@pytest.fixture
def person(repo: Path) -> Path:
    """The conftest repository with an identity, a source file and a verify script."""
    git(repo, "config", "user.name", "P")
    git(repo, "config", "user.email", "p@example.com")
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    (repo / "check.sh").write_text("#!/bin/sh\ntest -s src/b.py\n")
    (repo / "check.sh").chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


TWO = """
track: iso
tasks:
  - id: make-b
    type: code
    files: [src/b.py]
    verify: [./check.sh]
  - id: docs
    type: docs
    depends_on: [make-b]
    files: [docs/**]
"""


async def test_accepted_attempts_land_as_commits_in_order(person: Path) -> None:
    """Each accepted attempt is one commit whose sha is on TASK_COMPLETE; a dependent's copy
    holds its dependency's landed work; copies are made, recorded and removed."""
    seen: dict[str, bool] = {}

    class Watching(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            seen[ctx.task.id] = (ctx.cwd / "src" / "b.py").exists()
            assert ctx.cwd != person and not ctx.token
            return await super().execute(ctx)

    executor = Watching(copy=True)
    executor.enqueue("make-b", Step(writes={"src/b.py": "b = 1\n"}, summary="added b"))
    executor.enqueue("docs", Step(writes={"docs/b.md": "# b\n"}))
    result = await run(make_track(TWO), person, executor)
    assert result.status == "complete", result.failed
    assert seen == {"make-b": False, "docs": True}
    msgs = messages(person, "iso")
    done = {m.task: m.payload for m in of_type(msgs, "TASK_COMPLETE")}
    log = git(person, "log", "--format=%H %s").splitlines()
    assert [line.split(" ", 1)[1] for line in log] == ["iso/docs", "iso/make-b", "base", "init"]
    assert done["docs"]["commit"] == log[0].split()[0]
    assert done["make-b"]["commit"] == log[1].split()[0]
    assert done["make-b"]["files_changed"] == ["src/b.py"]
    body = git(person, "log", "-1", "--format=%B", done["make-b"]["commit"])
    assert "added b" in body and "Conductor-Task: make-b" in body and "Conductor-Attempt: 1" in body
    assert git(person, "status", "--porcelain") == ""
    assert len(of_type(msgs, "COPY_MADE")) == 2 and len(of_type(msgs, "COPY_REMOVED")) == 2
    assert not any((state_of(person, "iso").root / "copies").iterdir())
    assert git(person, "for-each-ref", "refs/conductor/") == ""


async def test_change_outside_files_is_rejected_and_nothing_lands(person: Path) -> None:
    """A change outside the task's files (here deleting another file) fails the attempt with
    the paths on the bus; the checkout is untouched; the failed copy is kept."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue(
        "make-b", Step(writes={"src/b.py": "b = 1\n", "src/a.py": None, "README": "x"})
    )
    track = make_track(TWO.replace("verify: [./check.sh]", "max_attempts: 1"))
    head = git(person, "rev-parse", "HEAD")
    result = await run(track, person, executor)
    assert result.status == "failed"
    failed = of_type(messages(person, "iso"), "TASK_FAILED", "make-b")[0].payload
    assert "outside the task's files" in failed["error"]
    assert failed["rejected_paths"] == ["README", "src/a.py"]
    assert git(person, "rev-parse", "HEAD") == head and git(person, "status", "--porcelain") == ""
    kept = of_type(messages(person, "iso"), "COPY_REMOVED", "make-b")[0].payload
    assert kept["kept"] is True
    copy = state_of(person, "iso").root / "copies" / "make-b.1"
    assert (copy / "src" / "b.py").exists()


async def test_a_later_accepted_attempt_removes_the_kept_copy(person: Path) -> None:
    """A failed attempt's copy is kept only until a later attempt of its task ends: once the
    task completes, the old copy is removed, on the bus, in the same run."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("make-b", Step(ok=False, error="no"))
    executor.enqueue("make-b", Step(writes={"src/b.py": "b = 1\n"}))
    executor.enqueue("docs", Step(writes={"docs/b.md": "b\n"}))
    result = await run(make_track(TWO), person, executor)
    assert result.status == "complete", result.failed
    assert not any((state_of(person, "iso").root / "copies").iterdir())
    copies = of_type(messages(person, "iso"), "COPY_REMOVED")
    removed = [(m.worker, m.payload["kept"]) for m in copies]
    assert removed[:3] == [("make-b.1", True), ("make-b.1", False), ("make-b.2", False)], removed


async def test_next_run_removes_kept_copies(person: Path) -> None:
    """A kept copy is removed, on the bus, when the next run starts."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("make-b", Step(ok=False, error="no"))
    track = make_track(TWO.replace("verify: [./check.sh]", "max_attempts: 1"))
    await run(track, person, executor)
    copy = state_of(person, "iso").root / "copies" / "make-b.1"
    assert copy.exists()
    executor.enqueue("make-b", Step(writes={"src/b.py": "b\n"}))
    executor.enqueue("docs", Step(writes={"docs/b.md": "b\n"}))
    result = await run(track, person, executor)
    assert result.status == "complete"
    assert not copy.exists()
    removed = [m.payload for m in of_type(messages(person, "iso"), "COPY_REMOVED")]
    assert any(p.get("reason") == "left by an earlier run" for p in removed)


@pytest.mark.parametrize(
    ("claims", "writes", "error"),
    [
        (["src/report.md"], {"src/notes.txt": "n"}, "did not change"),
        ([], {"src/b.py": "b"}, "does not name"),
        (["src/b.py"], {}, "did not change"),
    ],
)
async def test_claim_must_match_the_diff(
    person: Path, claims: list[str], writes: dict[str, str], error: str
) -> None:
    """A claim naming a file that did not change, or missing one that did, is rejected."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("t", Step(writes=dict(writes), claims=claims))
    track = make_track(
        """
        track: claims
        tasks:
          - {id: t, type: code, files: ["src/**"], max_attempts: 1}
        """
    )
    result = await run(track, person, executor)
    assert result.status == "failed"
    assert error in result.failed["t"]


async def test_do_nothing_claim_fails_while_neighbours_write(person: Path) -> None:
    """A worker that changed nothing is not credited with its neighbours' files."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("idle", Step(delay=0.3, claims=[]))
    executor.enqueue("w1", Step(writes={"w1.txt": "1"}))
    executor.enqueue("w2", Step(writes={"w2.txt": "2"}))
    track = make_track(
        """
        track: idle
        max_parallel: 3
        tasks:
          - {id: idle, type: code, files: ["idle/**"], max_attempts: 1}
          - {id: w1, type: code, files: [w1.txt]}
          - {id: w2, type: code, files: [w2.txt]}
        """
    )
    result = await run(track, person, executor)
    assert result.failed == {"idle": "no evidence: no file changed"}
    assert sorted(result.completed) == ["w1", "w2"]
    assert (person / "w1.txt").exists() and (person / "w2.txt").exists()


async def test_person_edit_during_attempt_is_a_conflict_kept_on_a_ref(person: Path) -> None:
    """A path the person edits while the attempt runs is not landed on: the attempt fails
    naming it, their edit stays, and the attempt's work is kept on a ref."""

    class Meddling(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            (person / "src" / "a.py").write_text("person's edit\n")
            return await super().execute(ctx)

    executor = Meddling(copy=True)
    executor.enqueue("t", Step(writes={"src/a.py": "agent\n"}))
    track = make_track(
        """
        track: clash
        tasks:
          - {id: t, type: code, files: ["src/*.py"], max_attempts: 1}
        """
    )
    result = await run(track, person, executor)
    assert result.status == "failed"
    assert "uncommitted changes" in result.failed["t"]
    assert (person / "src" / "a.py").read_text() == "person's edit\n"
    ref = "refs/conductor/clash/attempts/t.1"
    assert git(person, "show", f"{ref}:src/a.py") == "agent\n"
    assert "refs/conductor/clash/attempts/t.1" in result.failed["t"]


async def test_not_a_git_repository_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Copies need a git checkout: the run refuses with a user error and no bus."""
    track = make_track(
        """
        track: nogit
        tasks:
          - {id: t, type: code}
        """
    )
    with pytest.raises(UserError, match="not a git repository"):
        await run(track, tmp_path, ScriptedExecutor(copy=True))


async def test_resume_finishes_a_landing_cut_off_after_head_moved(person: Path) -> None:
    """A conductor that died between moving HEAD and TASK_COMPLETE: resume writes the files,
    records TASK_COMPLETE with the commit and never runs the task again."""
    track = make_track(TWO)
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("make-b", Step(writes={"src/b.py": "b = 1\n"}))
    executor.enqueue("docs", Step(writes={"docs/b.md": "# b\n"}))
    await run(track, person, executor)
    msgs = messages(person, "iso")
    landing = of_type(msgs, "LANDING", "docs")[0]
    # Rebuild the moment of the crash: HEAD at the landing commit, file not yet written,
    # and a bus that ends with LANDING.
    sd = state_of(person, "iso")
    kept = [m for m in msgs if m.seq <= landing.seq]
    for path in sd.bus.iterdir():
        if not path.name.startswith("."):
            path.unlink()
    for name in os.listdir(sd.bus):
        if name.startswith(".") and name != ".tmp":
            (sd.bus / name).unlink()
    for name in os.listdir(sd.cache):
        (sd.cache / name).unlink()
    with Bus.for_state(sd, "iso") as bus:
        for m in kept:
            bus.post(m.type, task=m.task, worker=m.worker, attempt=m.attempt, payload=m.payload)
    (person / "docs" / "b.md").unlink()
    git(person, "reset", "-q", "--", "docs/b.md")
    executor = ScriptedExecutor(copy=True)
    result = await run(track, person, executor)
    assert result.status == "complete" and executor.calls == []
    done = of_type(messages(person, "iso"), "TASK_COMPLETE", "docs")
    assert done[-1].payload["commit"] == landing.payload["commit"]
    assert done[-1].payload.get("recovered")
    assert (person / "docs" / "b.md").read_text() == "# b\n"
    assert git(person, "status", "--porcelain") == ""


@needs_sandbox
async def test_shell_task_in_a_copy_is_sandboxed(person: Path, tmp_path: Path) -> None:
    """`isolation: copy` gives a shell task a sandboxed copy: writes outside it fail, the
    state directory is hidden, and what it changed lands as a commit."""
    outside = tmp_path / "outside.txt"
    sd = state_of(person, "shellcopy")
    track = make_track(
        f"""
        track: shellcopy
        tasks:
          - id: gen
            run: >-
              echo gen > out/gen.txt &&
              (echo x > {outside} || true) &&
              (ls -R {sd.root.parent} > out/state.txt 2>&1 || true) &&
              (echo y > {person}/README || true)
            isolation: copy
            files: [out/**]
        """
    )
    (person / "out").mkdir()
    (person / "out" / ".keep").write_text("")
    git(person, "add", "-A")
    git(person, "commit", "-qm", "out")
    from conductor.executors.shell import ShellExecutor

    result = await run(track, person, ShellExecutor())
    assert result.status == "complete", result.failed
    assert not outside.exists() and not (person / "README").exists()
    assert (person / "out" / "gen.txt").read_text() == "gen\n"
    listing = (person / "out" / "state.txt").read_text()
    assert "TRACK_STARTED" not in listing and "run.lock" not in listing
    assert git(person, "log", "-1", "--format=%s") == "shellcopy/gen\n"


@needs_sandbox
async def test_verify_runs_sandboxed_in_the_copy(person: Path, tmp_path: Path) -> None:
    """Verify runs in the copy inside the sandbox: the agent's code it runs cannot write the
    checkout or the bus, and verify sees the attempt's files."""
    outside = tmp_path / "escaped"
    executor = ScriptedExecutor(copy=True, sandbox=True)
    executor.enqueue(
        "make-b",
        Step(writes={"src/b.py": f"open({str(outside)!r}, 'w').write('x')\n"}),
    )
    track = make_track(
        """
        track: sbverify
        tasks:
          - id: make-b
            type: code
            files: [src/b.py]
            verify: ["./check.sh", "python3 src/b.py || true"]
        """
    )
    result = await run(track, person, executor)
    assert result.status == "complete", result.failed
    assert not outside.exists()
    verify = of_type(messages(person, "sbverify"), MessageType.VERIFY_RESULT)
    assert [v.payload["ok"] for v in verify] == [True, True]


async def test_planted_git_config_hooks_and_filters_never_run(person: Path, tmp_path: Path) -> None:
    """An attempt that plants fsmonitor, hooks and filters in its clone's git directory (as if
    it got past the sandbox) never has them run by verdict, verify or landing."""
    marker = tmp_path / "ran"

    class Planting(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            git(ctx.cwd, "config", "core.fsmonitor", f"touch {marker}.fsmonitor; false")
            git(ctx.cwd, "config", "filter.evil.clean", f"touch {marker}.clean; cat")
            git(ctx.cwd, "config", "filter.evil.smudge", f"touch {marker}.smudge; cat")
            hooks = ctx.cwd / ".git" / "hooks"
            for name in ("pre-commit", "post-index-change", "reference-transaction"):
                (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}.{name}\n")
                (hooks / name).chmod(0o755)
            return await super().execute(ctx)

    executor = Planting(copy=True)
    executor.enqueue(
        "make-b", Step(writes={"src/b.py": "b = 1\n", "src/.gitattributes": "* filter=evil\n"})
    )
    executor.enqueue("docs", Step(writes={"docs/b.md": "b\n"}))
    result = await run(make_track(TWO.replace("src/b.py]", "src/*]")), person, executor)
    assert result.status == "complete", result.failed
    assert not ran(tmp_path)
    assert (person / "src" / "b.py").read_text() == "b = 1\n"


async def test_missing_sandbox_refuses_to_start_unless_the_track_turns_it_off(
    person: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without bubblewrap a track whose attempts need the sandbox is refused, naming what to
    install and writing nothing on the bus; `sandbox: off` runs it, unsandboxed."""
    import conductor.scheduler as scheduler

    monkeypatch.setattr(scheduler, "sandbox_unavailable", lambda: "bwrap not found on PATH")
    text = """
        track: nosb
        {extra}
        tasks:
          - {{id: t, type: code, files: [src/b.py]}}
        """
    executor = ScriptedExecutor(copy=True, sandbox=True)
    with pytest.raises(UserError, match="apt-get install bubblewrap socat"):
        await run(make_track(text.format(extra="")), person, executor)
    assert not state_of(person, "nosb").bus.exists() or messages(person, "nosb") == []
    executor.enqueue("t", Step(writes={"src/b.py": "b\n"}))
    result = await run(make_track(text.format(extra="sandbox: off")), person, executor)
    assert result.status == "complete"


async def test_verify_sees_only_what_would_land(person: Path) -> None:
    """Ignored files an attempt leaves (even inside its files, like a stale cache) are
    removed before verify: verify judges exactly the files that would land."""
    (person / ".gitignore").write_text("*.cache\n")
    git(person, "add", ".gitignore")
    git(person, "commit", "-qm", "ignore caches")
    executor = ScriptedExecutor(copy=True)
    executor.enqueue(
        "t", Step(writes={"src/b.py": "b = 1\n", "src/b.cache": "stale"}, claims=["src/b.py"])
    )
    track = make_track(
        """
        track: stale
        tasks:
          - {id: t, type: code, files: ["src/**"], max_attempts: 1,
             verify: ["test ! -e src/b.cache", "test -s src/b.py"]}
        """
    )
    result = await run(track, person, executor)
    assert result.status == "complete", result.failed


@pytest.mark.parametrize(
    "name",
    [b"src/bad\xff\xfename", b"src/new\nline", "src/x\n100644 " + "0" * 40 + "\tREADME"],
)
async def test_odd_file_names_are_rejected_without_a_traceback(
    person: Path, name: bytes | str
) -> None:
    """A file name that is not valid UTF-8, or holds a newline (as in an injection into
    git's index records), fails the attempt with the name escaped; nothing lands."""
    raw = name if isinstance(name, bytes) else name.encode()

    class Odd(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            fd = os.open(os.path.join(os.fsencode(ctx.cwd), raw), os.O_CREAT | os.O_WRONLY)
            os.close(fd)
            return await super().execute(ctx)

    executor = Odd(copy=True)
    executor.enqueue("t", Step(claims=["."]))
    track = make_track(
        """
        track: odd
        tasks:
          - {id: t, type: code, files: ["src/**"], max_attempts: 1}
        """
    )
    head = git(person, "rev-parse", "HEAD")
    result = await run(track, person, executor)
    assert "valid UTF-8 without control characters" in result.failed["t"]
    assert git(person, "rev-parse", "HEAD") == head
    assert git(person, "status", "--porcelain") == ""


async def test_huge_file_is_rejected_unread(person: Path) -> None:
    """A changed file over the size limit fails the attempt without being hashed into the
    repository's object store."""
    executor = ScriptedExecutor(copy=True)

    class Huge(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            os.close(os.open(ctx.cwd / "src" / "big.bin", os.O_CREAT | os.O_WRONLY))
            os.truncate(ctx.cwd / "src" / "big.bin", 200 * 2**20)  # sparse: costs nothing
            return await super().execute(ctx)

    executor = Huge(copy=True)
    executor.enqueue("t", Step(claims=["src/big.bin"]))
    track = make_track(
        """
        track: huge
        tasks:
          - {id: t, type: code, files: ["src/**"], max_attempts: 1}
        """
    )
    objects = sum(len(files) for _, _, files in os.walk(person / ".git" / "objects"))
    result = await run(track, person, executor)
    assert "over 100 MiB" in result.failed["t"] and "src/big.bin" in result.failed["t"]
    after = sum(len(files) for _, _, files in os.walk(person / ".git" / "objects"))
    assert after == objects


async def test_processes_an_attempt_leaves_running_are_ended_before_the_verdict(
    person: Path,
) -> None:
    """A background process an attempt started (in its own session, so outside any process
    group) is ended before the copy is judged, so it cannot change what is judged."""
    import psutil

    started: list[int] = []

    class Leaving(ScriptedExecutor):
        async def execute(self, ctx):  # type: ignore[no-untyped-def]
            proc = subprocess.Popen(  # noqa: ASYNC220 - a leak on purpose, never awaited
                ["/bin/sh", "-c", "while true; do echo x >> src/late.py; sleep 0.05; done"],
                cwd=ctx.cwd,
                env={**os.environ, **ctx.env},
                start_new_session=True,
            )
            started.append(proc.pid)
            return await super().execute(ctx)

    executor = Leaving(copy=True)
    executor.enqueue("t", Step(writes={"src/b.py": "b\n"}, claims=["src/b.py"]))
    track = make_track(
        """
        track: leave
        tasks:
          - {id: t, type: code, files: ["src/b.py"], max_attempts: 1}
        """
    )
    result = await run(track, person, executor)
    (pid,) = started
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # The loop wrote src/late.py, outside the task's files: the attempt is rejected for it,
    # and nothing lands.
    assert "src/late.py" in result.failed["t"]
    assert not (person / "src" / "late.py").exists()


async def test_names_landing_uses_for_itself_are_reserved(person: Path) -> None:
    """A path named like landing's own temporary files is never landed (it could take the
    place of another file's staged content)."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("t", Step(writes={".conductor-land-1-0123456789abcdef-0": "x", "a.py": "a"}))
    track = make_track(
        """
        track: reserved
        tasks:
          - {id: t, type: code, max_attempts: 1}
        """
    )
    result = await run(track, person, executor)
    assert "reserved names" in result.failed["t"]
    assert not (person / "a.py").exists()


@pytest.mark.parametrize("state_dir", [None, "runstate"])
async def test_state_directory_inside_the_checkout(person: Path, state_dir: str | None) -> None:
    """With the state directory in the checkout, ignored (the default `.conductor/`) or not
    (a custom one), snapshots leave it out and the attempt lands."""
    executor = ScriptedExecutor(copy=True)
    executor.enqueue("t", Step(writes={"src/b.py": "b\n"}))
    track = make_track(
        """
        track: inside
        tasks:
          - {id: t, type: code, files: [src/b.py]}
        """
    )
    (person / ".gitignore").write_text(".conductor/\n")  # as many projects' do
    git(person, "add", ".gitignore")
    git(person, "commit", "-qm", "ignore run state")
    state_root = None if state_dir is None else person / state_dir
    result = await run(track, person, executor, state_root=state_root)
    assert result.status == "complete", result.failed
    tree = git(person, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "src/b.py" in tree and not any(p.startswith((".conductor", "runstate")) for p in tree)
