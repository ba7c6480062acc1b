"""An independent batch recomputation of the KPIs, written plainly for the tests.

It shares nothing with ``streams/kpis`` but the event normalisation (channel
rules, currency), which has its own tests: all events are known up front,
sorted, and each KPI is computed straight from the catalogue's definition.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from streams.records import DealUpdate, EmailEvent, Engagement, FormSubmit, PageView, Spend

HOUR, DAY = 3_600_000, 86_400_000
TIMEOUT = 30 * 60_000
LOOKBACK = 30 * DAY
LEAD_GOALS = {"inquiry", "contact", "demo_request", "newsletter_signup", "call_click",
              "content_download"}
SIZES = {"1h": HOUR, "1d": DAY}
ZONE = ["UTC"]  # the reporting zone of the current recompute()


def _b(t: int, size: str) -> int:
    """Start of the local hour or day holding ``t``, read off the local wall clock."""
    if ZONE[0] == "UTC":
        return t - t % SIZES[size]
    local = datetime.fromtimestamp(t / 1000, tz=ZoneInfo(ZONE[0]))
    if size == "1h":  # keeps fold: the repeated autumn hour is its own bucket
        start = local.replace(minute=0, second=0, microsecond=0)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    return round(start.timestamp() * 1000)


def _next(b: int, size: str) -> int:
    """Start of the bucket after the one starting at ``b``."""
    if ZONE[0] == "UTC" or size == "1h":
        return b + SIZES[size]  # every zone tested here has whole-hour (or fixed) offsets
    local = datetime.fromtimestamp(b / 1000, tz=ZoneInfo(ZONE[0]))
    tomorrow = (local + timedelta(days=1)).date()
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=ZoneInfo(ZONE[0]))
    return round(midnight.astimezone(UTC).timestamp() * 1000)


def credit(model: str, touches: list[tuple[int, str, str | None]],
           lead_t: int) -> dict[str, float]:
    """Dim -> share of one lead: ``channel=`` by the touches' channels, written from the
    catalogue's words, and ``campaign=`` by the same model over the same touches with
    each touch's campaign in place of its channel (touches without one: no campaign)."""
    out = {f"channel={c}": share
           for c, share in _by(model, [(t, c) for t, c, _ in touches], lead_t).items()}
    by_campaign = _by(model, [(t, c) for t, c, _ in touches], lead_t,
                      [camp for _, _, camp in touches])
    out.update({f"campaign={c}": share for c, share in by_campaign.items() if c is not None})
    return out


def _by(model: str, touches: list[tuple[int, str]], lead_t: int,
        labels: list[str | None] | None = None) -> dict[Any, float]:
    """Shares under ``model``, by each touch's channel (or ``labels``, one per touch)."""
    if not touches:
        return {"direct": 1.0} if labels is None else {}
    chans = [c for _, c in touches]
    names = labels if labels is not None else chans
    out: dict[Any, float] = defaultdict(float)
    if model == "first_touch":
        out[names[0]] = 1.0
    elif model == "last_touch":
        out[names[-1]] = 1.0
    elif model == "last_non_direct":
        rest = [i for i, c in enumerate(chans) if c != "direct"]
        out[names[rest[-1] if rest else -1]] = 1.0
    elif model == "linear":
        for c in names:
            out[c] += 1 / len(names)
    elif model == "position_based":
        if len(names) == 1:
            out[names[0]] = 1.0
        elif len(names) == 2:
            out[names[0]] += 0.5
            out[names[1]] += 0.5
        else:
            out[names[0]] += 0.4
            out[names[-1]] += 0.4
            for c in names[1:-1]:
                out[c] += 0.2 / (len(names) - 2)
    elif model == "time_decay":
        weights = [(names[i], 0.5 ** ((lead_t - t) / (7 * DAY)))
                   for i, (t, _) in enumerate(touches)]
        total = sum(w for _, w in weights)
        for c, w in weights:
            out[c] += w / total
    return dict(out)


def recompute(records: list[Any], model: str = "first_touch", tz: str = "UTC"
              ) -> dict[tuple[str, str, int, str], tuple[float, float]]:
    """(kpi, bucket, start, dim) -> (numerator, denominator) for 1h and 1d buckets of
    local time in ``tz``."""
    ZONE[0] = tz
    try:
        return _recompute(records, model)
    finally:
        ZONE[0] = "UTC"


