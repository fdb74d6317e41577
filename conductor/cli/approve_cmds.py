"""``conductor approve`` / ``conductor reject``: answer a run waiting at its approval pause."""

from __future__ import annotations

from pathlib import Path

import click

from conductor.cli.app import handle_errors, repo_option, resolve_track, state_dir_option


def _answer(
    track: str, *, approved: bool, reason: str, repo: Path, state_dir: Path | None
) -> None:
    from conductor.approval import answer
    from conductor.bus import Bus
    from conductor.errors import UserError
    from conductor.paths import StateDir

    if not approved and not reason.strip():
        raise UserError("say why with -m REASON: the run ends with it, and it stays on the bus")
    track_id, _ = resolve_track(track)
    state = StateDir.for_track(repo, track_id, state_dir)
    if not state.bus.is_dir():
        raise UserError(f"track {track_id!r} has no bus under {state.root}; run it first")
    with Bus.for_state(state, track_id) as bus:
        msg = answer(
            bus, state.cache, approved=approved, reason=reason, by="cli", state_dir=state
        )
    verdict = "approved" if approved else "rejected"
    click.echo(f"{verdict} the waiting run of {track_id} (message {msg.seq})")


@click.command("approve")
@click.argument("track")
@click.option("-m", "--message", "reason", default="", help="Why (kept on the bus).")
@repo_option
@state_dir_option
@handle_errors
def approve(track: str, reason: str, repo: Path, state_dir: Path | None) -> None:
    """Approve the run of TRACK that is waiting at its approval pause.

    TRACK is a track file, a directory holding track.yaml, or a track id. Only a run that is
    waiting now is approved: an answer never carries over to a later run. Exit 2 when no run
    is waiting.
    """
    _answer(track, approved=True, reason=reason, repo=repo, state_dir=state_dir)


@click.command("reject")
@click.argument("track")
@click.option("-m", "--message", "reason", required=True, help="Why (kept on the bus).")
@repo_option
@state_dir_option
@handle_errors
def reject(track: str, reason: str, repo: Path, state_dir: Path | None) -> None:
    """Reject the run of TRACK that is waiting at its approval pause: it ends with exit 6.

    Exit 2 when no run is waiting.
    """
    _answer(track, approved=False, reason=reason, repo=repo, state_dir=state_dir)
