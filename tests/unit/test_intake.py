"""Intake: a stage's batches straight from its Faust channel (streams/agents/intake.py).

Faust's objects are stood in for by the few attributes the intake reads: the
channel's queue, the app's flow control and consumer generation, the acking
topics and the consumer's tracking."""

from __future__ import annotations

import asyncio
from functools import cached_property
from types import SimpleNamespace
from typing import Any

import pytest

from streams.agents.intake import BUFFER_BYTES, BUFFER_TAKES_LEAST, BUFFER_TAKES_MOST, Intake


class FakeMessage:
    def __init__(self, topic: str, offset: int, generation: int,
                 value: bytes = b"{}") -> None:
        self.topic = topic
        self.value = value
        self.offset = offset
        self.generation_id = generation
        self.tracked = False


class FakeEvent:
    def __init__(self, message: FakeMessage) -> None:
        self.message = message
        self.acked = 0

    def ack(self) -> bool:
        self.acked += 1
        return True


class FlowControl:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


def make(most: int = 3, within: float = 0.05) -> tuple[Intake, Any, asyncio.Queue[Any]]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    tracked: list[FakeMessage] = []
    app = SimpleNamespace(flow_control=FlowControl(), consumer_generation_id=7,
                          topics=SimpleNamespace(acking_topics={"in"}),
                          consumer=SimpleNamespace(track_message=tracked.append),
                          tracked=tracked)
    stream = SimpleNamespace(app=app, channel=SimpleNamespace(queue=queue))
    return Intake(stream, most, within), app, queue


def event(offset: int, topic: str = "in", generation: int = 7,
          value: bytes = b"{}") -> FakeEvent:
    return FakeEvent(FakeMessage(topic, offset, generation, value))


async def next_batch(intake: Intake) -> list[Any]:
    it = intake.batches()
    try:
        return await asyncio.wait_for(it.__anext__(), 2)
    finally:
        await it.aclose()


@pytest.mark.asyncio
async def test_takes_what_is_queued_up_to_most_in_order() -> None:
    intake, app, queue = make(most=3)
    evs = [event(i) for i in range(5)]
    for ev in evs:
        queue.put_nowait(ev)
    batch = await next_batch(intake)
    assert [e.message.offset for e in batch] == [0, 1, 2]
    assert intake.more()  # two still queued: the flush may wait for them
    batch = await next_batch(intake)
    assert [e.message.offset for e in batch] == [3, 4]
    assert not intake.more()
    # every message of an acking topic is tracked once, so wait_empty waits for it
    assert app.tracked == [e.message for e in evs]
    assert all(e.message.tracked for e in evs)


@pytest.mark.asyncio
async def test_a_short_batch_waits_within_for_more() -> None:
    intake, _, queue = make(most=3, within=0.5)
    queue.put_nowait(event(0))

    async def later() -> None:
        await asyncio.sleep(0.05)
        queue.put_nowait(event(1))

    task = asyncio.ensure_future(later())
    batch = await next_batch(intake)
    await task
    # the second came within the window: one batch, not two
    assert [e.message.offset for e in batch] == [0, 1]


@pytest.mark.asyncio
async def test_the_window_runs_from_the_last_batch_not_from_a_late_first_message() -> None:
    """As take's timer: a message arriving after a quiet spell longer than ``within``
    goes at once; it does not wait ``within`` again for company."""
    intake, _, queue = make(most=100, within=0.2)
    it = intake.batches()
    loop = asyncio.get_running_loop()
    queue.put_nowait(event(0))
    assert [e.message.offset for e in await asyncio.wait_for(it.__anext__(), 2)] == [0]
    task = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.3)  # quiet for longer than the window
    queue.put_nowait(event(1))
    sent = loop.time()
    batch = await asyncio.wait_for(task, 2)
    assert [e.message.offset for e in batch] == [1]
    assert loop.time() - sent < 0.1  # not another 0.2 s
    await it.aclose()


@pytest.mark.asyncio
async def test_a_short_batch_goes_when_within_has_passed() -> None:
    intake, _, queue = make(most=100, within=0.02)
    queue.put_nowait(event(0))
    loop = asyncio.get_running_loop()
    began = loop.time()
    batch = await next_batch(intake)
    assert [e.message.offset for e in batch] == [0]
    assert loop.time() - began < 1.0  # did not wait for a full batch


