"""Watermarks, lateness, finality, restatement and expiry (kpi-catalogue section 3)."""

from __future__ import annotations

from typing import Any

import pytest

from streams.events import Decoder
from streams.kpis.buckets import bucket_end, floor, month_end, month_start, rolling_members
from streams.kpis.merge import MergeConfig, MergePartition
from streams.kpis.watermark import PartitionClock
from tests.unit.kpitables import FAR, ms, pv, records, run_pipeline, snap, value

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def test_bucket_arithmetic() -> None:
    t = ms("2026-11-23T10:37:12.345Z")
    assert floor(t, "1m") == ms("2026-11-23T10:37:00Z")
    assert floor(t, "1h") == ms("2026-11-23T10:00:00Z")
    assert floor(t, "1d") == ms("2026-11-23T00:00:00Z")
    assert bucket_end(floor(t, "1h"), "1h") == ms("2026-11-23T11:00:00Z")
    assert month_start(t) == ms("2026-11-01T00:00:00Z")
    assert month_end(ms("2026-12-01T00:00:00Z")) == ms("2027-01-01T00:00:00Z")
    end = ms("2026-11-23T11:00:00Z")
    assert rolling_members("24h", end)[0] == ms("2026-11-22T11:00:00Z")
    assert len(rolling_members("15m", end)) == 15


def test_exactly_the_allowed_lateness_is_on_time() -> None:
    clock = PartitionClock()
    clock.observe(1_000_000, wall_ms=0)
    assert not clock.is_late(1_000_000 - 600_000, 600_000)
    assert clock.is_late(1_000_000 - 600_001, 600_000)


def test_idle_partition_follows_the_wall_clock() -> None:
    clock = PartitionClock()
    clock.observe(5 * HOUR, wall_ms=1_000)
    assert not clock.idle_advance(wall_ms=20_000, idle_timeout_ms=30_000)
    assert clock.wm == 5 * HOUR
    assert clock.idle_advance(wall_ms=61_000, idle_timeout_ms=30_000)
    assert clock.wm == 5 * HOUR + 60_000  # advanced by all the time since the last event
    clock.observe(5 * HOUR + 1, wall_ms=62_000)  # an old event does not move it back
    assert clock.wm == 5 * HOUR + 60_000


def test_idle_time_counts_from_when_the_last_event_was_produced() -> None:
    clock = PartitionClock()
    # produced at wall 1 000 s, processed only at 1 600 s (a backlog): ten minutes late
    clock.observe(5 * HOUR, wall_ms=1_600_000, produced_ms=1_000_000)
    assert not clock.idle_advance(wall_ms=1_620_000, idle_timeout_ms=30_000)  # not idle yet
    assert clock.idle_advance(wall_ms=1_640_000, idle_timeout_ms=30_000)
    assert clock.wm == 5 * HOUR + 640_000  # the wall clock's lead, backlog included
    # a producer clock ahead of ours is not believed beyond now
    clock.observe(6 * HOUR, wall_ms=2_000_000, produced_ms=9_000_000)
    assert clock.last_prod == 2_000_000
    # after a restore the idle clock starts again: the worker was away, not the source
    restored = PartitionClock.from_json(clock.to_json()).restarted(3_000_000)
    assert (restored.last_wall, restored.last_prod) == (3_000_000, 3_000_000)
    assert PartitionClock.from_json([1, 1, 5]).last_prod is None  # state from before


def test_late_events_change_nothing_and_are_reported(decoder: Decoder) -> None:
    from streams.local import LocalPipeline

    lp = LocalPipeline(partitions=1)
    lp.feed(records(decoder, [pv("A", "2026-11-23T10:30:00Z"),
                              pv("B", "2026-11-23T10:19:59Z"),  # 10m01s behind: late
                              pv("C", "2026-11-23T10:20:00Z")]))  # exactly 10m: on time
    snaps = lp.finish(FAR)
    assert value(snaps, "pageviews", "1h", "2026-11-23T10:00:00Z") == 2
    assert [r.visitor_id for r, _ in lp.late] == ["B"]
    assert lp.late[0][1] == ms("2026-11-23T10:30:00Z")
    assert lp.counts[("page_view", "late")] == 1
    # a late page view creates no visitor state either (no first-seen, no session)
    assert "B" not in lp.web[0].visitors


def test_duplicates_are_dropped_before_the_lateness_check(decoder: Decoder) -> None:
    from streams.local import LocalPipeline

    first = pv("A", "2026-11-23T10:00:00Z")
    lp = LocalPipeline(partitions=1)
    lp.feed(records(decoder, [first, pv("B", "2026-11-23T10:30:00Z"), dict(first)]))
    assert lp.counts[("page_view", "duplicate")] == 1
    assert lp.counts[("page_view", "late")] == 0


# -- finality ---------------------------------------------------------------------------
def merge(**kw: Any) -> MergePartition:
    cfg = MergeConfig(feeds={"web": ("pv", "fs"), "spend": ("sp",)}, partitions=2,
                      lateness_ms=10 * MIN, session_timeout_ms=30 * MIN, **kw)
    return MergePartition(cfg)


def partial(src: str, seq: int, wm: dict[str, int | None], d: list | None = None) -> dict:
    return {"src": src, "seq": seq, "wm": wm, "d": d or [], "h": []}


H10 = ms("2026-11-23T10:00:00Z")
ALL_PV = {"pv/0": None, "pv/1": None, "fs/0": None, "fs/1": None}


