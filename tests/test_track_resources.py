"""``executor:`` and ``resources:`` in a track (where and with what attempts run)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conductor.errors import TrackError
from conductor.track import parse_track


@pytest.mark.parametrize(
    ("resources", "error"),
    [
        ({"memory": "lots"}, "is not a size"),
        ({"cpus": -1}, "non-negative"),
        ({"cpus": True}, "needs a number"),
        ({"bad name": 1}, "must match"),
    ],
)
def test_bad_resources_name_the_field(resources: dict[str, Any], error: str) -> None:
    """A bad ``resources:`` entry is a track error naming the task's field."""
    text = yaml.safe_dump({"track": "t", "tasks": [{"id": "a", "run": "true",
                                                     "resources": resources}]})
    with pytest.raises(TrackError, match=r"tasks\[0\]\.resources") as info:
        parse_track(text)
    assert error in str(info.value)


def test_resources_and_executor_parse() -> None:
    """``executor: ray`` and ``resources`` (memory with a unit) are read from a track."""
    track = parse_track(
        yaml.safe_dump(
            {
                "track": "t",
                "executor": "ray",
                "defaults": {"resources": {"cpus": 2}},
                "tasks": [
                    {"id": "a", "run": "true", "resources": {"memory": "512MiB", "gpus": 1}},
                    {"id": "b", "run": "true"},
                ],
            }
        )
    )
    assert track.executor == "ray"
    assert track.tasks[0].resources == {"memory": 512 * 2**20, "gpus": 1.0}
    assert track.tasks[1].resources == {"cpus": 2.0}
