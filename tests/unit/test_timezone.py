"""Buckets in the reporting time zone (kpi-catalogue section 3), against hand tables.

Every table below was written from the zone rules (tzdata), not from the code:
Europe/Warsaw springs forward on 2026-03-29 at 02:00 CET (01:00Z) to 03:00 CEST
and falls back on 2026-10-25 at 03:00 CEST (01:00Z) to 02:00 CET; Asia/Tehran is
+03:30 all year (no DST since 2022), Asia/Kathmandu +05:45, Asia/Kolkata +05:30.
"""

from __future__ import annotations

import random

import pytest

from streams.events import Decoder
from streams.kpis import buckets as B
from streams.settings import SettingsError, load_settings
from tests.conftest import event
from tests.unit.kpitables import FAR, ms, pv, records

HOUR = 3_600_000


def hours_of_day(zone: str, day_start_iso: str) -> list[str]:
    with B.zone(zone) as cal:
        start = ms(day_start_iso)
        end = cal.end(start, "1d")
        out, h = [], start
        while h < end:
            out.append(cal.iso(h))
            h = cal.end(h, "1h")
        assert h == end  # the hours tile the day exactly
        return out


def test_warsaw_spring_forward_day_has_23_hours_and_no_2am() -> None:
    hours = hours_of_day("Europe/Warsaw", "2026-03-29T00:00:00+01:00")
    assert len(hours) == 23
    assert hours[:4] == ["2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00",
                         "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]
    assert hours[-1] == "2026-03-29T23:00:00+02:00"
    with B.zone("Europe/Warsaw") as cal:
        t = ms("2026-03-29T12:00:00Z")
        assert cal.iso(cal.floor(t, "1d")) == "2026-03-29T00:00:00+01:00"
        assert cal.iso(cal.end(cal.floor(t, "1d"), "1d")) == "2026-03-30T00:00:00+02:00"
        # 00:59:59Z is 01:59:59 CET, 01:00Z is 03:00 CEST
        assert cal.iso(cal.floor(ms("2026-03-29T00:59:59Z"), "1h")) == \
            "2026-03-29T01:00:00+01:00"
        assert cal.iso(cal.floor(ms("2026-03-29T01:00:00Z"), "1h")) == \
            "2026-03-29T03:00:00+02:00"


def test_warsaw_fall_back_day_has_25_hours_and_two_2am_buckets() -> None:
    hours = hours_of_day("Europe/Warsaw", "2026-10-25T00:00:00+02:00")
    assert len(hours) == 25
    assert hours[1:5] == ["2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00",
                          "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]
    with B.zone("Europe/Warsaw") as cal:
        first = cal.floor(ms("2026-10-25T00:30:00Z"), "1h")  # 02:30 CEST
        second = cal.floor(ms("2026-10-25T01:30:00Z"), "1h")  # 02:30 CET
        assert (first, second) == (ms("2026-10-25T00:00:00Z"), ms("2026-10-25T01:00:00Z"))
        assert cal.end(first, "1h") == second


@pytest.mark.parametrize(("zone", "t", "hour", "day"), [
    # +03:30: the local hour starts at half past the UTC hour, the day at 20:30Z
    ("Asia/Tehran", "2026-06-10T01:10:00Z", "2026-06-10T04:00:00+03:30",
     "2026-06-10T00:00:00+03:30"),
    ("Asia/Tehran", "2026-06-10T20:29:59Z", "2026-06-10T23:00:00+03:30",
     "2026-06-10T00:00:00+03:30"),
    ("Asia/Tehran", "2026-06-10T20:30:00Z", "2026-06-11T00:00:00+03:30",
     "2026-06-11T00:00:00+03:30"),
    # +05:45: hours start at a quarter past the UTC hour, the day at 18:15Z
    ("Asia/Kathmandu", "2026-06-10T01:10:00Z", "2026-06-10T06:00:00+05:45",
     "2026-06-10T00:00:00+05:45"),
    ("Asia/Kathmandu", "2026-06-10T18:14:59Z", "2026-06-10T23:00:00+05:45",
     "2026-06-10T00:00:00+05:45"),
    ("Asia/Kathmandu", "2026-06-10T18:15:00Z", "2026-06-11T00:00:00+05:45",
     "2026-06-11T00:00:00+05:45"),
    ("Asia/Kolkata", "2026-06-10T18:29:00Z", "2026-06-10T23:00:00+05:30",
     "2026-06-10T00:00:00+05:30"),
    ("UTC", "2026-06-10T18:29:00Z", "2026-06-10T18:00:00Z", "2026-06-10T00:00:00Z"),
])
def test_half_and_quarter_hour_zones(zone: str, t: str, hour: str, day: str) -> None:
    with B.zone(zone) as cal:
        assert cal.iso(cal.floor(ms(t), "1h")) == hour
        assert cal.iso(cal.floor(ms(t), "1d")) == day
        assert cal.end(cal.floor(ms(t), "1h"), "1h") - cal.floor(ms(t), "1h") == HOUR
        assert len(hours_of_day(zone, day)) == 24


@pytest.mark.parametrize(("week_start", "start", "end"), [
    (0, "2026-09-28T00:00:00+02:00", "2026-10-05T00:00:00+02:00"),  # ISO: Monday
    (6, "2026-09-27T00:00:00+02:00", "2026-10-04T00:00:00+02:00"),  # Sunday
])
def test_a_week_crossing_a_month(week_start: int, start: str, end: str) -> None:
    with B.zone("Europe/Warsaw", week_start) as cal:
        t = ms("2026-10-01T09:00:00+02:00")  # a Thursday
        assert cal.iso(cal.floor(t, "1w")) == start
        assert cal.iso(cal.end(cal.floor(t, "1w"), "1w")) == end
        assert len(B.view_members("1w", cal.end(cal.floor(t, "1w"), "1w"))) == 7
    with B.zone("UTC", week_start) as cal:  # the modular fast path agrees
        assert cal.iso(cal.floor(ms("2026-10-01T09:00:00Z"), "1w")) == \
            start.replace("+02:00", "Z")


def test_months_and_quarters_crossing_dst() -> None:
    with B.zone("Europe/Warsaw") as cal:
        october = cal.floor(ms("2026-10-15T12:00:00Z"), "1mo")
        assert cal.iso(october) == "2026-10-01T00:00:00+02:00"
        assert cal.iso(cal.end(october, "1mo")) == "2026-11-01T00:00:00+01:00"
        assert (cal.end(october, "1mo") - october) // HOUR == 31 * 24 + 1
        march = cal.floor(ms("2026-03-15T12:00:00Z"), "1mo")
        assert (cal.end(march, "1mo") - march) // HOUR == 31 * 24 - 1
        # the month's days are its local days, the DST day among them
        days = B.view_members("1mo", cal.end(october, "1mo"))
        assert len(days) == 31 and cal.iso(days[24]) == "2026-10-25T00:00:00+02:00"
        assert cal.iso(days[25]) == "2026-10-26T00:00:00+01:00"
        q4 = cal.floor(ms("2026-11-30T23:30:00Z"), "1q")  # 00:30 on 1 Dec local
        assert cal.iso(q4) == "2026-10-01T00:00:00+02:00"
        assert cal.iso(cal.end(q4, "1q")) == "2027-01-01T00:00:00+01:00"
        assert cal.iso(cal.floor(ms("2026-12-31T23:30:00Z"), "1q")) == \
            "2027-01-01T00:00:00+01:00"


def test_rolling_views_are_the_last_local_buckets() -> None:
    with B.zone("Europe/Warsaw") as cal:
        end = ms("2026-10-26T00:00:00+01:00")
        days = B.rolling_members("7d", end)
        assert cal.iso(days[0]) == "2026-10-19T00:00:00+02:00" and len(days) == 7
        assert B.view_start("7d", end) == days[0]
        assert end in B.rolling_ends_covering("7d", days[0])
        # 24 local hours are 24 real hours, across the repeated hour too
        assert B.view_start("24h", ms("2026-10-25T12:00:00Z")) == ms("2026-10-24T12:00:00Z")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Warsaw", "Asia/Tehran", "Asia/Kathmandu",
                                  "America/New_York", "Asia/Beirut", "America/Havana",
                                  "Pacific/Chatham", "Australia/Lord_Howe",
                                  "America/St_Johns"])
