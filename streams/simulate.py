"""A simulated marketing and sales world that produces the six input event types.

The model is a discrete-event simulation in event time: a heap of things due
to happen (the next page view of an open session, a deal moving to the next
stage, an hour of ad spend being reported) and arrivals drawn per minute from
a daily and weekly traffic curve. :meth:`World.advance` runs it to a point in
time and returns the events that happened, so the same world serves both a
historical replay (advance to the end at once) and a live feed (advance to
"now" every second). Everything is drawn from one seeded RNG: the same seed,
span and options give the same events.

Realism that the KPI engine has to cope with is part of the model: visitors
come back over days on other channels and devices, trackers resend a few
events (duplicates) and deliver them out of order, cost is reported after the
period it covers and in several currencies, and deals take days to move.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from .events import iso_ms

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

INCIDENTS = ("cpl-spike", "bounce-spike", "traffic-drop")

# channel -> share of new sessions, and how each channel's traffic looks
CHANNEL_MIX = {
    "organic_search": 0.30, "paid_search": 0.17, "direct": 0.14, "organic_social": 0.08,
    "paid_social": 0.09, "email": 0.07, "referral": 0.06, "display": 0.05, "affiliate": 0.04,
}
PAID = {  # channel -> (utm_source, utm_medium, billing currency)
    "paid_search": ("google", "cpc", "USD"),
    "paid_social": ("linkedin", "paid_social", "EUR"),
    "display": ("programmatic", "display", "GBP"),
    "affiliate": ("partners", "affiliate", "EUR"),
}
CAMPAIGNS = {
    "paid_search": ["brand-search", "generic-kpi-software", "competitor-terms"],
    "paid_social": ["li-revops-leaders", "fb-retargeting"],
    "display": ["retargeting-banners"],
    "affiliate": ["partner-program"],
}
LANDING = {
    "paid_search": {"landing": 0.7, "pricing": 0.15, "product": 0.15},
    "paid_social": {"landing": 0.8, "blog": 0.2},
    "display": {"landing": 0.9, "product": 0.1},
    "affiliate": {"landing": 0.5, "pricing": 0.5},
    "organic_search": {"blog": 0.55, "product": 0.25, "pricing": 0.1, "other": 0.1},
    "organic_social": {"blog": 0.8, "product": 0.2},
    "email": {"landing": 0.4, "product": 0.3, "blog": 0.3},
    "referral": {"blog": 0.5, "product": 0.3, "landing": 0.2},
    "direct": {"other": 0.5, "pricing": 0.2, "product": 0.3},
}
REFERRERS = {
    "organic_search": ["https://www.google.com/", "https://www.bing.com/search?q=kpi",
                       "https://duckduckgo.com/", "https://www.google.de/"],
    "organic_social": ["https://www.linkedin.com/feed/", "https://t.co/abc",
                       "https://www.reddit.com/r/marketing/"],
    "referral": ["https://partner-blog.example/best-tools", "https://news.example.org/review"],
}
DEVICES = {"desktop": 0.55, "mobile": 0.38, "tablet": 0.07}
BOUNCE = {"landing": 0.45, "blog": 0.62, "product": 0.35, "pricing": 0.30, "other": 0.5}
# probability that a non-bounced session completes a form, by landing page type
CONVERT = {"landing": 0.07, "pricing": 0.08, "product": 0.04, "blog": 0.015, "other": 0.02}
GOALS = {"demo_request": 0.25, "contact": 0.12, "inquiry": 0.12, "newsletter_signup": 0.25,
         "content_download": 0.16, "call_click": 0.05, "purchase": 0.02, "other": 0.03}
SITE = "https://www.acme-analytics.example"


@dataclass
class Options:
    seed: int = 1
    sessions_per_day: float = 4000.0
    duplicate_rate: float = 0.004
    disorder_ms: int = 20_000
    bad_rate: float = 0.0
    incident: str | None = None
    incident_start: int | None = None
    incident_duration_ms: int = 2 * HOUR
    installed_base: int = 120  # customers that exist before the span (renewals, churn)
    email_list: int = 3000
    engagement: bool = True  # social posts, content, flyers, conferences (mkt.engagements.v1)


@dataclass
class Visitor:
    vid: str
    device: str
    contact: str | None = None
    visits: int = 0


@dataclass(order=True)
class _Due:
    t: int
    seq: int
    fn: Callable[[int], None] = field(compare=False)


class World:
    """The simulated world. ``advance(t)`` returns events that happened before ``t``."""

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
        self._seed_world(start_ms)

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

    def _poisson(self, mean: float) -> int:
        if mean > 30:
            return max(0, int(self.rng.gauss(mean, math.sqrt(mean)) + 0.5))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def _start_session(self, t: int, visitor: Visitor | None = None,
                       channel: str | None = None, campaign: str | None = None) -> None:
        rng = self.rng
        if visitor is None:
            if self.visitors and rng.random() < 0.3:
                visitor = self.visitors[int(rng.random() ** 2 * len(self.visitors))]
                if rng.random() < 0.15:  # came back on another device
                    visitor = Visitor(self._id("v"), self._pick(DEVICES), visitor.contact)
                    self.visitors.append(visitor)
            else:
                visitor = Visitor(self._id("v"), self._pick(DEVICES))
                self.visitors.append(visitor)
        visitor.visits += 1
        if channel is None:
            channel = "direct" if visitor.visits > 1 and rng.random() < 0.35 \
                else self._pick(CHANNEL_MIX)
        page_type = self._pick(LANDING[channel])
        fields: dict[str, Any] = {"referrer": None, "utm_source": None, "utm_medium": None,
                                  "utm_campaign": None}
        if channel in PAID:
            source, medium, _ = PAID[channel]
            campaign = campaign or rng.choice(CAMPAIGNS[channel])
            fields.update(utm_source=source, utm_medium=medium, utm_campaign=campaign)
        elif channel == "email":
            fields.update(utm_source="newsletter", utm_medium="email",
                          utm_campaign=campaign or "newsletter")
        elif channel in REFERRERS:
            fields["referrer"] = rng.choice(REFERRERS[channel])
        bounce_p = BOUNCE[page_type]
        convert_p = CONVERT[page_type]
        if self.incident_active(t):
            if self.o.incident == "bounce-spike":
                bounce_p = 0.92
            elif self.o.incident == "cpl-spike" and channel in PAID:
                convert_p *= 0.25
        pages = 1 if rng.random() < bounce_p else 2 + int(rng.expovariate(0.45))
        converts = rng.random() < convert_p * (1.6 if pages > 2 else 1.0)
        if pages == 1 and converts is False and rng.random() < 0.01:
            converts = True  # the odd one-page visit that fills the form right away
        self._page(t, visitor, fields, page_type, pages, converts, channel)

    def _page(self, t: int, v: Visitor, utm: dict[str, Any], page_type: str, left: int,
              converts: bool, channel: str) -> None:
        rng = self.rng
        path = {"landing": "/lp/", "product": "/product/", "pricing": "/pricing",
                "blog": "/blog/", "other": "/"}[page_type]
        if path.endswith("/"):
            path += rng.choice(["kpi-engine", "attribution", "streaming", "dashboards", ""])
        engaged = int(rng.expovariate(1 / 35_000)) if rng.random() < 0.9 else None
        self._emit(t, "page_view", {
            "visitor_id": v.vid, "url": SITE + path, "page_type": page_type,
            **utm, "device": v.device if rng.random() > 0.02 else None,
            "engaged_ms": engaged,
        })
        utm = {k: None for k in utm}  # later pages of the visit are internal navigation
        left -= 1
        gap = int(10_000 + rng.expovariate(1 / 60_000))
        if left > 0:
            nxt = self._pick({"product": 0.35, "pricing": 0.25, "blog": 0.2, "other": 0.2})
            self._at(t + gap, lambda tt: self._page(tt, v, utm, nxt, left, converts, channel))
        elif converts:
            self._at(t + gap // 2, lambda tt: self._form(tt, v, channel))

    def _form(self, t: int, v: Visitor, channel: str) -> None:
        if v.contact is None:
            v.contact = self._id("c")
            if self.rng.random() < 0.5:
                self.subscribers.append(v)
        goal = self._pick(GOALS)
        fields: dict[str, Any] = {"visitor_id": v.vid, "contact_id": v.contact, "goal": goal}
        if channel in PAID and self.rng.random() < 0.5:
            fields["utm_medium"] = PAID[channel][1]
        self._emit(t, "form_submit", fields)
        if goal in ("demo_request", "contact", "inquiry", "call_click") \
                and self.rng.random() < 0.55:
            self._new_deal(t, v.contact)

    # -- engagement (off-site) ------------------------------------------------------
    def _eng(self, t: int, kind: str, channel: str, campaign: str, content: str, count: int,
             **ids: str) -> None:
        if count > 0:
            self._emit(t, "engagement", {"channel": channel, "campaign": campaign,
                                         "content_id": content, "kind": kind,
                                         "count": count, **ids}, rng=self.erng)

    def _plan_engagement(self, day: int) -> None:
        """One day of posts, content, and (some days) a flyer drop or a conference."""
        rng = self.erng
        scale = self.o.sessions_per_day / 4000
        weekday = (day // DAY + 3) % 7
        date = iso_ms(day)[:10]
        posts = [("organic_social", f"social-{date}")] * (1 + int(rng.random() * 3))
        if weekday < 5:
            posts.append(("paid_social", "li-revops-leaders"))
        for i, (channel, campaign) in enumerate(posts):
            at = day + int((8 + rng.random() * 10) * HOUR)
            reach = max(50, int(rng.gauss(900, 250) * scale * (2.5 if channel == "paid_social"
                                                               else 1)))
            self._at(at, partial(self._social_post, channel=channel, campaign=campaign,
                                 content=f"post-{date}-{i}", reach=reach))
        for _ in range(self._poisson(12 * scale)):
            at = day + int(rng.random() * DAY)
            channel = rng.choice(["organic_search", "email", "referral", "organic_social"])
            self._at(at, partial(self._content, channel=channel))
        if iso_ms(day)[8:10] in ("01", "15"):  # a flyer drop twice a month
            at = day + 10 * HOUR
            self._at(at, lambda t: self._eng(t, "flyer_distributed", "offline",
                                             f"flyer-{date}", "flyer-spring", int(2000 * scale)))
        if weekday == 3:  # a conference every Thursday
            self._at(day + 9 * HOUR, lambda t: self._conference(t, f"conf-{date}"))

    def _social_post(self, t: int, channel: str, campaign: str, content: str,
                     reach: int) -> None:
        """Platform reports, hourly for six hours: impressions and reactions decay."""
        rng = self.erng
        for h in range(6):
            at = t + h * HOUR + int(rng.random() * 5 * MIN)
            imp = int(reach * 0.5 ** h)
            if not imp:
                break
            self._eng(at, "impression", channel, campaign, content, imp)
            for kind, rate in (("like", 0.025), ("comment", 0.004), ("share", 0.003),
                               ("follow", 0.002)):
                self._eng(at, kind, channel, campaign, content,
                          int(imp * rate * rng.uniform(0.5, 1.5) + rng.random()))

    def _content(self, t: int, channel: str) -> None:
        rng = self.erng
        content = rng.choice(["whitepaper-kpis", "guide-attribution", "webinar-revops"])
        self._eng(t, "view", channel, "content", content, 1 + int(rng.expovariate(0.2)))
        if rng.random() < 0.4:
            self._eng(t + 2 * MIN, "download", channel, "content", content, 1)

    def _conference(self, t: int, campaign: str) -> None:
        """Attendees at a booth: each badge scan is one attendance with a contact; some
        of them visit the site within two weeks (the flyer's QR code) and convert."""
        rng = self.erng
        for _ in range(max(5, int(rng.gauss(60, 15) * max(self.o.sessions_per_day / 4000,
                                                            0.2)))):
            v = Visitor(self._id("v"), self._pick(DEVICES))
            v.contact = self._id("c") if rng.random() < 0.6 else None
            at = t + int(rng.random() * 7 * HOUR)
            ids = {"contact_id": v.contact} if v.contact else {}
            self._eng(at, "event_attendance", "offline", campaign, "booth", 1, **ids)
            if rng.random() < 0.25:
                self.visitors.append(v)
                self._at(at + int(rng.uniform(0.5, 14) * DAY), partial(self._offline_visit, v=v))

    def _offline_visit(self, t: int, v: Visitor) -> None:
        rng = self.erng
        v.visits += 1
        self._emit(t, "page_view", {"visitor_id": v.vid, "url": SITE + "/lp/conference",
                                    "page_type": "landing", "channel": "offline",
                                    "device": v.device}, rng=rng)
        self._emit(t + 40_000, "page_view", {"visitor_id": v.vid, "url": SITE + "/pricing",
                                             "page_type": "pricing", "device": v.device},
                   rng=rng)
        if rng.random() < 0.6:
            v.contact = v.contact or self._id("c")
            goal = rng.choice(["demo_request", "contact", "content_download"])
            self._emit(t + 90_000, "form_submit", {"visitor_id": v.vid,
                                                   "contact_id": v.contact, "goal": goal},
                       rng=rng)

    # -- CRM --------------------------------------------------------------------
    def _new_deal(self, t: int, contact: str | None, kind: str = "new_business",
                  customer: str | None = None, first_stage: str = "mql") -> None:
        self._deals += 1
        deal = {"deal_id": self._id("d"), "contact_id": contact,
                "customer_id": customer or self._id("cu"), "kind": kind,
                "currency": self.rng.choice(["EUR", "EUR", "USD", "GBP"]),
                "amount": float(self.rng.choice([1200, 2400, 4800, 9600, 18000])),
                "created_at": iso_ms(t)}
        delay = int(self.rng.uniform(0.1, 1.5) * DAY) if first_stage == "mql" else 0
        self._at(t + delay, partial(self._deal_stage, deal=deal, stage=first_stage))

    _NEXT = {"mql": ("sal", 0.7), "sal": ("sql", 0.6), "sql": ("opportunity", 0.65),
             "opportunity": ("won", 0.35)}

    def _deal_stage(self, t: int, deal: dict[str, Any], stage: str) -> None:
        rng = self.rng
        fields = dict(deal, stage=stage)
        if stage == "won" and rng.random() < 0.7:
            fields["gross_profit"] = round(deal["amount"] * rng.uniform(0.6, 0.85), 2)
        # CRMs often report in the office's local offset
        self._emit(t, "deal_update", fields, delay_ms=int(rng.random() * 60_000))
        if stage in ("won", "lost"):
            if stage == "won" and deal["kind"] == "new_business":
                self._customers += 1
            return
        nxt, p = self._NEXT[stage]
        if rng.random() < p:
            self._at(t + int(rng.uniform(0.3, 4) * DAY), partial(self._deal_stage, deal=deal,
                                                                 stage=nxt))
        elif stage in ("sql", "opportunity") or rng.random() < 0.3:
            self._at(t + int(rng.uniform(1, 6) * DAY),
                     partial(self._deal_stage, deal=deal, stage="lost"))

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

    # -- email ----------------------------------------------------------------
    def _plan_email_campaign(self, day: int) -> None:
        weekday = (day // DAY + 3) % 7
        if weekday not in (1, 3):  # Tuesday and Thursday newsletters
            return
        campaign = f"newsletter-{iso_ms(day)[:10]}"
        send_at = day + 9 * HOUR
        self._at(send_at, lambda t: self._send_campaign(t, campaign))

    def _send_campaign(self, t: int, campaign: str) -> None:
        rng = self.rng
        for i, rcpt in enumerate(self.subscribers):
            mid = self._id("m")
            ts = t + i * 50
            base = {"message_id": mid, "campaign": campaign}
            self._emit(ts, "email_event", {**base, "type": "sent"})
            if rng.random() < 0.03:
                self._emit(ts + 2_000, "email_event", {**base, "type": "bounce"})
                continue
            self._emit(ts + 1_000, "email_event", {**base, "type": "delivered"})
            if rng.random() < 0.18:
                self._emit(ts + 5_000, "email_event",
                           {**base, "type": "open", "machine_open": True})
            if rng.random() < 0.28:
                t_open = ts + int(rng.expovariate(1 / 3_600_000))
                self._emit(t_open, "email_event", {**base, "type": "open", "machine_open": False})
                if rng.random() < 0.25:
                    self._emit(t_open + 3_000, "email_event",
                               {**base, "type": "open", "machine_open": False})
                if rng.random() < 0.14:
                    t_click = t_open + int(rng.uniform(5_000, 90_000))
                    self._emit(t_click, "email_event", {**base, "type": "click"})
                    self._at(t_click + 1_500, partial(self._start_session, visitor=rcpt,
                                                      channel="email", campaign=campaign))
            if rng.random() < 0.004:
                self._emit(ts + int(rng.uniform(60_000, 7_200_000)), "email_event",
                           {**base, "type": "unsubscribe"})

    # -- cost -----------------------------------------------------------------
    def _report_hourly_spend(self, t: int) -> None:
        """Ad platforms report the hour that just ended, a few minutes late."""
        start = t - HOUR
        shape = self.traffic_shape(start)
        for channel, (_, _, currency) in PAID.items():
            if channel == "affiliate":
                continue
            for campaign in CAMPAIGNS[channel]:
                cost = self.o.sessions_per_day / 4000 * 9.0 * shape * self.rng.uniform(0.8, 1.2)
                if self.incident_active(start) and self.o.incident == "cpl-spike":
                    cost *= 4.0
                impressions = int(cost * self.rng.uniform(180, 260))
                clicks = int(impressions * self.rng.uniform(0.008, 0.03))
                self._emit(t + int(self.rng.uniform(2, 8) * MIN), "spend", {
                    "channel": channel, "campaign": campaign, "category": "media",
                    "cost": round(cost, 2), "currency": currency, "impressions": impressions,
                    "clicks": clicks, "period_start": iso_ms(start), "period_end": iso_ms(t),
                }, delay_ms=0)

    def _report_daily_costs(self, t: int) -> None:
        day = t - 2 * HOUR - DAY
        scale = self.o.sessions_per_day / 4000
        costs = [
            (None, "martech-stack", "software", 95.0, "USD"),
            ("affiliate", "partner-program", "media", 60.0, "EUR"),
            (None, "marketing-team", "labour", 1400.0, "EUR"),
            ("paid_social", "agency-retainer", "agency", 180.0, "GBP"),
        ]
        for channel, campaign, category, amount, currency in costs:
            self._emit(t, "spend", {
                "channel": channel, "campaign": campaign, "category": category,
                "cost": round(amount * scale * self.rng.uniform(0.95, 1.05), 2),
                "currency": currency, "impressions": 0, "clicks": 0,
                "period_start": iso_ms(day), "period_end": iso_ms(day + DAY),
            }, delay_ms=0)


def generate(start_ms: int, end_ms: int, options: Options | None = None,
             chunk_ms: int = HOUR) -> Any:
    """Yield lists of events for [start, end), one list per chunk, in arrival order.

    Events that occur before ``end_ms`` but would arrive after it (tracker delay)
    are delivered in the last chunk, so the span is complete.
    """
    world = World(start_ms, options)
    t = start_ms
    while t < end_ms:
        nxt = min(t + chunk_ms, end_ms)
        batch = world.advance(nxt)
        if nxt >= end_ms:
            batch += [ev for ev in world.drain() if _occurred_ms(ev) < end_ms]
        yield batch
        t = nxt


def _occurred_ms(ev: dict[str, Any]) -> int:
    from .schemas import parse_rfc3339_ms

    try:
        return parse_rfc3339_ms(ev["occurred_at"])
    except (KeyError, ValueError, TypeError):
        return 0


def closing_events(partitions: int, at: int) -> list[dict[str, Any]]:
    """Harmless events at ``at`` on every input partition, for the end of a replay.

    A replayed span only becomes final once every input partition's watermark has
    passed its end plus the lateness; after the last real event nothing moves a
    partition's watermark but the idle timeout. These events (one of each type per
    partition, zero amounts, a "closing" campaign) move them deterministically.
    """
    from .produce import partition_for

    keys: dict[int, str] = {}
    i = 0
    while len(keys) < partitions:
        keys.setdefault(partition_for(f"closer-{i}", partitions), f"closer-{i}")
        i += 1
    channels: dict[int, str] = {}  # spend is keyed by channel
    for ch in ("organic_search", "paid_search", "organic_social", "paid_social", "email",
               "display", "affiliate", "referral", "direct", "offline", "other",
               "unallocated"):
        channels.setdefault(partition_for(ch, partitions), ch)
    base = {"occurred_at": iso_ms(at), "schema_version": 1}
    out: list[dict[str, Any]] = []
    for p, key in sorted(keys.items()):
        out += [
            {**base, "event_type": "page_view", "event_id": f"close-pv-{p}",
             "visitor_id": key, "url": "https://x.example/", "page_type": "other"},
            {**base, "event_type": "form_submit", "event_id": f"close-fs-{p}",
             "visitor_id": key, "contact_id": key, "goal": "other"},
            {**base, "event_type": "email_event", "event_id": f"close-em-{p}",
             "message_id": key, "campaign": "closing", "type": "sent"},
            {**base, "event_type": "deal_update", "event_id": f"close-du-{p}",
             "deal_id": f"closer-deal-{p}", "contact_id": key, "customer_id": f"closer-{p}",
             "kind": "new_business", "stage": "mql", "amount": 0.0, "currency": "EUR",
             "created_at": iso_ms(at)},
            {**base, "event_type": "engagement", "event_id": f"close-en-{p}",
             "channel": "other", "campaign": key, "content_id": "closing",
             "kind": "impression", "count": 1}]
    for p, ch in sorted(channels.items()):
        out.append({**base, "event_type": "spend", "event_id": f"close-sp-{p}",
                    "channel": None if ch == "unallocated" else ch, "campaign": "closing",
                    "category": "other", "cost": 0.0, "currency": "EUR", "impressions": 0,
                    "clicks": 0, "period_start": iso_ms(at - 60_000), "period_end": iso_ms(at)})
    return out

