"""Many processes posting to one bus at once, with a reader following it the whole time."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conductor.bus import TMP_NAME, Bus, message_filename
from conductor.messages import Message
from conductor.paths import StateDir
from conductor.workers import create_worker_dir

WRITERS = 16
PER_WRITER = 1000

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from conductor.bus import Bus
    bus_dir, name, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    sys.stdin.readline()  # start together
    with Bus(bus_dir, "trk") as bus:
        for i in range(count):
            bus.post("PROGRESS", task="t", worker=name, attempt=1,
                     payload={"w": name, "i": i, "pad": "x" * (i * 37 % 700)})
    """
)

READER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from conductor.bus import Bus
    bus_dir, total = Path(sys.argv[1]), int(sys.argv[2])
    problems, reads, cursor = [], 0, 0
    deadline = time.monotonic() + 300
    with Bus(bus_dir, "trk") as bus:
        print("ready", flush=True)
        while cursor < total and time.monotonic() < deadline:
            batch = bus.read(after=cursor)
            reads += 1
            for m in batch:
                if m.seq != cursor + 1:
                    problems.append(f"gap: {cursor} then {m.seq}")
                if m.payload.get("w") != m.worker or not isinstance(m.payload.get("i"), int):
                    problems.append(f"bad message {m.seq}")
                cursor = m.seq
            if not batch:
                time.sleep(0.001)
    print(json.dumps({"cursor": cursor, "reads": reads, "problems": problems[:20]}))
    """
)


def _spawn(code: str, *args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_16_processes_1000_posts_each_with_live_reader(tmp_path: Path) -> None:
    """16 x 1,000 concurrent posts: seqs 1..16000 gapless, none torn, lost or reordered; a
    reader following the bus meanwhile sees every message, in order, with no gap."""
    bus_dir = tmp_path / "state" / "bus"
    Bus(bus_dir, "trk").close()
    total = WRITERS * PER_WRITER
    reader = _spawn(READER, str(bus_dir), str(total))
    assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    writers = [
        _spawn(WRITER, str(bus_dir), f"w{k:02d}", str(PER_WRITER), stdin=True)
        for k in range(WRITERS)
    ]
    for w in writers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
        w.stdin.close()
    for w in writers:
        assert w.wait(timeout=600) == 0
    out, _ = reader.communicate(timeout=600)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["problems"] == []
    assert report["cursor"] == total
    assert report["reads"] > 1  # it really was reading while the writers wrote

    with Bus(bus_dir, "trk") as bus:
        msgs = list(bus.iter_all())
        assert bus.last_seq() == total
    assert [m.seq for m in msgs] == list(range(1, total + 1))
    assert len({m.id for m in msgs}) == total
    seen: dict[str, list[int]] = {}
    for m in msgs:
        seen.setdefault(m.payload["w"], []).append(m.payload["i"])
    assert sorted(seen) == [f"w{k:02d}" for k in range(WRITERS)]
    for order in seen.values():
        assert order == list(range(PER_WRITER))  # each (writer, i) once, in the writer's order
    # Every file on disk is a whole message under its canonical name.
    names = sorted(n for n in os.listdir(bus_dir) if not n.startswith("."))
    assert len(names) == total
    for name, m in zip(names, msgs, strict=True):
        assert name == message_filename(m.seq, m.type, m.task, m.attempt)
        assert Message.from_json((bus_dir / name).read_bytes()) == m
    assert os.listdir(bus_dir / TMP_NAME) == []


def _forked_poster(bus: Bus, name: str, count: int) -> None:
    for i in range(count):
        bus.post("NOTE", worker=name, payload={"i": i})


def test_bus_inherited_across_fork(tmp_path: Path) -> None:
    """Children forked after the Bus was opened get their own lock: no seq is shared."""
    ctx = multiprocessing.get_context("fork")
    with Bus(tmp_path / "bus", "trk") as bus:
        bus.post("NOTE")
        procs = [ctx.Process(target=_forked_poster, args=(bus, f"c{k}", 200)) for k in range(4)]
        for p in procs:
            p.start()
        _forked_poster(bus, "parent", 200)
        for p in procs:
            p.join(timeout=120)
            assert p.exitcode == 0
        msgs = bus.read()
    assert [m.seq for m in msgs] == list(range(1, 1002))
    for name in ("parent", "c0", "c1", "c2", "c3"):
        assert [m.payload["i"] for m in msgs if m.worker == name] == list(range(200))


CLI_WRITER = textwrap.dedent(
    """
    for i in $(seq 1 "$3"); do
        "$1" -m conductor --log-format json bus post demo "$4" --state-dir "$2" \\
            --message "$5 $i" >/dev/null || exit 1
    done
    """
)


@pytest.mark.slow
def test_cli_post_from_concurrent_processes(tmp_path: Path) -> None:
    """4 shells x 25 `conductor bus post` (people and workers) give 100 gapless messages."""
    state_root = tmp_path / "states"
    state = StateDir.for_track(tmp_path, "demo", state_root).ensure()
    _, token = create_worker_dir(state.workers, "build", 1)
    procs = []
    for k in range(4):
        env = dict(os.environ)
        env.pop("CONDUCTOR_WORKER_TOKEN", None)
        mtype = "NOTE"
        if k % 2:
            env.update(CONDUCTOR_WORKER="build.1", CONDUCTOR_WORKER_TOKEN=token)
            mtype = "PROGRESS"
        procs.append(
            subprocess.Popen(
                ["sh", "-c", CLI_WRITER, "sh", sys.executable, str(state_root), "25", mtype,
                 f"writer{k}"],
                env=env,
            )
        )
    for p in procs:
        assert p.wait(timeout=600) == 0
    with Bus.for_state(state, "demo") as bus:
        msgs = list(bus.iter_all())
    assert [m.seq for m in msgs] == list(range(1, 101))
    for k in range(4):
        texts = [m.payload["text"] for m in msgs if m.payload["text"].startswith(f"writer{k} ")]
        assert texts == [f"writer{k} {i}" for i in range(1, 26)]
    workers = [m for m in msgs if m.type == "PROGRESS"]
    assert len(workers) == 50
    assert all((m.task, m.worker, m.attempt) == ("build", "build.1", 1) for m in workers)
