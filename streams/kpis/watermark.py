"""Per-partition watermarks and the once-per-event lateness decision. Pure.

The watermark of an input partition is the largest event time seen on it. A
partition idle for longer than the idle timeout advances by the wall-clock time
elapsed since its last event, so a quiet partition does not hold finality back
forever. Wall-clock time is passed in, never read here.

"Since its last event" is measured from when that event was *produced* (its
Kafka timestamp), when the stage knows it, not from when this worker got round
to it: a worker that processed the partition's last event minutes after it was
written (a backlog, a slow start) would otherwise keep those minutes as a lag
behind the wall clock for as long as the partition stays quiet. Idleness itself
is still judged by this worker's own clock (nothing arrived for the timeout),
so a backlog being worked through is never mistaken for a quiet source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PartitionClock:
    """Watermark of one input partition."""

    wm: int | None = None  # None: no on-time event seen yet
    base: int | None = None  # event-time watermark at the last event (before idling)
    last_wall: int | None = None  # wall clock when the last event arrived
    last_prod: int | None = None  # when it was produced (Kafka timestamp), else last_wall

    def is_late(self, t: int, lateness_ms: int) -> bool:
        """An event exactly ``lateness`` behind the watermark is on time."""
        return self.wm is not None and t < self.wm - lateness_ms

    def observe(self, t: int, wall_ms: int, produced_ms: int | None = None) -> None:
        """Account one on-time event at event time ``t``, arriving at ``wall_ms``,
        produced at ``produced_ms`` (its Kafka timestamp; never later than now)."""
        if self.wm is None or t > self.wm:
            self.wm = t
        self.base = self.wm
        self.last_wall = wall_ms
        self.last_prod = wall_ms if produced_ms is None else min(produced_ms, wall_ms)

    def idle_advance(self, wall_ms: int, idle_timeout_ms: int) -> bool:
        """Advance an idle partition by the wall-clock time since its last event."""
        if self.base is None or self.last_wall is None:
            return False
        if wall_ms - self.last_wall <= idle_timeout_ms:
            return False
        since = self.last_prod if self.last_prod is not None else self.last_wall
        target = self.base + (wall_ms - since)
        if self.wm is None or target > self.wm:
            self.wm = target
            return True
        return False

    def restarted(self, wall_ms: int) -> PartitionClock:
        """After a restore: the processor was down, the partition was not idle, so its
        idle clock starts again now."""
        if self.last_wall is not None:
            self.last_wall = self.last_prod = wall_ms
        return self

    def to_json(self) -> list[int | None]:
        return [self.wm, self.base, self.last_wall, self.last_prod]

    @classmethod
    def from_json(cls, data: list[int | None]) -> PartitionClock:
        return cls(*data)  # three fields in state written before last_prod


class ClockedPartition:
    """Base of stage-1 processors: one clock per input topic of the partition."""

    def __init__(self) -> None:
        self.clocks: dict[str, PartitionClock] = {}
        # per input topic, the newest Kafka timestamp of the batch being processed (set by
        # the stage before ``process``; empty when unknown, e.g. in-process tests)
        self.produced: dict[str, int] = {}
        # the inputs' horizon (KPI_REPLAY_SKIP_EXPIRED; set by the stage before
        # ``process``): minute buckets past retention from it need not be built
        self.input_horizon: int | None = None

    def low_watermark(self) -> int | None:
        """The smallest watermark of the inputs that have seen events."""
        marks = [c.wm for c in self.clocks.values() if c.wm is not None]
        return min(marks) if marks else None

    def admit(self, out: Any, topic: str, rec: Any, event_type: str, lateness_ms: int,
              wall_ms: int) -> bool:
        """Decide lateness once: a late event is recorded on ``out`` and changes nothing."""
        clock = self.clocks.get(topic)
        if clock is None:
            clock = self.clocks[topic] = PartitionClock()
        if clock.is_late(rec.t, lateness_ms):
            out.late.append((rec, clock.wm))
            out.count(event_type, "late")
            return False
        clock.observe(rec.t, wall_ms, self.produced.get(topic))
        out.count(event_type, "accepted")
        return True


class DedupedPartition(ClockedPartition):
    """A stage-1 processor whose events are independent: dedupe by ``event_id``,
    decide lateness, and add each event's facts (spend, engagement).

    Ids are kept until the lateness horizon has passed them: a repeat older than
    that would be late anyway. Subclasses set ``event_type``, ``lateness_ms`` and
    implement ``facts``.
    """

    event_type = ""

    def __init__(self, lateness_ms: int) -> None:
        super().__init__()
        self.lateness_ms = lateness_ms
        self.seen: dict[str, int] = {}  # event_id -> occurred_at

    def facts(self, topic: str, rec: Any, out: Any) -> None:
        raise NotImplementedError

    def process(self, items: list[tuple[str, Any]], wall_ms: int) -> Any:
        from .deltas import prune_zero
        from .stage import StageOutput

        out = StageOutput()
        for topic, rec in items:
            if rec.event_id in self.seen:
                out.count(self.event_type, "duplicate")
                continue
            if not self.admit(out, topic, rec, self.event_type, self.lateness_ms, wall_ms):
                continue
            self.seen[rec.event_id] = rec.t
            out.dirty.add(rec.event_id)
            self.facts(topic, rec, out)
        out.deltas = prune_zero(out.deltas)
        return out

    def prune(self, keys: list[str] | None = None) -> set[str]:
        wm = self.low_watermark()
        if wm is None:
            return set()
        horizon = wm - self.lateness_ms - 60_000
        gone = {eid for eid, t in self.seen.items() if t < horizon}
        for eid in gone:
            del self.seen[eid]
        return gone

    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry)."""
        return {"event_id": len(self.seen)}

    def dump(self, key: str) -> Any:
        return self.seen.get(key)

    def load(self, key: str, value: Any) -> None:
        self.seen[key] = value
