"""``conductor doctor`` and ``conductor init``: get a machine and a repository ready."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from conductor.cli.app import handle_errors, repo_option, state_dir_option


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@repo_option
@state_dir_option
@handle_errors
def doctor(as_json: bool, repo: Path, state_dir: Path | None) -> None:
    """Check what conductor needs on this machine, and say how to fix what is missing.

    One line per check: Python, git and the checkout, the state directory, the sandbox's
    programs (bubblewrap, socat), the Claude Code CLI, and credentials (ANTHROPIC_API_KEY or
    CLAUDE_CODE_OAUTH_TOKEN). Each line is ok, warn or FAIL, with how to fix it. Exits 1 when
    something required is missing, 0 otherwise. Nothing is sent over the network.
    """
    from conductor.doctor import failed, render, run_checks

    checks = run_checks(repo, state_dir)
    bad = failed(checks)
    if as_json:
        click.echo(
            json.dumps({"ok": not bad, "checks": [c.to_dict() for c in checks]}, indent=2)
        )
    else:
        for line in render(checks):
            click.echo(line)
        click.echo(
            "something required is missing: see the FAIL lines" if bad else "ready to run tracks"
        )
    sys.exit(1 if bad else 0)


@click.command("init")
@click.option(
    "--name",
    default="starter",
    show_default=True,
    help="The track's id; it is written to tracks/NAME/.",
)
@click.option("--force", is_flag=True, help="Overwrite the starter's files if they exist.")
@repo_option
@handle_errors
def init(name: str, force: bool, repo: Path) -> None:
    """Write a starter track and an offline script for it, ready to run.

    Writes tracks/NAME/track.yaml (a shell task, a Claude task, a check),
    tracks/NAME/fake-claude.yaml (what a scripted fake `claude` does for the Claude task, so
    the track runs at once with no key and no network) and tracks/NAME/.gitignore. Prints
    the command that runs it offline. Existing files are left alone unless --force is given.
    """
    from conductor.starter import shown, write_starter

    starter = write_starter(repo, name, force=force)
    here = Path.cwd()
    rel = shown(starter.directory, here)
    for path in starter.files:
        click.echo(f"wrote {shown(path, here)}")
    click.echo("")
    click.echo("Run it offline now (a scripted fake plays Claude):")
    click.echo(f"  {starter.offline_command(here)}")
    click.echo("Run it for real: set ANTHROPIC_API_KEY (check with `conductor doctor`), then")
    click.echo(f"  conductor run {rel}")
    click.echo(
        f"Then: conductor status {rel} · conductor logs {starter.name} note · "
        f"conductor report {rel} --html report.html"
    )
    click.echo(
        "Its Claude task lands one commit on your current branch "
        f"(undo: conductor revert {rel} note)."
    )
    from conductor.doctor import check_git

    git = check_git(repo)
    if "not a git checkout" in git.detail:
        click.echo(f"note: {git.detail}; {git.fix}")
