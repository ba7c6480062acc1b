"""What goes on the KPI topic, and when: coalescing per key and cadence. Pure.

The merge stage builds snapshot documents for every change (the live wall and
the SSE stream read them as they come). The compacted KPI topic is for
downstream services: they want each key's latest value, not every step on the
way. :class:`TopicPublisher` sits between the two, like Kafka Streams' record
cache and ``suppress``:

- a **final** cell snapshot (and a restatement of one, which is final too) and a
  **tombstone** go out at once, every time;
- an open cell or a rolling view waits in a buffer, the latest document per key
  replacing the earlier, and goes out when its cadence is due: ``1m`` and ``1h``
  cells every ``fast_ms``, everything longer (``1d``, ``1mo``, rolling views) every
  ``slow_ms``;
- a document whose value is the one last sent for that key is not sent again;
- while the worker is **catching up** (a replay or a backlog: its event time far
  behind the wall clock while data keeps arriving), open documents stay in the
  buffer; once it has caught up, the buffer goes out.

The buffer is not persisted: a restarted worker publishes every open cell and
rolling view once more (see ``MergePartition.load``), so nothing waiting in it is
lost by a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .buckets import ROLLING

Snapshot = tuple[str, dict[str, Any] | None]
FAST_WINDOWS = frozenset({"1m", "1h"})


def window_of(key: str) -> str:
    """The bucket or view of a snapshot key (``kpi|window|...``)."""
    return key.split("|", 2)[1]


def fingerprint(doc: dict[str, Any]) -> int:
    """What makes two documents of one key the same value (revision and computed_at
    aside)."""
    return hash((doc["value"], doc["numerator"], doc["denominator"], doc["final"],
                 doc["window_start"], doc.get("cost_complete")))


@dataclass(frozen=True)
class PublishConfig:
    windows: frozenset[str]  # buckets and views that go on the topic at all
    fast_ms: int = 5_000  # open 1m and 1h cells
    slow_ms: int = 60_000  # open 1d cells, months and rolling views


@dataclass
class TopicPublisher:
    """The KPI-topic side of one merge partition."""

    cfg: PublishConfig
    fast: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> latest doc
    slow: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)  # open key -> fingerprint sent
    last_fast: int = 0
    last_slow: int = 0

    def offer(self, snapshots: list[Snapshot]) -> list[Snapshot]:
        """Take the documents of one emission round; return what goes out now."""
        now: list[Snapshot] = []
        for key, doc in snapshots:
            window = window_of(key)
            if window not in self.cfg.windows:
                continue
            if doc is None:
                self.fast.pop(key, None)
                self.slow.pop(key, None)
                self.sent.pop(key, None)
                now.append((key, None))
                continue
            if doc["final"] and window not in ROLLING:
                # a final bucket does not change again (a restatement is a new final):
                # send it now and forget it
                self.fast.pop(key, None)
                self.slow.pop(key, None)
                self.sent.pop(key, None)
                now.append((key, doc))
                continue
            buffer = self.fast if window in FAST_WINDOWS else self.slow
            if self.sent.get(key) == fingerprint(doc):
                buffer.pop(key, None)  # back to the value already on the topic
                continue
            buffer[key] = doc
        return now

    def due(self, wall_ms: int, catching_up: bool) -> list[Snapshot]:
        """Buffered documents whose cadence has come (nothing while catching up)."""
        if catching_up:
            return []
        out: list[Snapshot] = []
        if self.fast and wall_ms - self.last_fast >= self.cfg.fast_ms:
            out += self._drain(self.fast)
            self.last_fast = wall_ms
        if self.slow and wall_ms - self.last_slow >= self.cfg.slow_ms:
            out += self._drain(self.slow)
            self.last_slow = wall_ms
        return out

    def fast_due_at(self) -> int:
        """When open 1m and 1h documents may next go out: a change made up to then is
        worth building first, or it waits a whole cadence more."""
        return self.last_fast + self.cfg.fast_ms

    def _drain(self, buffer: dict[str, dict[str, Any]]) -> list[Snapshot]:
        out: list[Snapshot] = list(buffer.items())
        for key, doc in out:
            assert doc is not None
            self.sent[key] = fingerprint(doc)
        buffer.clear()
        return out

    def waiting(self) -> int:
        """Documents held back for their cadence."""
        return len(self.fast) + len(self.slow)


def catching_up(wall_ms: int, event_time_ms: int | None, last_data_wall_ms: int,
                lag_ms: int, quiet_ms: int) -> bool:
    """A partition is catching up when its event time is more than ``lag_ms`` behind
    the wall clock and data arrived within the last ``quiet_ms`` (a replay or a
    backlog in progress). Historical data that has stopped arriving is caught up."""
    if event_time_ms is None:
        return False
    return wall_ms - event_time_ms > lag_ms and wall_ms - last_data_wall_ms < quiet_ms
