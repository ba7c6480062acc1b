"""Engagement KPIs (section 11) and calendar-month views against hand-computed tables."""

from __future__ import annotations

import pytest

from streams.events import Decoder
from streams.local import LocalPipeline
from tests.conftest import event
from tests.unit.kpitables import FAR, form, pv, records, run_pipeline, snap, value

H = "2026-11-23T10:00:00Z"


def eng(kind: str, at: str, channel: str = "organic_social", count: int | None = None,
        campaign: str = "launch", **kw: object) -> dict:
    fields = {"kind": kind, "occurred_at": at, "channel": channel, "campaign": campaign,
              "content_id": "post-1", **kw}
    if count is not None:
        fields["count"] = count
    return event("engagement", **fields)


DUP = eng("like", "2026-11-23T10:05:00Z", count=10)

ENGAGEMENTS = [
    eng("impression", "2026-11-23T10:00:00Z", count=600),
    eng("impression", "2026-11-23T10:10:00Z", channel="paid_social", count=400,
        campaign="ads"),
    DUP, DUP,  # a duplicate by event_id: counted once
    eng("like", "2026-11-23T10:06:00Z", count=20),
    eng("comment", "2026-11-23T10:07:00Z", count=5),
    eng("share", "2026-11-23T10:08:00Z"),  # count absent: 1
    eng("share", "2026-11-23T10:09:00Z", count=None),
    eng("share", "2026-11-23T10:09:30Z", count=3),
    eng("follow", "2026-11-23T10:20:00Z", count=7),
    eng("impression", "2026-11-23T10:30:00Z", channel="display", count=500),  # not social
    eng("like", "2026-11-23T10:31:00Z", channel="referral", count=9),  # not social
    eng("view", "2026-11-23T10:40:00Z", channel="organic_search", count=3,
        campaign="blog"),
    eng("download", "2026-11-23T10:41:00Z", channel="email", count=2, campaign="blog"),
    eng("flyer_distributed", "2026-11-23T10:00:00Z", channel="offline", count=400,
        campaign="fair"),
    eng("event_attendance", "2026-11-23T10:50:00Z", channel="offline", count=100,
        campaign="fair"),
    # two conference guests become leads, credited to offline by their form's channel
    # (the flyer's QR code lands them on the site with an explicit channel)
    pv("guest-1", "2026-11-23T10:51:00Z", channel="offline"),
    form("guest-1", "c-guest-1", "2026-11-23T10:52:00Z"),
    pv("guest-2", "2026-11-23T10:53:00Z", channel="offline"),
    form("guest-2", "c-guest-2", "2026-11-23T10:54:00Z"),
]

# kpi -> dim -> (value, numerator, denominator), for the 10:00 hour
TABLE = {
    "social_impressions": {"": (1000, 1000, 1), "channel=organic_social": (600, 600, 1),
                           "channel=paid_social": (400, 400, 1), "campaign=ads": (400, 400, 1)},
    "social_engagements": {"": (40, 40, 1), "channel=organic_social": (40, 40, 1),
                           "campaign=launch": (40, 40, 1)},
    "social_engagement_rate": {"": (0.04, 40, 1000),
                               "channel=organic_social": (40 / 600, 40, 600),
                               "channel=paid_social": (0.0, 0, 400)},
    "new_followers": {"": (7, 7, 1), "channel=organic_social": (7, 7, 1)},
    "content_views": {"": (5, 5, 1), "campaign=blog": (5, 5, 1),
                      "channel=organic_search": (3, 3, 1), "channel=email": (2, 2, 1)},
    "offline_reach": {"": (500, 500, 1), "channel=offline": (500, 500, 1),
                      "campaign=fair": (500, 500, 1)},
    "offline_response_rate": {"": (2 / 500, 2, 500), "channel=offline": (2 / 500, 2, 500)},
}


@pytest.mark.parametrize(("kpi", "dim"), [(k, d) for k, dims in TABLE.items() for d in dims])
def test_engagement_table(decoder: Decoder, kpi: str, dim: str) -> None:
    snaps = run_pipeline(decoder, ENGAGEMENTS)
    doc = snap(snaps, kpi, "1h", H, dim)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == \
        pytest.approx(TABLE[kpi][dim])
    assert doc["final"] is True


def test_empty_denominators_are_null(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, ENGAGEMENTS)
    # offline has reach but no social impressions: the rate exists and is null
    doc = snap(snaps, "social_engagement_rate", "1h", H, "channel=offline")
    assert (doc["value"], doc["denominator"]) == (None, 0)
    # a channel with leads but no offline reach
    rows = run_pipeline(decoder, [pv("v", "2026-11-23T10:00:00Z"),
                                  form("v", "c", "2026-11-23T10:01:00Z", channel="referral"),
                                  eng("view", "2026-11-23T10:02:00Z", channel="referral")])
    assert value(rows, "offline_response_rate", "1h", H, "channel=referral") is None


