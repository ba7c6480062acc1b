"""An independent batch recomputation of the KPIs, written plainly for the tests.

It shares nothing with ``streams/kpis`` but the event normalisation (channel
rules, currency), which has its own tests: all events are known up front,
sorted, and each KPI is computed straight from the catalogue's definition.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streams.records import EmailEvent, FormSubmit, PageView, Spend

HOUR, DAY = 3_600_000, 86_400_000
TIMEOUT = 30 * 60_000
LOOKBACK = 30 * DAY
LEAD_GOALS = {"inquiry", "contact", "demo_request", "newsletter_signup", "call_click",
              "content_download"}
SIZES = {"1h": HOUR, "1d": DAY}


def _b(t: int, size: str) -> int:
    return t - t % SIZES[size]


def recompute(records: list[Any]) -> dict[tuple[str, str, int, str], tuple[float, float]]:
    """(kpi, bucket, start, dim) -> (numerator, denominator) for 1h and 1d buckets."""
    seen: set[str] = set()
    unique = []
    for r in records:
        if r.event_id not in seen:
            seen.add(r.event_id)
            unique.append(r)
    pvs = sorted((r for r in unique if isinstance(r, PageView)), key=lambda r: (r.t, r.event_id))
    forms = sorted((r for r in unique if isinstance(r, FormSubmit)),
                   key=lambda r: (r.t, r.event_id))
    emails = [r for r in unique if isinstance(r, EmailEvent)]
    spends = [r for r in unique if isinstance(r, Spend)]
    num: dict[tuple[str, str, int, str], float] = defaultdict(float)

    def bump(name: str, t: int, dims: list[str], amount: float = 1.0) -> None:
        for size in SIZES:
            for d in dims:
                num[(name, size, _b(t, size), d)] += amount

    # sessions per visitor
    by_visitor: dict[str, list[PageView]] = defaultdict(list)
    for p in pvs:
        by_visitor[p.visitor_id].append(p)
    sessions: dict[str, list[dict[str, Any]]] = {}
    for vid, views in by_visitor.items():
        out: list[dict[str, Any]] = []
        for p in views:
            if out and p.t - out[-1]["views"][-1].t < TIMEOUT:
                out[-1]["views"].append(p)
            else:
                out.append({"views": [p], "forms": []})
        sessions[vid] = out
    standalone = []
    for f in forms:
        home = None
        for s in sessions.get(f.visitor_id, []):
            if s["views"][0].t <= f.t < s["views"][-1].t + TIMEOUT:
                home = s
        if home is None:
            standalone.append(f)
        else:
            home["forms"].append(f)
    user_dims: dict[tuple[str, int, str], set[str]] = defaultdict(set)
    first_seen = {vid: views[0].t for vid, views in by_visitor.items()}
    for vid, ss in sessions.items():
        for s in ss:
            first = s["views"][0]
            dims = ["", f"channel={first.channel}", f"device={first.device}"]
            start = first.t
            end = max([s["views"][-1].t] + [f.t for f in s["forms"]])
            n = len(s["views"])
            conv = 1 if s["forms"] else 0
            engaged_time = max(end - start, sum(p.engaged_ms for p in s["views"]))
            bump("sessions", start, dims)
            bump("session_pages", start, dims, n)
            bump("bounced", start, dims, 1 if (n == 1 and not conv) else 0)
            bump("engaged", start, dims, 1 if (engaged_time >= 10_000 or n >= 2 or conv)
                 else 0)
            bump("duration_ms", start, dims, end - start)
            bump("converted", start, dims, conv)
            for p in s["views"]:
                bump("pageviews", p.t, dims)
                for size in SIZES:
                    for d in dims:
                        user_dims[(size, _b(p.t, size), d)].add(vid)
            for f in s["forms"]:
                bump("conversions", f.t, dims)
    for f in standalone:
        bump("conversions", f.t, ["", f"channel={f.channel or 'direct'}"])
    for (size, start, d), visitors in user_dims.items():
        num[("users", size, start, d)] += len(visitors)
        num[("new_users", size, start, d)] += sum(
            1 for v in visitors if _b(first_seen[v], size) == start)
    # leads: a contact's first lead-goal form, first-touch channel
    first_lead: dict[str, FormSubmit] = {}
    for f in forms:
        if f.goal in LEAD_GOALS and f.contact_id not in first_lead:
            first_lead[f.contact_id] = f
    for f in first_lead.values():
        starts = [(s["views"][0].t, s["views"][0].channel)
                  for s in sessions.get(f.visitor_id, [])
                  if f.t - LOOKBACK <= s["views"][0].t <= f.t]
        touches = sorted(starts) + ([(f.t, f.channel)] if f.channel else [])
        channel = touches[0][1] if touches else "direct"
        bump("leads", f.t, ["", f"channel={channel}"])
    # email
    by_message: dict[str, list[EmailEvent]] = defaultdict(list)
    for e in emails:
        by_message[e.message_id].append(e)
    for evs in by_message.values():
        dims = ["", "channel=email", f"campaign={evs[0].campaign}"]
        for e in evs:
            kind = {"sent": "emails_sent", "delivered": "emails_delivered",
                    "bounce": "email_bounces", "unsubscribe": "email_unsubscribes"}.get(e.type)
            if kind:
                bump(kind, e.t, dims)
        opens = [e.t for e in evs if e.type == "open" and not e.machine_open]
        clicks = [e.t for e in evs if e.type == "click"]
        if opens:
            bump("unique_opens", min(opens), dims)
        if clicks:
            bump("unique_clicks", min(clicks), dims)
    # spend, prorated by overlap
    for r in spends:
        dims = [""] + ([f"channel={r.channel}"] if r.channel else [])
        for size, width in SIZES.items():
            b = r.start - r.start % width
            while b < r.end:
                share = (min(r.end, b + width) - max(r.start, b)) / (r.end - r.start)
                for d in dims:
                    key = (size, b, d)
                    num[("spend", *key)] += r.cost * share
                    num[("impressions", *key)] += r.impressions * share
                    num[("clicks", *key)] += r.clicks * share
                    if r.category == "media":
                        num[("media_spend", *key)] += r.cost * share
                b += width
    return _kpis(num)


def _kpis(num: dict[tuple[str, str, int, str], float]
          ) -> dict[tuple[str, str, int, str], tuple[float, float]]:
    keys = {(size, start, d) for (_, size, start, d) in num}
    out = {}

    def g(name: str, key: tuple[str, int, str]) -> float:
        return num.get((name, *key), 0.0)

    ratios = {
        "bounce_rate": ("bounced", "sessions"), "engagement_rate": ("engaged", "sessions"),
        "pages_per_session": ("session_pages", "sessions"),
        "session_conversion_rate": ("converted", "sessions"),
        "visitor_conversion_rate": ("leads", "users"),
        "email_open_rate": ("unique_opens", "emails_delivered"),
        "email_click_rate": ("unique_clicks", "emails_delivered"),
        "email_click_to_open_rate": ("unique_clicks", "unique_opens"),
        "email_unsubscribe_rate": ("email_unsubscribes", "emails_delivered"),
        "email_bounce_rate": ("email_bounces", "emails_sent"),
        "ad_ctr": ("clicks", "impressions"), "cpc": ("media_spend", "clicks"),
        "cpl": ("spend", "leads"),
    }
    counts = ["pageviews", "sessions", "users", "new_users", "conversions", "leads",
              "emails_sent", "emails_delivered", "spend", "media_spend", "impressions",
              "clicks"]
    for key in keys:
        for name in counts:
            if (name, *key) in num:
                out[(name, *key)] = (g(name, key), 1.0)
        for name, (n, d) in ratios.items():
            if name in ("visitor_conversion_rate", "cpl") and key[2].startswith("device="):
                continue  # leads have no device: these two are by total and channel only
            if (n, *key) in num or (d, *key) in num:
                out[(name, *key)] = (g(n, key), g(d, key))
        if ("sessions", *key) in num:
            out[("avg_session_duration_s", *key)] = (g("duration_ms", key) / 1000,
                                                     g("sessions", key))
        if ("media_spend", *key) in num:
            out[("cpm", *key)] = (g("media_spend", key), g("impressions", key) / 1000)
    return out
