"""Per-partition watermarks and the once-per-event lateness decision. Pure.

The watermark of an input partition is the largest event time seen on it. A
partition idle for longer than the idle timeout advances by the wall-clock time
elapsed since its last event, so a quiet partition does not hold finality back
forever. Wall-clock time is passed in, never read here.
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

    def is_late(self, t: int, lateness_ms: int) -> bool:
        """An event exactly ``lateness`` behind the watermark is on time."""
        return self.wm is not None and t < self.wm - lateness_ms

    def observe(self, t: int, wall_ms: int) -> None:
        """Account one on-time event at event time ``t``, arriving at ``wall_ms``."""
        if self.wm is None or t > self.wm:
            self.wm = t
        self.base = self.wm
        self.last_wall = wall_ms

    def idle_advance(self, wall_ms: int, idle_timeout_ms: int) -> bool:
        """Advance an idle partition by the wall-clock time since its last event."""
        if self.base is None or self.last_wall is None:
            return False
        elapsed = wall_ms - self.last_wall
        if elapsed <= idle_timeout_ms:
            return False
        target = self.base + elapsed
        if self.wm is None or target > self.wm:
            self.wm = target
            return True
        return False

    def to_json(self) -> list[int | None]:
        return [self.wm, self.base, self.last_wall]

    @classmethod
    def from_json(cls, data: list[int | None]) -> PartitionClock:
        return cls(*data)


class ClockedPartition:
    """Base of stage-1 processors: one clock per input topic of the partition."""

    def __init__(self) -> None:
        self.clocks: dict[str, PartitionClock] = {}

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
        clock.observe(rec.t, wall_ms)
        out.count(event_type, "accepted")
        return True