def _recompute(records: list[Any], model: str
               ) -> dict[tuple[str, str, int, str], tuple[float, float]]:
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
    form_device: dict[str, str] = {}  # form event_id -> device of the session it is in
    for f in forms:
        home = None
        for s in sessions.get(f.visitor_id, []):
            if s["views"][0].t <= f.t < s["views"][-1].t + TIMEOUT:
                home = s
        if home is None:
            standalone.append(f)
        else:
            home["forms"].append(f)
            form_device[f.event_id] = home["views"][0].device
    user_dims: dict[tuple[str, int, str], set[str]] = defaultdict(set)
    # acquisition: a visitor is new in the bucket of its first page view ever, and only in
    # the channel and device of its first session ever (that page view's)
    acquired = {vid: (views[0].t, {"", f"channel={views[0].channel}",
                                   f"device={views[0].device}"})
                for vid, views in by_visitor.items()}
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
        bump("conversions", f.t, ["", f"channel={f.channel or 'direct'}", "device=unknown"])
    for (size, start, d), visitors in user_dims.items():
        num[("users", size, start, d)] += len(visitors)
        num[("new_users", size, start, d)] += sum(
            1 for v in visitors
            if _b(acquired[v][0], size) == start and d in acquired[v][1])
    # leads: a contact's first lead-goal form, credited under the model
    first_lead: dict[str, FormSubmit] = {}
    for f in forms:
        if f.goal in LEAD_GOALS and f.contact_id not in first_lead:
            first_lead[f.contact_id] = f
    lead_credit: dict[str, dict[str, float]] = {}
    for f in first_lead.values():
        # a session's campaign is its first page view's, as its channel is
        starts = [(s["views"][0].t, s["views"][0].channel, s["views"][0].campaign)
                  for s in sessions.get(f.visitor_id, [])
                  if f.t - LOOKBACK <= s["views"][0].t <= f.t]
        touches = sorted(starts, key=lambda x: (x[0], x[1])) + \
            ([(f.t, f.channel, f.campaign)] if f.channel else [])
        lead_credit[f.contact_id] = credit(model, touches, f.t)
        num_credit(num, "leads", f.t, lead_credit[f.contact_id])
        # by device, a whole lead in the device of its form's session, else unknown: only
        # the numerator of visitor_conversion_rate by device, never a published count
        bump("leads_by_device", f.t, [f"device={form_device.get(f.event_id, 'unknown')}"])
    funnel(num, [r for r in unique if isinstance(r, DealUpdate)], first_lead, lead_credit)
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
        for t in opens:
            bump("email_opens", t, dims)
        clicks = [e.t for e in evs if e.type == "click"]
        if opens:
            bump("unique_opens", min(opens), dims)
        if clicks:
            bump("unique_clicks", min(clicks), dims)
    # spend, prorated by overlap
    for r in spends:
        dims = [""] + ([f"channel={r.channel}"] if r.channel else []) + \
            [f"campaign={r.campaign}"]
        for size in SIZES:
            b = _b(r.start, size)
            while b < r.end:
                nxt = _next(b, size)
                share = (min(r.end, nxt) - max(r.start, b)) / (r.end - r.start)
                for d in dims:
                    key = (size, b, d)
                    num[("spend", *key)] += r.cost * share
                    num[("impressions", *key)] += r.impressions * share
                    num[("clicks", *key)] += r.clicks * share
                    if r.category == "media":
                        num[("media_spend", *key)] += r.cost * share
                b = nxt
    # engagement (section 11): counts by kind; "social" is the two social channels
    for r in unique:
        if not isinstance(r, Engagement):
            continue
        dims = ["", f"channel={r.channel}", f"campaign={r.campaign}"]
        social = r.channel in ("organic_social", "paid_social")
        name = ("content_views" if r.kind in ("view", "download")
                else "offline_reach" if r.kind in ("flyer_distributed", "event_attendance")
                else "social_impressions" if social and r.kind == "impression"
                else "social_engagements" if social and r.kind in ("like", "comment", "share")
                else "new_followers" if social and r.kind == "follow" else None)
        if name:
            bump(name, r.t, dims, r.count)
    return _kpis(num)


def num_credit(num: dict[Any, float], name: str, t: int, shares: dict[str, float],
               amount: float = 1.0) -> None:
    for size in SIZES:
        b = _b(t, size)
        num[(name, size, b, "")] += amount
        for d, share in shares.items():
            num[(name, size, b, d)] += amount * share


ORDER = ["mql", "sal", "sql", "opportunity", "won"]


