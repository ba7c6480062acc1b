"""The worker's timers start their work and return (streams.app.Pipeline.soon): a
stage's slow tick holds up neither the timer nor the other stages; a tick asked for
while a batch holds the stage is done by that batch's flush (StageRunner.tick); and
the event loop's lag is measured (streams.app.watch_loop)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from streams import app as worker_app
from streams.app import build_pipeline, watch_loop
from streams.settings import load_settings
from tests.unit.test_runner import (
    KPI_PARTS,
    _message,
    _noack,
    _page_view,
    _partial_marks,
    _web_stage,
)


class Stage:
    """A stage as the pipeline's timer sees it, with a tick that takes as long as
    someone holds its lock (a restore, a flush waiting for the broker)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.ticks = 0
        self.skipped = 0
        self.fail = False
        self.paused: Callable[[], bool] = lambda: False

    async def tick(self) -> None:
        async with self.lock:
            if self.paused():
                self.skipped += 1
                return
            if self.fail:
                raise RuntimeError("a bug in a tick")
            self.ticks += 1


def _pipeline(stages: dict[str, Stage]) -> Any:
    pipe = build_pipeline(load_settings({"KPI_STATE_STORE": "memory"}), CollectorRegistry())
    pipe._started = True  # no producer: these stages send nothing
    pipe.runners = stages
    for stage in stages.values():
        stage.paused = lambda: pipe.rebalancing  # as build_pipeline does
    return pipe


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _tick_waiting(pipe: Any, stage: Stage) -> None:
    """The timer fires and ``stage``'s tick cannot finish yet."""
    await stage.lock.acquire()
    pipe.tick_soon()
    await _settle()


def test_a_slow_tick_holds_up_neither_the_timer_nor_the_other_stages() -> None:
    busy, idle = Stage(), Stage()
    pipe = _pipeline({"web": busy, "merge": idle})

    async def scenario() -> None:
        await _tick_waiting(pipe, busy)  # tick_soon itself returns at once: it awaits nothing
        assert (busy.ticks, idle.ticks) == (0, 1)  # merge did not wait behind web
        pipe.tick_soon()  # a second later: web's tick is still under way, merge ticks again
        await _settle()
        assert (busy.ticks, idle.ticks) == (0, 2)
        busy.lock.release()  # web's tick finishes, once
        await _settle()
        assert (busy.ticks, idle.ticks) == (1, 2)
        await pipe.stop()

    asyncio.run(scenario())


def test_a_tick_that_waited_into_a_rebalance_does_nothing() -> None:
    stage = Stage()
    pipe = _pipeline({"web": stage})

    async def scenario() -> None:
        await _tick_waiting(pipe, stage)
        pipe.rebalancing = True  # revoked while the tick waited
        stage.lock.release()
        await _settle()
        assert (stage.ticks, stage.skipped) == (0, 1)

    asyncio.run(scenario())


def test_stopping_cancels_a_tick_still_waiting_for_its_stage() -> None:
    stage = Stage()
    pipe = _pipeline({"web": stage})

    async def scenario() -> None:
        await _tick_waiting(pipe, stage)
        await pipe.stop()
        stage.lock.release()
        await _settle()
        assert stage.ticks == 0 and all(t.cancelled() for t in pipe._running.values())

    asyncio.run(scenario())


def test_an_error_in_a_tick_ends_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage()
    stage.fail = True
    pipe = _pipeline({"web": stage})
    ended: list[str] = []
    monkeypatch.setattr(worker_app, "fatal", ended.append)

    async def scenario() -> None:
        pipe.tick_soon()
        await _settle()

    asyncio.run(scenario())
    assert ended == ["the tick of stage web"]


