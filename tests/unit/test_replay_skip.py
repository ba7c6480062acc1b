"""A replay that skips the minute cells past retention from the inputs' horizon ends
with what a replay that builds them ends with (KPI_REPLAY_SKIP_EXPIRED): every hour
and day cell, every document but minutes', and the minute cells within retention of
the horizon. (Older minute cells of a sparse input, e-mail sent on the first day,
stay in the other replay until e-mail's own watermark moves on.)"""

from __future__ import annotations

from typing import Any

import pytest

from streams.agents.horizon import horizon_margin, horizon_of, horizon_of_records
from streams.events import Decoder
from streams.kpis.merge import present
from streams.local import LocalPipeline, decode_all
from streams.schemas import parse_rfc3339_ms
from streams.settings import load_settings
from streams.simulate import DAY, Options, generate

START = 1_790_812_800_000  # 2026-10-01T00:00:00Z
PARTS = 2


def _days(n: int) -> list[list[Any]]:
    decoder = Decoder.from_settings(load_settings({}))
    out = []
    for d in range(n):
        events = [e for b in generate(START + d * DAY, START + (d + 1) * DAY,
                                      Options(seed=11, sessions_per_day=150)) for e in b]
        out.append(decode_all(decoder, events, START + 400 * DAY))
    return out


def _horizon(days: list[list[Any]]) -> int | None:
    """As the worker's probe reads it: the oldest newest event time over the partitions
    of the inputs that hold any, less the margin."""
    return horizon_of_records((r for day in days for r in day), PARTS,
                              horizon_margin(load_settings({})))


def _replay(days: list[list[Any]], horizon: int | None) -> LocalPipeline:
    lp = LocalPipeline(partitions=PARTS, kpi_partitions=PARTS)
    lp.input_horizon = horizon
    for d, recs in enumerate(days):
        lp.feed(recs, wall_ms=START + (d + 1) * DAY)
        lp.emit(START + (d + 1) * DAY)
        lp.expire()
    lp.emit(START + len(days) * DAY)
    return lp


def _state(lp: LocalPipeline, hz: int) -> list[dict[Any, Any]]:
    """Every cell but the minutes past retention from the horizon."""
    cut = hz - 2 * DAY
    return [{k: present(c.comps) for k, c in m.cells.items()
             if k[0] != "1m" or k[1] + 60_000 > cut} for m in lp.merge]


