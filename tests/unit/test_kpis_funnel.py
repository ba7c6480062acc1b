"""Funnel, revenue and customer KPIs against hand-computed tables (sections 7 and 8)."""

from __future__ import annotations

import pytest

from streams.events import Decoder
from streams.kpis.catalogue import Modes
from tests.conftest import event
from tests.unit.kpitables import form, pv, records, run_pipeline, snap, value

D1, D2 = "2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z"


def deal(deal_id: str, contact: str | None, customer: str, stage: str, at: str,
         kind: str = "new_business", amount: float = 0.0, created: str = "2026-11-23T10:05:00Z",
         **kw: object) -> dict:
    return event("deal_update", deal_id=deal_id, contact_id=contact, customer_id=customer,
                 kind=kind, stage=stage, amount=amount, currency="EUR", created_at=created,
                 occurred_at=at, **kw)


def sp(cost: float, start: str, end: str, channel: str = "paid_search") -> dict:
    return event("spend", channel=channel, campaign="c", category="media", cost=cost,
                 currency="EUR", impressions=0, clicks=0, period_start=start, period_end=end,
                 occurred_at=end)


# Day 1: two customers already won (no known lead: unattributed).
# Day 2: three leads (cA via paid search, cB via Google, cC direct);
#   dA (cA): mql 10:10, sal 11:00, sql 12:00, opportunity 13:00, won 14:00 at 1000 (gp 600)
#   dB (cB): mql 10:30, sql 11:30 (skips sal), lost 12:30
#   dX: a renewal of cu2 reaching opportunity at 12:00 (its contact has no lead)
#   r1: cu1's renewal, lost at 16:00: cu1 churns
#   spend: 300 on paid search, all of day 2
SCENARIO = sorted([
    deal("d1", "c1", "cu1", "won", "2026-11-22T12:00:00Z", amount=500.0,
         created="2026-11-20T09:00:00Z"),
    deal("d2", "c2", "cu2", "won", "2026-11-22T13:00:00Z", amount=500.0,
         created="2026-11-21T09:00:00Z"),
    pv("A", "2026-11-23T09:50:00Z", utm_medium="cpc"),
    form("A", "cA", "2026-11-23T10:00:00Z"),
    pv("B", "2026-11-23T10:15:00Z", referrer="https://www.google.com/"),
    form("B", "cB", "2026-11-23T10:20:00Z", goal="contact"),
    pv("C", "2026-11-23T10:38:00Z"),
    form("C", "cC", "2026-11-23T10:40:00Z", goal="inquiry"),
    deal("dA", "cA", "cuA", "mql", "2026-11-23T10:10:00Z"),
    deal("dA", "cA", "cuA", "sal", "2026-11-23T11:00:00Z"),
    deal("dA", "cA", "cuA", "sql", "2026-11-23T12:00:00Z"),
    deal("dA", "cA", "cuA", "opportunity", "2026-11-23T13:00:00Z"),
    deal("dA", "cA", "cuA", "won", "2026-11-23T14:00:00Z", amount=1000.0, gross_profit=600.0),
    deal("dB", "cB", "cuB", "mql", "2026-11-23T10:30:00Z"),
    deal("dB", "cB", "cuB", "sql", "2026-11-23T11:30:00Z"),
    deal("dB", "cB", "cuB", "lost", "2026-11-23T12:30:00Z"),
    deal("dX", "cZ", "cu2", "opportunity", "2026-11-23T12:00:00Z", kind="renewal"),
    deal("r1", "cR", "cu1", "lost", "2026-11-23T16:00:00Z", kind="renewal"),
    sp(300.0, "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"),
], key=lambda e: e["occurred_at"])