def test_a_tick_asked_for_during_a_batch_is_that_batchs_full_flush() -> None:
    """The timer does not wait for the batch under way: the batch's flush reports
    the moved watermark to every downstream partition, as the tick's would have."""
    stage, prod, topics, pv = _web_stage()

    async def scenario() -> None:
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack)
        await stage.tick()  # the first full flush: everyone hears from web/0
        for minute, rebalancing in ((1, False), (2, True), (3, False)):
            prod.clear()
            stage.paused = lambda r=rebalancing: r
            await stage.lock.acquire()  # a batch under way
            await stage.tick()  # returns at once
            assert stage.tick_due and not prod.sent
            stage.lock.release()
            await stage.handle([_message(pv, 0, minute, [_page_view(minute, minute)])],
                               _noack)
            heard = _partial_marks(prod, topics.partials)
            if rebalancing:  # a rebalance began: the batch flushes only what it carries
                assert 0 < len(heard) < KPI_PARTS
                assert stage.tick_due  # still owed, once the rebalance is over
            else:
                assert sorted(heard) == list(range(KPI_PARTS))
                assert not stage.tick_due

    asyncio.run(scenario())


def test_a_stage_tick_told_a_rebalance_began_writes_nothing() -> None:
    stage, prod, _, pv = _web_stage()

    async def scenario() -> None:
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], _noack)
        prod.clear()
        stage.paused = lambda: True
        await stage.tick()
        assert not prod.sent  # no flush, no heartbeat
        stage.paused = lambda: False
        await stage.tick()
        assert prod.sent  # the first full flush tells every downstream partition

    asyncio.run(scenario())


def test_the_loop_watch_sees_a_step_that_held_the_loop() -> None:
    lag = Histogram("kpi_streams_test_loop_lag_seconds", "lag", registry=CollectorRegistry(),
                    buckets=(0.05, 0.25, 1))

    async def scenario() -> None:
        watch = asyncio.ensure_future(watch_loop(lag, probe_s=0.02))
        await asyncio.sleep(0.1)  # a few quiet rounds
        time.sleep(0.3)  # noqa: ASYNC251 -- a step that does not yield, on purpose
        await asyncio.sleep(0.1)
        watch.cancel()

    asyncio.run(scenario())
    samples = {s.labels.get("le"): s.value for s in lag.collect()[0].samples
               if s.name.endswith("_bucket")}
    count = samples["+Inf"]
    assert count >= 4  # the quiet rounds were observed too
    assert count - samples["0.25"] == 1  # exactly one wake-up was 0.25 s late or more


def test_batches_with_more_waiting_flush_once_per_interval_and_ack_only_what_is_flushed(
) -> None:
    """A replay's batches come back to back: the flush waits for the next one, up to
    the flush interval, and no event is acknowledged before its effects are written."""
    stage, prod, _topics, pv = _web_stage()
    acked: list[int] = []

    async def ack(ev: Any) -> None:
        acked.append(ev.message.offset)

    def batch(p: int, offset: int) -> list[Any]:
        return [_message(pv, p, offset, [_page_view(offset, offset)])]

    async def scenario() -> None:
        await stage.handle(batch(0, 0), ack, more=lambda: True)  # first: flushed at once
        assert acked == [0] and prod.sent
        prod.clear()
        await stage.handle(batch(0, 1), ack, more=lambda: True)
        await stage.handle(batch(1, 2), ack, more=lambda: True)
        assert not prod.sent and acked == [0]  # inside the interval, more waiting
        assert sorted(stage.unflushed) == [0, 1]
        await stage.handle(batch(1, 3), ack, more=lambda: False)  # the input ran dry
        assert sorted(acked) == [0, 1, 2, 3] and not stage.unflushed
        states = {p for (t, p) in prod.sent if t == stage.state_topic}
        assert states == {0, 1}  # one flush wrote both partitions' state
        prod.clear()
        await stage.handle(batch(0, 4), ack, more=lambda: True)
        stage.flushed_at -= stage.settings.flush_interval_ms  # the interval passed
        await stage.handle(batch(0, 5), ack, more=lambda: True)
        assert sorted(acked)[-2:] == [4, 5] and prod.sent  # so this batch flushed

    asyncio.run(scenario())


def test_the_timer_flushes_what_batches_left_and_a_revoked_partition_is_never_acked(
) -> None:
    stage, _prod, _topics, pv = _web_stage()
    acked: list[tuple[int, int]] = []

    async def ack(ev: Any) -> None:
        acked.append((ev.message.partition, ev.message.offset))

    async def scenario() -> None:
        await stage.handle([_message(pv, 0, 0, [_page_view(0, 0)])], ack)
        acked.clear()
        for p, offset in ((0, 1), (1, 1)):
            await stage.handle([_message(pv, p, offset, [_page_view(offset, offset)])],
                               ack, more=lambda: True)
        assert acked == []
        await stage.on_revoked({1})  # partition 1 moves to another worker
        await stage.tick()
        assert acked == [(0, 1)]  # partition 1's event is read again by its new owner
        assert not stage.unflushed and not stage.unacked

    asyncio.run(scenario())


