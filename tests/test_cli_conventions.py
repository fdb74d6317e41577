"""What a person sees on the command line: the repository root from any subdirectory, track
directories, --json on read-only commands, unknown ids as errors that create nothing,
`run TRACK TASK...`, `--dry-run`, and the README's hook examples."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conductor.bus import Bus
from conductor.paths import StateDir, find_root

ROOT = Path(__file__).resolve().parent.parent

CHAIN = textwrap.dedent(
    """\
    track: chain
    tasks:
      - {id: build, run: "echo built > build.txt", files: [build.txt]}
      - {id: test, run: "cat build.txt > test.txt", files: [test.txt], depends_on: [build]}
      - {id: package, run: "echo pkg > pkg.txt", files: [pkg.txt], depends_on: [test]}
      - {id: docs, run: "echo docs > docs.txt", files: [docs.txt]}
    """
)


def conductor(
    cwd: Path, *args: str, state_dir: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in ``cwd``; state under REPO/.conductor unless ``state_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    if state_dir is not None:
        env["CONDUCTOR_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "conductor", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_track(repo: Path, text: str = CHAIN, where: str = "tracks/chain") -> Path:
    directory = repo / where
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "track.yaml").write_text(text)
    return directory


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under ``root`` with its mtime and content: any write shows up."""
    if not root.exists():
        return {}
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        body = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        out[str(path.relative_to(root))] = (st.st_mtime_ns, body)
    return out


def dispatched(sd: StateDir, track: str) -> list[str]:
    with Bus.for_state(sd, track) as bus:
        return [m.task or "" for m in bus.read() if m.type == "TASK_DISPATCHED"]


# --------------------------------------------------------------------------- the root


