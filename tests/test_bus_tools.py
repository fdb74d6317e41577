"""The conductor MCP tools a Claude worker gets: bound to one worker, claims recorded."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conductor.contract import BUS_TOOL_NAMES, SERVER_KEY, qualified_tool_names
from conductor.executors.bus_tools import WorkerBinding, build_bus_server, build_tools
from conductor.executors.evidence import Evidence
from conductor.locks import PathLocks
from conductor.messages import Message


class Posted:
    """Collects what a worker posts, as the scheduler's post function would publish it."""

    def __init__(self, task: str = "t", worker: str = "t.1") -> None:
        self.messages: list[Message] = []
        self.task = task
        self.worker = worker

    def __call__(self, mtype: str, *, payload: dict[str, Any] | None = None) -> Message:
        msg = Message(
            seq=len(self.messages) + 1,
            id=f"m{len(self.messages)}",
            type=str(mtype),
            ts=datetime.now(UTC),
            track="tr",
            task=self.task,
            worker=self.worker,
            attempt=1,
            payload=payload or {},
        )
        self.messages.append(msg)
        return msg

    def types(self) -> list[str]:
        return [m.type for m in self.messages]


def _binding(tmp_path: Path, post: Callable[..., Message], **kw: Any) -> WorkerBinding:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    defaults: dict[str, Any] = {
        "worker": "t.1",
        "task": "t",
        "attempt": 1,
        "repo": repo,
        "globs": ("src/**",),
        "post": post,
        "evidence": Evidence(),
    }
    defaults.update(kw)
    return WorkerBinding(**defaults)


def _tools(binding: WorkerBinding) -> dict[str, Any]:
    return {t.name: t.handler for t in build_tools(binding)}


def _text(result: dict[str, Any]) -> str:
    return "\n".join(c["text"] for c in result["content"])


def test_server_and_names() -> None:
    """The server is an in-process SDK server named conductor; the tools build_tools serves
    are the contract's, and the model sees each as mcp__conductor__<served name>."""
    binding = WorkerBinding("t.1", "t", 1, Path("."), (), Posted(), Evidence())
    server = build_bus_server(binding)
    assert server["type"] == "sdk" and server["name"] == SERVER_KEY == "conductor"
    served = [t.name for t in build_tools(binding)]
    assert served == list(BUS_TOOL_NAMES)
    assert qualified_tool_names() == [f"mcp__conductor__{name}" for name in served]


@pytest.mark.anyio
async def test_report_complete_records_claim_and_posts(tmp_path: Path) -> None:
    """report_complete records a claim on the evidence and posts CLAIM_COMPLETE as this worker."""
    post = Posted()
    binding = _binding(tmp_path, post)
    tools = _tools(binding)
    out = await tools["report_complete"](
        {"summary": "added a.py", "files_changed": ["src/a.py"], "notes": "n"}
    )
    assert "is_error" not in out
    claim = binding.evidence.claim
    assert claim is not None and claim.complete and claim.files_changed == ["src/a.py"]
    assert post.types() == ["CLAIM_COMPLETE"]
    assert post.messages[0].payload == {
        "summary": "added a.py",
        "files_changed": ["src/a.py"],
        "notes": "n",
    }


@pytest.mark.anyio
async def test_report_failed_and_progress(tmp_path: Path) -> None:
    """report_failed records a failure claim; report_progress posts PROGRESS with a percent."""
    post = Posted()
    binding = _binding(tmp_path, post)
    tools = _tools(binding)
    await tools["report_progress"]({"message": "halfway", "percent": 150})
    await tools["report_failed"]({"reason": "the API is gone"})
    assert post.types() == ["PROGRESS", "CLAIM_FAILED"]
    assert post.messages[0].payload == {"message": "halfway", "source": "worker", "percent": 100.0}
    assert binding.evidence.claim is not None and not binding.evidence.claim.complete
    assert binding.evidence.claim.summary == "the API is gone"


