"""The simulation's plumbing: one seeded RNG, a heap of things due to happen, and the
delivery of emitted events in arrival order (with tracker delay, duplicates and, on
request, deliberately bad events)."""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events import iso_ms
from .model import DAY, HOUR, INCIDENTS, MIN, Options, Visitor


@dataclass(order=True)
class _Due:
    t: int
    seq: int
    fn: Callable[[int], None] = field(compare=False)


class WorldCore:
    """What every part of the world shares: its state, and the means to schedule and
    to emit. The parts build on it in layers (deals, visits, marketing, the world)."""

    def __init__(self, start_ms: int, options: Options | None = None) -> None:
        self.o = options or Options()
        self.rng = random.Random(self.o.seed)
        # engagement draws from its own stream, so web/CRM traffic stays as without it
        self.erng = random.Random(self.o.seed * 7919 + 17)
        self.now = start_ms
        self._next_minute = start_ms - start_ms % MIN
        self._heap: list[_Due] = []
        self._seq = 0
        self._out: list[tuple[int, int, dict[str, Any]]] = []  # (arrival, seq, event)
        self._ids = 0
        self.visitors: list[Visitor] = []
        self.subscribers: list[Visitor] = []
        self._customers = 0
        self._deals = 0
        if self.o.incident is not None and self.o.incident not in INCIDENTS:
            raise ValueError(f"unknown incident {self.o.incident!r} (one of {INCIDENTS})")

    # -- plumbing -------------------------------------------------------------
    def _at(self, t: int, fn: Callable[[int], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Due(t, self._seq, fn))

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-{self.o.seed}-{self._ids}"

    def _pick(self, table: dict[str, float]) -> str:
        r = self.rng.random() * sum(table.values())
        for key, weight in table.items():
            r -= weight
            if r <= 0:
                return key
        return next(reversed(table))

    def _emit(self, t: int, event_type: str, fields: dict[str, Any],
              delay_ms: int | None = None, rng: random.Random | None = None) -> None:
        rng = rng or self.rng
        ev = {"event_type": event_type, "event_id": self._id("ev"), "occurred_at": iso_ms(t),
              "schema_version": 1, **fields}
        if delay_ms is None:
            delay_ms = int(rng.random() * self.o.disorder_ms)
        self._seq += 1
        self._out.append((t + delay_ms, self._seq, ev))
        if rng.random() < self.o.duplicate_rate:
            self._seq += 1  # tracker retry: the same event again, a bit later
            self._out.append((t + delay_ms + int(rng.random() * 5000), self._seq, ev))
        if self.o.bad_rate and rng.random() < self.o.bad_rate:
            self._seq += 1
            self._out.append((t + delay_ms, self._seq, self._corrupt(ev)))

    def _corrupt(self, ev: dict[str, Any]) -> dict[str, Any]:
        bad = dict(ev, event_id=self._id("bad"))
        kind = self.rng.randrange(4)
        if kind == 0:
            bad.pop("occurred_at")
        elif kind == 1:
            bad["occurred_at"] = "yesterday"
        elif kind == 2:
            bad["event_type"] = "page_veiw"
        else:
            bad["schema_version"] = "one"
        return bad

    def incident_active(self, t: int) -> bool:
        start = self.o.incident_start
        return (self.o.incident is not None and start is not None
                and start <= t < start + self.o.incident_duration_ms)

    def drain(self) -> list[dict[str, Any]]:
        """Everything still waiting to be delivered (events already due but delayed)."""
        ready, self._out = self._out, []
        ready.sort(key=lambda x: (x[0], x[1]))
        return [ev for _, _, ev in ready]

    # -- traffic --------------------------------------------------------------
    def traffic_shape(self, t: int) -> float:
        """Relative traffic at time ``t`` (daily curve x weekday/weekend), ~0.25..1."""
        hour = (t % DAY) / HOUR
        weekday = (t // DAY + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        daily = 0.35 + 0.65 * max(0.0, math.sin(math.pi * (hour - 6) / 16)) if 6 <= hour < 22 \
            else 0.25
        weekly = 0.6 if weekday >= 5 else 1.0
        return daily * weekly

    def _poisson(self, mean: float) -> int:
        if mean > 30:
            return max(0, int(self.rng.gauss(mean, math.sqrt(mean)) + 0.5))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1
