"""Email, spend and ad KPIs, leads and CPL against hand-computed tables (sections 5-7)."""

from __future__ import annotations

import pytest

from streams.events import Decoder
from streams.kpis.email import EmailConfig
from streams.kpis.spend import prorate
from tests.conftest import event
from tests.unit.kpitables import form, pv, run_pipeline, snap, value

H = "2026-11-23T10:00:00Z"


def em(mid: str, kind: str, at: str, campaign: str = "nl", **kw: object) -> dict:
    return event("email_event", message_id=mid, campaign=campaign, type=kind,
                 occurred_at=at, **kw)


EMAILS = [
    em("m1", "sent", "2026-11-23T10:00:00Z"),
    em("m1", "delivered", "2026-11-23T10:00:01Z"),
    em("m1", "open", "2026-11-23T10:00:05Z", machine_open=True),  # privacy proxy
    em("m1", "open", "2026-11-23T10:30:00Z"),
    em("m1", "open", "2026-11-23T10:40:00Z"),  # a second open: not unique
    em("m1", "click", "2026-11-23T10:41:00Z"),
    em("m1", "click", "2026-11-23T10:42:00Z"),
    em("m2", "sent", "2026-11-23T10:00:00Z"),
    em("m2", "bounce", "2026-11-23T10:00:02Z"),
    em("m3", "sent", "2026-11-23T10:00:00Z"),
    em("m3", "delivered", "2026-11-23T10:00:01Z"),
    em("m3", "unsubscribe", "2026-11-23T10:45:00Z"),
    em("m4", "sent", "2026-11-23T11:00:00Z", campaign="promo"),  # nothing delivered yet
]

EMAIL_TOTAL = {
    "emails_sent": (3, 3, 1),
    "emails_delivered": (2, 2, 1),
    "email_opens": (2, 2, 1),  # 10:30 and 10:40; the proxy's machine open is not counted
    "email_open_rate": (0.5, 1, 2),
    "email_click_rate": (0.5, 1, 2),
    "email_click_to_open_rate": (1.0, 1, 1),
    "email_unsubscribe_rate": (0.5, 1, 2),
    "email_bounce_rate": (1 / 3, 1, 3),
}


@pytest.mark.parametrize("kpi", sorted(EMAIL_TOTAL))
@pytest.mark.parametrize("dim", ["", "channel=email", "campaign=nl"])
def test_email_table(decoder: Decoder, kpi: str, dim: str) -> None:
    snaps = run_pipeline(decoder, EMAILS)
    doc = snap(snaps, kpi, "1h", H, dim)
    want = EMAIL_TOTAL[kpi]
    assert (doc["value"], doc["numerator"], doc["denominator"]) == pytest.approx(want)


def test_email_empty_denominators_are_null(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, EMAILS)
    h11 = "2026-11-23T11:00:00Z"
    assert value(snaps, "emails_sent", "1h", h11, "campaign=promo") == 1
    for kpi in ("email_open_rate", "email_click_rate", "email_unsubscribe_rate",
                "email_click_to_open_rate"):
        doc = snap(snaps, kpi, "1h", h11, "campaign=promo")
        assert doc["value"] is None and doc["denominator"] == 0


def test_unique_open_in_the_bucket_of_the_first_open(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, EMAILS)
    assert snap(snaps, "email_open_rate", "1m", "2026-11-23T10:30:00Z")["numerator"] == 1
    assert snap(snaps, "email_open_rate", "1m", "2026-11-23T10:40:00Z")["numerator"] == 0


def test_machine_opens_included_when_configured(decoder: Decoder) -> None:
    only_machine = [em("m9", "sent", "2026-11-23T10:00:00Z"),
                    em("m9", "delivered", "2026-11-23T10:00:01Z"),
                    em("m9", "open", "2026-11-23T10:00:05Z", machine_open=True)]
    excluded = run_pipeline(decoder, only_machine)
    included = run_pipeline(decoder, only_machine,
                            email=EmailConfig(exclude_machine_opens=False))
    assert value(excluded, "email_open_rate", "1h", H) == 0.0
    assert value(included, "email_open_rate", "1h", H) == 1.0
    assert value(excluded, "email_opens", "1h", H) == 0
    assert value(included, "email_opens", "1h", H) == 1


