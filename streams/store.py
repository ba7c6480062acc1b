"""Changelog-backed state for one partition of one stage, with crash-safe flushes.

Why not Faust tables: a Faust table sends one changelog message per write with
no way to tie a group of writes to the input offsets and outputs they came
from, so a crash between writes leaves state that is ahead of the outputs (see
``../shared/design.md``). Here a *flush* is a unit:

1. every changed key is written to the compacted state topic, tagged (Kafka
   header ``f``) with the flush id;
2. the outputs of the flush (partials, leads, late events, dead letters,
   snapshots) are written as ``\\x00out/<i>`` chunks, tagged the same way;
3. a meta record (key ``\\x00meta``) names the flush id, the input offsets it
   covers, the watermarks and the number of output chunks;
4. only after all of that is acknowledged are the outputs sent to their topics,
   and only then are the input messages acknowledged to Faust (committed).

Every confirmed flush is also written to the partition's local store
(:mod:`streams.statestore`) with a checkpoint, so a restore reads only the
changelog after it. On restore, records count only when a later meta record
confirms their flush id; records of a flush whose meta never arrived are orphans and are ignored
(the new owner rewrites those keys, so compaction can never promote an orphan
over the confirmed value). The last confirmed flush's outputs are sent again:
downstream stages ignore a (source, sequence) they have applied already.
Inputs at or below the confirmed offsets are skipped when Faust redelivers them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from . import statecodec
from .kpis.visitors import RAW_KEY_PREFIXES
from .statestore import MemoryStore
from .topics import STATE_COMPACTION_LAG_MS

META_KEY = b"\x00meta"
OUT_PREFIX = "\x00out/"
OUT_BYTES = OUT_PREFIX.encode()
CHUNK_BYTES = 256 * 1024
PROGRESS_EVERY_S = 2.0  # a restore in progress reports this often

log = logging.getLogger(__name__)


@dataclass
class Restored:
    """What a partition's changelog says, after discarding unconfirmed flushes. The
    confirmed records themselves are in the local store that ``restore`` filled."""

    meta: dict[str, Any] | None = None
    outbox: list[list[Any]] = field(default_factory=list)
    orphans: set[str] = field(default_factory=set)
    records: int = 0  # changelog records read from Kafka
    seconds: float = 0.0
    from_checkpoint: bool = False  # only the tail after the local checkpoint was read


Progress = Callable[[int, int], None]


async def restore(consumer_factory: Callable[[], Any], topic: str, partition: int,
                  progress: Progress | None = None, local: MemoryStore | None = None,
                  now_ms: int | None = None) -> Restored:
    """Bring ``local`` up to date with one state partition: from its checkpoint if it
    has a usable one, else from the beginning (after emptying it)."""
    started = time.monotonic()
    local = local if local is not None else MemoryStore()
    wall = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    tp = TopicPartition(topic, partition)
    consumer = consumer_factory()
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        begin = await consumer.position(tp)
        result = Restored()
        ckpt = local.checkpoint()
        if ckpt is not None and begin <= ckpt["offset"] <= end and \
                wall - ckpt.get("wall", 0) < STATE_COMPACTION_LAG_MS:
            consumer.seek(tp, ckpt["offset"])
            begin = ckpt["offset"]
            result.from_checkpoint = True
            result.meta = ckpt.get("meta")
        elif ckpt is not None or next(iter(local.items()), None) is not None:
            local.wipe()  # stale or from another cluster: rebuild from the changelog
        pending: dict[str, dict[bytes, bytes | None]] = {}  # flush id -> key -> value
        first: dict[str, int] = {}  # flush id -> offset of its first record
        outs: dict[bytes, bytes | None] = {}  # output chunks of the newest confirmed flush
        recount = False  # a flush wrote cold records without saying how many are held
        position = begin
        last_report = time.monotonic()
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)
            for msg in batch.get(tp, ()):
                position = msg.offset + 1
                result.records += 1
                flush = _flush_id(msg.headers)
                if msg.key == META_KEY:
                    meta = orjson.loads(msg.value)
                    mine = pending.pop(meta["flush"], {})
                    for orphaned in pending.values():
                        result.orphans.update(k.decode() for k in orphaned)
                    pending.clear()
                    outs = {k: v for k, v in mine.items() if k.startswith(OUT_BYTES)}
                    data = [(k, v) for k, v in mine.items() if not k.startswith(OUT_BYTES)]
                    if "cold" not in meta and any(k[:1] in RAW_KEY_PREFIXES for k, _ in data):
                        recount = True  # written by an earlier release
                    elif "cold" in meta:
                        recount = False
                    checkpoint = {"offset": first.get(meta["flush"], msg.offset),
                                  "wall": meta.get("wall", wall), "meta": meta}
                    local.write(data, checkpoint)
                    result.orphans.difference_update(k.decode() for k, _ in data)
                    result.meta = meta
                    first.clear()
                else:
                    pending.setdefault(flush, {})[msg.key or b""] = msg.value
                    first.setdefault(flush, msg.offset)
            if progress is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                progress(position - begin, end - begin)
                last_report = time.monotonic()
        for orphaned in pending.values():
            result.orphans.update(k.decode() for k in orphaned)
        if recount:
            local.recount()
        if result.meta is not None:
            flush = result.meta["flush"]
            for i in range(result.meta.get("out", 0)):
                raw = outs.get(f"{OUT_PREFIX}{i}".encode())
                chunk = None if raw is None else orjson.loads(raw)
                if chunk is not None and chunk.get("flush") == flush:
                    result.outbox.extend(chunk["items"])
        result.orphans = {k for k in result.orphans if not k.startswith("\x00")}
        result.seconds = time.monotonic() - started
        if progress is not None:
            progress(end - begin, end - begin)
        return result
    finally:
        await consumer.stop()


def _flush_id(headers: Any) -> str:
    for name, value in headers or ():
        if name == "f":
            return bytes(value).decode()
    return ""


class StateWriter:
    """Writes flushes of one (state topic, partition) through a shared producer."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partition: int) -> None:
        self.producer = producer
        self.topic = topic
        self.partition = partition

    async def write(self, state: list[tuple[bytes, bytes | None]],
                    outbox: Sequence[Sequence[Any]], meta: dict[str, Any]) -> Written:
        """Write one flush; returns once everything is acknowledged. ``state``: the
        changed keys' records (``state_record``; None a tombstone); ``outbox``: the
        flush's messages as ``(topic, partition, key, value)``, sent again after a
        restore if the flush's own sending may not have happened."""
        flush = uuid.uuid4().hex
        headers = [("f", flush.encode())]
        records: list[tuple[bytes | None, bytes | None]] = list(state)
        chunks = _chunks([list(item) for item in outbox])
        for i, items in enumerate(chunks):
            records.append((f"{OUT_PREFIX}{i}".encode(),
                            orjson.dumps({"flush": flush, "items": items})))
        meta = {**meta, "flush": flush, "out": len(chunks)}
        records.append((META_KEY, orjson.dumps(meta)))
        offset = await send_records(self.producer, self.topic, self.partition, records,
                                    headers)
        return Written(flush, offset, state, meta)


