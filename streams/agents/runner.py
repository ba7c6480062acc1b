"""The glue every stage shares: partitions, restore, flush, outputs, acks.

A :class:`StageRunner` owns the partitions of its input topics that Faust
assigned to this worker. For each it keeps a :class:`Part`: the pure processor
from ``streams/kpis``, the input offsets already applied, and the keys and
outputs waiting for the next flush. Subclasses say how messages become
processor input and how processor output becomes messages; everything about
durability lives here (see :mod:`streams.store` for the protocol).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, Generic

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2

from .. import statecodec
from ..kpis.messages import drop_past_retention, heartbeat, partial_messages, skip_horizons
from ..kpis.stage import StageOutput
from ..kpis.visitors import RAW_KEY_PREFIXES
from ..outputs.metrics import Metrics
from ..settings import Settings
from ..statestore import MemoryStore, StoreMemory, open_store
from ..store import StateWriter, restore, send_records, state_record
from ..topics import Topics
from ..topology import StageDecl, retention
from .contracts import OutItem, P, Part
from .faults import process_fault

log = logging.getLogger(__name__)

@lru_cache(maxsize=1 << 16)
def _murmur2(key: bytes) -> int:
    return int(murmur2(key) & 0x7FFFFFFF)


async def _no_ack(event: Any) -> None:
    return None


LOOP_SLICE_S = 0.05  # about the longest a batch holds the event loop at a time
SLICE_MAX_MESSAGES = 10_000
PACE_EVERY = 256  # items between looks at the clock in LoopHold.pace

_SPAWNED: set[asyncio.Future[None]] = set()


# The loop's turn for long work (see take_turn): a lock per event loop (tests run
# many loops; a lock belongs to the loop it was first used on).
_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = \
    weakref.WeakKeyDictionary()


async def take_turn() -> None:
    """Wait until no other long work has held the event loop in this turn of it, then
    hold it for the rest of the turn.

    Each long piece of work (a stage's batch, a tick, a large flush) lets the loop in
    once ``LOOP_SLICE_S`` is spent, but the loop runs one step of every ready task in
    a turn: with seven stages and a flush per partition ready together, one turn ran
    a slice of each, and a timer, a request or the producer waited for all of them. A
    slice takes the turn, and the lock comes free at the next turn (``call_soon``): a
    second slice waits while the loop serves what else is ready, and the stages take
    turns in the order they asked. It is never held past the turn, whatever its
    holder awaits, so no work waits on another for longer than a turn each."""
    loop = asyncio.get_running_loop()
    lock = _TURNS.get(loop)
    if lock is None:
        lock = _TURNS[loop] = asyncio.Lock()
    await lock.acquire()
    loop.call_soon(lock.release)


class LoopHold:
    """How long work has held the event loop since it last let it in. Long work (a
    batch, a tick, a flush's outputs) goes in pieces, and between them lets the loop
    in once ``LOOP_SLICE_S`` is spent, so timers, the web server and the producer
    get their turn; each piece takes the loop's turn for long work (``take_turn``),
    so no two pieces run in one turn of the loop."""

    __slots__ = ("begun", "turned")

    def __init__(self) -> None:
        self.begun = time.perf_counter()
        self.turned = False  # whether it has taken a turn yet

    def elapsed(self) -> float:
        return time.perf_counter() - self.begun

    def restart(self) -> None:
        self.begun = time.perf_counter()

    async def take(self) -> None:
        """Start (or go on with) long work: wait for the loop's turn for it."""
        await take_turn()
        self.turned = True
        self.begun = time.perf_counter()

    async def let_in(self) -> None:
        await asyncio.sleep(0)
        await self.take()

    async def let_in_if_spent(self) -> None:
        if time.perf_counter() - self.begun >= LOOP_SLICE_S:
            await self.let_in()

    async def pace(self, i: int) -> None:
        """In a loop over many small items (the ``i``-th now): every ``PACE_EVERY``
        items, let the loop in if the slice is spent (the clock is not read per item).
        Work that turns out long takes the loop's turn then; short work never waits
        for it."""
        if i % PACE_EVERY == PACE_EVERY - 1:
            if self.turned or self.elapsed() >= LOOP_SLICE_S:
                await self.let_in_if_spent()
            else:
                await self.take()


def serialised(value: Any) -> Any:
    """An output's JSON value serialised once, as a fragment ``orjson.dumps`` copies
    into whatever holds it (the changelog's outbox records, the message sent) as
    it is; a string (sent as its text) and None (a tombstone) stay as they are."""
    if value is None or isinstance(value, (str, orjson.Fragment)):
        return value
    return orjson.Fragment(orjson.dumps(value))


def _spawn(what: str, work: Callable[[], Awaitable[None]]) -> None:
    """A runner on its own (tests): the task is kept until it is done."""
    task = asyncio.ensure_future(work())
    _SPAWNED.add(task)
    task.add_done_callback(_SPAWNED.discard)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class StageRunner(Generic[P]):
    """Base class: one stage, all partitions of it this worker owns."""

    def __init__(self, decl: StageDecl, topics: Topics, settings: Settings,
                 producer: AIOKafkaProducer | None, consumer_factory: Callable[[], Any],
                 metrics: Metrics, store_memory: StoreMemory | None = None) -> None:
        self.decl = decl
        self.stage = decl.name
        self.topics = topics
        self.settings = settings
        self.cfg: Any = decl.config(settings, topics.logical)
        # shared by every stage of a worker (the pipeline passes one in)
        self.store_memory = store_memory
        self.producer = producer
        self.consumer_factory = consumer_factory
        self.metrics = metrics
        self.state_topic = topics.state(decl.name)
        self.input_topics = [topics.logical(t) for t in decl.reads]
        self.parts: dict[int, Part[P]] = {}
        self.assigned: set[int] = set()
        self.lock = asyncio.Lock()
        self.state_kinds: set[str] = set()  # kinds of state reported so far
        self._partition_counts: dict[str, int] = {}
        self.fault = process_fault()  # None unless the chaos harness armed one
        # the inputs' horizon (see streams.agents.horizon), set by the worker's probe
        self.input_horizon: int | None = None
        # a tick the timer asked for while a batch held the lock (see ``tick``)
        self.tick_due = False
        # set by the worker: a rebalance under way (the timers' work waits), and how
        # work that must not wait for a batch or a timer is started (its own task)
        self.paused: Callable[[], bool] = lambda: False
        self.spawn: Callable[[str, Callable[[], Awaitable[None]]], None] = _spawn
        self._flush_timer: asyncio.TimerHandle | None = None
        # input messages a batch processes before it lets the event loop in (adapted)
        self.slice_messages = SLICE_MAX_MESSAGES
        # events of batches processed and not flushed yet (see ``handle``), by input
        # partition; those partitions are ``unflushed``
        self.unacked: defaultdict[int, list[Any]] = defaultdict(list)
        self.flushed_at = 0  # wall clock of the last flush of every changed partition
        self.ack: Callable[[Any], Any] = _no_ack
        self.more_input: Callable[[], bool] = lambda: False  # the intake's (see handle)
        self.in_batch = False  # ``handle`` under way (see ``working``)

    # -- hooks for subclasses ------------------------------------------------------
    def new_processor(self, partition: int, store: MemoryStore) -> P:
        """The pure processor of a partition; ``store`` is its local store (restored)."""
        proc: P = self.decl.processor(self.cfg, store)
        return proc

    def ingest(self, part: Part[P], topic: str, offset: int, value: bytes | None,
               wall: int) -> None:
        """Turn one input message into processor input, kept on the part."""
        raise NotImplementedError

    def process(self, part: Part[P], wall: int) -> None:
        """Run the processor over what ``ingest`` collected; queue outputs and dirty keys.
        Called once per slice of a batch (see ``handle``)."""
        raise NotImplementedError

    def finish(self, part: Part[P], wall: int) -> None:
        """Work due once per batch (emission, scoring), after its last slice."""

    async def finish_batch(self, parts: list[Part[P]], wall: int, held: LoopHold) -> None:
        """Work due once per batch after every partition's ``finish``; ``held``: the
        batch's hold on the event loop so far (long work lets it in when spent)."""

    def tick_part(self, part: Part[P], wall: int) -> None:
        """Periodic work (idle watermarks, expiry); mark ``part.changed`` to flush."""

    def heartbeat(self, part: Part[P], full: bool, wall: int, wm: Any) -> list[OutItem]:
        """Outputs of a flush beyond its outbox: partial aggregates, and with ``full``
        (the timer's flushes) a watermark report to every downstream partition."""
        return []

    def partials(self, part: Part[P], acc: StageOutput, wall: int, full: bool,
                 wm: Any) -> list[OutItem]:
        """A flush's partial aggregates, by merge partition; with
        ``KPI_REPLAY_SKIP_EXPIRED``, without the minute buckets past their retention
        from the inputs' horizon (counted; the merge stage is told the horizon)."""
        s = self.settings
        hz = self.input_horizon if s.replay_skip_expired else None
        if hz is not None:
            by_size: dict[str, int] = {}
            drop_past_retention(acc.deltas, acc.sketches, skip_horizons(hz, retention(s)),
                                by_size)
            for size, n in by_size.items():
                self.metrics.past_retention.labels(self.stage, size).inc(n)
        src = f"{self.stage}/{part.partition}"
        return [OutItem(self.topics.partials, p, None, msg) for p, msg in partial_messages(
            s.kpi_partitions, src, part.seq, wm, acc.deltas, acc.sketches, full, hz)]

    def watermark_doc(self, part: Part[P]) -> Any:
        """The watermark this partition's heartbeats report downstream (None: none)."""
        return None

    def meta_extra(self, part: Part[P]) -> dict[str, Any]:
        return {}

    def restore_outbox(self, part: Part[P], items: list[OutItem]) -> None:
        """The last confirmed flush's persisted outputs, found at restore."""
        part.outbox = items

    def load_meta_extra(self, part: Part[P], meta: dict[str, Any], wall: int) -> None:
        return None

    # -- partitions ------------------------------------------------------------------
    def on_assigned(self, partitions: set[int]) -> None:
        self.assigned = set(partitions)
        self.metrics.partitions_owned.labels(self.stage).set(len(self.assigned))

    async def on_revoked(self, partitions: set[int]) -> None:
        async with self.lock:
            for p in partitions:
                # processed, never flushed: the next owner reads these events again
                self.unacked.pop(p, None)
                part = self.parts.pop(p, None)
                if part is not None:
                    close = getattr(part.proc, "close", None)
                    if close is not None:
                        close()
                    part.local.close()  # kept on disk with its checkpoint
            self.assigned -= partitions
            self.metrics.partitions_owned.labels(self.stage).set(len(self.assigned))

    async def part(self, partition: int) -> Part[P]:
        part = self.parts.get(partition)
        if part is None:
            part = await self._restore(partition)
            self.parts[partition] = part
        return part

    def open_store(self, partition: int) -> MemoryStore:
        s = self.settings
        if self.store_memory is None and s.state_store == "rocksdb":
            self.store_memory = StoreMemory(s.state_cache_bytes)
        return open_store(s.state_store, s.state_dir, s.namespace, self.state_topic,
                          partition, self.store_memory or s.state_cache_bytes)

    async def _restore(self, partition: int) -> Part[P]:
        wall = now_ms()
        started = time.monotonic()
        assert self.producer is not None, "the pipeline starts the producer first"
        local = self.open_store(partition)
        gauge = self.metrics.restore_progress.labels(self.stage, str(partition))
        gauge.set(0)

        def progress(done: int, total: int) -> None:
            gauge.set(done / total if total else 1.0)
            if done < total:
                log.info("restoring %s/%d: %d of %d changelog records", self.stage,
                         partition, done, total)

        try:
            restored = await restore(self.consumer_factory, self.state_topic, partition,
                                     progress, local, wall)
        except BaseException:
            local.close()
            raise
        gauge.set(1.0)
        proc = self.new_processor(partition, local)
        part = Part(partition, proc, StateWriter(self.producer, self.state_topic, partition),
                    local=local)
        loaded = 0
        for key, raw in local.items():
            if key.startswith(RAW_KEY_PREFIXES):
                continue  # cold records stay in the store, read in place
            proc.load(key.decode(), statecodec.decode(raw))
            loaded += 1
        self.metrics.restore_records.labels(self.stage).inc(restored.records)
        self.metrics.restore_seconds.labels(self.stage, str(partition)).set(
            time.monotonic() - started)
        if restored.meta is not None:
            part.seq = restored.meta["seq"]
            part.offsets = dict(restored.meta.get("offsets", {}))
            self.load_meta_extra(part, restored.meta, wall)
            # outputs of the last confirmed flush may not have been sent: send again
            self.restore_outbox(part, [OutItem(*item) for item in restored.outbox])
        # keys whose newest record is an orphan: write the confirmed value again
        part.dirty |= restored.orphans
        part.changed = True
        if restored.records or loaded:
            log.info("restored %s/%d: %d records in %.2fs (%s; %d keys loaded, %d orphaned "
                     "writes repaired)", self.stage, partition, restored.records,
                     time.monotonic() - started,
                     "changelog tail after the local checkpoint" if restored.from_checkpoint
                     else "whole changelog", loaded, len(restored.orphans))
        return part

    # -- the hot path ------------------------------------------------------------------
    async def handle(self, events: list[Any], ack: Callable[[Any], Any],
                     more: Callable[[], bool] = lambda: False) -> None:
        """Process one batch of Faust events, flush, then acknowledge them.

        A batch is processed a slice at a time (about ``LOOP_SLICE_S`` each; the
        messages per slice adapt to what they cost), letting the event loop in
        between. While ``more()`` says further batches are already waiting, the flush
        waits for them too, up to ``KPI_FLUSH_INTERVAL`` after the last one: a replay
        then writes each cell it keeps touching once per interval rather than once
        per batch or slice. What is processed and not yet flushed is not
        acknowledged: a crash re-reads it, as it would the batch under way."""
        self.more_input = more
        async with self.lock:
            self.in_batch = True
            try:
                await self._handle(events, ack, more)
            finally:
                self.in_batch = False

    async def _handle(self, events: list[Any], ack: Callable[[Any], Any],
                      more: Callable[[], bool]) -> None:
        """``handle``, under the lock."""
        wall = now_ms()
        groups: dict[int, list[Any]] = defaultdict(list)
        for ev in events:
            groups[ev.message.partition].append(ev)
        held = LoopHold()
        if len(events) > self.slice_messages:
            # long work: it takes the loop's turn from the start; a batch of one
            # slice runs in the turn it came in, as a short flush does (live
            # single-event input hands over many small batches a second)
            await held.take()
        batch_parts: list[Part[P]] = []
        for p, evs in groups.items():
            await held.let_in_if_spent()  # after the last partition's finish
            part = await self.part(p)
            produced: dict[str, int] = {}
            n, sliced, size = 0, False, self.slice_messages
            held.restart()  # a slice's time, to size the next, counts from here
            for ev in evs:
                msg = ev.message
                name = f"{msg.topic}/{p}"
                if msg.offset <= part.offsets.get(name, -1):
                    continue  # applied before a restart; its effects are in the state
                self.ingest(part, msg.topic, msg.offset, msg.value, wall)
                part.offsets[name] = msg.offset
                stamp = getattr(msg, "timestamp", None)  # seconds: when produced
                if stamp:
                    ts = int(stamp * 1000)
                    if ts > produced.get(msg.topic, 0):
                        produced[msg.topic] = ts
                n += 1
                # a slice's worth (by count: stage 1's cost is in ``process``), or
                # a slice's time gone on ingesting (the merge's cost is there, and
                # its messages run from a heartbeat to thousands of rows): process
                # it and let the event loop in
                if n >= size or held.elapsed() >= LOOP_SLICE_S:
                    self._process(part, produced, wall)
                    size = self._resize_slice(n, held.elapsed())
                    await held.let_in()
                    produced, n, sliced = {}, 0, True
            if n or not sliced:
                self._process(part, produced, wall)
                self._resize_slice(n, held.elapsed())
            await held.let_in_if_spent()
            self.finish(part, wall)
            part.changed = True
            self.unacked[p].extend(evs)
            batch_parts.append(part)
        await self.finish_batch(batch_parts, wall, held)
        self.ack = ack
        done = now_ms()  # a batch of many slices takes a while
        if self.tick_due and not self.paused():
            await self._tick(done)  # the timer's tick, in this batch's flush
        elif done - self.flushed_at >= self.settings.flush_interval_ms or not more():
            await self._flush_unflushed(done)
        else:
            self._flush_later(done)

    def working(self) -> bool:
        """Whether this stage may still send the stages after it data: a batch under
        way, input fetched and waiting for one, or batches processed and not flushed.
        A tick is not (heartbeats, expiry and the flush of what is already counted
        here): every stage ticks each second, all at once, and when a tick holding
        its stage's lock counted, the merge's tick could find another stage's under
        way and keep a replay's catch-up going for nothing."""
        return self.in_batch or bool(self.unacked) or self.more_input()

    def _process(self, part: Part[P], produced: dict[str, int], wall: int) -> None:
        clocked = getattr(part.proc, "produced", None)
        if clocked is not None:  # idle watermarks count from the producer's clock
            clocked.clear()
            clocked.update(produced)
        self.process(part, wall)

    def _resize_slice(self, messages: int, seconds: float) -> int:
        """Messages per slice of a batch, so that one takes about LOOP_SLICE_S (the
        events per message and their cost vary by stage and by input); it at most
        doubles at a time. Returns the new size."""
        if messages and (messages >= self.slice_messages or seconds > LOOP_SLICE_S):
            fit = messages * LOOP_SLICE_S / max(seconds, 1e-5)
            self.slice_messages = max(1, min(SLICE_MAX_MESSAGES, 2 * self.slice_messages,
                                             int(fit)))
        return self.slice_messages

    @property
    def unflushed(self) -> dict[int, Part[P]]:
        """The partitions batches changed since the last flush, by partition."""
        return {p: self.parts[p] for p in self.unacked if p in self.parts}

    async def _flush_unflushed(self, wall: int) -> None:
        """Flush the partitions batches changed since the last flush (under the lock)."""
        await self._flush_parts(list(self.unflushed.values()), wall, full=False)
        await self._acknowledge()

    def _flush_later(self, wall: int) -> None:
        """A flush a flush interval after the last one, whatever comes: the next batch
        may never come (a stop, a rebalance, the end of a replay), and Faust waits for
        every fetched message to be acknowledged before it revokes or stops, with its
        timers (and so the tick) already stopped on the way down."""
        if self._flush_timer is not None:
            return
        delay = max(0, self.flushed_at + self.settings.flush_interval_ms - wall) / 1000

        def due() -> None:
            self._flush_timer = None
            self.spawn(f"the flush of stage {self.stage}", self.flush_pending)

        self._flush_timer = asyncio.get_running_loop().call_later(delay, due)

    async def flush_pending(self) -> None:
        """Flush what batches left unflushed, unless paused (a rebalance under way)."""
        async with self.lock:
            if self.unacked and not self.paused():
                await self._flush_unflushed(now_ms())

    async def _acknowledge(self) -> None:
        """Every partition a batch changed has been flushed: acknowledge its events."""
        self.flushed_at = now_ms()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        unacked, self.unacked = self.unacked, defaultdict(list)
        for evs in unacked.values():
            for ev in evs:
                await self.ack(ev)

    async def tick(self) -> None:
        """Timer: restore newly assigned partitions, advance idle clocks, heartbeat.

        While a batch holds the stage, the timer does not wait for it: the batch
        ticks when it flushes (one full flush instead of a flush and then another),
        as a stream thread runs its punctuators between records. Nothing while
        ``paused()`` (a rebalance under way), also when the batch comes to it."""
        if self.lock.locked():
            self.tick_due = True
            return
        async with self.lock:
            if not self.paused():
                await self._tick(now_ms())

    async def _tick(self, wall: int) -> None:
        """The tick, under the lock (see ``tick``)."""
        self.tick_due = False
        for p in sorted(self.assigned - set(self.parts)):
            await self.part(p)
        due = []
        held = LoopHold()
        await held.take()
        for part in list(self.parts.values()):
            # expiry walks a partition's state and emission builds documents: a
            # partition's worth at a time, letting the event loop in between
            await held.let_in_if_spent()
            self.tick_part(part, wall)
            stale = wall - part.last_flush_wall > 5_000
            # Flushes of the hot path report the watermark only to the downstream
            # partitions they carry data for. A partition that gets no data must
            # still learn that the watermark moved, or its buckets never become
            # final: the timer's full flush tells every one, whenever it moved.
            moved = self.watermark_doc(part) != part.reported
            if part.changed or part.dirty or part.outbox or part.after or stale or moved \
                    or part.partition in self.unacked:  # acknowledged below
                due.append(part)
        await self._flush_parts(due, wall, full=True)
        await self._acknowledge()  # every changed partition was due
        kinds: dict[str, int] = dict.fromkeys(self.state_kinds, 0)
        for part in self.parts.values():
            for kind, n in part.proc.state_keys().items():
                kinds[kind] = kinds.get(kind, 0) + n
        self.state_kinds |= set(kinds)  # a kind that empties reports 0, not its old value
        for kind, n in kinds.items():
            self.metrics.state_keys.labels(self.stage, kind).set(n)

    async def _flush_parts(self, parts: list[Part[P]], wall: int, full: bool) -> None:
        # partitions are independent: their flushes wait for the broker together
        await asyncio.gather(*(self._flush(part, wall, full) for part in parts))

    async def _flush(self, part: Part[P], wall: int, full: bool) -> None:
        started = time.perf_counter()
        part.seq += 1
        reported = self.watermark_doc(part)
        # a replay's flush dumps and encodes thousands of keys a partition and
        # serialises as many outputs: a slice's time at once. Each output is
        # serialised once, here: the changelog's copy of the outbox (sized, then
        # written) and the send take the same bytes
        held = LoopHold()
        items: list[OutItem] = []
        for i, item in enumerate(part.outbox + self.heartbeat(part, full, wall, reported)):
            await held.pace(i)
            items.append(item._replace(value=serialised(item.value)))
        state: list[tuple[bytes, bytes | None]] = []
        for i, key in enumerate(list(part.dirty)):
            await held.pace(i)
            state.append(state_record(key, part.proc.dump(key)))
        meta = {"seq": part.seq, "offsets": part.offsets, "wall": wall,
                **self.meta_extra(part)}
        cold_counts = getattr(getattr(part.proc, "cold", None), "counts", None)
        if cold_counts is not None:
            # cold records held after this flush: the local store and any restore take
            # the count from here instead of reading every cold key back
            meta["cold"] = cold_counts()
        written = await self._retrying("write state",
                                       lambda: part.writer.write(state, items, meta))
        fault = self.fault if (state or items) else None
        if fault is not None:
            fault.reached("after-changelog")
        if written.offset is not None:
            # confirmed on the changelog: mirror it locally, with the checkpoint a
            # restart reads the changelog from (the start of this flush)
            part.local.write(written.state, {"offset": written.offset, "wall": wall,
                                             "meta": written.meta})
        else:
            part.local.write(written.state, None, written.meta.get("cold"))
        committed = getattr(part.proc, "committed", None)
        if committed is not None:
            committed()
        if fault is not None:
            fault.reached("after-store")
        sendable = items + part.after
        await self._retrying("send outputs", lambda: self.send_outputs(sendable))
        self.metrics.flushed_keys.labels(self.stage).inc(len(state))
        part.dirty.clear()
        part.outbox = []
        part.after = []
        part.changed = False
        part.last_flush_wall = wall
        if full:
            part.reported = reported
        self.metrics.flush_seconds.labels(self.stage).observe(time.perf_counter() - started)

    async def _retrying(self, what: str, op: Callable[[], Any]) -> Any:
        """Retry an operation while Kafka is unreachable; one log line per attempt."""
        delay = 0.5
        attempt = 0
        while True:
            try:
                return await op()
            except KafkaError as exc:
                # a full send buffer (KafkaTimeoutError) is backpressure, not a failure
                if not exc.retriable and not isinstance(exc, KafkaTimeoutError):
                    raise  # a bug or a misconfiguration: fail loudly, do not spin
                attempt += 1
                # a broker restart is an expected event: say it plainly, no stack trace
                log.warning("%s: cannot %s (%s: %s); retry %d in %.1fs", self.stage, what,
                            type(exc).__name__, exc, attempt, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def send_outputs(self, items: list[OutItem]) -> None:
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = \
            defaultdict(list)
        held = LoopHold()
        for i, (topic, partition, key, value) in enumerate(items):
            # a flush of many snapshot documents: serialised a slice at a time
            await held.pace(i)
            kb = key.encode() if isinstance(key, str) else key
            if partition is None:
                partition = await self._default_partition(topic, kb)
            # a fragment (``serialised``) is copied as it is
            vb = value.encode() if isinstance(value, str) else (
                None if value is None else orjson.dumps(value))
            groups[(topic, partition)].append((kb, vb))
        assert self.producer is not None
        sends = [send_records(self.producer, topic, partition, records)
                 for (topic, partition), records in groups.items()]
        if sends:
            await asyncio.gather(*sends)

    async def _default_partition(self, topic: str, key: bytes | None) -> int:
        n = self._partition_counts.get(topic)
        if n is None:
            assert self.producer is not None
            parts = await self.producer.partitions_for(topic)
            n = self._partition_counts[topic] = len(parts)
        if key is None:
            return 0
        # the Java client's default partitioner, so our keyed outputs land where a
        # producer of the same key would put them (co-partitioning with input topics)
        return _murmur2(key) % n


class FeedingStage(StageRunner[P]):
    """A stage that feeds the merge stage: each flush carries its partial aggregates,
    and a full flush also a watermark heartbeat to every partition of the stage the
    topology says it reports to (``heartbeat_to``)."""

    def __init__(self, decl: StageDecl, topics: Topics, **kw: Any) -> None:
        super().__init__(decl, topics, **kw)
        self.acc: dict[int, StageOutput] = {}  # per partition: what the next flush sends

    def heartbeat(self, part: Part[P], full: bool, wall: int, wm: Any) -> list[OutItem]:
        acc = self.acc.pop(part.partition, None) or StageOutput()
        items = self.partials(part, acc, wall, full, wm)
        if self.decl.heartbeat_to is not None and full:
            src = f"{self.stage}/{part.partition}"
            to = self.topics.logical(self.decl.heartbeat_to)
            items += [OutItem(to, p, None, heartbeat(src, wm))
                      for p in range(self.settings.input_partitions)]
        return items

    async def on_revoked(self, partitions: set[int]) -> None:
        await super().on_revoked(partitions)
        for p in partitions:
            self.acc.pop(p, None)