# -- spend and ads --------------------------------------------------------------------
def sp(channel: str | None, cost: float, start: str, end: str, category: str = "media",
       impressions: int = 0, clicks: int = 0, currency: str = "EUR", at: str | None = None,
       campaign: str = "brand") -> dict:
    return event("spend", channel=channel, cost=cost, currency=currency, category=category,
                 impressions=impressions, clicks=clicks, period_start=start, period_end=end,
                 occurred_at=at or end, campaign=campaign)


ADS = [
    sp("paid_search", 100.0, H, "2026-11-23T11:00:00Z", impressions=1000, clicks=14),
    sp(None, 50.0, H, "2026-11-23T11:00:00Z", category="software", campaign="martech"),
]


@pytest.mark.parametrize(("kpi", "dim", "want"), [
    ("spend", "", (150.0, 150.0, 1)),
    ("spend", "channel=paid_search", (100.0, 100.0, 1)),
    ("media_spend", "", (100.0, 100.0, 1)),
    ("impressions", "", (1000, 1000, 1)),
    ("clicks", "", (14, 14, 1)),
    ("ad_ctr", "", (0.014, 14, 1000)),  # 1,000 impressions and 14 clicks: 1.4 %
    ("cpc", "channel=paid_search", (100 / 14, 100.0, 14)),
    ("cpm", "", (100.0, 100.0, 1.0)),  # media spend / (impressions / 1000)
    ("spend", "campaign=martech", (50.0, 50.0, 1)),
])
def test_ads_table(decoder: Decoder, kpi: str, dim: str, want: tuple) -> None:
    snaps = run_pipeline(decoder, ADS)
    doc = snap(snaps, kpi, "1h", H, dim)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == pytest.approx(want)
    assert doc["unit"] in ("EUR", "count", "ratio")


def test_spend_is_prorated_over_its_period(decoder: Decoder) -> None:
    day = sp("display", 240.0, "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z",
             impressions=24_000, at="2026-11-24T00:05:00Z")
    snaps = run_pipeline(decoder, [day])
    assert value(snaps, "spend", "1h", "2026-11-23T13:00:00Z") == pytest.approx(10.0)
    # money is kept in millionths: a minute's share is exact to 1e-6
    assert value(snaps, "spend", "1m", "2026-11-23T13:07:00Z") == pytest.approx(10 / 60,
                                                                                abs=1e-6)
    assert value(snaps, "impressions", "1h", "2026-11-23T13:00:00Z") == 1000
    assert value(snaps, "spend", "1d", "2026-11-23T00:00:00Z") == pytest.approx(240.0)


def test_proration_telescopes_exactly() -> None:
    total = 1_000_000_007  # an awkward number of millionths over an awkward period
    start, end = 1_795_400_123_456, 1_795_400_123_456 + 5 * 3_600_000 + 17_777
    minutes = prorate(total, start, end, "1m")
    hours = prorate(total, start, end, "1h")
    days = prorate(total, start, end, "1d")
    assert sum(v for _, v in minutes) == sum(v for _, v in hours) == \
        sum(v for _, v in days) == total
    for h, share in hours:
        assert share == sum(v for b, v in minutes if h <= b < h + 3_600_000)


def test_spend_currency_is_converted(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, [sp("paid_social", 100.0, H, "2026-11-23T11:00:00Z",
                                      currency="GBP")])
    assert value(snaps, "spend", "1h", H) == pytest.approx(117.0)


# -- leads and CPL ------------------------------------------------------------------
def test_cpl_worked_example(decoder: Decoder) -> None:
    # spend 1,000 and 100 leads give CPL 10
    leads = [form(f"v{i}", f"c{i}", f"2026-11-23T10:{i % 60:02d}:00Z", goal="inquiry")
             for i in range(100)]
    leads.sort(key=lambda e: e["occurred_at"])
    spend = sp("paid_search", 1000.0, H, "2026-11-23T11:00:00Z")
    snaps = run_pipeline(decoder, [*leads, spend])
    doc = snap(snaps, "cpl", "1h", H)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == (10.0, 1000.0, 100)
    assert doc["unit"] == "EUR" and doc["mode"] == {"attribution": "first_touch"}


def test_cpl_without_leads_is_emitted_with_null(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, ADS)
    doc = snap(snaps, "cpl", "1h", H)
    assert doc["value"] is None and doc["numerator"] == 150.0 and doc["denominator"] == 0
    assert "leads|1h|" + H + "|" not in snaps  # no lead input, no leads snapshot