DAY2 = {  # kpi -> (value, numerator, denominator)
    "leads": (3, 3, 1),
    "mqls": (2, 2, 1), "sals": (1, 1, 1), "sqls": (2, 2, 1), "opportunities": (2, 2, 1),
    "won_deals": (1, 1, 1), "lost_deals": (2, 2, 1),
    "lead_to_mql_rate": (2 / 3, 2, 3),
    "lead_to_customer_rate": (1 / 3, 1, 3),  # of cA, cB, cC only cA has a won deal
    "mql_to_sql_rate": (1.0, 2, 2),
    "sql_to_opportunity_rate": (0.5, 1, 2),
    "win_rate": (1 / 3, 1, 3),
    "revenue": (1000.0, 1000.0, 1), "new_revenue": (1000.0, 1000.0, 1),
    "avg_revenue_per_sale": (1000.0, 1000.0, 1), "gross_profit": (600.0, 600.0, 1),
    "avg_sales_cycle_days": (235 / 1440, 235 / 1440, 1),  # 10:05 -> 14:00
    "cost_per_opportunity": (150.0, 300.0, 2),
    "cost_per_sale": (300.0, 300.0, 1),  # one won deal
    "cost_per_acquisition": (100.0, 300.0, 3),  # three form submits
    "revenue_growth": (0.0, 0.0, 1000.0),  # day 1 also won 500 + 500
    "new_customers": (1, 1, 1), "cac": (300.0, 300.0, 1),
    "roas": (1000 / 300, 1000.0, 300.0),
    "marketing_roi": (1.0, 300.0, 300.0),  # (600 - 300) / 300 on gross profit
    "active_customers": (2, 2, 1),  # cu1 and cu2, then cuA in, cu1 out
    "customer_retention_rate": (0.5, 1, 2),  # (E 2 - N 1) / S 2
    "churn_rate": (0.5, 1, 2),
    # (600 / 2 active) x 30 days  /  (1 churned / 2 active) x 30 days
    "ltv": (600.0, 9000.0, 15.0),
    "ltv_to_cac": (2.0, 600.0, 300.0),
}


@pytest.fixture(scope="module")
def snaps() -> dict:
    from streams.settings import load_settings

    return run_pipeline(Decoder.from_settings(load_settings({})), SCENARIO)


@pytest.mark.parametrize("kpi", sorted(DAY2))
def test_day_totals(snaps: dict, kpi: str) -> None:
    doc = snap(snaps, kpi, "1d", D2)
    want = DAY2[kpi]
    got = (doc["value"], doc["numerator"], doc["denominator"])
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6), kpi
    assert doc["final"] is True
    # conversions are counted in the session's channel, not credited by a model
    assert doc["mode"] == ({} if kpi == "cost_per_acquisition"
                           else {"attribution": "first_touch"})


@pytest.mark.parametrize(("kpi", "channel", "want"), [
    ("leads", "paid_search", 1), ("leads", "organic_search", 1), ("leads", "direct", 1),
    ("mqls", "paid_search", 1), ("mqls", "organic_search", 1),
    ("opportunities", "unattributed", 1),  # the renewal's contact has no lead
    ("won_deals", "paid_search", 1), ("revenue", "paid_search", 1000.0),
    ("new_customers", "paid_search", 1), ("cac", "paid_search", 300.0),
    ("roas", "paid_search", 1000 / 300), ("win_rate", "organic_search", 0.0),
    ("lost_deals", "unattributed", 1), ("churn_rate", "unattributed", 0.5),
])
def test_by_channel(snaps: dict, kpi: str, channel: str, want: float) -> None:
    assert value(snaps, kpi, "1d", D2, f"channel={channel}") == pytest.approx(want)


def test_day_one_customers(snaps: dict) -> None:
    assert value(snaps, "new_customers", "1d", D1) == 2
    doc = snap(snaps, "customer_retention_rate", "1d", D1)
    assert doc["value"] is None and doc["denominator"] == 0  # nobody active at its start
    assert value(snaps, "active_customers", "1d", D1) == 2
    assert snap(snaps, "ltv", "1d", D1)["value"] is None  # no churn: undefined


def test_empty_denominators_are_null(snaps: dict) -> None:
    # the hour dB was lost: a close but no win and no spend ... and no opportunity
    for kpi in ("avg_revenue_per_sale", "avg_sales_cycle_days"):
        doc = snap(snaps, kpi, "1h", "2026-11-23T12:00:00Z")
        assert doc["value"] is None and doc["denominator"] == 0


