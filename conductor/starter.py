"""``conductor init``: a starter track and a script that plays Claude for it offline.

``write_starter`` writes, under ``tracks/<name>/`` of the repository:

- ``track.yaml``: three tasks: a shell task that gathers a fact about the repository, a
  Claude task that writes a note from it, and a shell task that checks the note;
- ``fake-claude.yaml``: what the offline fake ``claude`` does for the Claude task (a Bash
  call that reads the fact, a Write of the note, the completion report), so the track runs
  at once with no key and no network;
- ``.gitignore``: the fake's attempt counters.

Files are written whole or not at all, and nothing is overwritten unless asked: an existing
file is an error naming it (exit 2). The Claude task's accepted work lands as one commit on
the current branch, as every Claude task's does; ``conductor revert`` undoes it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from conductor.errors import UserError
from conductor.paths import check_name

TRACK_YAML = """\
# A starter track written by `conductor init`: a shell task, a Claude task, a check.
# Run it offline at once (a scripted fake plays Claude, see fake-claude.yaml):
#   CONDUCTOR_CLAUDE_CLI=conductor-fake-claude \\
#   CONDUCTOR_FAKE_SCRIPT={dir}/fake-claude.yaml \\
#   conductor run {dir}
# With ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) set and without those two variables,
# the same track runs a real Claude session. Then see what happened:
#   conductor status {dir}        conductor logs {name} note        conductor report {dir}
track: {name}
description: Gather a fact about this repository, have Claude write a note about it, check it.
max_parallel: 2
budget_usd: 1.00              # the whole track stops spending here
defaults:
  timeout: 10m
  max_attempts: 2
  max_turns: 20               # Claude tasks: model turns per session
  max_budget_usd: 0.25        # Claude tasks: dollars per session

tasks:
  - id: facts
    name: Count the files git tracks
    run: mkdir -p {out} && git ls-files | wc -l | tr -d ' ' > {out}/file-count.txt
    files: [{out}/file-count.txt]
    verify: [test -s {out}/file-count.txt]

  - id: note
    name: Write a note about the repository
    type: docs
    depends_on: [facts]
    files: [{out}/NOTE.md]
    instructions: >
      Read {out}/file-count.txt, which holds the number of files git tracks in this
      repository, and write {out}/NOTE.md: a first line "# About this repository", then
      one sentence that gives that number.
    acceptance:
      - "{out}/NOTE.md starts with '# About this repository'"
      - "{out}/NOTE.md gives the number from {out}/file-count.txt"
    verify: ["head -n 1 {out}/NOTE.md | grep -q '^# About this repository'"]

  - id: check
    name: Check the note gives the count
    type: test
    depends_on: [note]
    run: grep -q "$(cat {out}/file-count.txt)" {out}/NOTE.md && echo "the note gives the count"
"""

FAKE_YAML = """\
# What the offline fake `claude` does for {dir}/track.yaml (format: docs/offline-testing.md
# in conductor's repository). Each rule matches a worker's prompt by task id; its steps are
# what the "model" does in the attempt's own copy of the repository.
sessions:
  - match: "Carry out task note ("
    steps:
      - text: I will read the file count, then write the note.
      - bash: cat {out}/file-count.txt
      - bash: |
          printf '# About this repository\\n\\nGit tracks %s files here.\\n' \\
            "$(cat {out}/file-count.txt)" > {out}/NOTE.md
        cost: 0.004
      - mcp:
          tool: report_complete
          input: {{summary: "wrote {out}/NOTE.md", files_changed: [{out}/NOTE.md]}}
      - text: The note is written.
"""

GITIGNORE = """\
# The offline fake keeps its attempt counters beside its script.
*.state.json
*.state.json.lock
"""

OUT_DIR = "starter-out"
"""Where the starter track's tasks write (relative to the repository)."""


@dataclass(frozen=True)
class Starter:
    """What ``write_starter`` wrote."""

    directory: Path
    """The track's directory."""
    files: list[Path]
    """The files written."""
    name: str
    """The track id."""

    def offline_command(self, cwd: Path) -> str:
        """The command that runs the track offline now, typed in ``cwd``."""
        rel = shown(self.directory, cwd)
        fake = "conductor-fake-claude"
        if shutil.which(fake) is None:
            from conductor.testing import fake_cli_path

            fake = str(fake_cli_path())
        return (
            f"CONDUCTOR_CLAUDE_CLI={fake} CONDUCTOR_FAKE_SCRIPT={rel}/fake-claude.yaml "
            f"conductor run {rel}"
        )


def shown(path: Path, cwd: Path) -> str:
    """``path`` as a person types it in ``cwd``: relative when inside it, else absolute."""
    try:
        return path.resolve().relative_to(cwd.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def write_starter(repo: Path, name: str = "starter", *, force: bool = False) -> Starter:
    """Write the starter track ``name`` under ``repo/tracks/name/`` (see the module docstring)."""
    check_name(name, "track name")
    directory = repo / "tracks" / name
    rel = f"tracks/{name}"
    out = OUT_DIR if name == "starter" else f"{name}-out"
    fields = {"name": name, "dir": rel, "out": out}
    contents = {
        "track.yaml": TRACK_YAML.format(**fields),
        "fake-claude.yaml": FAKE_YAML.format(**fields),
        ".gitignore": GITIGNORE,
    }
    targets = [directory / file for file in contents]
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory", path=directory)
    existing = [t for t in targets if t.exists() or t.is_symlink()]
    if existing and not force:
        names = ", ".join(str(t) for t in existing)
        raise UserError(
            f"{names} already exist{'s' if len(existing) == 1 else ''}; "
            "use --force to overwrite, or --name to write another track"
        )
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    temps: list[tuple[Path, Path]] = []
    try:
        for file, text in contents.items():
            tmp = directory / f".{file}.{os.getpid()}.tmp"
            tmp.write_text(text, encoding="utf-8")
            temps.append((tmp, directory / file))
        for tmp, target in temps:
            if target.is_symlink():
                target.unlink()
            os.replace(tmp, target)
            written.append(target)
    except OSError as exc:
        raise UserError(f"cannot write the starter track: {exc}", path=directory) from exc
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return Starter(directory, written, name)
