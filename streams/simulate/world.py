"""The simulated world: arrivals drawn per minute from the traffic curve, the run loop
that plays the due things in event time, and the history a span starts with."""

from __future__ import annotations

import heapq
from typing import Any

from ..events import iso_ms
from .marketing import MarketingWorld
from .model import DAY, DEVICES, HOUR, MIN, Options, Visitor


class World(MarketingWorld):
    """The simulated world. ``advance(t)`` returns events that happened before ``t``."""

    def __init__(self, start_ms: int, options: Options | None = None) -> None:
        super().__init__(start_ms, options)
        self._seed_world(start_ms)

    # -- the run loop ---------------------------------------------------------
    def advance(self, until_ms: int) -> list[dict[str, Any]]:
        """Run the world to ``until_ms``; events in arrival order (not event time)."""
        while True:
            nxt_heap = self._heap[0].t if self._heap else None
            if self._next_minute < until_ms and (nxt_heap is None
                                                 or self._next_minute <= nxt_heap):
                self._arrivals(self._next_minute)
                self._next_minute += MIN
                continue
            if nxt_heap is not None and nxt_heap < until_ms:
                due = heapq.heappop(self._heap)
                self.now = due.t
                due.fn(due.t)
                continue
            break
        self.now = until_ms
        self._out.sort(key=lambda x: (x[0], x[1]))
        cut = 0
        while cut < len(self._out) and self._out[cut][0] < until_ms:
            cut += 1
        ready, self._out = self._out[:cut], self._out[cut:]
        return [ev for _, _, ev in ready]

    def _arrivals(self, minute: int) -> None:
        mean = self.o.sessions_per_day / 1440 * self.traffic_shape(minute) * 1.6
        if self.incident_active(minute) and self.o.incident == "traffic-drop":
            mean *= 0.15
        for _ in range(self._poisson(mean)):
            t = minute + int(self.rng.random() * MIN)
            self._at(t, self._start_session)
        if minute % HOUR == 0:
            self._at(minute + HOUR, self._report_hourly_spend)
        if minute % DAY == 0:
            self._at(minute + DAY + 2 * HOUR, self._report_daily_costs)
            self._plan_email_campaign(minute)
            if self.o.engagement:
                self._plan_engagement(minute)

    def _seed_world(self, start: int) -> None:
        """Customers that predate the span renew (or churn) during it; and a span that
        starts in the morning of a newsletter day still sees that day's newsletter."""
        if start % DAY < 9 * HOUR and start % DAY:
            self._plan_email_campaign(start - start % DAY)
        for _ in range(self.o.installed_base):
            customer = self._id("cu")
            due = start + int(self.rng.uniform(0, 60) * DAY)

            def renewal(t: int, customer: str = customer) -> None:
                kind = "renewal" if self.rng.random() < 0.8 else "expansion"
                self._deals += 1
                deal = {"deal_id": self._id("d"), "contact_id": self._id("c"),
                        "customer_id": customer, "kind": kind, "currency": "EUR",
                        "amount": float(self.rng.choice([4800, 9600])), "created_at": iso_ms(t)}
                self._deal_stage(t, deal, "opportunity")

            self._at(due, renewal)
        for _ in range(self.o.email_list):
            self.subscribers.append(Visitor(self._id("v"), self._pick(DEVICES), self._id("c")))