def test_roi_is_on_gross_profit_not_revenue(decoder: Decoder) -> None:
    # the README's example: revenue 1000, gross profit 600, spend 300
    on_gp = value(run_pipeline(decoder, SCENARIO), "marketing_roi", "1d", D2)
    assert on_gp == pytest.approx((600 - 300) / 300)
    no_margin = [e if e.get("stage") != "won" or e["deal_id"] != "dA"
                 else {**e, "gross_profit": None} for e in SCENARIO]
    on_revenue = value(run_pipeline(decoder, no_margin), "marketing_roi", "1d", D2)
    assert on_revenue == pytest.approx((1000 - 300) / 300)  # default margin 1.0
    half = value(run_pipeline(decoder, no_margin, default_margin=0.5), "marketing_roi", "1d",
                 D2)
    assert half == pytest.approx((500 - 300) / 300)


def test_worked_examples(decoder: Decoder) -> None:
    # 30 new customers for 1,000 of spend: CAC 33.33; 30 sales at 500: revenue 15,000
    evs = [deal(f"n{i}", f"k{i}", f"cust{i}", "won", f"2026-11-23T10:{i:02d}:00Z",
                amount=500.0) for i in range(30)]
    evs.append(sp(1000.0, "2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z"))
    snaps = run_pipeline(decoder, evs)
    h = "2026-11-23T10:00:00Z"
    assert value(snaps, "cac", "1h", h) == pytest.approx(33.333333, abs=1e-6)
    assert value(snaps, "revenue", "1h", h) == 15_000.0
    assert value(snaps, "won_deals", "1h", h) == 30


def test_revenue_under_every_model(decoder: Decoder) -> None:
    # visitor A touched paid search, then email; the lead and the won deal follow it
    evs = sorted([
        pv("A", "2026-11-20T09:00:00Z", utm_medium="cpc"),
        pv("A", "2026-11-23T09:00:00Z", utm_medium="email"),
        form("A", "cA", "2026-11-23T09:05:00Z"),
        deal("dA", "cA", "cuA", "won", "2026-11-23T10:00:00Z", amount=1000.0),
    ], key=lambda e: e["occurred_at"])
    from streams.local import LocalPipeline
    from tests.unit.kpitables import FAR

    lp = LocalPipeline()
    lp.feed(records(decoder, evs))
    lp.finish(FAR)
    want = {"first_touch": {"paid_search": 1000.0}, "last_touch": {"email": 1000.0},
            "linear": {"paid_search": 500.0, "email": 500.0}}
    for model, by_channel in want.items():
        docs = [d for m in lp.merge for d in m.view(
            kpis={"revenue"}, windows={"1d"}, modes=Modes(attribution=model))]
        got = {d["dims"]["channel"]: d["value"] for d in docs if d["dims"] and d["value"]}
        assert got == pytest.approx(by_channel), model
        assert all(d["mode"] == {"attribution": model} for d in docs)


def test_impossible_transition_and_backwards_moves(decoder: Decoder) -> None:
    from streams.local import LocalPipeline
    from tests.unit.kpitables import FAR

    evs = [deal("dQ", "cQ", "cuQ", "mql", "2026-11-23T09:00:00Z"),
           deal("dQ", "cQ", "cuQ", "sql", "2026-11-23T09:30:00Z"),
           deal("dQ", "cQ", "cuQ", "mql", "2026-11-23T09:40:00Z"),  # backwards: recorded
           deal("dQ", "cQ", "cuQ", "lost", "2026-11-23T10:00:00Z"),
           deal("dQ", "cQ", "cuQ", "won", "2026-11-23T10:05:00Z", amount=100.0)]
    for order in (evs, list(reversed(evs))):
        lp = LocalPipeline(partitions=1, lateness_ms=3_600_000)
        lp.feed(records(decoder, order))
        snaps = lp.finish(FAR)
        h9, h10 = "2026-11-23T09:00:00Z", "2026-11-23T10:00:00Z"
        assert value(snaps, "mqls", "1h", h9) == 1  # entered once
        assert value(snaps, "lost_deals", "1h", h10) == 1
        assert value(snaps, "won_deals", "1h", h10) == 0  # won after lost does not count
        assert [u[0][2] for u in lp.rejected_updates] == ["won"]  # the later close


