"""Read the KPI snapshot topic back: latest snapshot per key (CLI, tests, bench)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import TopicPartition

from .kafka import consumer
from .settings import Settings
from .topics import Topics


async def read_topic(settings: Settings, topic: str, limit_s: float = 30.0) -> list[Any]:
    """Every record of ``topic`` from the beginning to its end at call time."""
    c = consumer(settings, max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    try:
        parts = await asyncio.wait_for(_partitions(c, topic), limit_s)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        ends = await c.end_offsets(tps)
        await c.seek_to_beginning(*tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        for tp in list(remaining):
            if await c.position(tp) >= ends[tp]:
                remaining.discard(tp)
        while remaining:
            batch = await asyncio.wait_for(c.getmany(timeout_ms=1000, max_records=50_000),
                                           limit_s)
            for tp, msgs in batch.items():
                records.extend(msgs)
                if msgs and msgs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
        return records
    finally:
        await c.stop()


async def _partitions(c: Any, topic: str) -> set[int]:
    while True:
        parts = await c.partitions_for_topic(topic) if asyncio.iscoroutinefunction(
            c.partitions_for_topic) else c.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await c._client.force_metadata_update()  # aiokafka has no public way
        await asyncio.sleep(0.2)


async def latest_snapshots(settings: Settings, limit_s: float = 30.0) -> dict[str, Any]:
    """key -> the snapshot with the highest revision (the truth for that key)."""
    out: dict[str, Any] = {}
    for msg in await read_topic(settings, Topics(settings).snapshots, limit_s):
        key = msg.key.decode()
        if key.startswith("target|"):
            continue  # a target's pacing (schemas/kpi_target.v1.json), not a snapshot
        if msg.value is None:
            out.pop(key, None)  # a retracted key
            continue
        doc = orjson.loads(msg.value)
        old = out.get(key)
        if old is None or doc["revision"] >= old["revision"]:
            out[key] = doc
    return out


def latest_from_api(settings: Settings, query: dict[str, str],
                    timeout_s: float = 2.0) -> list[dict[str, Any]] | None:
    """The current snapshots from a running worker's API, or None when no worker
    answers at ``KPI_WEB_HOST:KPI_WEB_PORT`` or it does not hold every KPI partition
    (with several workers each one serves only its own; the topic has them all)."""
    import urllib.error
    import urllib.parse
    import urllib.request

    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::", "") else settings.web_host
    base = f"http://{host}:{settings.web_port}"
    try:
        with urllib.request.urlopen(f"{base}/api/health", timeout=timeout_s) as resp:
            health = orjson.loads(resp.read())
        merge = health.get("stages", {}).get("merge", {})
        if len(merge.get("restored", [])) < settings.kpi_partitions:
            return None
        params = urllib.parse.urlencode({**query, "limit": "100000"})
        with urllib.request.urlopen(f"{base}/api/kpis?{params}", timeout=30) as resp:
            doc = orjson.loads(resp.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if doc.get("count", 0) > len(doc.get("snapshots", [])):
        return None  # more than the API returns at once: read the topic
    return list(doc["snapshots"])


def compare_within(docs: list[dict[str, Any]], basis: str) -> None:
    """Add a ``compare`` object to each document from the others (for documents read
    off the KPI topic, where no worker computes it): a bucket is compared with the
    bucket of the same KPI and dims whose window the basis names, if the topic holds
    it. The topic keeps only the current window of a rolling view, so those have
    nothing to compare with. The reporting zone must be the active one (``B.use``)."""
    from .kpis import buckets as B
    from .kpis.merge.documents import change_against
    from .schemas import parse_rfc3339_ms

    def key(d: dict[str, Any], start: int) -> tuple[Any, ...]:
        return (d["kpi"], d["bucket"], start, tuple(sorted(d["dims"].items())))

    starts = {id(d): parse_rfc3339_ms(d["window_start"]) for d in docs}
    index = {key(d, starts[id(d)]): d for d in docs}
    earliest: dict[tuple[str, str], int] = {}
    for d in docs:
        k = (d["kpi"], d["bucket"])
        earliest[k] = min(earliest.get(k, starts[id(d)]), starts[id(d)])
    for d in docs:
        start, end = starts[id(d)], parse_rfc3339_ms(d["window_end"])
        s0, s1 = B.compared_window(d["bucket"], start, end, basis)
        other = None if d["bucket"] in B.ROLLING else index.get(key(d, s0))
        d["compare"] = {
            "basis": basis, "window_start": B.iso(s0), "window_end": B.iso(s1),
            "covered": d["bucket"] not in B.ROLLING and
            earliest[(d["kpi"], d["bucket"])] <= s0, **change_against(d, other)}