def test_cpl_per_channel_uses_channel_spend_and_total_includes_unallocated(
        decoder: Decoder) -> None:
    visit = pv("A", "2026-11-23T10:00:00Z", utm_medium="cpc")
    lead = form("A", "cA", "2026-11-23T10:01:00Z")
    snaps = run_pipeline(decoder, [visit, lead, *ADS])
    assert value(snaps, "cpl", "1h", H, "channel=paid_search") == 100.0
    assert value(snaps, "cpl", "1h", H) == 150.0


def test_visitor_conversion_rate_worked_example(decoder: Decoder) -> None:
    # 100 visitors, 10 leads: 10 %
    evs = []
    for i in range(100):
        evs.append(pv(f"v{i}", f"2026-11-23T10:{i % 60:02d}:00Z"))
        if i % 10 == 0:
            evs.append(form(f"v{i}", f"c{i}", f"2026-11-23T10:{i % 60:02d}:30Z"))
    evs.sort(key=lambda e: e["occurred_at"])
    snaps = run_pipeline(decoder, evs)
    doc = snap(snaps, "visitor_conversion_rate", "1h", H)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == (0.1, 10, 100)


def test_cost_based_kpis_say_whether_their_cost_is_complete(decoder: Decoder) -> None:
    """Cost is reported after the fact: until the spend input's watermark has passed a
    bucket's end, its cost KPIs say cost_complete false (catalogue section 10)."""
    from streams.local import LocalPipeline
    from tests.unit.kpitables import FAR, form, pv, records

    lp = LocalPipeline(partitions=1)
    # 09:00-10:00 spend reported at 09:30: the spend clock is inside the hour
    lp.feed(records(decoder, [
        event("spend", occurred_at="2026-11-23T09:30:00Z"),
        pv("v", "2026-11-23T09:40:00Z"), form("v", "c", "2026-11-23T09:41:00Z")]))
    snaps = lp.emit()
    h = "2026-11-23T09:00:00Z"
    assert snaps[f"cpl|1h|{h}|"]["cost_complete"] is False
    assert snaps[f"spend|1h|{h}|channel=paid_search"]["cost_complete"] is False
    assert "cost_complete" not in snaps[f"leads|1h|{h}|"]  # not a cost KPI
    assert "cost_complete" not in snaps[f"ad_ctr|1h|{h}|"]  # clicks / impressions
    snaps = lp.finish(FAR)
    assert snaps[f"cpl|1h|{h}|"]["cost_complete"] is True


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_a_quiet_message_goes_cold_and_still_counts_and_dedupes(
        decoder: Decoder, tmp_path: object, store: str) -> None:
    """A message with no event for longer than the lateness leaves the heap; an open
    two days later brings it back: one unique open, in the open's own bucket, and a
    tracker's retry of an event of the cold message is a duplicate."""
    from pathlib import Path

    from streams.kpis.email import EmailPartition, decode_message, encode_message
    from streams.kpis.visitors import MESSAGE_PREFIX
    from streams.local import LocalPipeline
    from streams.statestore import ColdView, RocksStore
    from tests.unit.kpitables import FAR, records

    lp = LocalPipeline(partitions=1)
    if store == "rocksdb":
        lp.email[0] = EmailPartition(lp.email[0].cfg, ColdView(
            RocksStore(Path(str(tmp_path)) / "s", 1 << 20), MESSAGE_PREFIX))
    sent = em("m1", "sent", "2026-11-21T10:00:00Z")
    lp.feed(records(decoder, [sent, em("m1", "delivered", "2026-11-21T10:00:05Z")]))
    lp.feed(records(decoder, [em("m2", "sent", "2026-11-23T09:00:00Z")]))  # time moves
    lp.expire()
    mail = lp.email[0]
    assert "m1" not in mail.messages and mail.cold.count() >= 1
    lp.feed(records(decoder, [em("m1", "open", "2026-11-23T09:30:00Z"), sent]))
    snaps = lp.finish(FAR)
    h = "2026-11-23T09:00:00Z"
    assert value(snaps, "email_open_rate", "1h", h) is None  # delivered elsewhere
    assert snap(snaps, "email_open_rate", "1d", "2026-11-23T00:00:00Z")["numerator"] == 1
    assert value(snaps, "emails_sent", "1d", "2026-11-21T00:00:00Z") == 1  # not twice
    assert lp.counts[("email_event", "duplicate")] == 1
    evs = [(1, "e1", "open", True), (2, "e2", "weird_type", False)]
    assert decode_message(encode_message("nl", evs)) == ("nl", evs)