def test_buckets_tile_time_in_every_zone(zone: str) -> None:
    """Every instant is in exactly one bucket of each size, consecutive buckets touch."""
    rng = random.Random(zone)
    lo, hi = ms("2025-01-01T00:00:00Z"), ms("2028-01-01T00:00:00Z")
    with B.zone(zone, rng.choice([0, 6])) as cal:
        for _ in range(1500):
            t = rng.randrange(lo, hi)
            for size in ("1h", "1d", "1w", "1mo", "1q"):
                s = cal.floor(t, size)
                e = cal.end(s, size)
                assert s <= t < e, (size, cal.iso(t))
                assert cal.floor(s, size) == s and cal.floor(e, size) == e
                assert cal.floor(e - 1, size) == s
            day = cal.floor(t, "1d")
            assert 22 * HOUR <= cal.end(day, "1d") - day <= 26 * HOUR


def test_snapshots_carry_the_offset_and_the_zone(decoder: Decoder) -> None:
    from streams.local import LocalPipeline

    with B.zone("Europe/Warsaw"):
        lp = LocalPipeline(partitions=1)
        lp.feed(records(decoder, [
            pv("A", "2026-10-25T00:30:00Z"),  # 02:30 CEST
            pv("B", "2026-10-25T01:30:00Z"),  # 02:30 CET: another hour
            pv("C", "2026-10-25T22:30:00Z"),  # 23:30 CET, still the 25th
            event("spend", cost=25.0, impressions=0, clicks=0,
                  occurred_at="2026-10-26T00:00:00Z",
                  period_start="2026-10-24T22:00:00Z", period_end="2026-10-25T23:00:00Z"),
        ]))
        snaps = lp.finish(FAR)
    first = snaps["pageviews|1h|2026-10-25T02:00:00+02:00|"]
    second = snaps["pageviews|1h|2026-10-25T02:00:00+01:00|"]
    assert (first["value"], second["value"]) == (1, 1)
    assert first["window_end"] == "2026-10-25T02:00:00+01:00"
    assert first["tz"] == "Europe/Warsaw"
    day = snaps["pageviews|1d|2026-10-25T00:00:00+02:00|"]
    assert (day["value"], day["window_end"]) == (3, "2026-10-26T00:00:00+01:00")
    # the spend record covers the 25-hour local day exactly: €1 per local hour
    spend_day = snaps["spend|1d|2026-10-25T00:00:00+02:00|"]
    assert spend_day["value"] == 25.0 and spend_day["cost_complete"] is True
    assert snaps["spend|1h|2026-10-25T02:00:00+01:00|"]["value"] == 1.0
    month = snaps["pageviews|1mo|2026-10-01T00:00:00+02:00|"]
    assert month["window_end"] == "2026-11-01T00:00:00+01:00" and month["value"] == 3
    assert snaps["pageviews|1w|2026-10-19T00:00:00+02:00|"]["value"] == 3
    assert snaps["pageviews|1q|2026-10-01T00:00:00+02:00|"]["value"] == 3


def test_zone_settings_are_validated_with_a_hint() -> None:
    assert load_settings({"KPI_TIMEZONE": "Asia/Tehran"}).timezone == "Asia/Tehran"
    assert load_settings({"KPI_WEEK_START": "Sunday"}).week_start == 6
    with pytest.raises(SettingsError, match=r"KPI_TIMEZONE='Europe/Warsa'.*unknown time zone"):
        load_settings({"KPI_TIMEZONE": "Europe/Warsa"})
    with pytest.raises(SettingsError, match=r"did you mean Europe/Warsaw"):
        load_settings({"KPI_TIMEZONE": "warsaw"})
    with pytest.raises(SettingsError, match="KPI_WEEK_START"):
        load_settings({"KPI_WEEK_START": "tuesday"})
