"""Normalised input events: what KPI code sees after decode, validation and rules.

Times are epoch milliseconds (UTC). Amounts are already in the reporting
currency. ``raw`` is the event object as it arrived (unknown fields kept), so a
late event can be forwarded unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class PageView:
    event_id: str
    t: int
    visitor_id: str
    url: str
    page_type: str
    channel: str
    device: str
    engaged_ms: int
    campaign: str | None
    raw: dict[str, Any]
    traffic_type: str = "human"  # human, bot or internal (only human counts in KPIs)


@dataclass(slots=True)
class FormSubmit:
    event_id: str
    t: int
    visitor_id: str
    contact_id: str
    goal: str
    channel: str | None  # the form's own touch; None when it carries no channel or utm
    campaign: str | None
    raw: dict[str, Any]
    traffic_type: str = "human"


@dataclass(slots=True)
class EmailEvent:
    event_id: str
    t: int
    message_id: str
    campaign: str
    type: str
    machine_open: bool
    raw: dict[str, Any]


@dataclass(slots=True)
class DealUpdate:
    event_id: str
    t: int
    deal_id: str
    contact_id: str | None
    customer_id: str
    kind: str
    stage: str
    amount: float
    gross_profit: float | None
    created_at: int
    raw: dict[str, Any]


@dataclass(slots=True)
class Spend:
    event_id: str
    t: int
    channel: str | None  # None: unallocated
    campaign: str
    category: str
    cost: float
    impressions: int
    clicks: int
    start: int
    end: int
    raw: dict[str, Any]


@dataclass(slots=True)
class Engagement:
    event_id: str
    t: int
    channel: str
    campaign: str
    content_id: str
    kind: str
    count: int
    visitor_id: str | None
    contact_id: str | None
    raw: dict[str, Any]


Record = PageView | FormSubmit | EmailEvent | DealUpdate | Spend | Engagement
