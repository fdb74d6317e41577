"""Cost of an isolated attempt on a 10,000-file repository: conductor vs plain git.

One attempt = make its copy, change a few files in it, read what changed, land it as a
commit in the checkout, remove the copy. Conductor does this with its own machinery
(``conductor.isolation``: snapshot, clone with a private index, diff through conductor's own
git, landing with checks). Plain git does the same steps the way a person would:
``git clone --shared``, edit, ``git add -A && git commit`` in the clone, ``git fetch`` +
``git merge --ff-only`` in the checkout, ``rm -rf`` the clone. Rounds alternate between
the two on the same repository in the same run; the bar is the median ratio ≤ 1.5×.

Usage: python scripts/bench_isolation.py [--files 10000] [--rounds 9]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import verdict

from conductor.isolation import Isolation
from conductor.paths import StateDir
from conductor.track import parse_track

BAR = 1.5


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def make_repo(root: Path, files: int) -> Path:
    """A repository of ``files`` small files in 100 directories, committed."""
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.name", "bench")
    git(repo, "config", "user.email", "bench@example.com")
    for i in range(files):
        d = repo / f"pkg{i % 100:02d}"
        d.mkdir(exist_ok=True)
        (d / f"mod{i}.py").write_text(f"VALUE = {i}\n" + "# filler line\n" * 20)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    return repo


def edit(copy: Path, round_no: int, who: str) -> None:
    """The attempt's work: three files changed, one added (all under pkg00/)."""
    for i in (0, 100, 200):
        (copy / "pkg00" / f"mod{i}.py").write_text(f"VALUE = {round_no}  # {who}\n")
    (copy / "pkg00" / f"new_{who}_{round_no}.py").write_text("NEW = 1\n")


def conductor_attempt(isolation: Isolation, round_no: int) -> float:
    task = TRACK.tasks[0]
    started = time.perf_counter()
    ws = isolation.open(f"t.{round_no}")
    edit(ws.path, round_no, "conductor")
    judgement = isolation.judge(ws, task, None)
    assert judgement.error is None, judgement.error
    isolation.land(ws, judgement.state, f"bench/t: round {round_no}\n")
    isolation.close(ws, keep=False)
    return time.perf_counter() - started


def git_attempt(repo: Path, scratch: Path, round_no: int) -> float:
    copy = scratch / f"plain.{round_no}"
    started = time.perf_counter()
    subprocess.run(
        ["git", "clone", "-q", "--shared", str(repo), str(copy)], check=True, capture_output=True
    )
    edit(copy, round_no, "git")
    git(copy, "add", "-A")
    git(copy, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "-qm", f"round {round_no}")
    git(repo, "fetch", "-q", str(copy), "HEAD")
    git(repo, "merge", "-q", "--ff-only", "FETCH_HEAD")
    shutil.rmtree(copy)
    return time.perf_counter() - started


TRACK = parse_track("track: bench\ntasks:\n  - {id: t, type: code, files: ['pkg00/**']}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="conductor-bench-isolation-"))
    try:
        repo = make_repo(root, args.files)
        sd = StateDir.for_track(repo, "bench", root / "state").ensure()
        isolation = Isolation(repo, sd, "bench")
        isolation.prepare()
        scratch = root / "scratch"
        scratch.mkdir()
        conductor_attempt(isolation, 0)  # warm both paths (page cache, git's own caches)
        git_attempt(repo, scratch, 0)
        ours: list[float] = []
        theirs: list[float] = []
        for n in range(1, args.rounds + 1):
            ours.append(conductor_attempt(isolation, n))
            theirs.append(git_attempt(repo, scratch, n))
        assert git(repo, "status", "--porcelain") == ""
        ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
        ratio = statistics.median(ratios)
        print(f"repository: {args.files} files; {args.rounds} rounds, alternating")
        print(f"conductor (snapshot, copy, diff, verdict, land, remove): "
              f"median {statistics.median(ours) * 1000:.0f} ms per attempt")
        print(f"plain git (clone --shared, add, commit, fetch, merge --ff-only, rm): "
              f"median {statistics.median(theirs) * 1000:.0f} ms per attempt")
        print(f"ratio (median of per-round ratios): {ratio:.2f}x   bar: <= {BAR}x   "
              f"{verdict(ratio <= BAR)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
