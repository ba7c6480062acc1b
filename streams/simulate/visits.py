"""Visits to the site: a session's landing page, its page views and the form that
makes a visitor a contact (and sometimes opens a deal)."""

from __future__ import annotations

from typing import Any

from .deals import DealsWorld
from .model import (
    BOUNCE,
    CAMPAIGNS,
    CHANNEL_MIX,
    CONVERT,
    DEVICES,
    GOALS,
    LANDING,
    PAID,
    REFERRERS,
    SITE,
    Visitor,
)


class VisitsWorld(DealsWorld):
    """Sessions: who comes, on which channel, how many pages, and whether they convert."""

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