def test_bucket_final_only_when_every_feeding_partition_passed() -> None:
    m = merge()
    m.apply(partial("web/0", 1, {"pv/0": H10 + 5 * MIN, "fs/0": None},
                    [["web", "1h", H10, "", {"pv": 3}]]))
    snaps = dict(m.emit(0))
    assert snaps["pageviews|1h|2026-11-23T10:00:00Z|"]["final"] is False
    # end 11:00 + 10 min lateness + 30 min session timeout = 11:40
    m.apply(partial("web/0", 2, {"pv/0": H10 + 100 * MIN, "fs/0": None}))
    assert not any(d["final"] for _, d in m.emit(0))  # partitions 1 never reported
    m.apply(partial("web/1", 1, {"pv/1": H10 + 99 * MIN, "fs/1": None}))
    assert not any(d["final"] for _, d in m.emit(0))  # 11:39 < 11:40
    m.apply(partial("web/1", 2, {"pv/1": H10 + 100 * MIN, "fs/1": None}))
    finals = [d for _, d in m.emit(0) if d["bucket"] == "1h"]
    assert finals and all(d["final"] for d in finals)
    assert {d["revision"] for d in finals} == {1}
    assert m.emit(0) == []  # emitted once more, then quiet


def test_spend_restates_final_buckets_with_a_higher_revision() -> None:
    m = merge()
    wm = {"sp/0": H10 + 2 * HOUR}
    m.apply(partial("spend/0", 1, wm, [["spend", "1h", H10, "", {"cost": 5_000_000}]]))
    first = dict(m.emit(0))["spend|1h|2026-11-23T10:00:00Z|"]
    assert first["final"] is False  # spend/1 has not reported yet
    m.apply(partial("spend/1", 1, {"sp/1": None}))
    assert dict(m.emit(0))["spend|1h|2026-11-23T10:00:00Z|"]["final"] is True
    # cost reported a day later lands in the closed hour: it is restated
    m.apply(partial("spend/0", 2, {"sp/0": H10 + 26 * HOUR},
                    [["spend", "1h", H10, "", {"cost": 1_000_000}]]))
    doc = dict(m.emit(0))["spend|1h|2026-11-23T10:00:00Z|"]
    assert doc["final"] is True and doc["numerator"] == 6.0
    assert doc["revision"] > first["revision"]


def test_replayed_partials_are_ignored() -> None:
    m = merge()
    msg = partial("web/0", 7, {"pv/0": H10}, [["web", "1h", H10, "", {"pv": 2}]])
    assert m.apply(msg) is True
    assert m.apply(dict(msg)) is False
    assert m.apply(partial("web/0", 6, {}, [["web", "1h", H10, "", {"pv": 2}]])) is False
    assert m.cells[("1h", H10, "")].comps["web"]["pv"] == 2
    # the second piece of the same flush is not a replay
    assert m.apply({**msg, "part": 1}) is True


def test_expiry_by_event_time() -> None:
    m = merge(retention={"1m": 2 * DAY, "1h": 90 * DAY, "1d": 730 * DAY})
    m.apply(partial("spend/0", 1, {"sp/0": H10, "sp/1": H10},
                    [["spend", "1m", H10, "", {"cost": 1}],
                     ["spend", "1h", H10, "", {"cost": 1}]]))
    m.emit(0)
    m.apply(partial("spend/0", 2, {"sp/0": H10 + 3 * DAY}))
    m.apply(partial("spend/1", 2, {"sp/1": H10 + 3 * DAY}))
    m.emit(0)
    m.expire()
    assert ("1m", H10, "") not in m.cells and ("1h", H10, "") in m.cells
    # a late delta for the expired minute does not bring it back
    m.apply(partial("spend/0", 3, {}, [["spend", "1m", H10, "", {"cost": 1}]]))
    assert ("1m", H10, "") not in m.cells


def test_day_equals_sum_of_hours(decoder: Decoder) -> None:
    from streams.simulate import Options, generate

    start = ms("2026-11-17T00:00:00Z")
    events = [e for b in generate(start, start + DAY, Options(seed=11, sessions_per_day=600))
              for e in b]
    snaps = run_pipeline(decoder, events)
    day = "2026-11-17T00:00:00Z"
    for kpi in ("pageviews", "sessions", "conversions", "emails_sent", "spend", "clicks",
                "leads"):
        hours = sum(d["numerator"] for k, d in snaps.items()
                    if k.startswith(f"{kpi}|1h|2026-11-17") and k.endswith("|"))
        assert snap(snaps, kpi, "1d", day)["numerator"] == pytest.approx(hours, abs=1e-6)


def test_a_sparse_topic_holds_back_only_the_cells_it_feeds() -> None:
    m = merge(retention={"1m": 2 * DAY, "1h": 90 * DAY, "1d": 730 * DAY})
    # spend reported once at 10:00, then its partitions fall silent
    m.apply(partial("spend/0", 1, {"sp/0": H10, "sp/1": H10},
                    [["spend", "1m", H10, "channel=display", {"cost": 1}]]))
    m.apply(partial("web/0", 1, {"pv/0": H10, "fs/0": None, "pv/1": H10, "fs/1": None},
                    [["web", "1m", H10, "channel=direct", {"pv": 1}]]))
    m.emit(0)
    # web moves on three days; spend does not
    m.apply(partial("web/0", 2, {"pv/0": H10 + 3 * DAY, "pv/1": H10 + 3 * DAY}))
    m.emit(0)
    m.expire()
    assert ("1m", H10, "channel=direct") not in m.cells  # web's own sources passed it
    assert ("1m", H10, "channel=display") in m.cells  # spend cannot vouch for it yet
    # a late web delta for the expired minute does not bring it back, even though the
    # lowest watermark overall (spend's) is still behind it
    m.apply(partial("web/1", 1, {}, [["web", "1m", H10, "channel=direct", {"pv": 1}]]))
    assert ("1m", H10, "channel=direct") not in m.cells
