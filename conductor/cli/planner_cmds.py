"""``conductor plan --goal``: plan a new track from a goal (``conductor.planner``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def plan_from_goal(
    goal: str,
    *,
    context: tuple[Path, ...],
    out: Path | None,
    questions: bool,
    force: bool,
    model: str | None,
    max_budget_usd: float | None,
    repo: Path,
    state_dir: Path | None,
) -> None:
    """Plan ``goal``, write the track file, record the planning on the new track's bus."""
    import sys

    import anyio

    from conductor.bus import Bus
    from conductor.errors import UserError
    from conductor.paths import StateDir, check_name, state_root
    from conductor.planner import plan_goal, read_context

    if out is not None and out.exists() and not force:
        raise UserError(f"{out} exists; pass --force to replace it, or another --out")

    def record(track_id: str, mtype: str, payload: dict[str, Any]) -> None:
        try:
            check_name(track_id, "track id")
        except UserError:
            return  # the logic check reports the bad id; nothing to record it under
        sd = StateDir.for_track(repo, track_id, state_dir).ensure()
        with Bus.for_state(sd, track_id) as bus:
            bus.post(mtype, payload=payload)

    async def ask_person(asked: list[str]) -> list[str]:
        from conductor.cli.prompting import ask

        click.echo("The planner asks:", err=True)
        return [await ask(f"  {question}") for question in asked]

    def taken(track_id: str) -> str | None:
        path = repo / "tracks" / track_id / "track.yaml"
        if not path.exists():
            return None
        return f"track id {track_id} is taken ({path.relative_to(repo)} exists): choose another"

    interactive = questions and sys.stdin.isatty() and sys.stderr.isatty()
    try:
        planned = anyio.run(
            lambda: plan_goal(
                goal,
                repo,
                context=read_context(list(context)),
                asker=ask_person if interactive else None,
                model=model,
                max_budget_usd=max_budget_usd,
                record=record,
                taken=None if out is not None or force else taken,
                state_root=state_root(repo, state_dir),
            )
        )
    except (KeyboardInterrupt, click.Abort):  # Ctrl-C, or Ctrl-D at a question
        click.echo("\ninterrupted: no track was written", err=True)
        raise SystemExit(130) from None
    target = out if out is not None else repo / "tracks" / planned.track_id / "track.yaml"
    if out is None and target.exists() and not force:
        raise UserError(f"{target} exists; pass --force to replace it, or give --out")
    from conductor.atomic import write_atomic

    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, planned.text, mode=0o644)
    record(
        planned.track_id,
        "PLAN_WRITTEN",
        {"path": str(target), "rounds": planned.rounds, "cost_usd": round(planned.cost_usd, 6)},
    )
    fixed = f", {len(planned.problems_fixed)} sent back" if planned.problems_fixed else ""
    cwd = Path.cwd()
    inside = target.is_absolute() and target.is_relative_to(cwd)
    shown = target.relative_to(cwd) if inside else target  # as a person would type it
    click.echo(
        f"wrote {shown}: track {planned.track_id} in {planned.rounds} round"
        f"{'s' if planned.rounds != 1 else ''}{fixed}, ${planned.cost_usd:.4f}"
    )
    click.echo(f"next: conductor plan {shown}   then: conductor run {shown}")