def test_a_deferred_flush_comes_a_flush_interval_later_though_no_batch_does() -> None:
    """Faust stops its timers and then waits for every fetched message to be
    acknowledged before it stops or revokes: the deferred flush must not wait for a
    batch or the tick. While paused (a rebalance), it leaves the work to later."""
    stage, _, _, pv = _web_stage(KPI_FLUSH_INTERVAL="30ms")
    acked: list[int] = []

    async def ack(ev: Any) -> None:
        acked.append(ev.message.offset)

    def batch(offset: int) -> list[Any]:
        return [_message(pv, 0, offset, [_page_view(offset, offset)])]

    async def scenario() -> None:
        await stage.handle(batch(0), ack, more=lambda: True)  # the first: flushed
        assert acked == [0]
        stage.paused = lambda: True
        await stage.handle(batch(1), ack, more=lambda: True)  # deferred
        await asyncio.sleep(0.1)
        assert acked == [0] and stage.unflushed  # paused: left to the next batch or tick
        stage.paused = lambda: False
        await stage.tick()
        assert acked == [0, 1]
        await stage.handle(batch(2), ack, more=lambda: True)  # deferred
        assert acked == [0, 1]
        await asyncio.sleep(0.1)  # no batch, no tick
        assert acked == [0, 1, 2] and not stage.unflushed

    asyncio.run(scenario())


def test_the_worker_wires_its_stages_to_the_rebalance_flag_and_its_task_starter() -> None:
    pipe = build_pipeline(load_settings({"KPI_STATE_STORE": "memory"}), CollectorRegistry())
    for runner in pipe.runners.values():
        assert runner.spawn == pipe.soon
        assert not runner.paused()
    pipe.rebalancing = True
    assert all(runner.paused() for runner in pipe.runners.values())


async def _turns_during(work: Callable[[], Any]) -> int:
    """How often another task got the event loop while ``work()`` was awaited."""
    turns = 0

    async def spin() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    spinner = asyncio.ensure_future(spin())
    await asyncio.sleep(0)
    before = turns
    await work()
    spinner.cancel()
    return turns - before


def _summed(prod: Any, topic: str) -> dict[tuple[Any, ...], dict[str, int]]:
    """The partial rows a stage sent to ``topic``, summed per cell (slicing a batch
    changes how they are split between messages, not their sum)."""
    out: dict[tuple[Any, ...], dict[str, int]] = {}
    for (t, _p), docs in prod.sent.items():
        for doc in docs if t == topic else ():
            for family, size, start, dim, comps in doc.get("d", ()):
                row = out.setdefault((family, size, start, dim), {})
                for comp, value in comps.items():
                    row[comp] = row.get(comp, 0) + value
    return {k: {c: v for c, v in row.items() if v} for k, row in out.items()}


