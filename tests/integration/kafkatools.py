"""Small Kafka helpers for integration tests: produce events or raw bytes, read topics."""

from __future__ import annotations

from typing import Any

import orjson

from streams.kafka import ensure_topics, producer
from streams.produce import BatchProducer, partition_for
from streams.readback import latest_snapshots, read_topic
from streams.settings import Settings
from streams.topics import Topics


def closing_events(settings: Any, at: int) -> list[dict[str, Any]]:
    """One harmless event per input partition, hours after the day, so every
    partition's watermark passes the day's end plus lateness and session timeout."""
    from streams.events import iso_ms

    n = settings.input_partitions
    out: list[dict[str, Any]] = []
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < n:
        keys.setdefault(partition_for(f"closer-{i}", n), f"closer-{i}")
        i += 1
    channels: dict[int, str] = {}
    for ch in ("organic_search", "paid_search", "organic_social", "paid_social", "email",
               "display", "affiliate", "referral", "direct", "offline", "other",
               "unallocated"):
        channels.setdefault(partition_for(ch, n), ch)
    base = {"occurred_at": iso_ms(at), "schema_version": 1}
    for p, key in sorted(keys.items()):
        out.append({**base, "event_type": "page_view", "event_id": f"close-pv-{p}",
                    "visitor_id": key, "url": "https://x.example/", "page_type": "other"})
        out.append({**base, "event_type": "form_submit", "event_id": f"close-fs-{p}",
                    "visitor_id": key, "contact_id": key, "goal": "other"})
        out.append({**base, "event_type": "email_event", "event_id": f"close-em-{p}",
                    "message_id": key, "campaign": "closing", "type": "sent"})
        out.append({**base, "event_type": "deal_update", "event_id": f"close-du-{p}",
                    "deal_id": f"closer-deal-{p}", "contact_id": key,
                    "customer_id": f"closer-{p}", "kind": "new_business", "stage": "mql",
                    "amount": 0.0, "currency": "EUR", "created_at": iso_ms(at)})
    for p, ch in sorted(channels.items()):
        out.append({**base, "event_type": "spend", "event_id": f"close-sp-{p}",
                    "channel": None if ch == "unallocated" else ch, "campaign": "closing",
                    "category": "other", "cost": 0.0, "currency": "EUR", "impressions": 0,
                    "clicks": 0, "period_start": iso_ms(at - 60_000),
                    "period_end": iso_ms(at)})
    return out


async def produce_events(settings: Settings, events: list[Any], batch_size: int = 200) -> None:
    await ensure_topics(settings)
    p = producer(settings)
    await p.start()
    try:
        bp = BatchProducer(p, Topics(settings), settings.input_partitions, batch_size)
        await bp.send(events)
    finally:
        await p.stop()


async def produce_raw(settings: Settings, topic: str, values: list[bytes | None],
                      partition: int = 0) -> None:
    await ensure_topics(settings)
    p = producer(settings)
    await p.start()
    try:
        for value in values:
            await p.send_and_wait(topic, value, key=b"raw", partition=partition)
    finally:
        await p.stop()


async def read_json(settings: Settings, topic: str) -> list[tuple[bytes | None, Any]]:
    out = []
    for msg in await read_topic(settings, topic):
        out.append((msg.key, None if msg.value is None else orjson.loads(msg.value)))
    return out


async def snapshots(settings: Settings) -> dict[str, Any]:
    return await latest_snapshots(settings)