def state_record(key: str, value: Any) -> tuple[bytes, bytes | None]:
    """The changelog record of one state key's value (None: a tombstone)."""
    return key.encode(), statecodec.encode(value)


@dataclass
class Written:
    """A flush on the changelog: its id, the offset of its first record (None when the
    producer does not say), its state records as sent, and its meta record."""

    flush: str
    offset: int | None
    state: list[tuple[bytes, bytes | None]]
    meta: dict[str, Any]


def _chunks(items: list[list[Any]]) -> list[list[list[Any]]]:
    chunks: list[list[list[Any]]] = []
    cur: list[list[Any]] = []
    size = 0
    for item in items:
        n = len(orjson.dumps(item))
        if cur and size + n > CHUNK_BYTES:
            chunks.append(cur)
            cur, size = [], 0
        cur.append(item)
        size += n
    if cur:
        chunks.append(cur)
    return chunks


# Per producer and topic-partition, the lock a batch is handed to the producer under.
# aiokafka keeps one batch per partition in flight and lets every other sender wait
# for it; with many waiters (the flushes of several partitions sending to one merge
# partition) each wake-up subtracts the whole time waited so far from the timeout
# again, and a sender gives up with KafkaTimeoutError long before request_timeout_ms.
# Queued here instead, in arrival order, only one sender at a time waits there.
_SEND_LOCKS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], asyncio.Lock]] = \
    weakref.WeakKeyDictionary()


def _send_lock(producer: AIOKafkaProducer, topic: str, partition: int) -> asyncio.Lock:
    locks = _SEND_LOCKS.get(producer)
    if locks is None:
        locks = _SEND_LOCKS[producer] = {}
    lock = locks.get((topic, partition))
    if lock is None:
        lock = locks[(topic, partition)] = asyncio.Lock()
    return lock


async def send_records(producer: AIOKafkaProducer, topic: str, partition: int,
                       records: list[tuple[bytes | None, bytes | None]],
                       headers: list[tuple[str, bytes]] | None = None) -> int | None:
    """Send records to one partition in as few requests as possible; wait for acks.
    Returns the offset of the first record (None if the producer does not report it)."""
    futures = []
    lock = _send_lock(producer, topic, partition)
    batch = producer.create_batch()
    for key, value in records:
        meta = batch.append(key=key, value=value, timestamp=None, headers=headers or [])
        if meta is None:
            async with lock:
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None,
                            headers=headers or []) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit in "
                                 "one producer batch")
    if batch.record_count():
        async with lock:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
    # wait for every batch, so that no failure goes unobserved, then raise the first
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    first = results[0] if results else None
    return getattr(first, "offset", None)