def _docs(snaps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Documents but minutes', without their revision (how often a key was published:
    the replay that builds old minutes publishes the 15-minute view more often)."""
    return {k: {f: v for f, v in d.items() if f not in ("revision", "computed_at")}
            for k, d in snaps.items() if d["bucket"] != "1m"}


@pytest.fixture(scope="module")
def replays() -> tuple[LocalPipeline, LocalPipeline, int]:
    days = _days(5)
    hz = _horizon(days)
    assert hz is not None and hz > START + 4 * DAY
    return _replay(days, None), _replay(days, hz), hz


def test_the_skipping_replay_sends_far_fewer_rows_and_ends_with_the_same_cells(
        replays: tuple[LocalPipeline, LocalPipeline, int]) -> None:
    full, skipping, hz = replays
    assert full.skipped_rows == 0
    # three of five days' minute cells: the web stage does not build them (nor is
    # spend prorated over those minutes), the other stages' rows are dropped before
    # sending
    built = skipping.sent_rows + skipping.skipped_rows  # what the stages built
    assert built < 0.6 * full.sent_rows
    assert 0 < skipping.skipped_rows < 0.1 * full.sent_rows  # e-mail's, not the web's
    assert _state(skipping, hz) == _state(full, hz)
    minutes = [k for m in skipping.merge for k in m.cells if k[0] == "1m"]
    assert minutes and min(k[1] for k in minutes) + 60_000 > hz - 2 * DAY
    assert len(minutes) > 1000  # the last two days' minutes are all there
    # what expired was let go of everywhere, open cells included
    assert all(k in m.cells for m in skipping.merge for k in m.open_cells)


def test_the_published_documents_are_the_same_once_the_replay_is_done(
        replays: tuple[LocalPipeline, LocalPipeline, int]) -> None:
    full, skipping, hz = replays
    assert _docs(skipping.snapshots) == _docs(full.snapshots)
    assert {d["bucket"] for d in skipping.snapshots.values()} >= {"1m", "15m", "1h", "1d"}
    cut = hz - 2 * DAY  # minutes ending after it are kept, as in _state
    assert {k for k, d in skipping.snapshots.items() if d["bucket"] == "1m"} == \
        {k for k, d in full.snapshots.items()
         if d["bucket"] == "1m" and parse_rfc3339_ms(d["window_start"]) + 60_000 > cut}


def test_a_restarted_merge_partition_keeps_the_horizon(
        replays: tuple[LocalPipeline, LocalPipeline, int]) -> None:
    _, skipping, hz = replays
    m = skipping.merge[0]
    again = type(m)(m.cfg)
    again.load_meta(m.meta())
    assert again.horizon == hz


def test_the_horizon_is_the_newest_input_where_all_its_partitions_are_known() -> None:
    newest = {("pv", 0): 100, ("pv", 1): 90, ("spend", 0): 50, ("email", 0): None,
              ("email", 1): 500}
    assert horizon_of(newest, 10) == 80  # page views: partition 1 at 90; e-mail unknown
    assert horizon_of({("pv", 0): None}, 10) is None
    assert horizon_of({}, 10) is None


def test_the_merge_stage_refuses_and_expires_what_its_sources_skip() -> None:
    """A minute cell ending at or before the skip horizon (the inputs' horizon less the
    minute retention) is refused when new and deleted when held, open or final; the
    next minute and every hour are kept."""
    from streams.kpis.merge import MergeConfig, MergePartition, iso_s
    from streams.topology import LOCAL_NAMES, feeds

    m = MergePartition(MergeConfig(feeds=feeds(LOCAL_NAMES.__getitem__), partitions=1))
    keep = m.cfg.retention["1m"]
    hz = START + 5 * DAY
    at = hz - keep - 60_000  # the minute that ends exactly at the skip horizon
    old = {"src": "web/0", "seq": 1, "part": 0, "wm": {"page_view/0": START}, "h": [],
           "d": [["web", "1m", at, "", {"pv": 1}], ["web", "1m", at + 60_000, "", {"pv": 1}],
                 ["web", "1h", START, "", {"pv": 2}]]}
    assert m.apply(old)  # no horizon yet: every cell is held, none final
    assert {k[:2] for k in m.cells} == {("1m", at), ("1m", at + 60_000), ("1h", START)}
    published = {key for key, doc in m.emit(START, publish=None) if doc is not None}
    assert any(f"|1m|{iso_s(at)}|" in key for key in published)
    news = {"src": "web/0", "seq": 2, "part": 0, "wm": {"page_view/0": START}, "h": [],
            "hz": hz, "d": [["web", "1m", at - 60_000, "", {"pv": 1}],
                            ["web", "1m", at + 120_000, "", {"pv": 1}]]}
    assert m.apply(news)
    assert ("1m", at - 60_000, "") not in m.cells  # refused
    assert ("1m", at + 120_000, "") in m.cells
    tombstones = m.expire()
    assert {k[:2] for k in m.cells} == {("1m", at + 60_000), ("1m", at + 120_000),
                                        ("1h", START)}
    assert tombstones and all(doc is None for _, doc in tombstones)
    assert all("|1m|" in key for key, _ in tombstones)


class FakeTails:
    """The probe's two calls, scripted: whether the inputs grew, and the horizon."""

    def __init__(self) -> None:
        self.grew = False
        self.value: int | None = START
        self.reads = 0

    async def grown(self) -> bool:
        return self.grew

    async def horizon(self, wall: int) -> int | None:
        self.reads += 1
        return self.value


def test_the_worker_reads_the_horizon_every_10_s_and_at_once_when_a_backlog_lands(
        ) -> None:
    import asyncio

    from prometheus_client import CollectorRegistry

    from streams.app import build_pipeline

    pipe = build_pipeline(load_settings({"KPI_STATE_STORE": "memory"}), CollectorRegistry())
    assert pipe.tails is not None  # on by default
    tails = FakeTails()
    pipe.tails = tails  # type: ignore[assignment]

    async def rounds() -> None:
        await pipe.read_horizon()  # at start: always
        assert tails.reads == 1
        assert {r.input_horizon for r in pipe.runners.values()} == {START}
        tails.value = START + DAY
        await pipe.read_horizon(every_ms=10_000)  # a second later, nothing landed
        assert tails.reads == 1
        tails.grew = True  # a backlog landed on the topics
        await pipe.read_horizon(every_ms=10_000)
        assert tails.reads == 2
        assert {r.input_horizon for r in pipe.runners.values()} == {START + DAY}
        assert pipe.metrics.input_horizon._value.get() == (START + DAY) / 1000
        tails.grew = False
        pipe.horizon_read_at -= 10_000  # ten seconds on
        await pipe.read_horizon(every_ms=10_000)
        assert tails.reads == 3
        # a lower read (a late event at a partition's tail) or none (a read that
        # timed out) does not take the horizon back: rows were skipped by it
        for lower in (START + DAY // 2, None):
            tails.value = lower
            await pipe.read_horizon()
            assert {r.input_horizon for r in pipe.runners.values()} == {START + DAY}
        tails.value = START + 2 * DAY
        await pipe.read_horizon()
        assert {r.input_horizon for r in pipe.runners.values()} == {START + 2 * DAY}

    asyncio.run(rounds())
    off = build_pipeline(load_settings({"KPI_STATE_STORE": "memory",
                                        "KPI_REPLAY_SKIP_EXPIRED": "false"}),
                         CollectorRegistry())
    assert off.tails is None