@pytest.mark.asyncio
async def test_messages_of_a_past_generation_are_acked_not_processed() -> None:
    intake, app, queue = make(most=10, within=0.01)
    stale, fresh = event(0, generation=6), event(1)
    queue.put_nowait(stale)
    queue.put_nowait(fresh)
    batch = await next_batch(intake)
    assert batch == [fresh]
    assert stale.acked == 1 and fresh.acked == 0
    assert app.tracked == [fresh.message]


@pytest.mark.asyncio
async def test_nothing_is_processed_while_flow_control_is_off() -> None:
    intake, app, queue = make(most=10, within=0.01)
    app.flow_control.active = False
    held = event(0)
    queue.put_nowait(held)
    it = intake.batches()
    task = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.05)
    assert not task.done()  # the skipped message made no batch
    assert held.acked == 1
    app.flow_control.active = True
    queue.put_nowait(event(1))
    batch = await asyncio.wait_for(task, 2)
    await it.aclose()
    assert [e.message.offset for e in batch] == [1]


@pytest.mark.asyncio
async def test_an_untracked_topic_is_not_tracked_and_ack_acks() -> None:
    intake, app, queue = make(most=1)
    ev = event(0, topic="not-acking")
    queue.put_nowait(ev)
    batch = await next_batch(intake)
    assert batch == [ev] and app.tracked == []
    await Intake.ack(ev)
    assert ev.acked == 1


@pytest.mark.asyncio
async def test_the_end_of_the_channel_ends_the_batches_after_the_one_under_way() -> None:
    intake, _, queue = make(most=10, within=1.0)
    it = intake.batches()
    queue.put_nowait(event(0))
    task = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.01)  # the batch is waiting within for more
    queue._getters[0].set_exception(StopAsyncIteration())  # as Faust's channel throw
    batch = await asyncio.wait_for(task, 2)
    assert [e.message.offset for e in batch] == [0]  # what was taken is processed
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(it.__anext__(), 2)


@pytest.mark.asyncio
async def test_an_error_thrown_into_the_channel_is_raised() -> None:
    intake, _, queue = make()
    it = intake.batches()
    task = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0.01)
    queue._getters[0].set_exception(ValueError("bad"))
    with pytest.raises(ValueError, match="bad"):
        await asyncio.wait_for(task, 2)


class PressureQueue(asyncio.Queue[Any]):
    """A channel queue with mode's cached pause and resume levels."""

    @cached_property
    def pressure_high_size(self) -> int:
        return int(self.maxsize / 1.25)


@pytest.mark.asyncio
async def test_the_buffer_holds_more_small_messages_than_large_ones() -> None:
    most = 10
    queue = PressureQueue(maxsize=BUFFER_TAKES_LEAST * most)
    app = SimpleNamespace(flow_control=FlowControl(), consumer_generation_id=7,
                          topics=SimpleNamespace(acking_topics=set()))
    intake = Intake(SimpleNamespace(app=app, channel=SimpleNamespace(queue=queue)), most, 0.01)
    assert queue.pressure_high_size == 32
    # single events of a few hundred bytes: as many batches as the buffer may hold
    intake.fit([event(i, value=b"x" * 400) for i in range(most)])
    assert queue.maxsize == BUFFER_TAKES_MOST * most
    assert queue.pressure_high_size == 128  # the pause level follows the size
    # messages of a megabyte: no fewer batches than before
    intake.fit([event(i, value=b"x" * (1 << 20)) for i in range(most)])
    assert queue.maxsize == BUFFER_TAKES_LEAST * most
    # 150 KB messages fit 55 (BUFFER_BYTES / 150 KB), within a factor 2 of the 40 held:
    # not resized back and forth for a small change
    assert BUFFER_TAKES_LEAST * most < BUFFER_BYTES // 150_000 < 2 * BUFFER_TAKES_LEAST * most
    intake.fit([event(i, value=b"x" * 150_000) for i in range(most)])
    assert queue.maxsize == BUFFER_TAKES_LEAST * most