def funnel(num: dict[Any, float], deals: list[DealUpdate], first_lead: dict[str, Any],
           lead_credit: dict[str, dict[str, float]]) -> None:
    by_deal: dict[str, list[DealUpdate]] = defaultdict(list)
    for d in deals:
        by_deal[d.deal_id].append(d)
    reached_mql: set[str] = set()
    won_contacts: set[str] = set()
    closes = []
    for updates in by_deal.values():
        updates.sort(key=lambda u: (u.t, u.event_id))
        first = updates[0]
        contact = first.contact_id
        shares = lead_credit.get(contact or "", {"channel=unattributed": 1.0})
        close = next((u for u in updates if u.stage in ("won", "lost")), None)
        entered: dict[str, int] = {}
        for u in updates:
            if u.stage in ("won", "lost") and u is not close:
                continue
            entered.setdefault(u.stage, u.t)

        def reached(stage: str, entered: dict[str, int] = entered) -> bool:
            return any(s in entered for s in ORDER[ORDER.index(stage):])
        names = {"mql": "mqls", "sal": "sals", "sql": "sqls", "opportunity": "opportunities",
                 "won": "won_deals", "lost": "lost_deals"}
        for stage, t in entered.items():
            num_credit(num, names[stage], t, shares)
            if stage == "mql" and reached("sql"):
                num_credit(num, "mql_to_sql", t, shares)
            if stage == "sql" and reached("opportunity"):
                num_credit(num, "sql_to_opp", t, shares)
        if reached("mql") and contact:
            reached_mql.add(contact)
        if close is not None and close.stage == "won" and contact:
            won_contacts.add(contact)
        if close is not None and close.stage == "won":
            num_credit(num, "revenue", close.t, shares, close.amount)
            gp = close.gross_profit if close.gross_profit is not None else close.amount
            num_credit(num, "gross_profit", close.t, shares, gp)
            num_credit(num, "cycle_days", close.t, shares,
                       max(0, close.t - first.created_at) / DAY)
            if first.kind == "new_business":
                num_credit(num, "new_revenue", close.t, shares, close.amount)
        if close is not None:
            closes.append((close, first.kind, first.customer_id, shares))
    for contact, f in first_lead.items():
        if contact in reached_mql:
            num_credit(num, "lead_to_mql", f.t, lead_credit[contact])
        if contact in won_contacts:
            num_credit(num, "lead_to_customer", f.t, lead_credit[contact])
    # customers: active from the first won new-business deal, churned at the first lost
    # renewal after that
    firsts: dict[str, tuple[int, dict[str, float]]] = {}
    for close, kind, customer, shares in sorted(closes, key=lambda c: (c[0].t, c[0].deal_id)):
        if close.stage == "won" and kind == "new_business" and customer not in firsts:
            firsts[customer] = (close.t, shares)
    churned: set[str] = set()
    for close, kind, customer, _ in sorted(closes, key=lambda c: c[0].t):
        if close.stage == "lost" and kind == "renewal" and customer in firsts and \
                close.t > firsts[customer][0] and customer not in churned:
            churned.add(customer)
            num_credit(num, "churned", close.t, firsts[customer][1])
    for t, shares in firsts.values():
        num_credit(num, "new_customers", t, shares)


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
        "lead_to_mql_rate": ("lead_to_mql", "leads"),
        "lead_to_customer_rate": ("lead_to_customer", "leads"),
        "mql_to_sql_rate": ("mql_to_sql", "mqls"),
        "sql_to_opportunity_rate": ("sql_to_opp", "sqls"),
        "avg_revenue_per_sale": ("revenue", "won_deals"),
        "avg_sales_cycle_days": ("cycle_days", "won_deals"),
        "cac": ("spend", "new_customers"),
        "cost_per_opportunity": ("spend", "opportunities"),
    }
    counts = ["pageviews", "sessions", "users", "new_users", "conversions", "leads",
              "emails_sent", "emails_delivered", "email_opens", "spend", "media_spend",
              "impressions", "clicks", "mqls", "sals", "sqls", "opportunities", "won_deals",
              "lost_deals",
              "revenue", "new_revenue", "gross_profit", "new_customers", "content_views",
              "social_impressions", "social_engagements", "new_followers", "offline_reach"]
    for key in keys:
        for name in counts:
            if (name, *key) in num:
                out[(name, *key)] = (g(name, key), 1.0)
        if ("won_deals", *key) in num or ("lost_deals", *key) in num:
            out[("win_rate", *key)] = (g("won_deals", key),
                                       g("won_deals", key) + g("lost_deals", key))
        for name, (n, d) in ratios.items():
            if key[2].startswith("campaign=") and name == "visitor_conversion_rate":
                continue  # users have no campaign
            if key[2].startswith("device="):
                if name not in ("bounce_rate", "engagement_rate", "pages_per_session",
                                "session_conversion_rate", "visitor_conversion_rate"):
                    continue  # by total and channel only
                if n == "leads":
                    n = "leads_by_device"
            if (n, *key) in num or (d, *key) in num:
                out[(name, *key)] = (g(n, key), g(d, key))
        if ("social_impressions", *key) in num:
            out[("social_engagement_rate", *key)] = (g("social_engagements", key),
                                                     g("social_impressions", key))
        if key[2].startswith("channel=") and ("offline_reach", *key) in num:
            out[("offline_response_rate", *key)] = (g("leads", key), g("offline_reach", key))
        if key[2] == "" and ("offline_reach", *key) in num:
            # the total: leads credited to channel offline / all offline reach
            out[("offline_response_rate", *key)] = (
                g("leads", (key[0], key[1], "channel=offline")), g("offline_reach", key))
        if key[2] == "" or key[2].startswith("channel="):
            for name, n, d in (("cost_per_sale", "spend", "won_deals"),
                               ("cost_per_acquisition", "spend", "conversions")):
                if (n, *key) in num or (d, *key) in num:
                    out[(name, *key)] = (g(n, key), g(d, key))
            if ("revenue", *key) in num:
                # against the bucket just before: the previous hour, or local day
                before = g("revenue", (key[0], _b(key[1] - 1, key[0]), key[2]))
                out[("revenue_growth", *key)] = (g("revenue", key) - before, before)
        if ("sessions", *key) in num:
            out[("avg_session_duration_s", *key)] = (g("duration_ms", key) / 1000,
                                                     g("sessions", key))
        if ("media_spend", *key) in num:
            out[("cpm", *key)] = (g("media_spend", key), g("impressions", key) / 1000)
    return out