@pytest.mark.anyio
async def test_tool_arguments_cannot_name_another_worker(tmp_path: Path) -> None:
    """Extra arguments (worker, task) are ignored: messages are always this worker's."""
    post = Posted()
    binding = _binding(tmp_path, post)
    tools = _tools(binding)
    await tools["report_complete"](
        {"summary": "x", "files_changed": [], "worker": "other.1", "task": "other"}
    )
    assert post.messages[0].worker == "t.1" and post.messages[0].task == "t"
    assert "worker" not in post.messages[0].payload


@pytest.mark.anyio
async def test_lock_and_unlock(tmp_path: Path) -> None:
    """lock_file locks for this worker; paths held by another or outside files are refused."""
    notices: list[tuple[str, dict[str, Any]]] = []
    locks = PathLocks(tmp_path / "locks", notify=lambda t, p: notices.append((t, p)))
    locks.acquire("src/b.py", worker="other.1", task="other", attempt=1)
    binding = _binding(tmp_path, Posted(), locks=locks)
    tools = _tools(binding)
    ok = await tools["lock_file"]({"path": "src/a.py"})
    assert "is_error" not in ok and _holder(locks, "src/a.py") == "t.1"
    held = await tools["lock_file"]({"path": "src/b.py"})
    assert held.get("is_error") and "other.1" in _text(held)
    assert [t for t, _p in notices][-1] == "LOCK_DENIED"
    outside = await tools["lock_file"]({"path": "docs/x.md"})
    assert outside.get("is_error") and "outside this task's files" in _text(outside)
    escape = await tools["lock_file"]({"path": "../../etc/passwd"})
    assert escape.get("is_error")
    theirs = await tools["unlock_file"]({"path": "src/b.py"})
    assert theirs.get("is_error") and _holder(locks, "src/b.py") == "other.1"
    mine = await tools["unlock_file"]({"path": "src/a.py"})
    assert "is_error" not in mine and _holder(locks, "src/a.py") is None


def _holder(locks: PathLocks, path: str) -> str | None:
    info = locks.holder(path)
    return None if info is None else info.worker


def _msg(
    seq: int, mtype: str, task: str | None, worker: str | None = None, **payload: Any
) -> Message:
    return Message(
        seq=seq,
        id=str(seq),
        type=mtype,
        ts=datetime.now(UTC),
        track="tr",
        task=task,
        worker=worker,
        payload=payload,
    )


class ListBus:
    """Bus.read over a list."""

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    def read(self, after: int = 0) -> list[Message]:
        return [m for m in self.messages if m.seq > after]


@pytest.mark.anyio
async def test_read_messages_filters_and_follows_cursor(tmp_path: Path) -> None:
    """read_messages shows notes for this task or the track, hides noise and other tasks."""
    bus = ListBus(
        [
            _msg(1, "NOTE", None, text="whole track: use tabs"),
            _msg(2, "PROGRESS", "t", "t.1", message="noise"),
            _msg(3, "NOTE", "other", text="not for you"),
            _msg(4, "APPROVE", "t", text="go ahead"),
            _msg(5, "WORKER_STARTED", "t", "t.1"),
        ]
    )
    binding = _binding(tmp_path, Posted(), bus=bus)
    tools = _tools(binding)
    text = _text(await tools["read_messages"]({}))
    assert "use tabs" in text and "go ahead" in text
    assert "noise" not in text and "not for you" not in text
    assert binding.cursor == 5
    assert "No new messages" in _text(await tools["read_messages"]({}))
    bus.messages.append(_msg(6, "NOTE", "t", text="one more thing"))
    assert "one more thing" in _text(await tools["read_messages"]({}))
    again = _text(await tools["read_messages"]({"since_seq": 0}))
    assert "use tabs" in again


@pytest.mark.anyio
async def test_read_messages_from_the_real_bus(tmp_path: Path) -> None:
    """read_messages works over the real file bus: a person's NOTE to the task shows up."""
    from conductor.bus import Bus

    with Bus(tmp_path / "bus", "tr") as bus:
        bus.post("NOTE", task="t", payload={"text": "prefer small commits"})
        bus.post("PROGRESS", task="t", worker="t.1", attempt=1, payload={"message": "noise"})
        binding = _binding(tmp_path, Posted(), bus=bus)
        text = _text(await _tools(binding)["read_messages"]({}))
    assert "prefer small commits" in text and "noise" not in text
    assert binding.cursor == 2