def test_a_batch_lets_the_loop_in_between_slices_and_computes_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch processes a slice of its messages at a time and lets the event loop
    in between (LOOP_SLICE_S); what it sends downstream is the same as in one go."""
    from streams.agents import runner as runner_module

    async def run(stage: Any, pv: str) -> int:
        batch = [_message(pv, 0, i, [_page_view(i, i % 50), _page_view(100 + i, 55)])
                 for i in range(8)]
        return await _turns_during(lambda: stage.handle(batch, _noack))

    whole, prod_whole, topics, pv = _web_stage()
    turns_whole = asyncio.run(run(whole, pv))  # the restore's and the flush's awaits
    assert whole.slice_messages == runner_module.SLICE_MAX_MESSAGES  # quick: no slicing
    monkeypatch.setattr(runner_module, "LOOP_SLICE_S", 1e-9)  # every message too long
    sliced, prod_sliced, _, _ = _web_stage()
    sliced.slice_messages = 1
    assert asyncio.run(run(sliced, pv)) >= turns_whole + 7  # and between the 8 slices
    assert sliced.slice_messages == 1
    whole._resize_slice(8, 0.001)  # a batch that took longer than a slice: it shrinks
    assert whole.slice_messages == 1
    whole._resize_slice(0, 0.001)  # every message a duplicate (after a restart): no news
    assert whole.slice_messages == 1
    monkeypatch.setattr(runner_module, "LOOP_SLICE_S", 1.0)
    assert whole._resize_slice(1, 1e-6) == 2  # cheap now: it grows, doubling at most
    want = _summed(prod_whole, topics.partials)
    assert want and _summed(prod_sliced, topics.partials) == want


def test_a_slice_ends_when_its_time_is_spent_whatever_its_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The messages per slice adapt to what the last slices cost, but messages vary
    (the merge's partials run from a heartbeat to thousands of rows): a slice also
    ends once LOOP_SLICE_S is spent taking its messages in."""
    from streams.agents import runner as runner_module

    async def run(stage: Any, pv: str) -> int:
        batch = [_message(pv, 0, i, [_page_view(i, i % 50)]) for i in range(8)]
        return await _turns_during(lambda: stage.handle(batch, _noack))

    whole, _, _, pv = _web_stage()
    turns_whole = asyncio.run(run(whole, pv))
    monkeypatch.setattr(runner_module, "LOOP_SLICE_S", 1e-9)
    timed, _, _, _ = _web_stage()
    assert timed.slice_messages == runner_module.SLICE_MAX_MESSAGES  # the count allows all 8
    assert asyncio.run(run(timed, pv)) >= turns_whole + 7


