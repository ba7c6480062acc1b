"""The worker's Faust consumer hands fetched messages on without a race per message
while the flow is on (streams/agents/intake.py, LeanConsumer).

Faust's consumer is stood in for by the attributes its fetch loop reads; the loop
itself is the one the worker runs. The rebalance behaviour with a real broker is
covered by the integration suite (chaos, hostile Kafka), which runs this consumer."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from streams.agents.intake import LeanConsumer, use_lean_consumer
from streams.app import build_pipeline, create_app
from streams.settings import load_settings


class Flow:
    def __init__(self, active: bool) -> None:
        self.active = active

    def is_active(self) -> bool:
        return self.active


def consumer(fetches: list[list[tuple[str, int]]], flow_on: bool) -> tuple[Any, Any, dict]:
    """A LeanConsumer over ``fetches`` (each a getmany's (topic, offset) pairs, one
    partition); the fetcher stops after the last. Returns it, the fetcher, a log."""
    c: Any = LeanConsumer.__new__(LeanConsumer)
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    seen: dict[str, list[Any]] = {"delivered": [], "raced": [], "gaps": [], "commits": []}
    c._stopped, c._crashed = asyncio.Event(), asyncio.Event()
    c.suspend_flow = asyncio.Event()
    if not flow_on:
        c.suspend_flow.set()
    c.app = SimpleNamespace(flow_control=Flow(flow_on),
                            topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    c.transport = SimpleNamespace(app=SimpleNamespace(should_stop=False))
    c.diag = SimpleNamespace(set_flag=lambda f: None, unset_flag=lambda f: None)
    c._read_offset = {}
    c._commit_every = 3
    c._n_acked = 0
    pending = list(fetches)

    async def getmany(**_: Any) -> Any:
        batch = pending.pop(0)
        if not pending:
            fetcher._stopped.set()
        for topic, offset in batch:
            yield (topic, 0), SimpleNamespace(topic=topic, offset=offset)

    async def callback(message: Any) -> None:
        seen["delivered"].append(message.offset)
        c._n_acked += 1

    async def wait_first(coro: Any, *others: Any) -> None:
        seen["raced"].append(len(others))
        for other in others:
            other.close()  # never awaited: the message's callback wins here
        await coro

    async def add_gap(tp: Any, start: int, end: int) -> None:
        seen["gaps"].append((start, end))

    async def commit() -> None:
        seen["commits"].append(len(seen["delivered"]))

    c.getmany, c.callback, c.wait_first = getmany, callback, wait_first
    c._add_gap, c.commit = add_gap, commit
    return c, fetcher, seen


@pytest.mark.asyncio
async def test_while_the_flow_is_on_each_message_is_handed_on_directly_in_order() -> None:
    c, fetcher, seen = consumer([[("in", 0), ("in", 1)], [("in", 2), ("in", 5), ("in", 3)]],
                                flow_on=True)
    await asyncio.wait_for(c._drain_messages(fetcher), 2)
    # 3 is older than what was read (5): dropped, as Faust drops it
    assert seen["delivered"] == [0, 1, 2, 5]
    assert seen["raced"] == []  # no per-message race
    assert seen["gaps"] == [(3, 5)]  # 3 and 4 never came (compacted): a gap to commit over
    # after every commit_every acknowledged messages (3 here), before the next, as Faust does
    assert seen["commits"] == [3]
    assert c._read_offset[("in", 0)] == 5


@pytest.mark.asyncio
async def test_while_the_flow_is_off_a_message_races_the_flow_suspension() -> None:
    c, fetcher, seen = consumer([[("in", 0), ("in", 1)]], flow_on=False)
    await asyncio.wait_for(c._drain_messages(fetcher), 2)
    assert seen["raced"] == [1, 1]  # each against suspend_flow, as Faust's fetcher does
    assert seen["delivered"] == [0, 1]


def test_the_worker_app_makes_its_consumer_lean(tmp_path: Any) -> None:
    s = load_settings({"KPI_HOME": str(tmp_path)})
    app = create_app(s, build_pipeline(s))
    assert app.transport.Consumer is LeanConsumer
    with pytest.raises(RuntimeError, match="unexpected Faust transport"):
        use_lean_consumer(app)  # twice: it is no longer Faust's own consumer class
