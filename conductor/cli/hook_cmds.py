"""``conductor hooks install|uninstall|status|run``: git hooks that see running tracks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from conductor.cli.app import RAISE_ENV, handle_errors, repo_option, state_dir_option
from conductor.contract import TRACK_ENV, WORKER_ENV

if TYPE_CHECKING:
    from conductor.githooks import HookChange

RUN_NAMES = ("pre-commit", "owned-files", "track-validate", "post-commit")
"""What ``hooks run`` can do: pre-commit is owned-files and track-validate together."""


@click.group("hooks")
def hooks_group() -> None:
    """Git hooks that keep your commits and a running track out of each other's way.

    `conductor hooks install` adds a pre-commit hook that refuses a commit of a file a
    running task is changing (and of a broken track file), and a post-commit hook that
    records your commit (PERSON_COMMIT) on the bus of every running track. Hooks already
    there keep running after conductor's: they are moved aside and chained, and
    `conductor hooks uninstall` puts them back. With the pre-commit framework, use the
    hooks in conductor's .pre-commit-hooks.yaml instead.
    """


@hooks_group.command("install")
@repo_option
@handle_errors
def hooks_install(repo: Path) -> None:
    """Install the pre-commit and post-commit hooks (again: updates them; idempotent).

    They go where git looks for hooks (core.hooksPath when set). An existing hook is kept
    as HOOK.pre-conductor and still runs, after conductor's check; its failure still
    refuses the commit. The hooks run `conductor` from PATH, or else this Python.
    """
    from conductor.githooks import install

    for change in install(repo):
        click.echo(_describe(change))


@hooks_group.command("uninstall")
@repo_option
@handle_errors
def hooks_uninstall(repo: Path) -> None:
    """Remove conductor's hooks and put back the hooks they chained, exactly as they were."""
    from conductor.githooks import uninstall

    for change in uninstall(repo):
        click.echo(_describe(change))


def _describe(change: HookChange) -> str:
    chained = change.chained.name if change.chained is not None else None
    text = {
        "installed": f"installed {change.path}",
        "updated": f"updated {change.path}",
        "unchanged": f"already installed: {change.path}",
        "removed": f"removed {change.path}",
        "restored": f"removed conductor's hook and restored the original {change.path}",
        "kept": f"left {change.path} alone: it is not conductor's",
        "absent": "not installed",
    }[change.action]
    if chained is not None and change.action in ("installed", "updated", "unchanged"):
        text += f" (the hook that was there runs after it, kept as {chained})"
    elif chained is not None and change.action == "kept":
        text += f" ({chained} is still there)"
    return f"{change.name}: {text}"


@hooks_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@repo_option
@handle_errors
def hooks_status(as_json: bool, repo: Path) -> None:
    """Say for each hook whether conductor's is installed, missing, or another one is there,
    and whether an original hook is chained after it."""
    from conductor.githooks import status

    hooks = status(repo)
    directory = hooks[0].path.parent
    if as_json:
        body = {
            "hooks_dir": str(directory),
            "hooks": {hook.name: hook.to_dict() for hook in hooks},
        }
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(f"hooks directory: {directory}")
    words = {
        "installed": "installed",
        "missing": "not installed",
        "foreign": "not installed: another hook is there (not conductor's)",
    }
    for hook in hooks:
        line = f"{hook.name:<12} {words[hook.state]}"
        if hook.chained is not None:
            line += (
                f"; chains {hook.chained.name}"
                if hook.state == "installed"
                else f"; {hook.chained.name} is kept from an earlier install"
            )
        click.echo(line)


@hooks_group.command("run")
@click.argument("name", type=click.Choice(RUN_NAMES))
@click.argument("files", nargs=-1, type=click.UNPROCESSED)
@repo_option
@state_dir_option
@handle_errors
def hooks_run(name: str, files: tuple[str, ...], repo: Path, state_dir: Path | None) -> None:
    """Do a hook's work now (what the installed hooks and .pre-commit-hooks.yaml call).

    pre-commit: owned-files and track-validate. owned-files: refuse (exit 1) if a staged
    path is locked by a live task of any track. track-validate: refuse if a staged YAML
    file with a top-level `track:` is not a valid track (read from the index). post-commit:
    post PERSON_COMMIT for HEAD on every running track's bus; it only warns, never fails.

    FILES (as the pre-commit framework passes them) are accepted and ignored: the checks
    always read what is staged, deletions included.
    """
    track, worker = os.environ.get(TRACK_ENV), os.environ.get(WORKER_ENV)
    own = (track, worker) if track and worker else None
    if name == "post-commit":
        if worker:
            return  # a worker's commit, not a person's
        _post_commit(repo, state_dir)
        return
    from conductor.githooks import pre_commit

    result = pre_commit(
        repo,
        state_dir,
        owned=name != "track-validate",
        tracks=name != "owned-files",
        worker=own,
    )
    for owned in result.owned:
        click.echo(owned.message(), err=True)
    for error in result.track_errors:
        click.echo(f"conductor: {error}", err=True)
    if result.track_errors:
        click.echo("conductor: check a track file with `conductor validate FILE`", err=True)
    if not result.ok:
        click.echo("conductor: commit refused (to commit anyway: git commit --no-verify)", err=True)
        raise SystemExit(1)


def _post_commit(repo: Path, state_dir: Path | None) -> None:
    """Record HEAD on the running tracks; any failure is a warning (the commit is made)."""
    from conductor.githooks import record_commit

    try:
        commit, posted = record_commit(repo, state_dir)
    except Exception as exc:  # a post-commit hook must never fail the commit
        if os.environ.get(RAISE_ENV):
            raise
        click.echo(f"conductor: warning: could not record the commit: {exc}", err=True)
        return
    sha = commit.sha[:12] if commit is not None else "the commit"
    for post in posted:
        if post.error is not None:
            click.echo(
                f"conductor: warning: could not record {sha} on track {post.track}: {post.error}",
                err=True,
            )
        else:
            click.echo(
                f"conductor: recorded {sha} on track {post.track} (PERSON_COMMIT {post.seq})",
                err=True,
            )
