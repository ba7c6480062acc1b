"""The indexes a merge partition keeps so that it need not walk every cell.

- For the KPI gauges: its dims, and the newest final cell per (size, dim), kept as
  cells are made, become final, expire and are restored. A scrape of ``/metrics``
  reads them (``streams/outputs/collector.py``). Checked against a walk over the
  cells (the way the collector found them before) at every step of a replay: cells
  made, made final, expired (a short retention expires whole dims, and so the
  newest final cell of some), and restored from what the changelog would hold.
- For finality: the open cells by the end of their bucket. After the watermarks
  moved, an emission round looks only at those ending early enough; every cell
  that is final by the rule is among them.
"""

from __future__ import annotations

from typing import Any

from streams.events import Decoder
from streams.kpis.buckets import bucket_end
from streams.kpis.merge import MergePartition, cell_store_key, present
from streams.local import LocalPipeline, decode_all
from streams.settings import load_settings
from streams.simulate import DAY, Options, generate

START = 1_790_812_800_000  # 2026-10-01T00:00:00Z
HOUR = 3_600_000


def walked(m: MergePartition) -> tuple[set[str], dict[tuple[str, str], int]]:
    """The dims of the cells held, and the newest final cell per (size, dim), by a walk."""
    dims: set[str] = set()
    newest: dict[tuple[str, str], int] = {}
    for (size, start, dim), cell in m.cells.items():
        dims.add(dim)
        if cell.final and start > newest.get((size, dim), -1):
            newest[(size, dim)] = start
    return dims, newest


def restored(m: MergePartition) -> MergePartition:
    fresh = MergePartition(m.cfg)
    for key in m.cells:
        fresh.load(cell_store_key(key), m.dump(cell_store_key(key)))
    fresh.load_meta(m.meta())
    return fresh


def check(m: MergePartition) -> None:
    dims, newest = walked(m)
    assert m.newest_final == newest
    # a dim whose cells all expired may stay known: it then has no cell to show
    assert dims <= m.dims
    assert set(m.open_cells) == {k for k, c in m.cells.items() if not c.final}


def test_the_index_follows_the_cells_through_finality_expiry_and_restore() -> None:
    decoder = Decoder.from_settings(load_settings({}))
    # minute cells kept 2 hours, hour cells 12: whole dims (campaigns of a day) expire
    lp = LocalPipeline(partitions=2, kpi_partitions=2,
                       retention={"1m": 2 * HOUR, "1h": 12 * HOUR, "1d": 30 * DAY})
    events: list[Any] = [e for b in generate(START, START + 2 * DAY,
                                             Options(seed=5, sessions_per_day=300))
                         for e in b]
    events.sort(key=lambda e: e["occurred_at"])
    steps = 12
    lost_newest = 0
    for i in range(steps):
        chunk = events[i * len(events) // steps:(i + 1) * len(events) // steps]
        wall = START + (i + 1) * 2 * DAY // steps
        lp.feed(decode_all(decoder, chunk, START + 400 * DAY), wall_ms=wall)
        lp.emit(wall)
        before = [dict(m.newest_final) for m in lp.merge]
        lp.expire()
        for m, was in zip(lp.merge, before, strict=True):
            lost_newest += sum(1 for k, start in was.items()
                               if m.newest_final.get(k) != start)
            check(m)
            check(restored(m))
    finals = sum(len(m.newest_final) for m in lp.merge)
    assert finals > 50  # the replay made many (size, dim) final
    # expiry took the newest final cell of some (size, dim): the index moved back
    # to the next one or let go of it
    assert lost_newest > 0
    restored_index = restored(lp.merge[0])
    assert restored_index.newest_final == lp.merge[0].newest_final


def test_the_open_cells_index_holds_every_cell_that_can_be_final() -> None:
    from streams.kpis.merge.state import OpenCells

    idx = OpenCells()
    idx.add(("1m", 0, ""), 60)
    idx.add(("1m", 60, ""), 120)
    idx.add(("1h", 0, ""), 3600)
    idx.add(("1m", 60, "channel=email"), 120)
    idx.add(("1m", 60, ""), 120)  # once
    assert len(idx) == 4
    assert sorted(idx.ending_by(119)) == [("1m", 0, "")]
    assert sorted(idx.ending_by(120)) == [("1m", 0, ""), ("1m", 60, ""),
                                          ("1m", 60, "channel=email")]
    idx.discard(("1m", 60, ""))
    idx.discard(("1m", 60, "channel=email"))
    idx.discard(("nope", 0, ""))
    assert idx.ending_by(3599) == [("1m", 0, "")] and ("1h", 0, "") in idx
    assert sorted(idx) == [("1h", 0, ""), ("1m", 0, "")]

    # in a replay: whatever the rule makes final is among the cells looked at
    decoder = Decoder.from_settings(load_settings({}))
    lp = LocalPipeline(partitions=2, kpi_partitions=2)
    events: list[Any] = [e for b in generate(START, START + DAY, Options(seed=8,
                                                                         sessions_per_day=300))
                         for e in b]
    events.sort(key=lambda e: e["occurred_at"])
    looked = 0
    for i in range(8):
        chunk = events[i * len(events) // 8:(i + 1) * len(events) // 8]
        lp.feed(decode_all(decoder, chunk, START + 400 * DAY), wall_ms=START + i * HOUR)
        for m in lp.merge:
            lows = m._topic_lows()
            m._lows = lows
            try:
                final = {k for k in m.open_cells
                         if m.is_final(bucket_end(k[1], k[0]), present(m.cells[k].comps))}
            finally:
                m._lows = None
            seen = set(m.open_cells.ending_by(max(lows.values()) - m.cfg.lateness_ms))
            assert final <= seen
            looked += len(final)
        lp.emit(START + i * HOUR)
    assert looked > 0  # cells did become final on the way
