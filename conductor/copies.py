"""Each isolated attempt's own copy of the repository, and what it changed there.

**Snapshot.** At dispatch the person's checkout is recorded as a commit: ``HEAD`` plus every
tracked change and every untracked file git does not ignore. It is built with a throwaway
index (a copy of the person's, for its stat cache), so the person's index, branch and working
tree are never touched; when the checkout is clean the snapshot is ``HEAD`` itself. The
snapshot commit is kept alive by ``refs/conductor/<track>/snapshots/<worker>`` while the
attempt runs.

**Copy.** A ``git clone --shared --no-checkout`` of the checkout (objects are borrowed, not
copied) with its own branch ``conductor/<worker>`` at the snapshot. The files are written by
conductor's own git (below) byte for byte as stored, so the agent can use git normally in its
clone and nothing it does there reaches the person's repository: the clone's git directory is
its own (a worktree would share the person's).

**Conductor's git.** After the agent has run, the copy is hostile: its config, hooks,
``.gitattributes``, filters and fsmonitor are the agent's. Every git command conductor runs on
a copy therefore uses a git directory conductor owns (``<state>/git``: its own config, an
``info/attributes`` that turns every filter and conversion off, the person's excludes), a
private index kept outside the copy, the person's object store, no system or global config,
and hooks off. Such commands read files and write objects; they never run a program the
copy names.

**Changes.** ``changes`` compares the copy's working tree with the snapshot, through that
private index (so a 10,000-file copy costs a stat per file, and git's racy-timestamp rules
apply): additions, modifications, deletions, mode changes, symlinks and type changes, one
``Change`` per path (a rename is a deletion plus an addition). Commits the agent made in its
clone do not matter: what its working tree holds at the end is what it did. Ignored files
are not changes, and nested repositories are never landed.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from conductor.errors import ConductorError, UserError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
"""git's empty tree (SHA-1 repositories)."""

ZERO_OID = "0" * 40
"""git's null object id."""

CONDUCTOR_IDENT = {
    "GIT_AUTHOR_NAME": "conductor",
    "GIT_AUTHOR_EMAIL": "conductor@localhost",
    "GIT_COMMITTER_NAME": "conductor",
    "GIT_COMMITTER_EMAIL": "conductor@localhost",
}
"""Who conductor's snapshot commits are by (the person's identity is used for landings)."""

_RAW_ATTRIBUTES = "* -text -filter -ident -working-tree-encoding -eol -diff -merge\n"
"""``info/attributes`` of conductor's git dir: overrides every ``.gitattributes`` in a copy."""

_SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.untrackedCache=false",
    "core.autocrlf=false",
    "core.symlinks=true",
    "core.fileMode=true",
    "core.safecrlf=false",
    "core.attributesFile=/dev/null",
    "core.splitIndex=false",
    "core.preloadIndex=true",
    "gc.auto=0",
    "maintenance.auto=false",
    "advice.detachedHead=false",
)


class GitError(ConductorError):
    """A git command conductor relies on failed."""


