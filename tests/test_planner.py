"""Planning a track from a goal, against the offline fake CLI."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conductor.bus import Bus
from conductor.paths import StateDir
from conductor.planner import plan_goal
from conductor.testing import fake_cli_path, read_fake_log
from conductor.track import load_track

WRITER = {
    "name": "greeter",
    "role": "Greeting writer",
    "goal": "Write greetings people like.",
    "system_prompt": "You write short greetings into text files.",
    "tools": ["Read", "Write"],
    "model": "haiku",
}

PLAN: dict[str, Any] = {
    "questions": [],
    "track": "greetings",
    "description": "Greet in two languages.",
    "agents": [WRITER],
    "tasks": [
        {
            "id": "en",
            "name": "English greeting",
            "type": "docs",
            "agent": "greeter",
            "files": ["hello.txt"],
            "acceptance": ["hello.txt says hello"],
            "verify": ["grep -q hello hello.txt"],
        },
        {
            "id": "de",
            "name": "German greeting",
            "type": "docs",
            "agent": "greeter",
            "depends_on": ["en"],
            "files": ["hallo.txt"],
            "acceptance": ["hallo.txt says hallo"],
            "verify": ["grep -q hallo hallo.txt"],
        },
    ],
}


def answer(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"cost": 0.05}, {"result": {"structured_output": plan}}]


def planner(*rounds: dict[str, Any]) -> dict[str, Any]:
    return {"match": "The goal:", "attempts": [answer(r) for r in rounds]}


def worker(task: str, path: str, text: str) -> dict[str, Any]:
    return {
        "match": f"Carry out task {task} (",
        "steps": [
            {"write": {"path": path, "content": text}},
            {
                "mcp": {
                    "tool": "report_complete",
                    "input": {"summary": "done", "files_changed": [path]},
                }
            },
        ],
    }


def environment(tmp_path: Path, sessions: list[Any]) -> dict[str, str]:
    (tmp_path / "script.yaml").write_text(yaml.safe_dump({"sessions": sessions}))
    env = dict(os.environ)
    env.update(
        CONDUCTOR_CLAUDE_CLI=str(fake_cli_path()),
        CONDUCTOR_FAKE_SCRIPT=str(tmp_path / "script.yaml"),
        CONDUCTOR_FAKE_LOG=str(tmp_path / "fake.jsonl"),
    )
    return env


def conductor(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "conductor", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def planner_sessions(tmp_path: Path) -> list[dict[str, Any]]:
    """Each planner session's start record, with ``said``: everything the SDK sent it."""
    events = read_fake_log(tmp_path / "fake.jsonl")
    starts = [
        e for e in events if e.get("event") == "start" and "json-schema" in e["args"]["values"]
    ]
    for start in starts:
        start["said"] = [e for e in events if e.get("event") == "recv" and e["pid"] == start["pid"]]
    return starts


def bus_types(repo: Path, track_id: str) -> list[Any]:
    sd = StateDir.for_track(repo, track_id, Path(os.environ["CONDUCTOR_STATE_DIR"]))
    with Bus.for_state(sd, track_id) as bus:
        return list(bus.iter_all())


def test_a_goal_is_planned_into_a_track_that_runs_to_completion(
    repo: Path, tmp_path: Path
) -> None:
    """plan --goal writes a valid track with its agents; run completes it on the fakes."""
    env = environment(
        tmp_path,
        [
            planner(PLAN),
            worker("en", "hello.txt", "hello\n"),
            worker("de", "hallo.txt", "hallo\n"),
        ],
    )
    done = conductor(repo, env, "plan", "--goal", "Greet in English and German", "--no-questions")
    assert done.returncode == 0, done.stderr
    path = repo / "tracks" / "greetings" / "track.yaml"
    assert "wrote tracks/greetings/track.yaml: " in done.stdout  # relative to where it ran
    track = load_track(path)
    assert [t.id for t in track.tasks] == ["en", "de"] and track.tasks[1].depends_on == ["en"]
    assert track.agents["greeter"].model == "haiku"
    assert "# Goal:\n#   Greet in English and German" in path.read_text()
    (question,) = planner_sessions(tmp_path)
    assert question["args"]["tools"] == ["Read", "Grep", "Glob"]
    assert "Do not ask questions" in json.dumps(question)
    recorded = [m for m in bus_types(repo, "greetings") if m.type.startswith("PLAN_")]
    assert [m.type for m in recorded] == ["PLAN_PROPOSED", "PLAN_WRITTEN"]
    assert recorded[1].payload["cost_usd"] == pytest.approx(0.05)

    ran = conductor(repo, env, "run", str(path))
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert (repo / "hello.txt").read_text() == "hello\n"
    assert (repo / "hallo.txt").read_text() == "hallo\n"


