"""Web KPIs against tables computed by hand (kpi-catalogue section 4)."""

from __future__ import annotations

import pytest

from streams.events import Decoder
from streams.kpis.catalogue import Modes
from tests.conftest import event
from tests.unit.kpitables import form, pv, run_pipeline, snap, value

H = "2026-11-23T10:00:00Z"  # the hour of the scenario
D = "2026-11-23T00:00:00Z"

# Visitor A (desktop): paid search landing at 10:00 (5 s), pricing at 10:02 (20 s),
#   demo request at 10:03                       -> session S1: 2 pages, 180 s, converted
# Visitor B (mobile): Google -> blog at 10:10, read 40 s  -> S2: 1 page, engaged, bounce*
#   comes back direct at 10:50 for 3 s (40 min gap)      -> S3: 1 page, bounce
# Visitor C (tablet): direct product page at 10:20, 2 s   -> S4: 1 page, bounce
#   (*a bounce under single_page, not under not_engaged)
SCENARIO = [
    pv("A", "2026-11-23T10:00:00Z", page_type="landing", utm_medium="cpc", utm_source="g",
       device="desktop", engaged_ms=5000),
    pv("A", "2026-11-23T10:02:00Z", page_type="pricing", device="desktop", engaged_ms=20000),
    form("A", "cA", "2026-11-23T10:03:00Z"),
    pv("B", "2026-11-23T10:10:00Z", page_type="blog", referrer="https://www.google.com/",
       device="mobile", engaged_ms=40000),
    pv("C", "2026-11-23T10:20:00Z", page_type="product", device="tablet", engaged_ms=2000),
    pv("B", "2026-11-23T10:50:00Z", page_type="blog", device="mobile", engaged_ms=3000),
]

TOTAL = {  # kpi -> (value, numerator, denominator)
    "pageviews": (5, 5, 1),
    "sessions": (4, 4, 1),
    "users": (3, 3, 1),
    "new_users": (3, 3, 1),
    "returning_users": (0, 0, 1),
    "bounce_rate": (0.75, 3, 4),
    "engagement_rate": (0.5, 2, 4),
    "pages_per_session": (1.25, 5, 4),
    "avg_session_duration_s": (45.0, 180, 4),
    "conversions": (1, 1, 1),
    "session_conversion_rate": (0.25, 1, 4),
    "visitor_conversion_rate": (1 / 3, 1, 3),
    "leads": (1, 1, 1),
}


@pytest.fixture
def snaps(decoder: Decoder) -> dict:
    return run_pipeline(decoder, SCENARIO)


@pytest.mark.parametrize("kpi", sorted(TOTAL))
@pytest.mark.parametrize("bucket,start", [("1h", H), ("1d", D)])
def test_totals(snaps: dict, kpi: str, bucket: str, start: str) -> None:
    doc = snap(snaps, kpi, bucket, start)
    want_value, want_num, want_den = TOTAL[kpi]
    assert doc["value"] == pytest.approx(want_value)
    assert (doc["numerator"], doc["denominator"]) == (want_num, want_den)
    assert doc["final"] is True


@pytest.mark.parametrize(("kpi", "dim", "want"), [
    ("sessions", "channel=paid_search", 1),
    ("sessions", "channel=organic_search", 1),
    ("sessions", "channel=direct", 2),
    ("pageviews", "channel=paid_search", 2),
    ("pageviews", "channel=direct", 2),
    ("users", "channel=direct", 2),  # B (second visit) and C
    ("users", "device=mobile", 1),  # B, twice
    ("sessions", "device=mobile", 2),
    ("bounce_rate", "channel=paid_search", 0.0),
    ("bounce_rate", "channel=direct", 1.0),
    ("bounce_rate", "device=mobile", 1.0),
    ("engagement_rate", "device=mobile", 0.5),
    ("avg_session_duration_s", "device=desktop", 180.0),
    ("conversions", "goal=demo_request", 1),
    ("conversions", "channel=paid_search", 1),
    ("session_conversion_rate", "page_type=landing", 1.0),
    ("session_conversion_rate", "page_type=blog", 0.0),
    ("leads", "channel=paid_search", 1),  # first touch: the paid search session
    ("visitor_conversion_rate", "channel=paid_search", 1.0),
    ("visitor_conversion_rate", "page_type=landing", 1.0),
])
def test_by_dim(snaps: dict, kpi: str, dim: str, want: float) -> None:
    assert value(snaps, kpi, "1h", H, dim) == pytest.approx(want)


def test_web_dims_are_single_dimensions(snaps: dict) -> None:
    dims = {tuple(d["dims"]) for d in snaps.values()}
    assert all(len(d) <= 1 for d in dims)
    assert not any(k.startswith("pageviews|") and "|goal=" in k for k in snaps)


