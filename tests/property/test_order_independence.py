"""The same on-time events in any order, with duplicates, give the same final KPIs.

Arrival orders are drawn so that every event stays within the allowed lateness
of its partition's watermark: events are sorted by event time plus a random
delay of at most half the lateness. Batches are cut at random places, as Kafka
would deliver them.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.events import Decoder
from streams.kpis import buckets as B
from streams.local import LocalPipeline
from streams.settings import load_settings
from tests.conftest import NOW
from tests.unit.kpitables import FAR

LATENESS = 600_000
BASE = 1_795_420_800_000  # 2026-11-23T08:00:00Z
DECODER = Decoder.from_settings(load_settings({}))
# distinct counts over rolling windows come from a sketch fed at membership changes;
# they are approximate by contract, so they are compared within 2 % elsewhere
SKETCHED = ("users|", "new_users|", "returning_users|", "visitor_conversion_rate|")


def iso(t: int) -> str:
    from streams.events import iso_ms

    return iso_ms(t)


@st.composite
def worlds(draw: Any, base: int = BASE) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    n = 0

    def ev(event_type: str, t: int, /, **fields: Any) -> None:
        nonlocal n
        n += 1
        events.append({"event_type": event_type, "event_id": f"e{n}", "occurred_at": iso(t),
                       "schema_version": 1, **fields})

    sources = [{}, {"utm_medium": "cpc"}, {"referrer": "https://www.google.com/"},
               {"utm_medium": "email", "utm_campaign": "nl"}, {"channel": "offline"}]
    for v in range(draw(st.integers(1, 6))):
        t = base + draw(st.integers(0, 60)) * 60_000
        for _ in range(draw(st.integers(1, 8))):
            t += draw(st.sampled_from([5_000, 60_000, 600_000, 1_500_000, 2_000_000,
                                       3_700_000]))
            ev("page_view", t, visitor_id=f"v{v}", url="https://www.acme.example/x",
               page_type=draw(st.sampled_from(["landing", "blog", "pricing"])),
               device=draw(st.sampled_from(["desktop", "mobile"])),
               engaged_ms=draw(st.sampled_from([0, 4000, 15000])),
               **draw(st.sampled_from(sources)))
            if draw(st.integers(0, 4)) == 0:
                ev("form_submit", t + draw(st.integers(0, 2_000_000)), visitor_id=f"v{v}",
                   contact_id=f"c{draw(st.integers(0, 3))}",
                   goal=draw(st.sampled_from(["demo_request", "newsletter_signup",
                                              "purchase"])),
                   **draw(st.sampled_from([{}, {"utm_medium": "cpc"}])))
    for m in range(draw(st.integers(0, 3))):
        t = base + draw(st.integers(0, 300)) * 60_000
        for kind in draw(st.lists(st.sampled_from(
                ["sent", "delivered", "open", "open", "click", "bounce", "unsubscribe"]),
                max_size=6)):
            t += draw(st.integers(0, 900_000))
            ev("email_event", t, message_id=f"m{m}", campaign="nl", type=kind,
               machine_open=draw(st.booleans()))
    for d in range(draw(st.integers(0, 4))):
        contact = draw(st.sampled_from(["c0", "c1", "c2", "c3", None]))
        kind = draw(st.sampled_from(["new_business", "new_business", "renewal"]))
        customer = f"cu{draw(st.integers(0, 2))}"
        t = base + draw(st.integers(0, 300)) * 60_000
        created = t - draw(st.integers(0, 5)) * 86_400_000
        for stage in draw(st.lists(st.sampled_from(
                ["mql", "sal", "sql", "opportunity", "won", "lost"]), min_size=1, max_size=5)):
            t += draw(st.integers(0, 1_200_000))
            ev("deal_update", t, deal_id=f"d{d}", contact_id=contact, customer_id=customer,
               kind=kind, stage=stage, amount=draw(st.sampled_from([0.0, 99.5, 1200.0])),
               gross_profit=draw(st.sampled_from([None, 10.0])), currency="GBP",
               created_at=iso(created))
    for _ in range(draw(st.integers(0, 3))):
        start = base + draw(st.integers(0, 8)) * 3_600_000
        length = draw(st.sampled_from([3_600_000, 5_400_000, 86_400_000]))
        ev("spend", start + length + 60_000,
           channel=draw(st.sampled_from([None, "paid_search", "display"])),
           campaign="c", category=draw(st.sampled_from(["media", "software"])),
           cost=draw(st.sampled_from([0.01, 10.0, 123.45])), currency="USD",
           impressions=draw(st.integers(0, 5000)), clicks=draw(st.integers(0, 50)),
           period_start=iso(start), period_end=iso(start + length))
    return events


def decode(events: list[dict[str, Any]]) -> list[Any]:
    out = []
    for e in events:
        recs, rejects = DECODER.decode(orjson.dumps(e), None, NOW + 400 * 86_400_000)
        assert not rejects
        out += recs
    return out


def final_kpis(records: list[Any], cuts: list[int]) -> dict[str, tuple[Any, Any]]:
    lp = LocalPipeline(partitions=2, kpi_partitions=2, lateness_ms=LATENESS)
    start = 0
    for cut in [*cuts, len(records)]:
        if cut > start:
            lp.feed(records[start:cut])
            start = cut
    assert lp.late == []  # the arrival orders drawn here are all on time
    # conflicting closes are reported whatever the order: the later one by event time
    rejected = sorted(u[0][1] for u in lp.rejected_updates)
    snaps = lp.finish(FAR)
    out: dict[str, Any] = {k: (round(d["numerator"], 6), round(d["denominator"], 6))
                           for k, d in snaps.items() if not k.startswith(SKETCHED) or
                           k.split("|")[1] in ("1m", "1h", "1d")}
    out["rejected deal updates"] = rejected
    return out


def arrival(records: list[Any], rng: random.Random, dup_rate: float) -> list[Any]:
    keyed = [(r.t + rng.randint(0, LATENESS // 2), i, r) for i, r in enumerate(records)]
    for i, r in enumerate(records):
        if rng.random() < dup_rate:  # a retry, up to a few minutes after the original
            keyed.append((r.t + rng.randint(0, LATENESS // 2), len(records) + i, r))
    keyed.sort(key=lambda x: (x[0], x[1]))
    return [r for _, _, r in keyed]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(worlds(), st.randoms(use_true_random=False), st.data())
def test_order_and_duplicates_do_not_change_final_kpis(events: list[dict[str, Any]],
                                                       rng: random.Random,
                                                       data: Any) -> None:
    records = decode(events)
    in_order = sorted(records, key=lambda r: (r.t, r.event_id))
    want = final_kpis(in_order, [])
    shuffled = arrival(records, rng, dup_rate=0.2)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=5)))
    got = final_kpis(shuffled, cuts)
    assert got == want


# the night Europe/Warsaw falls back (2026-10-25 03:00 CEST -> 02:00 CET at 01:00Z),
# and Asia/Kathmandu (+05:45), whose hours start at a quarter past the UTC hour
FALL_BACK = 1_792_882_800_000  # 2026-10-24T23:00:00Z
ZONES = ["Europe/Warsaw", "Asia/Kathmandu", "Asia/Tehran"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(ZONES), worlds(base=FALL_BACK), st.randoms(use_true_random=False),
       st.data())
def test_order_and_duplicates_do_not_change_final_kpis_in_a_zone(
        zone: str, events: list[dict[str, Any]], rng: random.Random, data: Any) -> None:
    with B.zone(zone):
        records = decode(events)
        want = final_kpis(sorted(records, key=lambda r: (r.t, r.event_id)), [])
        shuffled = arrival(records, rng, dup_rate=0.2)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=5)))
        assert final_kpis(shuffled, cuts) == want


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_day_is_the_sum_of_its_hours(events: list[dict[str, Any]]) -> None:
    _day_is_the_sum_of_its_hours(events)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ZONES), worlds(base=FALL_BACK))
def test_local_day_is_the_sum_of_its_local_hours(zone: str,
                                                 events: list[dict[str, Any]]) -> None:
    with B.zone(zone):
        _day_is_the_sum_of_its_hours(events)


def _day_is_the_sum_of_its_hours(events: list[dict[str, Any]]) -> None:
    records = sorted(decode(events), key=lambda r: (r.t, r.event_id))
    lp = LocalPipeline(partitions=2, kpi_partitions=2, lateness_ms=LATENESS)
    lp.feed(records)
    lp.finish(FAR)
    for m in lp.merge:
        days = {k: c for k, c in m.cells.items() if k[0] == "1d"}
        for (_, day, dim), cell in days.items():
            end = B.bucket_end(day, "1d")  # 23, 24 or 25 hours
            hours = [c for (size, start, d), c in m.cells.items()
                     if size == "1h" and d == dim and day <= start < end]
            for family, comps in cell.comps.items():
                for comp, total in comps.items():
                    if comp == "us" or (comp == "nu" and dim):
                        # distinct users of a day are not the sum of its hours; and a new
                        # user counts under the channels of all their sessions of the day,
                        # but only in the hour of their first page view
                        continue
                    summed = sum(h.comps.get(family, {}).get(comp, 0) for h in hours)
                    assert summed == total, (family, comp, dim)