def test_a_close_that_turns_out_lost_takes_the_new_customer_back(decoder: Decoder) -> None:
    """The "won" arrives first and makes a new customer; the earlier "lost" arrives
    later (on time) and is the deal's effective close: the customer stage must hear
    it and drop the new customer, as if the updates had come in order."""
    from streams.local import LocalPipeline
    from tests.unit.kpitables import FAR

    won = deal("dW", "cW", "cuW", "won", "2026-11-23T10:05:00Z", amount=100.0)
    lost = deal("dW", "cW", "cuW", "lost", "2026-11-23T10:00:00Z")
    for batches in ([[won], [lost]], [[lost], [won]], [[won, lost]]):
        lp = LocalPipeline(partitions=1, lateness_ms=3_600_000)
        for batch in batches:
            lp.feed(records(decoder, batch))
        snaps = lp.finish(FAR)
        got = snaps.get("new_customers|1h|2026-11-23T10:00:00Z|")
        assert got is None or got["value"] == 0, [b[0]["stage"] for b in batches]


# revenue_growth: day 1 wins 1000 (12:00), day 2 wins 1500 (00:01) and 100 (00:03);
# then a win of 500 at 23:58 on day 1 arrives late, after day 2 was last changed
GROWTH = [
    deal("g1", "c1", "cu1", "won", "2026-11-22T12:00:00Z", amount=1000.0),
    deal("g2", "c2", "cu2", "won", "2026-11-23T00:01:00Z", amount=1500.0),
    deal("g3", "c3", "cu3", "won", "2026-11-23T00:03:00Z", amount=100.0),
    deal("g4", "c4", "cu4", "won", "2026-11-22T23:58:00Z", amount=500.0),
]


def test_revenue_growth_against_the_period_before() -> None:
    from streams.local import LocalPipeline
    from streams.settings import load_settings
    from tests.unit.kpitables import FAR

    lp = LocalPipeline()
    recs = records(Decoder.from_settings(load_settings({})), GROWTH)
    lp.feed(recs[:3])
    first = lp.emit()
    # day 2 against day 1 before the late win: (1600 - 1000) / 1000
    doc = first[f"revenue_growth|1d|{D2}|"]
    assert (doc["value"], doc["numerator"], doc["denominator"]) == pytest.approx(
        (0.6, 600.0, 1000.0))
    lp.feed(recs[3:])
    second = lp.emit()
    # day 2's cells did not change, but their growth did: they are published again
    assert second[f"revenue_growth|1d|{D2}|"]["value"] == pytest.approx(100 / 1500)
    assert second[f"revenue_growth|1d|{D2}|"]["final"] is False
    snaps = {**first, **second, **lp.finish(FAR)}
    # the late win changed day 1, and day 2's growth is published again: 1600 vs 1500
    doc = snap(snaps, "revenue_growth", "1d", D2)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == pytest.approx(
        (100 / 1500, 100.0, 1500.0))
    assert doc["final"] is True
    # day 1 has no day before it with revenue: null, never 0 or infinity
    doc = snap(snaps, "revenue_growth", "1d", D1)
    assert doc["value"] is None and doc["denominator"] == 0
    # hours: 00:00 of day 2 (1600) against 23:00 of day 1 (the late 500)
    assert value(snaps, "revenue_growth", "1h", "2026-11-23T00:00:00Z") == pytest.approx(
        (1600 - 500) / 500)