def test_bounce_mode_not_engaged(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, SCENARIO, modes=Modes(bounce="not_engaged"))
    doc = snap(snaps, "bounce_rate", "1h", H)
    # GA4: 1 - engagement rate; B's 40 s read is engaged, so no longer a bounce
    assert (doc["value"], doc["numerator"], doc["denominator"]) == (0.5, 2, 4)
    assert doc["mode"] == {"bounce": "not_engaged"}


def test_snapshot_names_its_modes(snaps: dict) -> None:
    assert snap(snaps, "bounce_rate", "1h", H)["mode"] == {"bounce": "single_page"}
    assert snap(snaps, "leads", "1h", H)["mode"] == {"attribution": "first_touch"}
    assert snap(snaps, "pageviews", "1h", H)["mode"] == {}


def test_minute_buckets_and_empty_denominator(snaps: dict) -> None:
    assert value(snaps, "pageviews", "1m", "2026-11-23T10:02:00Z") == 1
    # the 10:02 minute has a page view but no session starts: rates are null, not 0
    doc = snap(snaps, "bounce_rate", "1m", "2026-11-23T10:02:00Z")
    assert doc["value"] is None and doc["denominator"] == 0
    doc = snap(snaps, "avg_session_duration_s", "1m", "2026-11-23T10:02:00Z")
    assert doc["value"] is None


def test_returning_users_next_day(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, [*SCENARIO, pv("A", "2026-11-24T09:00:00Z",
                                                 device="desktop")])
    day2 = "2026-11-24T00:00:00Z"
    assert value(snaps, "users", "1d", day2) == 1
    assert value(snaps, "new_users", "1d", day2) == 0
    assert value(snaps, "returning_users", "1d", day2) == 1


def test_late_bridging_page_view_merges_sessions(decoder: Decoder) -> None:
    # B's two visits are 40 min apart; a page view at 10:30 arrives last and bridges them
    # (allowed lateness 30 min, so the page view 20 min behind the watermark counts)
    bridge = pv("B", "2026-11-23T10:30:00Z", page_type="pricing", device="mobile")
    snaps = run_pipeline(decoder, [*SCENARIO, bridge], lateness_ms=1_800_000)
    assert value(snaps, "sessions", "1h", H) == 3
    assert value(snaps, "sessions", "1h", H, "channel=direct") == 1  # only C now
    assert value(snaps, "sessions", "1h", H, "channel=organic_search") == 1
    assert value(snaps, "pageviews", "1h", H, "channel=organic_search") == 3
    # the merged session has 3 pages over 40 minutes
    assert value(snaps, "avg_session_duration_s", "1h", H, "device=mobile") == 2400.0
    assert value(snaps, "bounce_rate", "1h", H) == pytest.approx(1 / 3)


def test_form_outside_any_session(decoder: Decoder) -> None:
    # a call-click from an ad extension, without a page view: a conversion and a lead,
    # but not in any session rate
    call = form("Z", "cZ", "2026-11-23T10:40:00Z", goal="call_click", utm_medium="cpc")
    snaps = run_pipeline(decoder, [*SCENARIO, call])
    assert value(snaps, "conversions", "1h", H) == 2
    assert value(snaps, "conversions", "1h", H, "channel=paid_search") == 2
    assert value(snaps, "session_conversion_rate", "1h", H) == 0.25
    assert value(snaps, "leads", "1h", H) == 2
    assert value(snaps, "leads", "1h", H, "channel=paid_search") == 2
    assert value(snaps, "conversions", "1h", H, "device=unknown") == 1  # no session


def test_one_contact_one_lead(decoder: Decoder) -> None:
    again = form("A", "cA", "2026-11-23T10:05:00Z", goal="contact")
    newsletter = form("B", "cB", "2026-11-23T10:11:00Z", goal="newsletter_signup")
    purchase = form("C", "cC", "2026-11-23T10:21:00Z", goal="purchase")
    snaps = run_pipeline(decoder, [*SCENARIO, again, newsletter, purchase])
    assert value(snaps, "conversions", "1h", H) == 4
    assert value(snaps, "leads", "1h", H) == 2  # cA once, cB; a purchase is not a lead goal


