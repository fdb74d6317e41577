"""conductor.preview: choosing tasks, the rerun rule, and dry runs that read only."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from conductor.bus import Bus
from conductor.errors import UserError
from conductor.paths import StateDir
from conductor.preview import dry_run, select_tasks
from conductor.scheduler import RunOptions, run_track
from conductor.track import parse_track

TRACK = parse_track(
    textwrap.dedent(
        """\
        track: shop
        tasks:
          - {id: schema, run: "true"}
          - {id: api, run: "true", depends_on: [schema]}
          - {id: ui, run: "true", depends_on: [api]}
          - {id: seed, run: "true", depends_on: [schema]}
          - {id: docs, run: "true"}
        parallel_groups:
          - {id: g1, tasks: [api, seed], conflict_free: true}
          - {id: g2, tasks: [docs]}
        """
    )
)


def test_select_keeps_transitive_dependencies_in_file_order() -> None:
    """Selecting ui brings api and schema, in file order; groups shrink to what is kept."""
    sel = select_tasks(TRACK, ["ui"])
    assert sel.track.task_ids() == ["schema", "api", "ui"]
    assert sel.requested == ["ui"] and sel.dependencies == ["schema", "api"]
    assert [(g.id, g.tasks) for g in sel.track.parallel_groups] == [("g1", ["api"])]
    assert sel.track.task_hash("api") == TRACK.task_hash("api")
    both = select_tasks(TRACK, ["docs", "seed", "docs"])
    assert both.requested == ["seed", "docs"] and both.dependencies == ["schema"]


def test_select_unknown_task_suggests() -> None:
    """An unknown id raises UserError with a did-you-mean."""
    with pytest.raises(UserError, match=r"no task 'apii' \(did you mean 'api'\?\)"):
        select_tasks(TRACK, ["apii"])


def state_root() -> Path:
    return Path(os.environ["CONDUCTOR_STATE_DIR"])


@pytest.mark.anyio
async def test_run_options_only_dispatches_the_selection(tmp_path: Path) -> None:
    """RunOptions(only=...) dispatches the selected tasks and their dependencies only."""
    opts = RunOptions(repo=tmp_path, state_root=state_root(), handle_signals=False, only=("ui",))
    result = await run_track(TRACK, opts)
    assert result.status == "complete" and sorted(result.completed) == ["api", "schema", "ui"]
    sd = StateDir.for_track(tmp_path, "shop", state_root())
    with Bus.for_state(sd, "shop") as bus:
        msgs = bus.read()
    assert sorted(m.task or "" for m in msgs if m.type == "TASK_DISPATCHED") == [
        "api",
        "schema",
        "ui",
    ]
    started = next(m for m in msgs if m.type == "TRACK_STARTED")
    assert started.payload["only"] == ["ui"]


@pytest.mark.anyio
async def test_dry_run_follows_the_bus(tmp_path: Path) -> None:
    """Never run: all run; after a run: all skip; a person's SKIP and a failure show up."""
    root = state_root()
    assert {s.action for s in dry_run(TRACK, repo=tmp_path, state_root=root)} == {"run"}
    assert not (root / "shop").exists()
    opts = RunOptions(repo=tmp_path, state_root=root, handle_signals=False, only=("api",))
    await run_track(TRACK, opts)
    steps = {s.task: s for s in dry_run(TRACK, repo=tmp_path, state_root=root)}
    assert steps["api"].action == "skip" and steps["schema"].action == "skip"
    assert (steps["ui"].action, steps["ui"].reason) == ("run", "never ran")
    sd = StateDir.for_track(tmp_path, "shop", root)
    with Bus.for_state(sd, "shop") as bus:
        bus.post("SKIP", task="docs")
    steps = {s.task: s for s in dry_run(TRACK, repo=tmp_path, state_root=root, from_task="api")}
    assert (steps["docs"].action, steps["docs"].reason) == ("skip", "skipped by a person")
    assert (steps["api"].action, steps["api"].reason) == ("rerun", "rerun requested with --from")
    assert steps["ui"].reason == "downstream of --from api"
    assert steps["schema"].action == "skip"