def _run(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            env=dict(env),
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise UserError("git is not installed: conductor needs it to isolate attempts") from exc
    if check and proc.returncode != 0:
        what = " ".join(a for a in argv[1:] if not a.startswith("-c"))[:200]
        err = proc.stderr.decode(errors="replace").strip()[-800:]
        raise GitError(f"git {what} failed ({proc.returncode}): {err}")
    return proc


def _base_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without the GIT_* variables that redirect git."""
    src = os.environ if environ is None else environ
    env = {k: v for k, v in src.items() if not k.startswith("GIT_")}
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_LITERAL_PATHSPECS": "1"})
    return env


@dataclass(frozen=True)
class Checkout:
    """The person's repository, as conductor's git commands address it."""

    root: Path
    """Top of the working tree."""
    git_dir: Path
    """Its git directory (a linked worktree's own)."""
    common_dir: Path
    """The git directory holding objects and refs (the same unless a linked worktree)."""

    @classmethod
    def find(cls, repo: Path) -> Checkout:
        """The checkout whose working tree top is ``repo``; ``UserError`` if there is none."""
        env = _base_env()
        proc = _run(
            ["git", "-C", str(repo), "rev-parse", "--show-toplevel", "--git-dir",
             "--git-common-dir"],
            env,
            check=False,
        )
        if proc.returncode != 0:
            raise UserError(
                f"{repo} is not a git repository: tasks that run in their own copy need one "
                "(run `git init` and commit, or give the task `run:` with `isolation: checkout`)"
            )
        top, git_dir, common = proc.stdout.decode().splitlines()[:3]
        root = Path(top).resolve()
        if root != repo.resolve():
            raise UserError(
                f"{repo} is inside the git repository {root}, not its top: run conductor there"
            )
        return cls(
            root=root,
            git_dir=(repo / git_dir).resolve(),
            common_dir=(repo / common).resolve(),
        )

    @property
    def objects(self) -> Path:
        """The object store copies borrow from and conductor writes to."""
        return self.common_dir / "objects"

    def git(self, *args: str, index: Path | None = None, stdin: bytes | None = None,
            check: bool = True, env: Mapping[str, str] | None = None
            ) -> subprocess.CompletedProcess[bytes]:
        """Run git on the person's checkout (their config; hooks and fsmonitor off)."""
        full = _base_env()
        if index is not None:
            full["GIT_INDEX_FILE"] = str(index)
        full.update(env or {})
        argv = ["git", "-C", str(self.root), "-c", "core.hooksPath=/dev/null",
                "-c", "core.fsmonitor=false", *args]
        return _run(argv, full, stdin=stdin, check=check)

    def head(self) -> str | None:
        """The commit ``HEAD`` names, or None on an unborn branch."""
        proc = self.git("rev-parse", "-q", "--verify", "HEAD^{commit}", check=False)
        return proc.stdout.decode().strip() or None if proc.returncode == 0 else None

    def index_file(self) -> Path:
        """The person's index file (may not exist yet)."""
        return self.git_dir / "index"


@dataclass(frozen=True)
class Snapshot:
    """The person's checkout as it was when an attempt was dispatched."""

    commit: str
    """A commit whose tree is the checkout (``HEAD`` itself when the checkout was clean)."""
    tree: str
    """Its tree."""
    head: str | None
    """``HEAD`` at the time (None on an unborn branch)."""

    @property
    def clean(self) -> bool:
        """The checkout had no uncommitted change: the snapshot is ``HEAD``."""
        return self.commit == self.head


def ignored_by(checkout: Checkout, paths: Sequence[str]) -> list[str]:
    """Which of ``paths`` the checkout's ignore rules ignore (``git check-ignore``, which
    knows no literal pathspecs: each path goes as ``./path`` so none reads as magic)."""
    if not paths:
        return []
    proc = checkout.git(
        "check-ignore", "--no-index", "-z", "--stdin",
        stdin=b"".join(b"./" + p.encode("utf-8", "surrogateescape") + b"\0" for p in paths),
        env={"GIT_LITERAL_PATHSPECS": "0"},
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise GitError(f"git check-ignore failed: {proc.stderr.decode(errors='replace')[-300:]}")
    out = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    return [p.removeprefix("./") for p in out if p]


def take_snapshot(
    checkout: Checkout, scratch: Path, label: str, *, exclude: Path | None = None
) -> Snapshot:
    """Record the checkout (tracked changes and non-ignored untracked files) as a commit.

    ``scratch`` is a private directory for the throwaway index; ``exclude`` a directory left
    out (conductor's state directory, when it lies inside the checkout).
    """
    pathspec = ["."]
    magic: dict[str, str] = {}
    if exclude is not None:
        try:
            rel = exclude.resolve().relative_to(checkout.root).as_posix()
        except ValueError:
            rel = ""
        ignored = bool(rel) and rel in ignored_by(checkout, [rel])
        if rel and rel != "." and not ignored:  # git add refuses to name an ignored path
            pathspec.append(f":(exclude,literal){rel}")
            magic["GIT_LITERAL_PATHSPECS"] = "0"
    index = scratch / f".snapshot.{label}.{os.getpid()}.index"
    index.unlink(missing_ok=True)
    try:
        person_index = checkout.index_file()
        if person_index.is_file():
            shutil.copyfile(person_index, index)
        head = checkout.head()
        if head is None:
            checkout.git("read-tree", "--empty", index=index)
        checkout.git("add", "-A", "--", *pathspec, index=index, env=magic)
        tree = checkout.git("write-tree", index=index).stdout.decode().strip()
    finally:
        index.unlink(missing_ok=True)
        Path(f"{index}.lock").unlink(missing_ok=True)
    if head is not None:
        head_tree = checkout.git("rev-parse", f"{head}^{{tree}}").stdout.decode().strip()
        if head_tree == tree:
            return Snapshot(commit=head, tree=tree, head=head)
    parents = ["-p", head] if head else []
    commit = checkout.git(
        "commit-tree", tree, *parents, "-m", f"conductor snapshot for {label}",
        env=CONDUCTOR_IDENT,
    ).stdout.decode().strip()
    return Snapshot(commit=commit, tree=tree, head=head)


# --------------------------------------------------------------------------- conductor's git


class PrivateGit:
    """Conductor's own git directory for reading copies (see the module docstring)."""

    def __init__(self, git_dir: Path, checkout: Checkout) -> None:
        self.git_dir = git_dir
        """``<state>/git``: config, attributes and excludes conductor wrote."""
        self.checkout = checkout
        """The person's repository, whose object store is used."""
        self._excludes = self._person_excludes()

    def ensure(self) -> PrivateGit:
        """Create (or repair) the git directory; rewrite its attributes and excludes."""
        if not (self.git_dir / "HEAD").is_file():
            self.git_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _run(["git", "init", "-q", "--bare", "--template=", str(self.git_dir)],
                 _base_env() | {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text(_RAW_ATTRIBUTES)
        person_exclude = self.checkout.common_dir / "info" / "exclude"
        try:
            exclude = person_exclude.read_text(errors="replace")
        except OSError:
            exclude = ""
        (info / "exclude").write_text(exclude)
        return self

    def _person_excludes(self) -> str:
        """The person's ``core.excludesFile`` (their global ignores), or /dev/null."""
        proc = self.checkout.git("config", "--path", "core.excludesFile", check=False)
        value = proc.stdout.decode().strip()
        if value and Path(value).is_file():
            return value
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        default = xdg / "git" / "ignore"
        return str(default) if default.is_file() else os.devnull

    def env(self, work_tree: Path, index: Path) -> dict[str, str]:
        """The environment of a git command on ``work_tree`` with private ``index``."""
        env = _base_env()
        env.update(
            {
                "GIT_DIR": str(self.git_dir),
                "GIT_WORK_TREE": str(work_tree),
                "GIT_INDEX_FILE": str(index),
                "GIT_OBJECT_DIRECTORY": str(self.checkout.objects),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_ATTR_NOSYSTEM": "1",
                "GIT_NO_REPLACE_OBJECTS": "1",
                **CONDUCTOR_IDENT,
            }
        )
        return env

    def git(self, work_tree: Path, index: Path, *args: str,
            stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run git with conductor's git dir on ``work_tree``; cwd is the work tree."""
        config: list[str] = []
        for item in (*_SAFE_CONFIG, f"core.excludesFile={self._excludes}"):
            config += ["-c", item]
        return _run(["git", *config, *args], self.env(work_tree, index), cwd=work_tree,
                    stdin=stdin, check=check)


# --------------------------------------------------------------------------- copies


@dataclass(frozen=True)
class Copy:
    """One attempt's clone of the checkout."""

    path: Path
    """The clone's working tree (the session's cwd)."""
    index: Path
    """Conductor's private index of it, outside the clone."""
    snapshot: Snapshot
    """What it was made from."""
    branch: str
    """The clone's branch at the snapshot."""


def make_copy(private: PrivateGit, snapshot: Snapshot, path: Path, index: Path,
              branch: str) -> Copy:
    """Clone the checkout at ``snapshot`` into ``path`` (which must not exist)."""
    checkout = private.checkout
    env = _base_env()
    _run(
        ["git", "-c", "core.hooksPath=/dev/null", "clone", "-q", "--shared", "--no-checkout",
         str(checkout.root), str(path)],
        env,
    )
    index.unlink(missing_ok=True)
    # Conductor's git writes the files as stored, and the private index records their stat.
    private.git(path, index, "read-tree", snapshot.commit)
    private.git(path, index, "checkout-index", "-a", "-f", "-q")
    # The clone gets the same index, so the agent's own `git status` starts clean and fast.
    shutil.copyfile(index, path / ".git" / "index")
    clone = {**env, "GIT_DIR": str(path / ".git"), "GIT_WORK_TREE": str(path)}
    _run(["git", "update-ref", f"refs/heads/{branch}", snapshot.commit], clone)
    _run(["git", "symbolic-ref", "HEAD", f"refs/heads/{branch}"], clone)
    return Copy(path=path, index=index, snapshot=snapshot, branch=branch)


def remove_copy(path: Path, index: Path | None = None) -> None:
    """Delete a copy (whatever the agent left in it: read-only dirs, symlinks) and its index."""
    if index is not None:
        index.unlink(missing_ok=True)
        Path(f"{index}.lock").unlink(missing_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        path.unlink(missing_ok=True)
        return

    def unlock(func: object, failed: str, _exc: object) -> None:
        # A directory the agent made read-only: open it up and try once more.
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, 0o700)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)
        except OSError:
            pass

    shutil.rmtree(path, onerror=unlock)


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class Change:
    """One path the copy changed against its snapshot."""

    path: str
    """Repository path (POSIX)."""
    status: str
    """``A`` added, ``M`` modified (content or mode), ``D`` deleted, ``T`` type changed."""
    old_mode: str
    """Mode in the snapshot (``000000`` when added)."""
    new_mode: str
    """Mode in the copy (``000000`` when deleted): 100644, 100755, 120000 (symlink)."""
    old_oid: str
    """Blob in the snapshot."""
    new_oid: str
    """Blob in the copy (written to the person's object store)."""

    @property
    def deleted(self) -> bool:
        """The copy removed the path."""
        return self.status == "D"

    def describe(self) -> str:
        """``path (added)``, for messages."""
        what = {"A": "added", "M": "modified", "D": "deleted", "T": "type changed"}
        if self.status == "M" and self.old_oid == self.new_oid:
            return f"{self.path} (mode {self.old_mode} -> {self.new_mode})"
        return f"{self.path} ({what.get(self.status, self.status)})"


MAX_FILE_BYTES = 100 * 2**20
"""Largest changed file conductor reads from a copy; a larger one fails the attempt unread."""

MAX_CHANGE_BYTES = 500 * 2**20
"""Most bytes of changed files, together, conductor reads from one copy."""


@dataclass(frozen=True)
class CopyState:
    """The copy's working tree as a tree object, and how it differs from the snapshot."""

    tree: str
    """The tree of the copy's working tree (ignored files left out); empty when unread."""
    changes: tuple[Change, ...]
    """What differs from the snapshot, sorted by path."""
    nested_repos: tuple[str, ...] = ()
    """Paths holding a nested git repository (never landed)."""
    too_large: tuple[str, ...] = ()
    """Changed files over ``MAX_FILE_BYTES``: the copy was not read."""

    @property
    def paths(self) -> list[str]:
        """Changed paths, sorted."""
        return [c.path for c in self.changes]


def _oversized(private: PrivateGit, copy: Copy, limit: int, total: int) -> list[str]:
    """Changed or new (not ignored) files over ``limit`` bytes, or the largest of them when
    together they are over ``total`` bytes; found by stat alone."""
    listed = private.git(
        copy.path, copy.index, "ls-files", "-z", "-m", "-o", "--exclude-standard"
    ).stdout.decode("utf-8", "surrogateescape")
    sizes: dict[str, int] = {}
    for rel in dict.fromkeys(p for p in listed.split("\0") if p):
        try:
            st = os.lstat(copy.path / rel)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            sizes[rel] = st.st_size
    big = sorted(rel for rel, size in sizes.items() if size > limit)
    if not big and sum(sizes.values()) > total:  # name the largest few
        big = sorted(sorted(sizes, key=sizes.__getitem__, reverse=True)[:5])
    return big


def parse_raw_diff(output: bytes) -> list[Change]:
    """The ``Change`` records of ``git diff-tree -r -z --raw --no-renames`` output."""
    fields = output.decode("utf-8", "surrogateescape").split("\0")
    changes: list[Change] = []
    i = 0
    while i + 1 < len(fields):
        meta, path = fields[i], fields[i + 1]
        if not meta.startswith(":"):
            i += 1  # a commit id line (without --no-commit-id) or the trailing empty field
            continue
        i += 2
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].split(" ")
        changes.append(Change(path, status[0], old_mode, new_mode, old_oid, new_oid))
    return changes


def read_copy(
    private: PrivateGit,
    copy: Copy,
    *,
    limit: int = MAX_FILE_BYTES,
    total: int = MAX_CHANGE_BYTES,
) -> CopyState:
    """What the copy's working tree holds now, against its snapshot.

    Files over ``limit`` bytes, or changes over ``total`` bytes together, are not read
    (hashing them would take the attempt's time, the repository's space and, to land them,
    conductor's): they come back in ``too_large`` and nothing else is read.
    """
    big = _oversized(private, copy, limit, total)
    if big:
        return CopyState(tree="", changes=(), too_large=tuple(big))
    private.git(copy.path, copy.index, "add", "-A", "--", ".")
    tree = private.git(copy.path, copy.index, "write-tree").stdout.decode().strip()
    proc = private.git(
        copy.path, copy.index, "diff-tree", "-r", "-z", "--no-renames", "--raw",
        copy.snapshot.tree, tree,
    )
    changes = parse_raw_diff(proc.stdout)
    nested = [c.path for c in changes if "160000" in (c.old_mode, c.new_mode)]
    return CopyState(tree=tree, changes=tuple(changes), nested_repos=tuple(nested))


def ignored_paths(private: PrivateGit, copy: Copy) -> list[str]:
    """Ignored files and directories in the copy (directories end with ``/``)."""
    proc = private.git(
        copy.path, copy.index, "ls-files", "-z", "-o", "-i", "--exclude-standard",
        "--directory",
    )
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def remove_inside(root: Path, rel: str) -> None:
    """Remove ``root/rel`` (a file, symlink or directory) without following links out."""
    parts = PurePosixPath(rel.rstrip("/")).parts
    if not parts or ".." in parts:
        return
    target = root.joinpath(*parts)
    parent = os.path.realpath(target.parent)
    if parent != os.path.realpath(root) and not parent.startswith(
        os.path.realpath(root) + os.sep
    ):
        return  # a symlinked parent would lead out of the copy
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        remove_copy(target)
    else:
        target.unlink(missing_ok=True)


def write_blob(checkout: Checkout, oid: str, fd: int) -> None:
    """Stream blob ``oid`` from the person's object store into descriptor ``fd``."""
    env = _base_env()
    argv = ["git", "-C", str(checkout.root), "cat-file", "blob", oid]
    proc = subprocess.run(argv, stdout=fd, stderr=subprocess.PIPE, env=env, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-300:]
        raise GitError(f"cannot read object {oid}: {err}")


def read_blob(checkout: Checkout, oid: str) -> bytes:
    """A (small) blob's content: a symbolic link's target."""
    return checkout.git("cat-file", "blob", oid).stdout