def test_a_tick_and_a_flush_let_the_loop_in_once_a_slice_is_spent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The tick yields between partitions (expiry walks a partition's state), a
    flush's send between slices of its outputs (a round's snapshot documents) and
    its state dump between slices of its keys, once LOOP_SLICE_S is spent; what is
    sent is the same, in the same order."""
    from streams.agents import runner as runner_module
    from streams.agents.contracts import OutItem
    from streams.kpis.visitors import hot_name

    def run(slice_s: float) -> tuple[int, int, int, list[Any]]:
        monkeypatch.setattr(runner_module, "LOOP_SLICE_S", slice_s)
        stage, prod, _, pv = _web_stage()

        async def scenario() -> tuple[int, int]:
            for p in range(3):  # three partitions to tick
                await stage.handle([_message(pv, p, 0, _page_view(p, 5))], _noack)
            ticked = await _turns_during(stage.tick)
            items = [OutItem("out", 0, f"k{i}", {"i": i}) for i in range(1000)]
            sent = await _turns_during(lambda: stage.send_outputs(items))
            part = stage.parts[0]  # a flush of 1,000 changed keys (gone: tombstones)
            part.dirty |= {hot_name(f"gone-{i}") for i in range(1000)}
            dumped = await _turns_during(lambda: stage._flush(part, 0, full=False))
            return ticked, sent, dumped

        ticked, sent, dumped = asyncio.run(scenario())
        return ticked, sent, dumped, prod.sent[("out", 0)]

    tick_whole, send_whole, dump_whole, out_whole = run(10.0)
    tick_sliced, send_sliced, dump_sliced, out_sliced = run(1e-9)
    assert tick_sliced >= tick_whole + 2  # before the second and the third partition
    assert send_sliced >= send_whole + 3  # after each 256 of the 1,000 documents
    assert dump_sliced >= dump_whole + 3  # after each 256 of the 1,000 keys dumped
    assert out_sliced == out_whole == [{"i": i} for i in range(1000)]


class _TurnCounter:
    """Counts the event loop's turns: a callback that schedules itself again runs
    exactly once a turn (a turn runs what was ready when it began)."""

    def __init__(self) -> None:
        self.turn = 0
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._count)

    def _count(self) -> None:
        self.turn += 1
        self._handle = self._loop.call_soon(self._count)

    def stop(self) -> None:
        self._handle.cancel()


def test_long_work_of_two_tasks_takes_turns_of_the_loop() -> None:
    """Two long pieces of work (two stages' batches) that both let the loop in after
    each slice: the loop runs one step of every ready task a turn, so before, each
    turn ran a slice of both. Now a slice takes the loop's turn for long work
    (streams.agents.runner.take_turn): no turn runs two, and both get their turns."""
    from streams.agents.runner import LoopHold

    async def scenario() -> dict[int, list[str]]:
        counter = _TurnCounter()
        slices: dict[int, list[str]] = {}

        async def work(name: str) -> None:
            held = LoopHold()
            await held.take()
            for _ in range(5):
                slices.setdefault(counter.turn, []).append(name)
                await held.let_in()

        await asyncio.gather(work("a"), work("b"), work("c"))
        counter.stop()
        return slices

    slices = asyncio.run(scenario())
    assert all(len(names) == 1 for names in slices.values()), slices
    assert sorted(n for names in slices.values() for n in names) == \
        ["a"] * 5 + ["b"] * 5 + ["c"] * 5
    order = [names[0] for _, names in sorted(slices.items())]
    assert order[:6] == ["a", "b", "c", "a", "b", "c"]  # in the order they asked


def test_two_stages_batches_run_their_slices_in_turns_and_compute_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two stages handed a batch each at once, every message a slice: never two
    slices in one turn of the loop, and each sends what it sends alone."""
    from streams.agents import runner as runner_module

    def batch(pv: str, base: int) -> list[Any]:
        return [_message(pv, 0, i, [_page_view(base + i, i % 50)]) for i in range(6)]

    alone_a, prod_alone_a, topics, pv = _web_stage()
    alone_b, prod_alone_b, _, _ = _web_stage()
    asyncio.run(alone_a.handle(batch(pv, 0), _noack))
    asyncio.run(alone_b.handle(batch(pv, 100), _noack))

    monkeypatch.setattr(runner_module, "LOOP_SLICE_S", 1e-9)  # every message a slice
    a, prod_a, _, _ = _web_stage()
    b, prod_b, _, _ = _web_stage()
    a.slice_messages = b.slice_messages = 1
    turns: dict[int, list[str]] = {}

    async def scenario() -> None:
        counter = _TurnCounter()
        def noted(name: str, process: Callable[[Any, int], None]) -> Callable[[Any, int], None]:
            def processed(part: Any, wall: int) -> None:
                turns.setdefault(counter.turn, []).append(name)
                process(part, wall)
            return processed

        a.process = noted("a", a.process)  # type: ignore[method-assign]
        b.process = noted("b", b.process)  # type: ignore[method-assign]
        await asyncio.gather(a.handle(batch(pv, 0), _noack), b.handle(batch(pv, 100), _noack))
        counter.stop()

    asyncio.run(scenario())
    assert sum(len(names) for names in turns.values()) == 12
    assert all(len(names) == 1 for names in turns.values()), turns
    for prod, alone in ((prod_a, prod_alone_a), (prod_b, prod_alone_b)):
        want = _summed(alone, topics.partials)
        assert want and _summed(prod, topics.partials) == want


def test_a_batch_of_one_slice_does_not_wait_for_the_loops_turn() -> None:
    """Short work runs in the turn it comes in, though another piece of long work
    has taken that turn: a batch that fits in one slice (live input, many small
    batches a second) is processed at once; a longer one waits for its turn."""
    from streams.agents.runner import take_turn

    async def scenario(stage: Any, batch: list[Any]) -> int:
        counter = _TurnCounter()
        seen: list[int] = []
        process = stage.process

        def processed(part: Any, wall: int) -> None:
            seen.append(counter.turn)
            process(part, wall)

        stage.process = processed
        await take_turn()  # long work holds this turn
        asked = counter.turn
        await stage.handle(batch, _noack)
        counter.stop()
        return seen[0] - asked

    short, _, _, pv = _web_stage()
    batch = [_message(pv, 0, i, [_page_view(i, i % 50)]) for i in range(3)]
    assert short.slice_messages >= len(batch)
    assert asyncio.run(scenario(short, batch)) == 0
    long, _, _, _ = _web_stage()
    long.slice_messages = 1  # three slices' worth: it waits for the next turn free
    assert asyncio.run(scenario(long, batch)) >= 1