def test_a_cyclic_and_overlapping_plan_is_sent_back_and_fixed(repo: Path, tmp_path: Path) -> None:
    """The logic check returns a cycle and unordered overlapping files; round 2 is fixed."""
    bad = copy.deepcopy(PLAN)
    bad["tasks"][0]["depends_on"] = ["de"]
    bad["tasks"].append({**PLAN["tasks"][0], "id": "en2", "depends_on": []})
    env = environment(tmp_path, [planner(bad, PLAN)])
    done = conductor(repo, env, "plan", "--goal", "Greet", "--out", "greet.yaml")
    assert done.returncode == 0, done.stderr
    assert "in 2 rounds, 1 sent back" in done.stdout
    assert load_track(repo / "greet.yaml").id == "greetings"
    first, second = planner_sessions(tmp_path)
    assert "problems" not in json.dumps(first)
    assert "cycle" in json.dumps(second)
    proposed = [m for m in bus_types(repo, "greetings") if m.type == "PLAN_PROPOSED"]
    assert proposed[0].payload["problems"] and not proposed[1].payload["problems"]


def test_a_plan_never_fixed_fails_after_three_rounds(repo: Path, tmp_path: Path) -> None:
    """Three answers with problems: exit 2, the last problems shown, nothing written."""
    unverified = copy.deepcopy(PLAN)
    for task in unverified["tasks"]:
        task["verify"] = []
    env = environment(tmp_path, [planner(unverified)])
    done = conductor(repo, env, "plan", "--goal", "Greet", "--out", "greet.yaml")
    assert done.returncode == 2
    assert "no plan passed the logic check in 3 rounds" in done.stderr
    assert "task en has no verify command" in done.stderr
    assert not (repo / "greet.yaml").exists()
    assert len(planner_sessions(tmp_path)) == 3


def test_an_agent_nobody_defined_and_a_bad_field_are_problems(repo: Path, tmp_path: Path) -> None:
    """A task naming an unknown agent, and a bad task type, both go back to the planner."""
    bad = copy.deepcopy(PLAN)
    bad["tasks"][1]["agent"] = "ghost"
    env = environment(tmp_path, [planner(bad, PLAN)])
    assert conductor(repo, env, "plan", "--goal", "Greet", "--out", "g.yaml").returncode == 0
    second = json.dumps(planner_sessions(tmp_path)[1])
    assert "ghost" in second and "no agent fits it" in second


def test_every_schema_problem_of_a_plan_goes_back_in_one_round(
    repo: Path, tmp_path: Path
) -> None:
    """A plan with several field mistakes gets all of them back at once, not one a round."""
    bad = copy.deepcopy(PLAN)
    bad["tasks"][0]["max_attempts"] = 0
    bad["tasks"][0]["type"] = "Not A Type"
    bad["tasks"][1]["timeout"] = "soon"
    env = environment(tmp_path, [planner(bad, PLAN)])
    assert conductor(repo, env, "plan", "--goal", "Greet", "--out", "g.yaml").returncode == 0
    second = json.dumps(planner_sessions(tmp_path)[1])
    for field in ("tasks[0].max_attempts", "tasks[0].type", "tasks[1].timeout"):
        assert field in second, field



