"""Produce events to their input topics, batched and keyed as the design says.

Each event goes to the topic its ``event_type`` names, on the partition its key
field hashes to (the Java client's murmur2 partitioner, as any producer keyed
the same way would choose). Events bound for the same partition are sent
together as one JSON array message, which is how throughput gets past Faust's
per-message floor. Events whose type is unknown are still sent (to the
page-view topic's dead-letter path) so the worker can reject them visibly.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from .settings import Settings
from .topics import EVENT_KEY_FIELD, EVENT_TYPES, Topics


def event_key(ev: dict[str, Any]) -> str:
    if ev.get("event_type") == "spend" and isinstance(ev.get("restates"), str):
        # every upload of one cost row meets the previous one on the same partition,
        # even if the channel rules changed in between and give it another channel
        return "restates:" + ev["restates"]
    field = EVENT_KEY_FIELD.get(ev.get("event_type", ""), "")
    value = ev.get(field) if field else None
    if value is None:
        # spend without a channel is unallocated; a deal without a contact goes by its
        # deal id (all its updates must meet in one place); anything else without its
        # key field is invalid and will be rejected by the worker, on whatever partition
        if ev.get("event_type") == "spend":
            return "unallocated"
        if ev.get("event_type") == "deal_update" and ev.get("deal_id") is not None:
            return str(ev["deal_id"])
        return str(ev.get("event_id"))
    return str(value)


def partition_for(key: str, partitions: int) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class BatchProducer:
    """Groups events by (topic, partition) into array messages of up to ``batch_size``."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, partitions: int,
                 batch_size: int = 500) -> None:
        self.producer = producer
        self.topics = topics
        self.partitions = partitions
        self.batch_size = batch_size
        self.sent: Counter[str] = Counter()
        self.messages = 0
        self.stamped = False

    def route(self, ev: Any) -> tuple[str, int, str]:
        et = ev.get("event_type") if isinstance(ev, dict) else None
        topic = self.topics.input(et if et in EVENT_TYPES else "page_view")
        key = event_key(ev) if isinstance(ev, dict) else "invalid"
        return topic, partition_for(key, self.partitions), key

    async def send(self, events: Iterable[Any], stamped: bool = False) -> None:
        """Produce ``events``. ``stamped``: each message's Kafka timestamp is the newest
        ``occurred_at`` in it (history replayed as if it had been sent as it happened,
        e.g. the live simulator's warm-up), not the time of sending."""
        self.stamped = stamped
        groups: dict[tuple[str, int], list[Any]] = defaultdict(list)
        keys: dict[tuple[str, int], str] = {}
        futures = []
        for ev in events:
            topic, partition, key = self.route(ev)
            group = groups[(topic, partition)]
            group.append(ev)
            keys.setdefault((topic, partition), key)
            if len(group) >= self.batch_size:
                futures.append(await self._send(topic, partition, keys[(topic, partition)],
                                                group))
                groups[(topic, partition)] = []
        for (topic, partition), group in groups.items():
            if group:
                futures.append(await self._send(topic, partition, keys[(topic, partition)],
                                                group))
        for fut in futures:
            await fut

    async def _send(self, topic: str, partition: int, key: str, group: list[Any]) -> Any:
        value = orjson.dumps(group[0] if self.batch_size == 1 else group)
        self.sent[topic] += len(group)
        self.messages += 1
        stamp = _newest_occurred(group) if self.stamped else None
        return await self.producer.send(topic, value, key=key.encode(), partition=partition,
                                        timestamp_ms=stamp)


@asynccontextmanager
async def producing(s: Settings, batch_size: int = 500) -> AsyncIterator[BatchProducer]:
    """A started producer, its topics ensured, behind a :class:`BatchProducer`; it stops
    on leaving, when every message sent is acknowledged."""
    from .kafka import ensure_topics, producer

    await ensure_topics(s)
    p = producer(s, linger_ms=20)
    await p.start()
    try:
        yield BatchProducer(p, Topics(s), s.input_partitions, batch_size)
    finally:
        await p.stop()


async def produce(s: Settings, batches: Iterable[list[Any]], progress: Progress,
                  batch_size: int = 500) -> BatchProducer:
    """The producer loop: every batch to its topics, counted on ``progress``. Returns
    the :class:`BatchProducer`, whose ``sent`` and ``messages`` count what went."""
    async with producing(s, batch_size) as bp:
        for batch in batches:
            await bp.send(batch)
            progress.update(progress.done + len(batch))
        progress.finish()
    return bp


def _newest_occurred(group: list[Any]) -> int | None:
    from .schemas import parse_rfc3339_ms

    newest = None
    for ev in group:
        try:
            t = parse_rfc3339_ms(ev["occurred_at"])
        except (TypeError, KeyError, ValueError):
            continue  # a deliberately bad event: it has no time to lend the message
        newest = t if newest is None else max(newest, t)
    if newest is None:
        return None
    return min(newest, time.time_ns() // 1_000_000)  # never in the future


class Progress:
    """A one-line progress report on stderr for long runs."""

    def __init__(self, label: str, total: int | None = None, stream: Any = None) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.last = 0.0
        self.done = 0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        if self.total:
            pct = 100.0 * done / self.total
            width = 30
            filled = int(width * done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            text = f"{self.label} [{bar}] {done}/{self.total} ({pct:.0f}%) {rate:,.0f}/s"
        else:
            text = f"{self.label} {done} events {rate:,.0f}/s"
        if self.stream.isatty():
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self.update(self.done, force=True)
        if self.stream.isatty():
            self.stream.write("\n")