def test_offline_response_rate_total_counts_only_leads_credited_to_offline(
        decoder: Decoder) -> None:
    # a third lead, from search: a lead of the hour, but no response to the flyers
    web_lead = [pv("searcher", "2026-11-23T10:30:00Z", referrer="https://www.google.com/"),
                form("searcher", "c-search", "2026-11-23T10:31:00Z")]
    snaps = run_pipeline(decoder, [*ENGAGEMENTS, *web_lead])
    assert value(snaps, "leads", "1h", H) == 3
    doc = snap(snaps, "offline_response_rate", "1h", H)
    assert (doc["value"], doc["numerator"], doc["denominator"]) == \
        pytest.approx((2 / 500, 2, 500))
    assert value(snaps, "offline_response_rate", "1h", H, "channel=offline") == \
        pytest.approx(2 / 500)


def test_late_engagement_changes_nothing(decoder: Decoder) -> None:
    late = eng("impression", "2026-11-23T09:00:00Z", count=999)  # 100 min behind
    snaps = run_pipeline(decoder, [*ENGAGEMENTS, eng("like", "2026-11-23T10:40:00Z"), late])
    assert value(snaps, "social_impressions", "1h", H) == 1000
    assert "social_impressions|1h|2026-11-23T09:00:00Z|" not in snaps


def test_day_and_rolling_views_add_up(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, ENGAGEMENTS)
    assert value(snaps, "social_impressions", "1d", "2026-11-23T00:00:00Z") == 1000


def test_rolling_view_is_one_key_moved_in_place(decoder: Decoder) -> None:
    lp = LocalPipeline()
    lp.feed(records(decoder, ENGAGEMENTS))
    snaps = lp.emit()
    # the watermark is in the 10:00 hour: the 24h view ends with it, starting at 11:00
    # the day before, under the key kpi|24h|dims (no window start in the key)
    doc = snaps["social_engagement_rate|24h|"]
    assert (doc["window_start"], doc["window_end"]) == ("2026-11-22T11:00:00Z",
                                                        "2026-11-23T11:00:00Z")
    assert doc["value"] == 0.04 and doc["revision"] == 0
    assert not [k for k in snaps if k.split("|")[1] == "24h" and k.count("|") != 2]
    # an hour later the same key holds the next window, with a higher revision
    lp.feed(records(decoder, [eng("like", "2026-11-23T11:20:00Z", count=60)]))
    doc = lp.emit()["social_engagement_rate|24h|"]
    assert doc["window_start"] == "2026-11-22T12:00:00Z" and doc["revision"] == 1
    assert doc["value"] == 0.1  # (40 + 60) / 1000
    # once the window has slid past every event, the view's keys are deleted
    snaps = lp.finish(FAR)
    assert "social_engagement_rate|24h|" not in snaps
    assert "social_engagement_rate|24h|channel=organic_social" not in snaps


# -- calendar months -------------------------------------------------------------------
def test_calendar_month_views_sum_their_days(decoder: Decoder) -> None:
    events = [
        eng("impression", "2026-10-01T00:00:00Z", count=10),
        eng("like", "2026-10-01T00:10:00Z", count=1),
        eng("like", "2026-10-31T23:00:00Z", count=2),
        eng("impression", "2026-10-31T23:59:59Z", count=30),  # last second of October
        eng("impression", "2026-11-01T00:00:00Z", count=100),  # November
        eng("like", "2026-11-01T00:05:00Z", count=50),
        pv("v1", "2026-10-15T12:00:00Z"), pv("v2", "2026-10-16T12:00:00Z"),
        pv("v3", "2026-11-02T12:00:00Z"),
    ]
    snaps = run_pipeline(decoder, events)
    oct_, nov = "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"
    doc = snap(snaps, "social_engagement_rate", "1mo", oct_)
    assert (doc["numerator"], doc["denominator"], doc["value"]) == (3, 40, 3 / 40)
    assert doc["window_end"] == nov and doc["final"] is True
    assert value(snaps, "social_engagement_rate", "1mo", nov) == 0.5
    assert value(snaps, "pageviews", "1mo", oct_) == 2  # every KPI has month views
    assert value(snaps, "pageviews", "1mo", nov) == 1
    assert snap(snaps, "pageviews", "1mo", nov)["window_end"] == "2026-12-01T00:00:00Z"