@pytest.mark.anyio
async def test_questions_are_put_to_the_person_and_answered(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ambiguous goal gets questions; the answers go into the next planner question."""
    asking = {**PLAN, "questions": ["Which languages?"], "tasks": [], "agents": []}
    for key, value in environment(tmp_path, [planner(asking, PLAN)]).items():
        monkeypatch.setenv(key, value)
    asked: list[list[str]] = []

    async def person(questions: list[str]) -> list[str]:
        asked.append(questions)
        return ["English and German"]

    planned = await plan_goal("Greet people", repo, asker=person)
    assert asked == [["Which languages?"]] and planned.rounds == 1
    assert planned.cost_usd == pytest.approx(0.10)
    second = json.dumps(planner_sessions(tmp_path)[1])
    assert "Q: Which languages?" in second and "A: English and German" in second


def test_a_goal_with_control_characters_still_gives_a_readable_file(
    repo: Path, tmp_path: Path
) -> None:
    """A terminal escape pasted into the goal is shown as "?" in the file's comment."""
    env = environment(tmp_path, [planner(PLAN)])
    goal = "Greet \x1b[31mloudly\x1b[0m\x07 please"
    done = conductor(repo, env, "plan", "--goal", goal, "--out", "greet.yaml")
    assert done.returncode == 0, done.stderr
    assert "in 1 round" in done.stdout
    text = (repo / "greet.yaml").read_text()
    assert "#   Greet ?[31mloudly?[0m? please" in text
    assert load_track(repo / "greet.yaml").id == "greetings"


def test_a_plan_whose_track_file_exists_goes_back_for_another_id(
    repo: Path, tmp_path: Path
) -> None:
    """A plan taking an existing tracks/ID/track.yaml is sent back, not thrown away."""
    (repo / "tracks" / "greetings").mkdir(parents=True)
    (repo / "tracks" / "greetings" / "track.yaml").write_text("track: greetings\ntasks: []\n")
    env = environment(tmp_path, [planner(PLAN, {**PLAN, "track": "greetings-2"})])
    done = conductor(repo, env, "plan", "--goal", "Greet")
    assert done.returncode == 0, done.stderr
    assert "track greetings-2 in 2 rounds, 1 sent back" in done.stdout
    assert "track id greetings is taken" in json.dumps(planner_sessions(tmp_path)[1])
    assert (repo / "tracks" / "greetings" / "track.yaml").read_text().startswith("track: ")
    assert load_track(repo / "tracks" / "greetings-2" / "track.yaml").id == "greetings-2"


@pytest.mark.anyio
async def test_after_its_last_questions_the_planner_is_told_to_stop_asking(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the question rounds are used up, the next question says not to ask again."""
    asking = {**PLAN, "questions": ["Which languages?"], "tasks": [], "agents": []}
    for key, value in environment(tmp_path, [planner(asking, asking, PLAN)]).items():
        monkeypatch.setenv(key, value)

    async def person(questions: list[str]) -> list[str]:
        return ["English"]

    planned = await plan_goal("Greet people", repo, asker=person)
    assert planned.rounds == 1
    sessions = [json.dumps(s) for s in planner_sessions(tmp_path)]
    assert len(sessions) == 3
    assert "Do not ask questions" not in sessions[1]
    assert "Do not ask questions" in sessions[2]


def test_goal_options_without_a_goal_are_refused(repo: Path, tmp_path: Path) -> None:
    """--out or --no-questions with a TRACK, or --json with --goal, is exit 2, not ignored."""
    (repo / "t.yaml").write_text("track: t\ntasks:\n  - {id: a, run: 'true'}\n")
    env = environment(tmp_path, [])
    done = conductor(repo, env, "plan", "t.yaml", "--out", "x.yaml", "--no-questions")
    assert done.returncode == 2 and "--out, --no-questions: only with --goal" in done.stderr
    done = conductor(repo, env, "plan", "--goal", "Greet", "--json")
    assert done.returncode == 2 and "--goal writes a track file" in done.stderr
    assert not (tmp_path / "fake.jsonl").exists()


@pytest.mark.parametrize("stop", ["sigint", "eof"])
def test_stopping_at_a_question_exits_130_and_writes_nothing(
    repo: Path, tmp_path: Path, stop: str
) -> None:
    """Ctrl-C or Ctrl-D at the planner's question on a terminal: exit 130, no hang, no file."""
    import pty
    import signal
    import time

    asking = {**PLAN, "questions": ["Which languages?"], "tasks": [], "agents": []}
    env = environment(tmp_path, [planner(asking, PLAN)])
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "conductor", "plan", "--goal", "Greet", "--out", "g.yaml"],
        cwd=repo,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    screen = b""
    try:
        deadline = time.monotonic() + 120
        while b"Which languages?" not in screen:
            assert time.monotonic() < deadline and proc.poll() is None, screen.decode("replace")
            screen += os.read(leader, 4096)
        if stop == "sigint":
            proc.send_signal(signal.SIGINT)
        else:
            os.write(leader, b"\x04")
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                screen += os.read(leader, 4096)
            except OSError:  # the child closed the terminal
                time.sleep(0.05)
        assert proc.wait(timeout=120) == 130, screen.decode("replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert b"no track was written" in screen and b"Traceback" not in screen
    assert not (repo / "g.yaml").exists()