def lead_qualifications(records: list[Any], rules_doc: dict[str, Any]
                        ) -> dict[str, tuple[int, float]]:
    """contact -> (time it first reached the MQL threshold, its score then), from the
    rules file read plainly: facts of the contact's own forms, e-mails and engagements,
    and of every page view and form of each visitor a form links to the contact."""
    half = rules_doc["half_life_days"] * DAY
    fields = {  # what a rule may test, read off each record
        PageView: lambda r: ("page_view", {"page_type": r.page_type, "channel": r.channel,
                                           "device": r.device, "utm_campaign": r.campaign}),
        FormSubmit: lambda r: ("form_submit", {"goal": r.goal, "channel": r.channel}),
        EmailEvent: lambda r: ("email_event", {"type": r.type, "campaign": r.campaign}),
        Engagement: lambda r: ("engagement", {"kind": r.kind, "channel": r.channel,
                                              "campaign": r.campaign}),
    }

    def points(r: Any) -> list[tuple[int, str, int, float]]:
        kind, vals = fields[type(r)](r)
        out = []
        for i, rule in enumerate(rules_doc["rules"]):
            if rule["on"] != kind:
                continue
            ok = all(vals.get(f) in (w if isinstance(w, list) else [w])
                     for f, w in rule.get("when", {}).items())
            if ok:
                out.append((r.t, r.event_id, i, float(rule["points"])))
        return out

    unique = list({r.event_id: r for r in records}.values())
    by_visitor: dict[str, list[Any]] = defaultdict(list)
    links: dict[str, set[str]] = defaultdict(set)  # contact -> visitors
    known: dict[str, int] = {}
    own: dict[str, list[Any]] = defaultdict(list)
    for r in unique:
        if isinstance(r, (PageView, FormSubmit)):
            by_visitor[r.visitor_id].append(r)
        if isinstance(r, FormSubmit):
            links[r.contact_id].add(r.visitor_id)
            known[r.contact_id] = min(known.get(r.contact_id, r.t), r.t)
        contact = (r.raw.get("contact_id") if isinstance(r, EmailEvent)
                   else r.contact_id if isinstance(r, Engagement) else None)
        if contact:
            own[contact].append(r)
            known[contact] = min(known.get(contact, r.t), r.t)
    out: dict[str, tuple[int, float]] = {}
    for contact, first in known.items():
        facts = {f[1:3]: f for r in own[contact] for f in points(r)}
        for vid in links[contact]:
            facts.update({f[1:3]: f for r in by_visitor[vid] for f in points(r)})

        fs = list(facts.values())
        for t in sorted({f[0] for f in fs if f[0] >= first} | {first}):
            s = sum(p * 0.5 ** ((t - ft) / half) for ft, _, _, p in fs if ft <= t)
            if s >= rules_doc["mql_threshold"]:
                out[contact] = (t, s)
                break
    return out