def test_session_split_at_midnight_and_on_campaign(decoder: Decoder) -> None:
    from streams.kpis.web import WebConfig

    night = [pv("N", "2026-11-23T23:50:00Z"), pv("N", "2026-11-24T00:05:00Z")]
    camp = [pv("K", "2026-11-23T12:00:00Z", utm_medium="email", utm_campaign="a"),
            pv("K", "2026-11-23T12:05:00Z", utm_medium="email", utm_campaign="b")]
    plain = run_pipeline(decoder, night + camp)
    split = run_pipeline(decoder, night + camp, web=WebConfig(split_midnight=True,
                                                               split_campaign=True))
    day1, day2 = "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"
    assert value(plain, "sessions", "1d", day1) == 2 and "sessions|1d|" + day2 + "|" not in \
        {k for k, v in plain.items() if v["numerator"]}
    assert value(split, "sessions", "1d", day1) == 3
    assert value(split, "sessions", "1d", day2) == 1


def test_engagement_time_is_max_of_duration_and_reported_time(decoder: Decoder) -> None:
    # one page read for 9 s: not engaged; a one-page session with a form: engaged
    evs = [pv("E", "2026-11-23T15:00:00Z", engaged_ms=9000),
           pv("F", "2026-11-23T15:00:00Z", engaged_ms=1000),
           form("F", "cF", "2026-11-23T15:00:05Z", goal="newsletter_signup")]
    snaps = run_pipeline(decoder, evs)
    h = "2026-11-23T15:00:00Z"
    assert snap(snaps, "engagement_rate", "1h", h)["numerator"] == 1
    assert snap(snaps, "bounce_rate", "1h", h)["numerator"] == 1  # E only


def test_unknown_device_and_extra_fields(decoder: Decoder) -> None:
    snaps = run_pipeline(decoder, [event("page_view", visitor_id="U", device=None,
                                         occurred_at="2026-11-23T16:00:00Z", x_extra=1)])
    assert value(snaps, "sessions", "1h", "2026-11-23T16:00:00Z", "device=unknown") == 1


def test_new_users_count_in_the_channel_and_device_of_their_first_session(
        decoder: Decoder) -> None:
    """A visitor new at 08:00 via paid search on desktop, back at 09:30 direct on mobile:
    one new user (search, desktop) in the hour and the day; in the day it is a user
    of both channels and devices, returning in direct and mobile."""
    events = [pv("a", "2026-11-23T08:00:00Z", utm_medium="cpc", device="desktop"),
              pv("a", "2026-11-23T09:30:00Z", device="mobile"),
              pv("b", "2026-11-23T09:40:00Z", device="mobile")]  # new, direct, mobile
    snaps = run_pipeline(decoder, events)
    day = "2026-11-23T00:00:00Z"
    table = {  # dim -> (users, new_users, returning_users) for the day
        "": (2, 2, 0),
        "channel=paid_search": (1, 1, 0), "channel=direct": (2, 1, 1),
        "device=desktop": (1, 1, 0), "device=mobile": (2, 1, 1),
    }
    for d, want in table.items():
        got = tuple(value(snaps, k, "1d", day, d)
                    for k in ("users", "new_users", "returning_users"))
        assert got == want, (d, got)
    # the 09:00 hour: a came back (returning), b is new
    assert value(snaps, "new_users", "1h", "2026-11-23T09:00:00Z", "channel=direct") == 1
    assert value(snaps, "returning_users", "1h", "2026-11-23T09:00:00Z",
                 "device=mobile") == 1


def test_visitor_conversion_rate_by_device(decoder: Decoder) -> None:
    """Leads by the device of the session the form belongs to (else unknown) over the
    users of that device."""
    events = [pv("m1", "2026-11-23T10:00:00Z", device="mobile"),
              form("m1", "c-m1", "2026-11-23T10:02:00Z"),
              pv("m2", "2026-11-23T10:05:00Z", device="mobile"),
              pv("d1", "2026-11-23T10:10:00Z", device="desktop"),
              pv("d2", "2026-11-23T10:11:00Z", device="desktop"),
              form("d2", "c-d2", "2026-11-23T10:12:00Z"),
              form("d3", "c-d3", "2026-11-23T10:20:00Z")]  # no session: unknown
    snaps = run_pipeline(decoder, events)
    h = "2026-11-23T10:00:00Z"
    doc = snap(snaps, "visitor_conversion_rate", "1h", h, "device=mobile")
    assert (doc["value"], doc["numerator"], doc["denominator"]) == (0.5, 1, 2)
    assert value(snaps, "visitor_conversion_rate", "1h", h, "device=desktop") == 0.5
    doc = snap(snaps, "visitor_conversion_rate", "1h", h, "device=unknown")
    assert (doc["numerator"], doc["denominator"], doc["value"]) == (1, 0, None)
    assert value(snaps, "visitor_conversion_rate", "1h", h) == 3 / 4
    assert f"leads|1h|{h}|device=mobile" not in snaps  # leads stay by total/channel
