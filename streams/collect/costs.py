"""Cost tables as ad platforms export them -> spend events that restate. Pure.

The columns are those of GA4's cost-data import: ``date, source, medium, campaign,
cost, clicks, impressions, currency``, optional ``category`` (default ``media``) and
``channel`` (default: the channel rules' mapping of ``medium``; a medium they do not
map gives ``other``, never ``direct``: direct traffic has no cost). Header names are
matched without case, and GA4's own names (``utm_source``, ``daily_cost``, ...) are
understood too. ``date`` is a day in the reporting time zone (``YYYY-MM-DD`` or
``YYYYMMDD``), as ad accounts report in their own zone: the row's cost is spread
over that local day.

Platforms revise yesterday's cost for days, and GA4 replaces a row when it is
uploaded again. So does this: every event carries ``restates`` =
``date|source|medium|campaign``, and the spend stage keeps the newest upload of
each such row, retracting the earlier one's prorated cost, clicks and impressions
before adding the new. Uploading the same table twice changes nothing; a revised
row changes exactly its own day. A table with any bad line is refused whole,
naming the lines: half a revision would be a wrong restatement.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime
from typing import Any

from ..channels import ChannelRules
from ..events import iso_ms
from ..kpis.buckets import Calendar

ALIASES = {
    "date": ("date", "day"),
    "source": ("source", "utm_source", "campaign_source"),
    "medium": ("medium", "utm_medium", "campaign_medium"),
    "campaign": ("campaign", "utm_campaign", "campaign_name"),
    "cost": ("cost", "daily_cost"),
    "clicks": ("clicks", "daily_clicks"),
    "impressions": ("impressions", "daily_impressions"),
    "currency": ("currency", "currency_code"),
    "category": ("category",),
    "channel": ("channel",),
}
REQUIRED = ("date", "source", "medium", "campaign", "cost")
CATEGORIES = ("media", "software", "labour", "agency", "overhead", "other")
MAX_LINES = 100_000


class CostTableError(ValueError):
    """The table cannot be imported; the message names the lines and fields."""


def _columns(header: list[str]) -> dict[str, int]:
    seen = {h.strip().lower(): i for i, h in enumerate(header)}
    out: dict[str, int] = {}
    for name, options in ALIASES.items():
        for opt in options:
            if opt in seen:
                out[name] = seen[opt]
                break
    missing = [c for c in REQUIRED if c not in out]
    if missing:
        raise CostTableError(f"line 1: missing column(s) {', '.join(missing)} (the header "
                             f"needs {', '.join(REQUIRED)}; optional clicks, impressions, "
                             "currency, category, channel)")
    return out


def _day(text: str) -> date:
    t = text.strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(t, fmt).date()  # noqa: DTZ007 - a calendar day
        except ValueError:
            continue
    raise ValueError(f"date {text!r} is not YYYY-MM-DD or YYYYMMDD")


def _number(text: str, name: str, integer: bool = False) -> float:
    t = text.strip().replace(",", "") if text else "0"
    try:
        value = float(t or "0")
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{name} is negative ({text})")
    if integer and value != int(value):
        raise ValueError(f"{name} {text!r} is not a whole number")
    return value


def local_day(day: date, cal: Calendar) -> tuple[int, int]:
    """[start, end) of a local calendar day in epoch ms (23 or 25 hours on DST days)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=cal.tz)
    start = cal.floor(int(noon.timestamp() * 1000), "1d")
    return start, cal.end(start, "1d")


def rows_to_events(text: str, *, now_ms: int, currency: str, tz: str,
                   rules: ChannelRules) -> list[dict[str, Any]]:
    """A CSV cost table -> spend events (all or nothing: raises :class:`CostTableError`)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise CostTableError("the table is empty (it needs a header line)") from None
    cols = _columns(header)
    cal = Calendar(tz)
    events: list[dict[str, Any]] = []
    errors: list[str] = []
    keys: dict[str, int] = {}
    for lineno, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if lineno > MAX_LINES + 1:
            raise CostTableError(f"more than {MAX_LINES} lines; split the table")

        def cell(name: str, row: list[str] = row) -> str:
            i = cols.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        try:
            day = _day(cell("date"))
            source, medium, campaign = cell("source"), cell("medium"), cell("campaign")
            for name, value in (("source", source), ("medium", medium),
                                ("campaign", campaign)):
                if not value:
                    raise ValueError(f"{name} is empty")
            cost = _number(cell("cost"), "cost")
            clicks = int(_number(cell("clicks"), "clicks", integer=True))
            imps = int(_number(cell("impressions"), "impressions", integer=True))
            category = cell("category").lower() or "media"
            if category not in CATEGORIES:
                raise ValueError(f"category {category!r} is not one of "
                                 f"{', '.join(CATEGORIES)}")
        except ValueError as exc:
            errors.append(f"line {lineno}: {exc}")
            continue
        key = f"{day.isoformat()}|{source}|{medium}|{campaign}"
        if key in keys:
            errors.append(f"line {lineno}: the same date, source, medium and campaign as "
                          f"line {keys[key]} (one row per day and campaign)")
            continue
        keys[key] = lineno
        start, end = local_day(day, cal)
        mapped = rules.utm_medium.get(medium.lower())
        channel = cell("channel") or mapped or "other"
        digest = hashlib.sha256(f"{key}|{now_ms}".encode()).hexdigest()[:24]
        events.append({
            "event_type": "spend", "schema_version": 1,
            "event_id": f"cost:{digest}",
            "occurred_at": iso_ms(now_ms),
            "channel": channel, "campaign": campaign, "category": category,
            "cost": cost, "currency": (cell("currency") or currency).upper(),
            "impressions": imps, "clicks": clicks,
            "period_start": iso_ms(start), "period_end": iso_ms(end),
            "source": source, "medium": medium,
            "restates": key,
        })
    if errors:
        shown = errors[:20] + ([f"... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise CostTableError("nothing imported; fix these lines:\n  " + "\n  ".join(shown))
    return events
