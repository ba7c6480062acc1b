"""The simulated world's numbers: time units, the channel mix and how each channel's
traffic behaves, and the :class:`Options` a run is drawn with."""

from __future__ import annotations

from dataclasses import dataclass

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

