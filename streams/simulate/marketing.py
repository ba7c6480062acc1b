"""Marketing around the site: off-site engagement (posts, content, flyers,
conferences), newsletters, and the cost reports of ads and of everything else."""

from __future__ import annotations

from functools import partial

from ..events import iso_ms
from .model import CAMPAIGNS, DAY, DEVICES, HOUR, MIN, PAID, SITE, Visitor
from .visits import VisitsWorld


class MarketingWorld(VisitsWorld):
    """Engagement, e-mail campaigns and spend, scheduled by the world day by day."""

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
