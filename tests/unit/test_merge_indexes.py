"""The merge partition's index for the KPI gauges: its dims, and the newest final
cell per (size, dim), kept as cells are made, become final, expire and are restored.

A scrape of ``/metrics`` reads the index instead of walking every cell
(``streams/outputs/collector.py``). Here the index is checked against a walk over
the cells (the way the collector found them before) at every step of a replay:
cells made, made final, expired (a short retention expires whole dims, and so the
newest final cell of some), and restored from what the changelog would hold."""

from __future__ import annotations

from typing import Any

from streams.events import Decoder
from streams.kpis.merge import MergePartition, cell_store_key
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
