"""The simulator: deterministic, valid, and it models what it promises."""

from __future__ import annotations

from collections import Counter

import orjson

from streams.events import Decoder
from streams.simulate import DAY, HOUR, Options, generate
from tests.conftest import NOW

START = 1_794_873_600_000  # 2026-11-17T00:00:00Z, a Tuesday (newsletter day)


def _events(opts: Options, days: float = 1.0) -> list[dict]:
    out: list[dict] = []
    for batch in generate(START, START + int(days * DAY), opts):
        out += batch
    return out


def test_same_seed_same_events() -> None:
    a = _events(Options(seed=5, sessions_per_day=800))
    b = _events(Options(seed=5, sessions_per_day=800))
    c = _events(Options(seed=6, sessions_per_day=800))
    assert a == b and a != c


def test_every_event_is_valid(decoder: Decoder) -> None:
    events = _events(Options(seed=2, sessions_per_day=1500), days=2)
    types = Counter(e["event_type"] for e in events)
    assert {"page_view", "form_submit", "email_event", "spend", "deal_update"} <= set(types)
    bad = []
    for ev in events:
        _, rejects = decoder.decode(orjson.dumps(ev), None, NOW + 30 * DAY)
        bad += rejects
    assert bad == []


def test_world_features() -> None:
    events = _events(Options(seed=3, sessions_per_day=3000, duplicate_rate=0.01), days=5)
    ids = Counter(e["event_id"] for e in events)
    assert any(n > 1 for n in ids.values()), "trackers resend some events"
    visitors = Counter(e["visitor_id"] for e in events if e["event_type"] == "page_view")
    assert sum(1 for n in visitors.values() if n > 4) > 10, "visitors come back"
    currencies = {e["currency"] for e in events if e["event_type"] == "spend"}
    assert {"USD", "EUR", "GBP"} <= currencies
    stages = {e["stage"] for e in events if e["event_type"] == "deal_update"}
    assert {"mql", "sal", "won", "lost"} <= stages
    # off-site engagement: social posts with reactions, content, a conference
    kinds = {e["kind"] for e in events if e["event_type"] == "engagement"}
    assert {"impression", "like", "share", "follow", "view", "event_attendance"} <= kinds
    guests = {e.get("contact_id") for e in events
              if e["event_type"] == "engagement" and e["kind"] == "event_attendance"}
    offline = [e for e in events if e["event_type"] == "page_view"
               and e.get("channel") == "offline"]
    assert len(guests) > 10 and offline, "conference guests visit the site later"
    devices = {e.get("device") for e in events if e["event_type"] == "page_view"}
    assert {"desktop", "mobile", "tablet"} <= devices
    # arrival order is not event-time order (tracker delays)
    times = [e["occurred_at"] for e in events if e["event_type"] == "page_view"]
    assert times != sorted(times)


def test_incident_changes_the_world() -> None:
    base = Options(seed=4, sessions_per_day=4000)
    spike = Options(seed=4, sessions_per_day=4000, incident="bounce-spike",
                    incident_start=START + 6 * HOUR, incident_duration_ms=12 * HOUR)
    def one_page_share(events: list[dict]) -> float:
        per_visitor = Counter(e["visitor_id"] for e in events if e["event_type"] == "page_view")
        return sum(1 for n in per_visitor.values() if n == 1) / len(per_visitor)
    assert one_page_share(_events(spike)) > one_page_share(_events(base)) + 0.15


def test_bad_rate_injects_invalid_events(decoder: Decoder) -> None:
    events = _events(Options(seed=8, sessions_per_day=800, bad_rate=0.05))
    rejects = []
    for ev in events:
        rejects += decoder.decode(orjson.dumps(ev), None, NOW + 30 * DAY)[1]
    assert len(rejects) > 10
