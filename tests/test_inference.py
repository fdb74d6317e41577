"""Agents defined nowhere: an error by default; with --adhoc inferred once, kept, promotable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakekit import setup as fake_setup

from conductor.agents import AgentRegistry
from conductor.bus import Bus
from conductor.errors import UserError
from conductor.inference import check, parse_overrides
from conductor.paths import StateDir
from conductor.testing import read_fake_log
from conductor.track import load_track

DESIGNER = {
    "name": "api-designer",
    "role": "API designer",
    "goal": "Design clean HTTP APIs.",
    "system_prompt": "You design HTTP APIs for this service. INFERRED-PROMPT-MARK",
    "tools": ["Read", "Write", "Edit"],
    "model": "sonnet",
}

TRACK = {
    "track": "adhoc",
    "tasks": [
        {
            "id": "items",
            "agent": "api-designer",
            "files": ["items.txt"],
            "acceptance": ["items.txt exists"],
        },
        {"id": "users", "agent": "api-designer", "files": ["users.txt"]},
        {"id": "schema", "agent": "db-migrator", "files": ["schema.txt"]},
    ],
}


def rule(task: str, path: str) -> dict[str, Any]:
    return {
        "match": f"Carry out task {task} (",
        "steps": [
            {"write": {"path": path, "content": f"{task}\n"}},
            {
                "mcp": {
                    "tool": "report_complete",
                    "input": {"summary": "done", "files_changed": [path]},
                }
            },
        ],
    }


def inference(answer: Any) -> dict[str, Any]:
    """The fake's answer to the batched question."""
    return {
        "match": "Define these agents:",
        "steps": [{"cost": 0.04}, {"result": {"structured_output": answer}}],
    }


def setup(repo: Path, tmp_path: Path, track: dict[str, Any], sessions: list[Any]) -> dict[str, str]:
    return fake_setup(repo, tmp_path, track, {"sessions": sessions})


def conductor(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conductor", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def bus_messages(repo: Path, track_id: str) -> list[Any]:
    sd = StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))
    with Bus.for_state(sd, track_id) as bus:
        return list(bus.iter_all())


def sessions_started(tmp_path: Path) -> list[dict[str, Any]]:
    return [e for e in read_fake_log(tmp_path / "fake.jsonl") if e.get("event") == "start"]


def test_an_agent_defined_nowhere_is_an_error_without_adhoc(repo: Path, tmp_path: Path) -> None:
    """run and validate refuse an unknown agent with file, line, field and --adhoc; no state."""
    env = setup(repo, tmp_path, TRACK, [])
    for command in (["validate", "track.yaml"], ["run", "track.yaml"]):
        done = conductor(repo, env, *command)
        assert done.returncode == 2, done.stderr
        assert "track.yaml:4: tasks.items.agent: agent 'api-designer'" in done.stderr
        assert "--adhoc" in done.stderr and "Traceback" not in done.stderr
    assert not (Path(os.environ["CONDUCTOR_STATE_DIR"]) / "adhoc").exists()


