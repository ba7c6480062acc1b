"""State follows the retention windows and TTLs, not the length of the run.

Simulated days go through the in-process pipeline with short retention, and
after each day the worker's expiry (``LocalPipeline.expire``, what its timer
runs) is applied. Every kind of state that retention or a TTL governs must
stop growing once the run is longer than those windows; only contacts (a lead
is a contact's first lead form *ever*) keep growing.
"""

from __future__ import annotations

import orjson

from streams.events import Decoder
from streams.kpis.email import EmailConfig
from streams.kpis.web import WebConfig
from streams.local import LocalPipeline
from streams.schemas import parse_rfc3339_ms
from streams.settings import load_settings
from streams.simulate import DAY, HOUR, Options, World

START = parse_rfc3339_ms("2026-09-01T00:00:00Z")
DAYS = 10
TIMED = ("cell_1m", "cell_1h", "cell_1d", "view_15m", "view_24h", "view_7d", "view_30d",
         "visitor", "visitor_cold", "message", "message_cold", "event_id")


def test_state_levels_off_with_short_retention() -> None:
    lateness = 600_000
    lp = LocalPipeline(
        retention={"1m": 2 * HOUR, "1h": DAY, "1d": 2 * DAY},
        web=WebConfig(lateness_ms=lateness, lookback_ms=DAY, visitor_ttl_ms=2 * DAY),
        email=EmailConfig(lateness_ms=lateness, message_ttl_ms=DAY),
        # the rolling views are state too; the buckets' own snapshots are not needed
        publish={"15m", "24h", "7d", "30d"})
    decoder = Decoder.from_settings(load_settings({}))
    world = World(START, Options(seed=5, sessions_per_day=250, email_list=200))
    per_day = []
    seen: dict[str, set[str]] = {"visitor": set(), "message": set()}
    for day in range(1, DAYS + 1):
        records = []
        for ev in world.advance(START + day * DAY):
            recs, _ = decoder.decode(orjson.dumps(ev), None, START + 400 * DAY)
            records += recs
            for rec in recs:
                if getattr(rec, "visitor_id", None):
                    seen["visitor"].add(rec.visitor_id)
                if getattr(rec, "message_id", None):
                    seen["message"].add(rec.message_id)
        for i in range(0, len(records), 1000):
            lp.feed(records[i:i + 1000])
        lp.emit()  # publishing creates the rolling views' state
        lp.expire()
        per_day.append(lp.state_keys())
    early = per_day[2:6]  # days 3-6: past every window above
    late = per_day[6:]  # days 7-10
    for kind in TIMED:
        peak_early = max(d.get(kind, 0) for d in early)
        peak_late = max(d.get(kind, 0) for d in late)
        assert peak_early > 0, (kind, per_day)
        # a random week is not an exact copy of the one before; growth would be 2x
        assert peak_late <= 1.4 * peak_early, (kind, [d.get(kind, 0) for d in per_day])
    for kind, ids in seen.items():  # the TTLs forget: far fewer held than ever seen
        assert per_day[-1][kind] < 0.6 * len(ids), (kind, per_day[-1][kind], len(ids))
    # contacts are kept on purpose (they are the CRM's contacts): all of them, in the
    # cold store; on the heap only the few active lately
    contacts = [d["contact"] + d["contact_cold"] for d in per_day]
    assert contacts[-1] > contacts[3]
    hot = [d["contact"] for d in per_day]
    assert max(hot[6:]) < 0.5 * contacts[-1], (hot, contacts)
