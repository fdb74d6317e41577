"""A whole track through the scheduler with the real bundled Claude Code CLI, offline.

The model is the scripted fake Messages API; everything else is real: the CLI, its Write
tool, permission checks, conductor's PreToolUse file guard and in-process MCP bus tools,
verify, and the bus.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from conductor.bus import Bus
from conductor.executors.claude import ClaudeExecutor
from conductor.paths import StateDir
from conductor.scheduler import RunOptions, run_track
from conductor.testing.fake_api import FakeMessagesAPI, bundled_cli_path, real_cli_env
from conductor.track import parse_track
from conductor.workers import leftover_workers

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.real_cli,
    pytest.mark.skipif(bundled_cli_path() is None, reason="no bundled Claude Code CLI"),
]

TRACK = {
    "track": "realcli",
    "max_parallel": 2,
    "tasks": [
        {
            "id": "model",
            "type": "code",
            "files": ["src/model.py"],
            "instructions": "Create src/model.py defining VERSION = 1.",
            "verify": ["grep -q 'VERSION = 1' src/model.py"],
        },
        {
            "id": "docs",
            "type": "docs",
            "depends_on": ["model"],
            "files": ["docs/model.md"],
            "instructions": "Document VERSION in docs/model.md.",
            "verify": ["test -s docs/model.md"],
            "max_attempts": 1,
        },
    ],
}


def write_then_report(path: str, content: str) -> list[dict[str, Any]]:
    return [
        {
            "text": f"Writing {path}.",
            "tool_use": {"name": "Write", "input": {"file_path": path, "content": content}},
        },
        {
            "tool_use": {
                "name": "mcp__conductor__report_progress",
                "input": {"message": f"{path} written"},
            }
        },
        {
            "tool_use": {
                "name": "mcp__conductor__report_complete",
                "input": {"summary": f"wrote {path}", "files_changed": [path]},
            }
        },
        {"text": "Done."},
    ]


async def run(
    repo: Path, tmp_path: Path, script: dict[str, Any]
) -> tuple[Any, list[Any], FakeMessagesAPI]:
    track = parse_track(yaml.safe_dump(TRACK))
    state_root = Path(os.environ["CONDUCTOR_STATE_DIR"])
    with FakeMessagesAPI(script) as api:
        env = real_cli_env(api.base_url, tmp_path / "unused-config")
        for key in ("CLAUDE_CONFIG_DIR", "TMPDIR"):
            env.pop(key, None)  # every session gets its own under its worker dir
        executor = ClaudeExecutor(cli_path=bundled_cli_path(), extra_env=env, api_backoff=0.01)
        result = await run_track(
            track,
            RunOptions(
                repo=repo,
                state_root=state_root,
                executors=lambda task: executor,
                handle_signals=False,
            ),
        )
    sd = StateDir.for_track(repo, "realcli", state_root)
    with Bus.for_state(sd, "realcli") as bus:
        messages = bus.read()
    assert leftover_workers(sd.workers) == []
    return result, messages, api


async def test_real_cli_two_task_track_completes(repo: Path, tmp_path: Path) -> None:
    """Both workers write their files with the CLI's Write tool and report through the bus
    tools; conductor verifies and completes each, in dependency order."""
    script = {
        "conversations": [
            {
                "match": "Carry out task model (",
                "turns": write_then_report("src/model.py", "VERSION = 1\n"),
            },
            {
                "match": "Carry out task docs (",
                "turns": write_then_report("docs/model.md", "# VERSION\n\n1\n"),
            },
        ]
    }
    result, messages, api = await run(repo, tmp_path, script)
    assert result.status == "complete", result.failed
    assert (repo / "src" / "model.py").read_text() == "VERSION = 1\n"
    assert (repo / "docs" / "model.md").exists()
    types = [(m.type, m.task) for m in messages]
    for task in ("model", "docs"):
        for mtype in (
            "WORKER_STARTED",
            "PROGRESS",
            "CLAIM_COMPLETE",
            "VERIFY_RESULT",
            "TASK_COMPLETE",
        ):
            assert (mtype, task) in types, (mtype, task)
    assert types.index(("TASK_COMPLETE", "model")) < types.index(("TASK_DISPATCHED", "docs"))
    done = {m.task: m.payload for m in messages if m.type == "TASK_COMPLETE"}
    assert done["model"]["files_changed"] == ["src/model.py"]
    assert done["model"]["cost_usd"] > 0 and done["model"]["session_id"]
    assert result.cost_usd == pytest.approx(done["model"]["cost_usd"] + done["docs"]["cost_usd"])
    assert any("Carry out task docs (" in json.dumps(r["messages"]) for r in api.requests)


async def test_real_cli_edit_outside_files_is_denied(repo: Path, tmp_path: Path) -> None:
    """A model that writes outside its task's files is denied by the hook; with no change and
    no honest claim the attempt fails, and the dependent task is blocked."""
    outside = "src/elsewhere.py"
    script = {
        "conversations": [
            {
                "match": "Carry out task model (",
                "turns": [
                    {
                        "tool_use": {
                            "name": "Write",
                            "input": {"file_path": outside, "content": "x = 1\n"},
                        }
                    },
                    {
                        "tool_use": {
                            "name": "mcp__conductor__report_complete",
                            "input": {"summary": "wrote it", "files_changed": ["src/elsewhere.py"]},
                        }
                    },
                    {"text": "Done."},
                ],
            }
        ]
    }
    result, messages, _ = await run(repo, tmp_path, script)
    assert result.status == "failed" and "model" in result.failed and result.blocked == ["docs"]
    assert not (repo / "src" / "elsewhere.py").exists()
    denied = [m for m in messages if m.type == "TOOL_DENIED"]
    assert denied and all(m.payload["path"] == "src/elsewhere.py" for m in denied)
    failed = [m for m in messages if m.type == "TASK_FAILED"]
    assert len(failed) == 3 and "did not change" in failed[0].payload["error"]
