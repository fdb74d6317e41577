"""Property tests: the bus is an exact, ordered, exactly-once log whatever the interleaving."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from conductor.bus import Bus
from conductor.messages import Message

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(max_size=12), json_values, max_size=5)
types = st.sampled_from(["NOTE", "PROGRESS", "TASK_COMPLETE", "X_1"])
names = st.one_of(st.none(), st.sampled_from(["build", "ui.header", "é-task", "t 1"]))
attempts = st.one_of(st.none(), st.integers(min_value=0, max_value=10**9 - 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=payloads, mtype=types, task=names, attempt=attempts)
def test_payload_and_envelope_round_trip(
    payload: dict[str, Any], mtype: str, task: str | None, attempt: int | None
) -> None:
    """Any JSON payload and envelope comes back equal from post(), get(), read() and the file."""
    with tempfile.TemporaryDirectory() as tmp, Bus(Path(tmp) / "bus", "trk") as bus:
        msg = bus.post(mtype, task=task, worker=None if task is None else f"{task}.1",
                       attempt=attempt, payload=payload)
        assert msg.payload == payload
        assert bus.get(msg.seq) == msg
        assert bus.read() == [msg]
        path = bus.path_of(msg.seq)
        assert path is not None
        assert path.read_text(encoding="utf-8") == msg.to_json() + "\n"
        assert Message.from_json(path.read_bytes()) == msg


class BusLog(RuleBasedStateMachine):
    """Posts, reads and reopens, interleaved at random, against a list of what was posted."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self._tmp.name) / "bus"
        self.buses = [Bus(self.dir, "trk"), Bus(self.dir, "trk")]
        self.posted: list[Message] = []

    @rule(which=st.integers(0, 1), mtype=types, task=names, payload=payloads)
    def post(self, which: int, mtype: str, task: str | None, payload: dict[str, Any]) -> None:
        msg = self.buses[which].post(mtype, task=task, payload=payload)
        assert msg.seq == len(self.posted) + 1
        self.posted.append(msg)

    @rule(which=st.integers(0, 1), data=st.data())
    def read_after(self, which: int, data: st.DataObject) -> None:
        after = data.draw(st.integers(0, len(self.posted) + 2))
        limit = data.draw(st.one_of(st.none(), st.integers(1, 5)))
        got = self.buses[which].read(after=after, limit=limit)
        want = self.posted[after:]
        assert got == (want if limit is None else want[:limit])

    @precondition(lambda self: bool(self.posted))
    @rule(which=st.integers(0, 1), data=st.data())
    def get_one(self, which: int, data: st.DataObject) -> None:
        seq = data.draw(st.integers(1, len(self.posted)))
        assert self.buses[which].get(seq) == self.posted[seq - 1]

    @rule(which=st.integers(0, 1))
    def reopen(self, which: int) -> None:
        self.buses[which].close()
        self.buses[which] = Bus(self.dir, "trk")

    @invariant()
    def last_seq_matches(self) -> None:
        for bus in self.buses:
            assert bus.last_seq() == len(self.posted)

    def teardown(self) -> None:
        try:
            assert list(self.buses[0].iter_all()) == self.posted
        finally:
            for bus in self.buses:
                bus.close()
            self._tmp.cleanup()


BusLog.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBusLog = BusLog.TestCase
TestBusLog.__doc__ = "Random interleavings of posts, reads and reopens read back exactly."
