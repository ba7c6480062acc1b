"""A simulated week of web, email, spend and funnel activity: the stages, run in
process, equal the independent batch recomputation under every attribution model."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.events import Decoder
from streams.kpis.attribution import MODELS
from streams.kpis.catalogue import Modes
from streams.kpis.merge import snapshot_key
from streams.local import LocalPipeline
from streams.schemas import parse_rfc3339_ms
from streams.settings import load_settings
from streams.simulate import DAY, Options, generate
from tests.batch import recompute

START = parse_rfc3339_ms("2026-11-16T00:00:00Z")


def simulated_week(start: int, opts: Options) -> tuple[list[dict[str, Any]], list[Any]]:
    """A week of simulated events from ``start``, and their decoded records."""
    decoder = Decoder.from_settings(load_settings({}))
    events = [e for batch in generate(start, start + 7 * DAY, opts) for e in batch]
    records = []
    for ev in events:
        recs, rejects = decoder.decode(orjson.dumps(ev), None, start + 400 * DAY)
        assert not rejects
        records += recs
    return events, records


@pytest.fixture(scope="module")
def week() -> list[Any]:
    events, records = simulated_week(START, Options(seed=4, sessions_per_day=500,
                                                    email_list=150, installed_base=60))
    assert sum(1 for e in events if e["event_type"] == "deal_update") > 50
    return records


@pytest.mark.parametrize("model", MODELS)
def test_week_matches_batch(week: list[Any], model: str) -> None:
    lp = LocalPipeline(attribution=model, modes=Modes(attribution=model), publish={"1d"})
    for i in range(0, len(week), 2000):
        lp.feed(week[i:i + 2000])
    snaps = lp.finish(START + 400 * DAY)
    want = recompute(week, model)
    compared, bad = 0, []
    for (kpi, size, start, dim), (num, den) in want.items():
        if size != "1d":
            continue
        doc = snaps.get(snapshot_key(kpi, size, start, dim))
        compared += 1
        if doc is None or abs(doc["numerator"] - num) > 1e-3 or \
                abs(doc["denominator"] - den) > 1e-3:
            bad.append((kpi, start, dim, doc and (doc["numerator"], doc["denominator"]),
                        (num, den)))
    assert not bad, bad[:10]
    funnel_keys = [k for k in want if k[0] in ("won_deals", "mqls", "revenue", "new_customers")]
    assert compared > 1000 and len(funnel_keys) > 20
    # campaigns past the first touch: leads, revenue and customers by utm_campaign
    campaign_keys = {k[0] for k in want if k[3].startswith("campaign=")}
    assert {"leads", "cpl", "mqls", "lead_to_mql_rate"} <= campaign_keys, sorted(campaign_keys)
    eng_keys = [k for k in want if k[0] in ("social_engagement_rate", "offline_reach",
                                            "content_views", "offline_response_rate")]
    assert len(eng_keys) > 20


# the week around Europe/Warsaw's autumn change (Sunday 2026-10-25 has 25 hours) and a
# week in Asia/Tehran (+03:30): local hours and days, against the batch's own zone rules
@pytest.fixture(scope="module")
def dst_week() -> list[Any]:
    return simulated_week(parse_rfc3339_ms("2026-10-21T00:00:00Z"),
                          Options(seed=8, sessions_per_day=400, email_list=120,
                                  installed_base=40))[1]


PRORATED_COUNTS = ("impressions", "clicks", "ad_ctr", "cpc", "cpm")


@pytest.mark.parametrize("zone", ["Europe/Warsaw", "Asia/Tehran"])
def test_local_week_matches_batch(dst_week: list[Any], zone: str) -> None:
    from streams.kpis import buckets as B

    with B.zone(zone):
        lp = LocalPipeline(publish={"1h", "1d"})
        for i in range(0, len(dst_week), 2000):
            lp.feed(dst_week[i:i + 2000])
        snaps = lp.finish(START + 400 * DAY)
        want = recompute(dst_week, "first_touch", tz=zone)
        keys = {(kpi, size, start, dim): snapshot_key(kpi, size, start, dim)
                for (kpi, size, start, dim) in want}
    bad, compared, long_days = [], 0, 0
    first, last = min(k[2] for k in want if k[1] == "1d"), max(k[2] for k in want)
    for k, (num, den) in want.items():
        if k[2] in (first,) or k[2] >= last - DAY or k[0] in ("users", "new_users",
                                                              "returning_users",
                                                              "visitor_conversion_rate"):
            continue  # edge days of the simulated range; distinct users are sketched
        doc = snaps.get(keys[k])
        compared += 1
        # impressions and clicks are prorated in whole units (shares telescope, see
        # kpis/spend.py); the batch splits them exactly. A local hour that holds half of
        # a UTC-aligned spend hour (Tehran) differs by less than one unit per spend
        # record in it (a few channels' records per hour in the total).
        tol = 4.0 if k[0] in PRORATED_COUNTS else 1e-3
        if doc is None or abs(doc["numerator"] - num) > tol or \
                abs(doc["denominator"] - den) > tol:
            bad.append((keys[k], doc and (doc["numerator"], doc["denominator"]), (num, den)))
        elif k[1] == "1d" and doc["window_start"] == "2026-10-25T00:00:00+02:00":
            long_days += 1
    assert not bad, bad[:10]
    assert compared > 3000
    assert long_days > 50 if zone == "Europe/Warsaw" else long_days == 0
