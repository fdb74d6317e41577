import pytest
from tests.test_real_cli_limits import *  # noqa

async def test_dbg(repo, tmp_path):
    expensive = {"input_tokens": 100, "output_tokens": 40_000}
    track = {"track": "stream", "budget_usd": 1.0, "max_parallel": 2, "tasks": [task("a"), task("b"), task("c")]}
    script = {"conversations": [
        {"match": match("a"), "turns": writes("a.txt", usage=expensive, delay=6)},
        {"match": match("b"), "turns": [{"text": "T", "delay": 2, "usage": expensive, "tool_use": {"name": "Write", "input": {"file_path": "b.txt", "content": "ok\n"}}}, *writes("b.txt")[1:]]},
        {"match": match("c"), "turns": writes("c.txt")}]}
    result, messages, _ = await run(repo, tmp_path, track, script, env={"ANTHROPIC_MODEL": "claude-sonnet-4-5"})
    for m in messages:
        if m.type in ("PROGRESS","TASK_DISPATCHED","TASK_COMPLETE","TASK_FAILED","WORKER_STARTED"):
            print(m.seq, m.type, m.task, m.ts.time(), {k: m.payload.get(k) for k in ("cost_usd","tokens_out","model")})
    assert 0
