"""Small Kafka helpers for integration tests: produce events or raw bytes, read topics."""

from __future__ import annotations

from typing import Any

import orjson

from streams.kafka import ensure_topics, producer
from streams.produce import BatchProducer
from streams.readback import latest_snapshots, read_topic
from streams.settings import Settings
from streams.topics import Topics


def closing_events(settings: Any, at: int) -> list[dict[str, Any]]:
    """Events that move every input partition's watermark to ``at`` (see simulate)."""
    from streams.simulate import closing_events as closers

    return closers(settings.input_partitions, at)


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


def final_mismatches(settings: Settings, want: dict[str, tuple[float, float]],
                     timeout: float, what: str) -> list[Any]:
    """Wait until every key of ``want`` is final on the KPI topic; the keys whose
    numerator or denominator differ from ``want`` (``[]``: all equal)."""
    import pytest

    from tests.fixtures_kafka import run, wait_for

    def all_final() -> Any:
        snaps = run(snapshots(settings))
        return snaps if all((snaps.get(k) or {}).get("final") for k in want) else None

    snaps = wait_for(all_final, timeout, what, interval=5)
    return [(k, (snaps[k]["numerator"], snaps[k]["denominator"]), nd)
            for k, nd in want.items()
            if snaps[k]["numerator"] != pytest.approx(nd[0], abs=1e-3)
            or snaps[k]["denominator"] != pytest.approx(nd[1], abs=1e-3)]
