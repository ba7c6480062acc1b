"""Stage 1 for marketing spend: prorate cost, impressions and clicks into buckets. Pure.

A spend record covers ``[period_start, period_end)``; its cost is spread linearly
over that period in integer millionths of the reporting currency. The share of
a bucket is ``F(end) - F(start)`` with ``F(x) = floor(total * covered(x) / length)``,
so shares telescope: the minutes of an hour sum exactly to the hour, the hours
of a day exactly to the day, and all of them to the record's total.

Lateness is judged by the record's ``occurred_at`` (when it was reported); its
cost may land in buckets that are already final, which are then restated.

A record with ``restates`` (a cost-table row: ``date|source|medium|campaign``)
replaces the earlier record of that row instead of adding to it: the partition
keeps the newest upload of each row (by ``occurred_at``, then ``event_id``),
retracts the old one's prorated amounts and adds the new. An older upload that
arrives after a newer one changes nothing. Rows are kept for
``restate_horizon_ms`` after their period ends (platforms revise for days, not
months).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import Spend
from .buckets import BUCKETS, DAY, bucket_end, floor
from .deltas import MICRO, Deltas, add, dim
from .stage import StageOutput
from .watermark import DedupedPartition

FAMILY = "spend"


@dataclass(frozen=True)
class SpendConfig:
    lateness_ms: int = 600_000
    retention_1m_ms: int = 2 * DAY
    restate_horizon_ms: int = 90 * DAY


ROW_PREFIX = "\x04"  # state keys of restatable rows (event ids never start with it)


def prorate(total: int, start: int, end: int, size: str,
            lo: int | None = None) -> list[tuple[int, int]]:
    """(bucket start, share) of ``total`` over [start, end) in ``size`` buckets.

    Buckets ending before ``lo`` are skipped (they are past retention).
    """
    length = end - start

    def covered(x: int) -> int:
        return (total * (min(max(x, start), end) - start)) // length

    out = []
    b = floor(start, size)
    if lo is not None and bucket_end(b, size) <= lo:
        b = max(b, floor(lo, size))
    while b < end:
        nxt = bucket_end(b, size)  # local hours and days: a DST day is 23 or 25 hours
        share = covered(nxt) - covered(b)
        if share:
            out.append((b, share))
        b = nxt
    return out


def spend_facts(rec: Spend, sign: int, out: Deltas, lo_1m: int | None) -> None:
    dims = [""]
    if rec.channel is not None:
        dims.append(dim("channel", rec.channel))
    dims.append(dim("campaign", rec.campaign))
    cost = round(rec.cost * MICRO)
    amounts = [("cost", cost), ("imp", rec.impressions), ("clk", rec.clicks)]
    if rec.category == "media":
        amounts.append(("media", cost))
    for size in BUCKETS:
        lo = lo_1m if size == "1m" else None
        for comp, total in amounts:
            if not total:
                continue
            for b, share in prorate(total, rec.start, rec.end, size, lo):
                for d in dims:
                    add(out, (FAMILY, size, b, d), comp, sign * share)


class SpendPartition(DedupedPartition):
    event_type = "spend"

    def __init__(self, cfg: SpendConfig) -> None:
        super().__init__(cfg.lateness_ms)
        self.cfg = cfg
        self.rows: dict[str, list[Any]] = {}  # ROW_PREFIX + restates key -> _row

    def facts(self, topic: str, rec: Spend, out: StageOutput) -> None:
        clock = self.clocks[topic]
        # 1m buckets older than their retention are gone; do not recreate them, nor
        # those past it from the inputs' horizon (a replay: the merge stage refuses them)
        keep = self.cfg.retention_1m_ms
        lo_1m = clock.wm - keep if clock.wm is not None else None
        if self.input_horizon is not None:
            skip = self.input_horizon - keep
            lo_1m = skip if lo_1m is None else max(lo_1m, skip)
        key = rec.raw.get("restates") if isinstance(rec.raw, dict) else None
        if isinstance(key, str) and key:
            skey = ROW_PREFIX + key
            old = self.rows.get(skey)
            if old is not None:
                if (old[1], old[0]) > (rec.t, rec.event_id):
                    return  # accepted, but a newer upload of this row already counts
                spend_facts(_row_record(old), -1, out.deltas, lo_1m)
            self.rows[skey] = _row(rec)
            out.dirty.add(skey)
        spend_facts(rec, 1, out.deltas, lo_1m)

    def prune(self, keys: list[str] | None = None) -> set[str]:
        gone = super().prune(keys)
        wm = self.low_watermark()
        if wm is not None and self.rows:
            horizon = wm - self.cfg.restate_horizon_ms
            old = {k for k, row in self.rows.items() if row[9] < horizon}
            for k in old:
                del self.rows[k]
            gone |= old
        return gone

    def state_keys(self) -> dict[str, int]:
        return {**super().state_keys(), "cost_row": len(self.rows)}

    def dump(self, key: str) -> Any:
        if key.startswith(ROW_PREFIX):
            return self.rows.get(key)
        return super().dump(key)

    def load(self, key: str, value: Any) -> None:
        if key.startswith(ROW_PREFIX):
            self.rows[key] = list(value)
        else:
            super().load(key, value)


def _row(rec: Spend) -> list[Any]:
    """What it takes to retract a record later (its amounts already converted)."""
    return [rec.event_id, rec.t, rec.channel, rec.campaign, rec.category, rec.cost,
            rec.impressions, rec.clicks, rec.start, rec.end]


def _row_record(row: list[Any]) -> Spend:
    return Spend(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                 row[9], {})
