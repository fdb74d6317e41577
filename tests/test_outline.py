"""A track file's saved outline is used only for the exact bytes that were validated in full."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conductor.errors import TrackError
from conductor.outline import OUTLINE_NAME, Outline, read_outline
from conductor.paths import StateDir

TRACK = (
    "track: demo\ntasks:\n"
    "  - id: a\n    run: 'true'\n"
    "  - id: b\n    run: 'true'\n    depends_on: [a]\n"
)


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    """The state directory of track ``demo`` under ``tmp_path/state``, created."""
    sd = StateDir.for_track(tmp_path, "demo", tmp_path / "state")
    sd.root.mkdir(parents=True)
    return sd


def test_outline_of_a_valid_file_is_read_and_saved(tmp_path: Path, state: StateDir) -> None:
    """The first read validates the file and saves its id, task ids and dependencies."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    outline = read_outline(path, tmp_path, tmp_path / "state")
    assert outline == Outline("demo", ["a", "b"], {"a": [], "b": ["a"]})
    saved = json.loads((state.cache / OUTLINE_NAME).read_text())
    assert (saved["track"], saved["tasks"]) == ("demo", ["a", "b"])
    assert saved["depends_on"] == {"a": [], "b": ["a"]}


def test_saved_outline_is_used_for_the_same_bytes(tmp_path: Path, state: StateDir) -> None:
    """Unchanged bytes take the saved outline (seen by planting another under their hash)."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    read_outline(path, tmp_path, tmp_path / "state")
    record = state.cache / OUTLINE_NAME
    saved = json.loads(record.read_text())
    record.write_text(json.dumps({**saved, "tasks": ["planted"], "depends_on": {}}))
    assert read_outline(path, tmp_path, tmp_path / "state").tasks == ["planted"]


def test_an_edited_file_is_validated_again(tmp_path: Path, state: StateDir) -> None:
    """After an edit the outline follows the file, and the new outline replaces the saved one."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    read_outline(path, tmp_path, tmp_path / "state")
    path.write_text(TRACK + "  - id: c\n    run: 'true'\n    depends_on: [b]\n")
    assert read_outline(path, tmp_path, tmp_path / "state").tasks == ["a", "b", "c"]
    assert json.loads((state.cache / OUTLINE_NAME).read_text())["tasks"] == ["a", "b", "c"]


def test_an_invalid_edit_raises_the_loaders_error(tmp_path: Path, state: StateDir) -> None:
    """A file made invalid after its outline was saved fails exactly as the full loader does."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    read_outline(path, tmp_path, tmp_path / "state")
    path.write_text(TRACK.replace("depends_on: [a]", "depends_on: [nope]"))
    with pytest.raises(TrackError, match="nope") as caught:
        read_outline(path, tmp_path, tmp_path / "state")
    assert caught.value.line == 7


def test_an_outline_from_another_version_or_track_is_ignored(
    tmp_path: Path, state: StateDir
) -> None:
    """A saved outline made by another conductor version, or naming another track, is not used."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    read_outline(path, tmp_path, tmp_path / "state")
    record = state.cache / OUTLINE_NAME
    saved = json.loads(record.read_text())
    for planted in ({"conductor": "0.0.0-other"}, {"track": "other"}, {"tasks": "a"}):
        record.write_text(json.dumps({**saved, **planted, "tasks": planted.get("tasks", ["x"])}))
        assert read_outline(path, tmp_path, tmp_path / "state").tasks == ["a", "b"]


def test_a_half_written_outline_is_ignored(tmp_path: Path, state: StateDir) -> None:
    """A torn outline file (cut mid-write) falls back to full validation."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    read_outline(path, tmp_path, tmp_path / "state")
    record = state.cache / OUTLINE_NAME
    record.write_bytes(record.read_bytes()[:25])
    assert read_outline(path, tmp_path, tmp_path / "state").tasks == ["a", "b"]


def test_nothing_is_saved_without_a_state_directory(tmp_path: Path) -> None:
    """A track that never ran gets its outline, and no state directory is created for it."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    assert read_outline(path, tmp_path, tmp_path / "state").track == "demo"
    assert not (tmp_path / "state").exists()


def test_a_symlinked_outline_is_not_followed(tmp_path: Path, state: StateDir) -> None:
    """An outline file replaced by a symlink is neither read nor written through."""
    path = tmp_path / "track.yaml"
    path.write_text(TRACK)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"planted": True}))
    state.cache.mkdir()
    (state.cache / OUTLINE_NAME).symlink_to(elsewhere)
    assert read_outline(path, tmp_path, tmp_path / "state").tasks == ["a", "b"]
    assert json.loads(elsewhere.read_text()) == {"planted": True}


def test_a_file_that_is_not_utf8_gets_the_loaders_error(tmp_path: Path, state: StateDir) -> None:
    """Bytes that are not UTF-8 fail with the loader's own message and line; nothing is saved."""
    path = tmp_path / "track.yaml"
    path.write_bytes(TRACK.encode() + b"# \xff\n")
    with pytest.raises(TrackError, match="not valid UTF-8") as caught:
        read_outline(path, tmp_path, tmp_path / "state")
    assert caught.value.line == 8
    assert not (state.cache / OUTLINE_NAME).exists()


def test_status_of_a_track_file_reads_the_same_from_its_outline(repo: Path) -> None:
    """`status TRACK_FILE` prints the same whether the file was validated now or before."""
    from click.testing import CliRunner

    from conductor.cli import main

    track = repo / "track.yaml"
    track.write_text(TRACK)
    runner = CliRunner()
    ran = runner.invoke(main, ["run", str(track), "--repo", str(repo)], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    args = ["status", str(track), "--repo", str(repo), "--json"]
    validated = runner.invoke(main, args, catch_exceptions=False)
    assert validated.exit_code == 0, validated.output
    state = StateDir.for_track(repo, "demo", Path(os.environ["CONDUCTOR_STATE_DIR"]))
    assert (state.cache / OUTLINE_NAME).is_file()
    outlined = runner.invoke(main, args, catch_exceptions=False)
    assert outlined.exit_code == 0, outlined.output
    assert json.loads(outlined.stdout) == json.loads(validated.stdout)
    assert [row["task"] for row in json.loads(outlined.stdout)["tasks"]] == ["a", "b"]
