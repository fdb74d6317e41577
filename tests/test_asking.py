"""Questions with JSON answers, asked of the offline fake CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conductor.asking import Answer, AskError, ask
from conductor.testing import fake_cli_path, read_fake_log
from conductor.testing.fake_api import FakeMessagesAPI, bundled_cli_path, real_cli_env

pytestmark = pytest.mark.anyio

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake CLI answers questions; its log is returned."""
    monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(fake_cli_path()))
    log = tmp_path / "fake.jsonl"
    monkeypatch.setenv("CONDUCTOR_FAKE_LOG", str(log))
    return log


def script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rules: list[object]) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"sessions": rules}))
    monkeypatch.setenv("CONDUCTOR_FAKE_SCRIPT", str(path))


async def test_the_answer_is_the_structured_output(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The result's structured_output is the answer; the session was read-only."""
    script(
        tmp_path,
        monkeypatch,
        [
            {
                "match": "count",
                "steps": [{"cost": 0.02}, {"result": {"structured_output": {"n": 3}}}],
            }
        ],
    )
    answer = await ask("count the files", SCHEMA, system="You count.", cwd=tmp_path)
    assert answer.data == {"n": 3} and answer.cost_usd == pytest.approx(0.02)
    start = next(r for r in read_fake_log(fake) if r["event"] == "start")
    assert json.loads(start["args"]["values"]["json-schema"]) == SCHEMA
    assert start["args"]["tools"] == ["Read", "Grep", "Glob"]


async def test_no_structured_output_is_an_error_with_its_cost(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that answers in prose only raises AskError, keeping what it cost."""
    script(tmp_path, monkeypatch, [{"match": "count", "steps": [{"cost": 0.01}, {"text": "3"}]}])
    with pytest.raises(AskError, match="without structured output") as caught:
        await ask("count the files", SCHEMA, system="You count.", cwd=tmp_path)
    assert caught.value.cost_usd == pytest.approx(0.01)


async def test_a_failed_session_is_an_error(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session ending in an error result raises AskError naming why."""
    script(
        tmp_path,
        monkeypatch,
        [{"match": "count", "steps": [{"result": {"subtype": "error_max_turns"}}]}],
    )
    with pytest.raises(AskError, match="failed"):
        await ask("count the files", SCHEMA, system="You count.", cwd=tmp_path)


async def ask_the_real_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: dict[str, Any], **kw: Any
) -> tuple[Answer, list[dict[str, Any]]]:
    """``ask("count the files", ...)`` of the real CLI, whose model is the fake API playing
    ``script``; the answer, and the requests the CLI sent."""
    with FakeMessagesAPI(script) as api:
        env = real_cli_env(api.base_url, tmp_path / "config", tmp_dir=tmp_path / "tmp")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("CONDUCTOR_CLAUDE_CLI", str(bundled_cli_path()))
        answer = await ask("count the files", SCHEMA, system="You count.", **kw)
        return answer, list(api.requests)


@pytest.mark.real_cli
@pytest.mark.skipif(bundled_cli_path() is None, reason="no bundled Claude Code CLI")
async def test_the_real_cli_answers_through_its_structured_output_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the real CLI the model answers by calling StructuredOutput; that is the answer."""
    script = {
        "conversations": [
            {
                "match": "count",
                "turns": [
                    {
                        "text": "Counting.",
                        "tool_use": {"name": "StructuredOutput", "input": {"n": 3}},
                    },
                    {"text": "done"},
                ],
            }
        ]
    }
    answer, requests = await ask_the_real_cli(tmp_path, monkeypatch, script, cwd=tmp_path)
    tools = [t["name"] for t in requests[0]["tools"]]
    assert answer.data == {"n": 3} and answer.cost_usd > 0
    assert sorted(tools) == ["Glob", "Grep", "Read", "StructuredOutput"]


def _tool_results(requests: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Every tool_result the CLI sent back to the model, by tool_use id."""
    out: dict[str, dict[str, object]] = {}
    for request in requests:
        for message in request["messages"]:  # type: ignore[attr-defined]
            content = message.get("content")
            for block in content if isinstance(content, list) else []:
                if block.get("type") == "tool_result":
                    out[block["tool_use_id"]] = block
    return out


@pytest.mark.real_cli
@pytest.mark.skipif(bundled_cli_path() is None, reason="no bundled Claude Code CLI")
async def test_a_question_cannot_read_conductors_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the real CLI, a question asked in the checkout cannot read conductor's state
    inside it: Read is refused, Grep and Glob leave it out of their results (even past the
    state's .gitignore), `~user/..` paths are refused; the repository stays readable."""
    repo = tmp_path / "repo"
    state = repo / ".conductor"
    (state / "t").mkdir(parents=True)
    (state / "t" / "secret.txt").write_text("TOPSECRET\n")
    (repo / "README.md").write_text("hello readme\n")

    def read(tool_id: str, path: Path) -> dict[str, object]:
        return {"id": tool_id, "name": "Read", "input": {"file_path": str(path)}}

    def search(tool_id: str, name: str, **given: str) -> dict[str, object]:
        return {"id": tool_id, "name": name, "input": given}

    script = {
        "conversations": [
            {
                "match": "count",
                "turns": [
                    {"tool_use": read("toolu_state", state / "t" / "secret.txt")},
                    {"tool_use": search("toolu_grep", "Grep", pattern="TOPSECRET",
                                        glob=".conductor/**", output_mode="content")},
                    {"tool_use": search("toolu_glob", "Glob", pattern="**/*")},
                    {"tool_use": search("toolu_up", "Grep", pattern="TOPSECRET",
                                        path="~root/../.conductor")},
                    {"tool_use": read("toolu_readme", repo / "README.md")},
                    {"tool_use": {"name": "StructuredOutput", "input": {"n": 1}}},
                    {"text": "done"},
                ],
            }
        ]
    }
    answer, requests = await ask_the_real_cli(
        tmp_path, monkeypatch, script, cwd=repo, state_root=state
    )
    results = _tool_results(requests)
    assert answer.data == {"n": 1}
    assert all("TOPSECRET" not in json.dumps(result) for result in results.values())
    assert results["toolu_state"].get("is_error") is True  # refused by Claude Code's rules
    assert "denied" in json.dumps(results["toolu_state"])
    assert "secret.txt" not in json.dumps(results["toolu_glob"])  # left out of the results
    assert "README.md" in json.dumps(results["toolu_glob"])
    assert "conductor's state directory" in json.dumps(results["toolu_up"])  # by the hook
    assert "hello readme" in json.dumps(results["toolu_readme"])
