"""What an operator runs against a deployment, beyond the worker: cost imports and
erasure requests. Kafka I/O only; the logic is in :mod:`streams.collect.costs` and
:mod:`streams.erasure`. Progress goes to ``say`` (the CLI: stderr)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from . import erasure
from .events import iso_ms
from .kafka import consumer, ensure_topics, producer
from .produce import partition_for, producing
from .settings import Settings
from .topics import Topics

Say = Callable[[str], None]


async def send_costs(s: Settings, events: list[dict[str, Any]], say: Say) -> None:
    """Produce a cost table's spend events (acknowledged when this returns)."""
    async with producing(s) as bp:
        await bp.send(events)
    days = sorted({e["restates"].split("|")[0] for e in events})
    span = f"{days[0]} to {days[-1]}" if days else "no rows"
    say(f"{len(events)} cost rows ({span}) sent to {Topics(s).input('spend')}; each "
        "replaces an earlier upload of its date, source, medium and campaign")


async def erase(s: Settings, visitors: list[str], contacts: list[str], *, wait: bool,
                timeout_s: float, say: Say) -> int:
    """Send erasure requests and (``wait``) follow the audit topic until every stage
    partition has confirmed: 0, or 1 when one has not within ``timeout_s``."""
    topics = Topics(s)
    await ensure_topics(s)
    now = iso_ms(time.time_ns() // 1_000_000)
    plans = [erasure.plan(kind, subject, uuid.uuid4().hex, now, topics, s.input_partitions)
             for kind, ids in (("visitor", visitors), ("contact", contacts))
             for subject in ids]
    prod = producer(s)
    await prod.start()
    try:
        for doc, targets, expected in plans:
            await (await prod.send(topics.erasures, orjson.dumps(
                erasure.requested(doc, sorted(expected))), key=doc["request_id"].encode(),
                partition=0))
            for topic, partition in targets:
                await (await prod.send(topic, erasure.encode(doc),
                                       key=doc["subject"].encode(), partition=partition))
            if doc["kind"] == "contact":  # its lead-score record (compacted): a tombstone
                await (await prod.send(topics.lead_scores, None, key=doc["subject"].encode(),
                                       partition=partition_for(doc["subject"],
                                                               s.input_partitions)))
    finally:
        await prod.stop()
    for doc, _targets, expected in plans:
        say(f"erasure {doc['request_id']}: {doc['kind']} requested ({len(expected)} stage "
            "partitions to carry it out)")
    if not wait:
        return 0
    waiting = {doc["request_id"]: set(expected) for doc, _t, expected in plans}
    await _confirmations(s, topics.erasures, waiting, timeout_s, say)
    late = {rid: left for rid, left in waiting.items() if left}
    for rid, left in late.items():
        say(f"erasure {rid}: not confirmed yet by {', '.join(sorted(left))} (is a worker "
            "running? it is carried out when one reads it)")
    if late:
        return 1
    say(f"erased: every stage partition confirmed (audit trail on {topics.erasures})")
    return 0


async def _confirmations(s: Settings, topic: str, waiting: dict[str, set[str]],
                         timeout_s: float, say: Say) -> None:
    c = consumer(s, topic)
    await c.start()
    deadline = time.monotonic() + timeout_s
    try:
        while any(waiting.values()) and time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=500)
            for msgs in batch.values():
                for msg in msgs:
                    rec = orjson.loads(msg.value) if msg.value else {}
                    left = waiting.get(str(rec.get("request_id")))
                    if rec.get("event") == "applied" and left is not None:
                        left.discard(f"{rec['stage']}/{rec['partition']}")
                        say(f"  {rec['stage']}/{rec['partition']}: "
                            f"{rec['entries_removed']} entries removed")
    finally:
        await c.stop()