def test_missing_agents_are_inferred_once_in_one_batch_and_reused(
    repo: Path, tmp_path: Path
) -> None:
    """One question infers both agents; they do the work; a rerun asks nothing again."""
    migrator = {**DESIGNER, "name": "db-migrator", "role": "DB migrator", "tools": ["Write"]}
    items_again = rule("items", "items.txt")
    items_again["steps"][0]["write"]["content"] = "items, again\n"
    sessions = [
        inference({"agents": [DESIGNER, migrator]}),
        {
            "match": "Carry out task items (",
            "attempts": [rule("items", "items.txt")["steps"], items_again["steps"]],
        },
        rule("users", "users.txt"),
        rule("schema", "schema.txt"),
    ]
    env = setup(repo, tmp_path, TRACK, sessions)
    done = conductor(repo, env, "run", "--adhoc", "track.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "agent api-designer inferred: API designer" in done.stdout
    assert "agent db-migrator inferred: DB migrator" in done.stdout
    inferred = [m for m in bus_messages(repo, "adhoc") if m.type == "AGENT_INFERRED"]
    assert [m.payload["agent"]["name"] for m in inferred] == ["api-designer", "db-migrator"]
    assert inferred[0].payload["tasks"] == ["items", "users"]
    assert inferred[0].payload["cost_usd"] == pytest.approx(0.02)
    assert "fallback" not in inferred[0].payload
    starts = sessions_started(tmp_path)
    questions = [s for s in starts if "json-schema" in s["args"]["values"]]
    assert len(questions) == 1
    workers = [s for s in starts if "json-schema" not in s["args"]["values"]]
    assert len(workers) == 3
    assert all("INFERRED-PROMPT-MARK" in json.dumps(s["args"]) for s in workers)

    changed = {
        **TRACK,
        "tasks": [{**TRACK["tasks"][0], "name": "Items, again"}, *TRACK["tasks"][1:]],
    }
    (repo / "track.yaml").write_text(yaml.safe_dump(changed))
    again = conductor(repo, env, "run", "--adhoc", "track.yaml")
    assert again.returncode == 0, again.stderr[-3000:]
    starts = sessions_started(tmp_path)
    assert len([s for s in starts if "json-schema" in s["args"]["values"]]) == 1
    assert len([m for m in bus_messages(repo, "adhoc") if m.type == "AGENT_INFERRED"]) == 2
    validated = conductor(repo, env, "validate", "--adhoc", "track.yaml")
    assert "was inferred by an earlier run" in validated.stdout

    promoted = conductor(repo, env, "agents", "promote", "adhoc", "api-designer")
    assert promoted.returncode == 0, promoted.stderr
    path = repo / ".claude" / "agents" / "api-designer.md"
    agent = AgentRegistry(load_track(repo / "track.yaml"), repo).resolve(
        load_track(repo / "track.yaml").tasks[0]
    )
    assert agent.source == "claude-agents" and agent.origin == path
    assert "INFERRED-PROMPT-MARK" in agent.system_prompt and agent.tools == [
        "Read",
        "Write",
        "Edit",
    ]
    twice = conductor(repo, env, "agents", "promote", "adhoc", "api-designer")
    assert twice.returncode == 2 and "--force" in twice.stderr
    unknown = conductor(repo, env, "agents", "promote", "adhoc", "api-desiger")
    assert unknown.returncode == 2 and "did you mean 'api-designer'" in unknown.stderr


def test_a_failed_inference_falls_back_by_name_and_says_so(repo: Path, tmp_path: Path) -> None:
    """When the question fails every agent gets the named fallback, recorded with why."""
    track = {**TRACK, "tasks": TRACK["tasks"][:1]}
    sessions = [
        {"match": "Define these agents:", "steps": [{"result": {"subtype": "error_max_turns"}}]},
        rule("items", "items.txt"),
    ]
    env = setup(repo, tmp_path, track, sessions)
    done = conductor(
        repo, env, "run", "--adhoc", "--agent-goal", "api-designer=Ship it", "track.yaml"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "agent api-designer: made from its name (inference failed" in done.stdout
    (inferred,) = [m for m in bus_messages(repo, "adhoc") if m.type == "AGENT_INFERRED"]
    assert "inference failed" in inferred.payload["fallback"]
    assert inferred.payload["agent"]["role"] == "API designer"
    assert inferred.payload["agent"]["goal"] == "Ship it"
    promoted = conductor(repo, env, "agents", "promote", "adhoc", "api-designer")
    assert promoted.returncode == 0, promoted.stderr
    assert "is the fallback made from its name" in promoted.stderr  # generic: edit it


def test_a_wrong_answer_for_one_agent_falls_back_for_that_agent_only(
    repo: Path, tmp_path: Path
) -> None:
    """An answer with an unknown tool is refused for its agent; the other is used."""
    bad = {**DESIGNER, "name": "db-migrator", "tools": ["Read", "Teleport"]}
    sessions = [
        inference({"agents": [DESIGNER, bad]}),
        rule("items", "items.txt"),
        rule("users", "users.txt"),
        rule("schema", "schema.txt"),
    ]
    env = setup(repo, tmp_path, {**TRACK, "adhoc": True}, sessions)
    done = conductor(repo, env, "run", "track.yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    by_name = {
        m.payload["agent"]["name"]: m.payload
        for m in bus_messages(repo, "adhoc")
        if m.type == "AGENT_INFERRED"
    }
    assert "fallback" not in by_name["api-designer"]
    assert by_name["db-migrator"]["fallback"] == "unknown tools: Teleport"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"role": "x" * 201}, "role must be"),
        ({"goal": ""}, "goal must be"),
        ({"system_prompt": " "}, "no system prompt"),
        ({"tools": ["Read", "Hack"]}, "unknown tools: Hack"),
        ({"model": "gpt"}, "model must be"),
    ],
)
def test_answers_are_checked(change: dict[str, Any], why: str) -> None:
    """Lengths, tools and models of an inferred agent are checked."""
    agent, reason = check({**DESIGNER, **change})
    assert agent is None and why in reason


def test_a_good_answer_becomes_an_agent() -> None:
    """A valid entry becomes an Agent with its fields."""
    agent, reason = check(DESIGNER)
    assert agent is not None and reason == ""
    assert agent.tools == ["Read", "Write", "Edit"] and agent.model == "sonnet"


def test_overrides_are_parsed_and_checked() -> None:
    """--agent-role/--agent-goal take NAME=TEXT; anything else is a clear error."""
    assert parse_overrides(("a=Role A",), ("a=Goal A", "b=Goal B")) == {
        "a": {"role": "Role A", "goal": "Goal A"},
        "b": {"goal": "Goal B"},
    }
    with pytest.raises(UserError, match="NAME=ROLE"):
        parse_overrides(("no-equals",), ())
    with pytest.raises(UserError, match="at most 200"):
        parse_overrides((f"a={'x' * 201}",), ())


def test_an_answer_naming_agents_oddly_or_unasked_is_no_crash(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list as a name and an agent nobody asked for are ignored; the asked one falls back."""
    import anyio

    from conductor import asking
    from conductor.inference import infer, missing
    from conductor.track import parse_track

    async def answer(*args: Any, **kwargs: Any) -> asking.Answer:
        odd = {**DESIGNER, "name": ["db-migrator"]}
        intruder = {**DESIGNER, "name": "intruder", "tools": ["Bash"]}
        return asking.Answer(data={"agents": [odd, intruder, DESIGNER]}, cost_usd=0.02)

    monkeypatch.setattr(asking, "ask", answer)
    track = parse_track(yaml.safe_dump({**TRACK, "adhoc": True}))
    result = anyio.run(lambda: infer(track, repo, missing(track, repo)))
    assert sorted(result.agents) == ["api-designer", "db-migrator"]
    assert result.fallbacks == {"db-migrator": "inference left it out"}
    assert result.agents["api-designer"].role == "API designer"


def test_an_override_for_an_agent_nobody_infers_is_an_error(repo: Path, tmp_path: Path) -> None:
    """--agent-role for a name no task needs inferred (a typo) is exit 2, before any run."""
    env = setup(repo, tmp_path, TRACK, [])
    done = conductor(repo, env, "run", "track.yaml", "--adhoc", "--agent-role", "ghost=Nobody")
    assert done.returncode == 2, done.stderr
    assert "ghost" in done.stderr and "api-designer, db-migrator" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (Path(os.environ["CONDUCTOR_STATE_DIR"]) / "adhoc").exists()
