"""A historical span in chunks, and the events that close a replay on every partition."""

from __future__ import annotations

from typing import Any

from ..events import iso_ms
from .model import HOUR, Options
from .world import World


def generate(start_ms: int, end_ms: int, options: Options | None = None,
             chunk_ms: int = HOUR) -> Any:
    """Yield lists of events for [start, end), one list per chunk, in arrival order.

    Events that occur before ``end_ms`` but would arrive after it (tracker delay)
    are delivered in the last chunk, so the span is complete.
    """
    world = World(start_ms, options)
    t = start_ms
    while t < end_ms:
        nxt = min(t + chunk_ms, end_ms)
        batch = world.advance(nxt)
        if nxt >= end_ms:
            batch += [ev for ev in world.drain() if _occurred_ms(ev) < end_ms]
        yield batch
        t = nxt


def _occurred_ms(ev: dict[str, Any]) -> int:
    from ..schemas import parse_rfc3339_ms

    try:
        return parse_rfc3339_ms(ev["occurred_at"])
    except (KeyError, ValueError, TypeError):
        return 0


def closing_events(partitions: int, at: int) -> list[dict[str, Any]]:
    """Harmless events at ``at`` on every input partition, for the end of a replay.

    A replayed span only becomes final once every input partition's watermark has
    passed its end plus the lateness; after the last real event nothing moves a
    partition's watermark but the idle timeout. These events (one of each type per
    partition, zero amounts, a "closing" campaign) move them deterministically.
    """
    from ..produce import partition_for

    keys: dict[int, str] = {}
    i = 0
    while len(keys) < partitions:
        keys.setdefault(partition_for(f"closer-{i}", partitions), f"closer-{i}")
        i += 1
    channels: dict[int, str] = {}  # spend is keyed by channel
    for ch in ("organic_search", "paid_search", "organic_social", "paid_social", "email",
               "display", "affiliate", "referral", "direct", "offline", "other",
               "unallocated"):
        channels.setdefault(partition_for(ch, partitions), ch)
    base = {"occurred_at": iso_ms(at), "schema_version": 1}
    out: list[dict[str, Any]] = []
    for p, key in sorted(keys.items()):
        out += [
            {**base, "event_type": "page_view", "event_id": f"close-pv-{p}",
             "visitor_id": key, "url": "https://x.example/", "page_type": "other"},
            {**base, "event_type": "form_submit", "event_id": f"close-fs-{p}",
             "visitor_id": key, "contact_id": key, "goal": "other"},
            {**base, "event_type": "email_event", "event_id": f"close-em-{p}",
             "message_id": key, "campaign": "closing", "type": "sent"},
            {**base, "event_type": "deal_update", "event_id": f"close-du-{p}",
             "deal_id": f"closer-deal-{p}", "contact_id": key, "customer_id": f"closer-{p}",
             "kind": "new_business", "stage": "mql", "amount": 0.0, "currency": "EUR",
             "created_at": iso_ms(at)},
            {**base, "event_type": "engagement", "event_id": f"close-en-{p}",
             "channel": "other", "campaign": key, "content_id": "closing",
             "kind": "impression", "count": 1}]
    for p, ch in sorted(channels.items()):
        out.append({**base, "event_type": "spend", "event_id": f"close-sp-{p}",
                    "channel": None if ch == "unallocated" else ch, "campaign": "closing",
                    "category": "other", "cost": 0.0, "currency": "EUR", "impressions": 0,
                    "clicks": 0, "period_start": iso_ms(at - 60_000), "period_end": iso_ms(at)})
    return out