def test_subdirectory_finds_the_root_and_its_state(repo: Path) -> None:
    """Run and status from a subdirectory use REPO/.conductor and run tasks at the root."""
    write_track(repo)
    deep = repo / "src" / "deep"
    deep.mkdir(parents=True)
    first = conductor(deep, "run", "../../tracks/chain")
    assert first.returncode == 0, first.stderr
    assert (repo / ".conductor" / "chain" / "bus").is_dir()
    assert not (deep / ".conductor").exists() and not (repo / "src" / ".conductor").exists()
    assert (repo / "pkg.txt").read_text() == "pkg\n" and not (deep / "pkg.txt").exists()
    status = conductor(deep, "status", "chain", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"] == {"complete": 4}


def test_find_root_walks_up_without_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without git, the root is the nearest parent holding .conductor/ or .git, else the start."""
    top = tmp_path / "top"
    (top / ".conductor").mkdir(parents=True)
    (top / "a" / "b").mkdir(parents=True)
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))  # git cannot be found
    assert find_root(top / "a" / "b") == top
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "x").mkdir()
    assert find_root(checkout / "x") == checkout
    alone = tmp_path / "alone"
    alone.mkdir()
    assert find_root(alone) == alone


def test_find_root_uses_git_top(repo: Path) -> None:
    """In a git work tree the root is its top, even with a .conductor/ below it."""
    inner = repo / "pkg" / "sub"
    (repo / "pkg" / ".conductor").mkdir(parents=True)
    inner.mkdir()
    assert find_root(inner) == repo.resolve()


# --------------------------------------------------------------------------- track dirs


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "tracks/chain"],
        ["plan", "tracks/chain"],
        ["run", "tracks/chain"],
        ["status", "tracks/chain"],
        ["bus", "ls", "tracks/chain"],
        ["locks", "tracks/chain"],
        ["templates", "list", "--track", "tracks/chain"],
        ["agents", "list", "tracks/chain"],
    ],
)
def test_track_directory_is_accepted(repo: Path, args: list[str]) -> None:
    """Every command that takes a track file takes the directory holding track.yaml."""
    write_track(repo)
    if args[0] != "run":
        assert conductor(repo, "run", "tracks/chain/track.yaml").returncode == 0
    res = conductor(repo, *args)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_track_yml_in_a_directory(repo: Path) -> None:
    """A directory with track.yml (and no track.yaml) is a track directory too."""
    directory = repo / "tracks" / "alt"
    directory.mkdir(parents=True)
    (directory / "track.yml").write_text(CHAIN.replace("track: chain", "track: alt"))
    res = conductor(repo, "validate", "tracks/alt")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok: alt")
    empty = repo / "tracks" / "empty"
    empty.mkdir()
    res = conductor(repo, "validate", "tracks/empty")
    assert res.returncode == 2
    assert "tracks/empty/track.yaml" in res.stderr and "no such track file" in res.stderr


# --------------------------------------------------------------------------- --json


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (["validate", "tracks/chain", "--json"], {"ok", "track", "tasks", "agents", "notes"}),
        (["plan", "tracks/chain", "--json"], {"track", "tasks", "levels", "critical_path"}),
        (["status", "tracks/chain", "--json"], {"track", "counts", "tasks", "last_seq"}),
        (["locks", "chain", "--json"], {"locks", "unreadable"}),
        (["bus", "ls", "chain", "--json"], {"seq", "type", "ts", "track", "task", "payload"}),
        (["bus", "show", "chain", "1", "--json"], {"seq", "type", "ts", "track", "payload"}),
        (["bus", "tail", "chain", "--json"], {"seq", "type", "ts", "track", "payload"}),
        (["templates", "list", "--json"], None),
        (["templates", "show", "code", "--json"], {"name", "layer", "path", "text"}),
        (["agents", "list", "tracks/chain", "--json"], None),
        (["hooks", "status", "--json"], None),
        (["run", "tracks/chain", "--dry-run", "--json"], {"track", "dry_run", "tasks"}),
    ],
)
def test_read_only_commands_print_json(
    repo: Path, args: list[str], keys: set[str] | None
) -> None:
    """Each read-only command takes --json and prints parseable JSON with its stable keys."""
    write_track(repo)
    assert conductor(repo, "run", "tracks/chain").returncode == 0
    res = conductor(repo, *args)
    assert res.returncode == 0, res.stderr
    if args[:2] in (["bus", "ls"], ["bus", "tail"]):
        docs = [json.loads(line) for line in res.stdout.splitlines()]
        assert docs
    else:
        docs = [json.loads(res.stdout)]
    for doc in docs:
        assert isinstance(doc, (dict, list))
        if keys is not None:
            assert isinstance(doc, dict) and keys <= doc.keys(), doc


def test_plan_json_is_format_json(repo: Path) -> None:
    """plan --json prints what --format json prints; --json with another format is refused."""
    write_track(repo)
    a = conductor(repo, "plan", "tracks/chain", "--json")
    b = conductor(repo, "plan", "tracks/chain", "--format", "json")
    assert a.returncode == 0 and a.stdout == b.stdout
    c = conductor(repo, "plan", "tracks/chain", "--json", "--format", "dot")
    assert c.returncode == 2 and "not both" in c.stderr


# --------------------------------------------------------------------------- unknown ids


@pytest.mark.parametrize(
    "args",
    [
        ["status", "chian"],
        ["bus", "ls", "chian"],
        ["bus", "show", "chian", "1"],
        ["bus", "tail", "chian"],
        ["bus", "tail", "-f", "chian"],
        ["bus", "post", "chian", "NOTE", "-m", "hello"],
        ["bus", "post", "chian", "SKIP", "--task", "docs"],
        ["locks", "chian"],
        ["locks", "chian", "--break", "build.txt"],
    ],
)
def test_unknown_track_is_an_error_that_creates_nothing(repo: Path, args: list[str]) -> None:
    """An unknown track id exits 2 with a did-you-mean and leaves the state root untouched."""
    write_track(repo)
    assert conductor(repo, "run", "tracks/chain").returncode == 0
    before = snapshot(repo / ".conductor")
    res = conductor(repo, *args, timeout=60)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "no track 'chian' has run state" in res.stderr
    assert "did you mean 'chain'?" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (repo / ".conductor" / "chian").exists()
    assert snapshot(repo / ".conductor") == before


def test_unknown_track_with_no_state_at_all(repo: Path) -> None:
    """Where nothing ever ran, status of an id says so and creates no .conductor/."""
    for args in (["status", "nope"], ["locks", "nope"], ["bus", "post", "nope", "NOTE"]):
        res = conductor(repo, *args)
        assert res.returncode == 2 and "no track has run here yet" in res.stderr, res.stderr
    assert not (repo / ".conductor").exists()


def test_locks_of_a_track_file_that_never_ran(repo: Path) -> None:
    """locks TRACK_FILE of a track that never ran lists no locks (the track exists), exit 0."""
    write_track(repo)
    res = conductor(repo, "locks", "tracks/chain")
    assert res.returncode == 0 and "no locks" in res.stdout
    assert not (repo / ".conductor").exists()


def test_bus_post_unknown_task_is_an_error(repo: Path) -> None:
    """SKIP of a task the track lacks exits 2 with a did-you-mean and posts nothing."""
    write_track(repo)
    assert conductor(repo, "run", "tracks/chain", "build").returncode == 0
    sd = StateDir.for_track(repo, "chain")
    with Bus.for_state(sd, "chain") as bus:
        last = bus.last_seq()
    for track in ("chain", "tracks/chain"):
        res = conductor(repo, "bus", "post", track, "SKIP", "--task", "pakage")
        assert res.returncode == 2, res.stderr
        assert "has no task 'pakage'" in res.stderr and "did you mean 'package'?" in res.stderr
        res = conductor(repo, "bus", "post", track, "SKIP", "--task", "nonexistent")
        assert res.returncode == 2 and "has no task 'nonexistent'" in res.stderr
    with Bus.for_state(sd, "chain") as bus:
        assert bus.last_seq() == last
    # docs never ran, but the track file the run recorded has it: a bare id may skip it
    res = conductor(repo, "bus", "post", "chain", "SKIP", "--task", "docs")
    assert res.returncode == 0, res.stderr
    with Bus.for_state(sd, "chain") as bus:
        msg = bus.get(bus.last_seq())
    assert msg is not None and (msg.type, msg.task) == ("SKIP", "docs")


# --------------------------------------------------------------------------- run TASK...


def test_run_selected_tasks_and_their_dependencies(repo: Path) -> None:
    """`run TRACK test` runs build and test only, says what it selected, then skips them."""
    write_track(repo)
    res = conductor(repo, "run", "tracks/chain", "test")
    assert res.returncode == 0, res.stderr
    assert "selected: test (+ dependencies: build)" in res.stderr, res.stderr
    sd = StateDir.for_track(repo, "chain")
    assert sorted(dispatched(sd, "chain")) == ["build", "test"]
    assert not (repo / "pkg.txt").exists() and not (repo / "docs.txt").exists()
    again = conductor(repo, "run", "tracks/chain", "test", "docs")
    assert again.returncode == 0, again.stderr
    assert sorted(dispatched(sd, "chain")) == ["build", "docs", "test"]
    status = json.loads(conductor(repo, "status", "tracks/chain", "--json").stdout)
    assert {row["task"]: row["status"] for row in status["tasks"]} == {
        "build": "complete",
        "test": "complete",
        "package": "pending",
        "docs": "complete",
    }


def test_run_unknown_task_is_refused(repo: Path) -> None:
    """`run TRACK nosuch` exits 2 with a did-you-mean, and nothing is created."""
    write_track(repo)
    res = conductor(repo, "run", "tracks/chain", "tset")
    assert res.returncode == 2 and "has no task 'tset'" in res.stderr
    assert "did you mean 'test'?" in res.stderr
    res = conductor(repo, "run", "tracks/chain", "test", "--from", "docs")
    assert res.returncode == 2 and "not among the selected tasks" in res.stderr
    assert not (repo / ".conductor").exists()


# --------------------------------------------------------------------------- --dry-run


def test_dry_run_of_a_track_that_never_ran_writes_nothing(repo: Path) -> None:
    """--dry-run lists every task as run, exits 0 and creates no state at all."""
    write_track(repo)
    res = conductor(repo, "run", "tracks/chain", "--dry-run")
    assert res.returncode == 0, res.stderr
    assert "would run 4, rerun 0, skip 0" in res.stdout
    assert not (repo / ".conductor").exists() and not (repo / "build.txt").exists()


def test_dry_run_says_what_reruns_and_changes_nothing(repo: Path) -> None:
    """After an edit, --dry-run names the changed task and what is downstream as rerun,
    the rest as skip, and leaves every state file as it was."""
    directory = write_track(repo)
    assert conductor(repo, "run", "tracks/chain").returncode == 0
    (directory / "track.yaml").write_text(CHAIN.replace("echo built", "echo rebuilt"))
    before = snapshot(repo / ".conductor")
    res = conductor(repo, "run", "tracks/chain", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    steps = {s["task"]: (s["action"], s["reason"]) for s in json.loads(res.stdout)["tasks"]}
    assert steps["build"] == ("rerun", "definition changed since it completed")
    assert steps["test"] == ("rerun", "upstream task build changed")
    assert steps["package"] == ("rerun", "upstream task build changed")
    assert steps["docs"][0] == "skip"
    text = conductor(repo, "run", "tracks/chain", "--dry-run", "--from", "docs")
    assert "would run 0, rerun 4, skip 0" in text.stdout, text.stdout
    assert snapshot(repo / ".conductor") == before
    assert (repo / "build.txt").read_text() == "built\n"


def test_dry_run_with_selected_tasks(repo: Path) -> None:
    """--dry-run with TASKs lists only those and their dependencies."""
    write_track(repo)
    res = conductor(repo, "run", "tracks/chain", "test", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr
    body = json.loads(res.stdout)
    assert body["selected"] == ["build", "test"]
    assert [s["task"] for s in body["tasks"]] == ["build", "test"]
    assert not (repo / ".conductor").exists()


# --------------------------------------------------------------------------- README hooks


def readme_hook_examples() -> list[str]:
    """The ```sh blocks of the README's section on git hooks."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Locks and git hooks", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


FEATURE = textwrap.dedent(
    """\
    track: feature
    tasks:
      - {id: api, run: "true"}
      - {id: ui, run: "true", depends_on: [api]}
    """
)


def run_hook(repo: Path, script: str) -> subprocess.CompletedProcess[str]:
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(script if script.startswith("#!") else "#!/bin/sh\n" + script)
    hook.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(hook), "origin", "file:///nowhere"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_readme_has_hook_examples() -> None:
    """The README's hook section shows at least one hook to copy."""
    assert readme_hook_examples()


@pytest.mark.parametrize("index", range(len(readme_hook_examples())))
def test_readme_hook_example_fails_without_run_state(repo: Path, index: int) -> None:
    """Each README hook example refuses (non-zero, a clear message) when the track never
    ran or is unfinished, and passes when it is complete."""
    if not (Path(sys.executable).parent / "conductor").exists():
        pytest.skip("the conductor script is not installed next to this Python")
    if "jq" in readme_hook_examples()[index] and subprocess.run(
        ["sh", "-c", "command -v jq"], capture_output=True
    ).returncode:
        pytest.skip("jq is not installed")
    script = readme_hook_examples()[index]
    write_track(repo, FEATURE, "tracks/feature")
    never = run_hook(repo, script)
    assert never.returncode != 0
    assert "no run state" in never.stderr, never.stderr
    assert not (repo / ".conductor").exists()
    assert conductor(repo, "run", "tracks/feature", "api").returncode == 0
    partial = run_hook(repo, script)
    assert partial.returncode != 0
    assert "not finished" in partial.stderr, partial.stderr
    assert conductor(repo, "run", "tracks/feature").returncode == 0
    done = run_hook(repo, script)
    assert done.returncode == 0, done.stderr
