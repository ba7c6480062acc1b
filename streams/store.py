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

On restore, records count only when a later meta record confirms their flush
id; records of a flush whose meta never arrived are orphans and are ignored
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from .kpis.visitors import COLD_PREFIX  # keys whose values are packed bytes, not JSON

META_KEY = b"\x00meta"
OUT_PREFIX = "\x00out/"
CHUNK_BYTES = 256 * 1024
PROGRESS_EVERY_S = 2.0  # a restore in progress reports this often

log = logging.getLogger(__name__)


@dataclass
class Restored:
    """What a partition's changelog says, after discarding unconfirmed flushes."""

    values: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] | None = None
    outbox: list[list[Any]] = field(default_factory=list)
    orphans: set[str] = field(default_factory=set)
    records: int = 0
    seconds: float = 0.0


Progress = Callable[[int, int], None]


async def restore(consumer_factory: Callable[[], Any], topic: str, partition: int,
                  progress: Progress | None = None) -> Restored:
    """Read one state partition from the beginning to its current end."""
    started = time.monotonic()
    tp = TopicPartition(topic, partition)
    consumer = consumer_factory()
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
        begin = await consumer.position(tp)
        result = Restored()
        confirmed: dict[str, Any] = result.values
        pending: dict[str, dict[str, Any]] = {}  # flush id -> key -> value
        position = begin
        last_report = time.monotonic()
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=50_000)
            for msg in batch.get(tp, ()):
                position = msg.offset + 1
                result.records += 1
                flush = _flush_id(msg.headers)
                key = msg.key.decode() if msg.key is not None else ""
                if msg.key == META_KEY:
                    meta = orjson.loads(msg.value)
                    mine = pending.pop(meta["flush"], {})
                    for orphaned in pending.values():
                        result.orphans.update(orphaned)
                    pending.clear()
                    confirmed.update(mine)
                    result.orphans.difference_update(mine)
                    result.meta = meta
                else:
                    value = msg.value
                    if value is not None and not key.startswith(COLD_PREFIX):
                        value = orjson.loads(value)
                    pending.setdefault(flush, {})[key] = value
            if progress is not None and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                progress(position - begin, end - begin)
                last_report = time.monotonic()
        for orphaned in pending.values():
            result.orphans.update(orphaned)
        if result.meta is not None:
            flush = result.meta["flush"]
            for i in range(result.meta.get("out", 0)):
                chunk = confirmed.get(f"{OUT_PREFIX}{i}")
                if chunk is not None and chunk.get("flush") == flush:
                    result.outbox.extend(chunk["items"])
        for key in [k for k in confirmed if k.startswith("\x00")]:
            del confirmed[key]
        for key in [k for k, v in confirmed.items() if v is None]:
            del confirmed[key]  # tombstones
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

    async def write(self, updates: dict[str, Any], outbox: list[list[Any]],
                    meta: dict[str, Any]) -> str:
        """Write one flush; returns its id once everything is acknowledged."""
        flush = uuid.uuid4().hex
        headers = [("f", flush.encode())]
        records: list[tuple[bytes | None, bytes | None]] = []
        for key, value in updates.items():
            if value is None or isinstance(value, bytes):
                records.append((key.encode(), value))  # a tombstone, or a packed record
            else:
                records.append((key.encode(), orjson.dumps(value)))
        chunks = _chunks(outbox)
        for i, items in enumerate(chunks):
            records.append((f"{OUT_PREFIX}{i}".encode(),
                            orjson.dumps({"flush": flush, "items": items})))
        records.append((META_KEY, orjson.dumps({**meta, "flush": flush, "out": len(chunks)})))
        await send_records(self.producer, self.topic, self.partition, records, headers)
        return flush


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


async def send_records(producer: AIOKafkaProducer, topic: str, partition: int,
                       records: list[tuple[bytes | None, bytes | None]],
                       headers: list[tuple[str, bytes]] | None = None) -> None:
    """Send records to one partition in as few requests as possible; wait for acks."""
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        meta = batch.append(key=key, value=value, timestamp=None, headers=headers or [])
        if meta is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None,
                            headers=headers or []) is None:
                raise ValueError(f"a record of {len(value or b'')} bytes does not fit in "
                                 "one producer batch")
    if batch.record_count():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    # wait for every batch, so that no failure goes unobserved, then raise the first
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