# Campaigns past the first touch. Visitor A: a paid-search session of campaign
# "spring" (20 Nov), then an e-mail session of "news" (23 Nov 09:00) and the lead cA;
# its deal dA is won at 1,000 (gross profit 400), cuA's first: a new customer. Visitor
# B comes direct (no campaign) and becomes lead cB. Spend: 200 on "spring", 50 on
# "news", 23 Nov. Under first_touch all of cA's credit is spring's; under linear half
# spring, half news; cB is in no campaign.
CAMPAIGNS = sorted([
    pv("A", "2026-11-20T09:00:00Z", utm_medium="cpc", utm_source="google",
       utm_campaign="spring"),
    pv("A", "2026-11-23T09:00:00Z", utm_medium="email", utm_source="newsletter",
       utm_campaign="news"),
    form("A", "cA", "2026-11-23T09:05:00Z"),
    pv("B", "2026-11-23T09:30:00Z"),
    form("B", "cB", "2026-11-23T09:35:00Z"),
    deal("dA", "cA", "cuA", "mql", "2026-11-23T09:40:00Z"),
    deal("dA", "cA", "cuA", "won", "2026-11-23T10:00:00Z", amount=1000.0,
         gross_profit=400.0),
    event("spend", channel="paid_search", campaign="spring", category="media", cost=200.0,
          currency="EUR", impressions=0, clicks=0, period_start=D2,
          period_end="2026-11-24T00:00:00Z", occurred_at="2026-11-24T00:00:00Z"),
    event("spend", channel="email", campaign="news", category="media", cost=50.0,
          currency="EUR", impressions=0, clicks=0, period_start=D2,
          period_end="2026-11-24T00:00:00Z", occurred_at="2026-11-24T00:00:00Z"),
], key=lambda e: e["occurred_at"])

CAMPAIGN_TABLE = {  # (model, campaign) -> kpi -> value on 23 Nov
    ("first_touch", "spring"): {
        "leads": 1, "mqls": 1, "won_deals": 1, "revenue": 1000, "new_customers": 1,
        "lead_to_mql_rate": 1.0, "cpl": 200, "cac": 200,
        "roas": 1000 / 200, "marketing_roi": (400 - 200) / 200},
    ("first_touch", "news"): {"cpl": None, "roas": 0.0, "marketing_roi": -1.0},
    ("linear", "spring"): {
        "leads": 0.5, "revenue": 500, "new_customers": 0.5, "cpl": 400, "cac": 400,
        "roas": 500 / 200, "marketing_roi": (200 - 200) / 200},
    ("linear", "news"): {
        "leads": 0.5, "revenue": 500, "new_customers": 0.5, "cpl": 100, "cac": 100,
        "roas": 500 / 50, "marketing_roi": (200 - 50) / 50},
}


@pytest.mark.parametrize("model", ["first_touch", "linear"])
def test_campaigns_are_credited_as_channels_are(decoder: Decoder, model: str) -> None:
    snaps = run_pipeline(decoder, CAMPAIGNS, attribution=model)
    for (m, campaign), table in CAMPAIGN_TABLE.items():
        if m != model:
            continue
        for kpi, want in table.items():
            got = value(snaps, kpi, "1d", D2, f"campaign={campaign}")
            assert got == (None if want is None else pytest.approx(want)), (kpi, campaign)
    # the channels and the total are what they were: campaigns are another dim
    assert value(snaps, "leads", "1d", D2) == 2
    assert value(snaps, "revenue", "1d", D2) == 1000
    # the direct lead has no campaign: campaign leads add up to the leads with one
    total = sum(d["value"] for k, d in snaps.items()
                if k.startswith(f"leads|1d|{D2}|campaign="))
    assert total == pytest.approx(1.0)
    # revenue under another model is re-read from the same cells, per campaign too
    from streams.local import LocalPipeline
    from tests.unit.kpitables import FAR

    lp = LocalPipeline(attribution=model)
    lp.feed(records(decoder, CAMPAIGNS))
    lp.finish(FAR)
    docs = [d for p in lp.merge for d in p.view(
        kpis={"revenue"}, windows={"1d"}, dims={"campaign=spring", "campaign=news"},
        modes=Modes(attribution="last_touch"))]
    assert {d["dims"]["campaign"]: d["value"] for d in docs} == {"news": 1000.0,
                                                                   "spring": 0.0}


def test_campaigns_never_become_prometheus_labels(decoder: Decoder) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from streams.local import LocalPipeline
    from streams.outputs.collector import KpiCollector
    from tests.unit.kpitables import FAR

    lp = LocalPipeline()
    lp.feed(records(decoder, CAMPAIGNS))
    lp.finish(FAR)
    registry = CollectorRegistry()
    registry.register(KpiCollector(lambda: lp.merge, Modes(), "EUR"))
    text = generate_latest(registry).decode()
    assert 'kpi="revenue"' in text and "spring" not in text and "campaign" not in text
