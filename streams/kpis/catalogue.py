"""Every KPI as data: numerator, denominator, unit, dims, and what it depends on.

A KPI (:class:`.kpi.KPI`) is a ratio of two linear combinations of integer
components of one cell (one bucket and one dim); :func:`.kpi.evaluate` gives its
value. Money and attribution credit are kept in millionths and scaled here.

The README's KPI reference is checked against this table by the test suite.
"""

from __future__ import annotations

from typing import Any

from .components import component
from .deltas import MICRO
from .kpi import KPI, Comps, Context, Term, dim_name

# what a KPI is and how one is evaluated: imported from here by their callers
from .kpi import Modes as Modes
from .kpi import evaluate as evaluate
from .kpi import part_is_money as part_is_money

WEB_DIMS = frozenset({"", "channel", "device"})
ENG_DIMS = frozenset({"", "channel", "campaign"})
# leads and everything they lead to: credited to channels and, by the same model and
# touches, to the touches' campaigns (never a Prometheus label: topic and API only)
ATTR_DIMS = frozenset({"", "channel", "campaign"})
MONEY = "CURRENCY"  # placeholder for the reporting currency


def _t(spec: str, coef: float = 1.0) -> Term:
    """A term of a KPI: ``family.component`` (defined in :mod:`.components`) times
    ``coef``. A name the vocabulary does not define fails at import."""
    family, comp = spec.split(".", 1)
    if component(family, comp) is None:
        raise ValueError(f"KPI term {spec!r} names no component (streams/kpis/components.py)")
    return (family, comp, coef)


def _k(name: str, num: list[Term] | Term, den: list[Term] | Term | None, unit: str,
       dims: frozenset[str] | set[str], kind: str, formula: str, **kw: Any) -> KPI:
    n = tuple(num) if isinstance(num, list) else (num,)
    d = None if den is None else (tuple(den) if isinstance(den, list) else (den,))
    return KPI(name, n, d, unit, frozenset(dims), kind, formula, **kw)


M = 1.0 / MICRO

KPIS: tuple[KPI, ...] = (
    # -- web (section 4) --------------------------------------------------------
    _k("pageviews", _t("web.pv"), None, "count", WEB_DIMS | {"traffic_type"}, "leading",
       "page views"),
    _k("sessions", _t("web.se"), None, "count", WEB_DIMS | {"traffic_type"}, "leading",
       "sessions starting in the bucket", session_based=True),
    _k("users", _t("web.us"), None, "count", WEB_DIMS | {"traffic_type"}, "leading",
       "distinct visitors with a page view in the bucket"),
    _k("new_users", _t("web.nu"), None, "count", WEB_DIMS, "leading",
       "users whose first page view ever is in the bucket, in the channel and device of "
       "their first session"),
    _k("returning_users", [_t("web.us"), _t("web.nu", -1)], None, "count", WEB_DIMS,
       "leading", "users - new_users"),
    _k("bounce_rate", _t("web.bo"), _t("web.se"), "ratio", WEB_DIMS, "leading",
       "bounced sessions / sessions", modes=("bounce",),
       variants={"not_engaged": ((_t("web.se"), _t("web.en", -1)), (_t("web.se"),))},
       session_based=True),
    _k("engagement_rate", _t("web.en"), _t("web.se"), "ratio", WEB_DIMS, "leading",
       "engaged sessions / sessions", session_based=True),
    _k("pages_per_session", _t("web.sp"), _t("web.se"), "pages", WEB_DIMS, "leading",
       "page views of sessions starting in the bucket / those sessions",
       session_based=True),
    _k("avg_session_duration_s", _t("web.du", 0.001), _t("web.se"), "s", WEB_DIMS,
       "leading", "sum(last - first event time) / sessions", session_based=True),
    _k("conversions", _t("web.cv"), None, "count", WEB_DIMS | {"goal"}, "leading",
       "goal completions (form submits)"),
    _k("session_conversion_rate", _t("web.sc"), _t("web.se"), "ratio",
       WEB_DIMS | {"page_type"}, "leading", "sessions with >= 1 conversion / sessions",
       session_based=True),
    _k("visitor_conversion_rate", _t("lead.le", M), _t("web.us"), "ratio",
       {"", "channel", "device", "page_type"}, "leading", "leads / users",
       modes=("attribution",)),
    # -- email (section 5) -------------------------------------------------------
    _k("emails_sent", _t("email.sent"), None, "count", {"", "channel", "campaign"},
       "leading", "sent events"),
    _k("emails_delivered", _t("email.de"), None, "count", {"", "channel", "campaign"},
       "leading", "delivered events"),
    _k("email_opens", _t("email.op"), None, "count", {"", "channel", "campaign"},
       "leading", "open events, repeats included", modes=("machine_opens",)),
    _k("email_open_rate", _t("email.uo"), _t("email.de"), "ratio",
       {"", "channel", "campaign"}, "leading", "unique opens / delivered",
       modes=("machine_opens",)),
    _k("email_click_rate", _t("email.uc"), _t("email.de"), "ratio",
       {"", "channel", "campaign"}, "leading", "unique clicks / delivered"),
    _k("email_click_to_open_rate", _t("email.uc"), _t("email.uo"), "ratio",
       {"", "channel", "campaign"}, "leading", "unique clicks / unique opens",
       modes=("machine_opens",)),
    _k("email_unsubscribe_rate", _t("email.un"), _t("email.de"), "ratio",
       {"", "channel", "campaign"}, "leading", "unsubscribes / delivered"),
    _k("email_bounce_rate", _t("email.bo"), _t("email.sent"), "ratio",
       {"", "channel", "campaign"}, "leading", "bounces / sent"),
    # -- spend and ads (section 6) ----------------------------------------------
    _k("spend", _t("spend.cost", M), None, MONEY, {"", "channel", "campaign"}, "lagging",
       "all cost, prorated over its period"),
    _k("media_spend", _t("spend.media", M), None, MONEY, {"", "channel", "campaign"},
       "lagging", "cost of category media"),
    _k("impressions", _t("spend.imp"), None, "count", {"", "channel", "campaign"},
       "leading", "ad impressions, prorated"),
    _k("clicks", _t("spend.clk"), None, "count", {"", "channel", "campaign"}, "leading",
       "ad clicks, prorated"),
    _k("ad_ctr", _t("spend.clk"), _t("spend.imp"), "ratio", {"", "channel", "campaign"},
       "leading", "clicks / impressions"),
    _k("cpc", _t("spend.media", M), _t("spend.clk"), MONEY, {"", "channel", "campaign"},
       "lagging", "media spend / clicks"),
    _k("cpm", _t("spend.media", M), _t("spend.imp", 0.001), MONEY,
       {"", "channel", "campaign"}, "lagging", "media spend / (impressions / 1000)"),
    # -- engagement (section 11) -------------------------------------------------------
    _k("content_views", _t("eng.cv"), None, "count", ENG_DIMS, "leading",
       "engagements of kind view or download"),
    _k("social_impressions", _t("eng.simp"), None, "count", ENG_DIMS, "leading",
       "impressions on organic_social and paid_social"),
    _k("social_engagements", _t("eng.seng"), None, "count", ENG_DIMS, "leading",
       "likes + comments + shares on organic_social and paid_social"),
    _k("social_engagement_rate", _t("eng.seng"), _t("eng.simp"), "ratio", ENG_DIMS,
       "leading", "social engagements / social impressions"),
    _k("new_followers", _t("eng.fol"), None, "count", ENG_DIMS, "leading",
       "follows on organic_social and paid_social"),
    _k("offline_reach", _t("eng.off"), None, "count", ENG_DIMS, "leading",
       "flyers distributed + event attendance"),
    _k("offline_response_rate", _t("lead.lor", M), _t("eng.off"), "ratio",
       {"", "channel"}, "leading",
       "leads credited to the channel / its offline reach (in the total: leads credited "
       "to offline / all offline reach)", modes=("attribution",)),
    # -- lead quality (section 11) ---------------------------------------------------------
    _k("scored_mqls", _t("score.mql"), None, "count", {""}, "leading",
       "contacts whose lead score first reached the MQL threshold in the bucket"),
    _k("avg_new_lead_score", _t("score.ls", 0.001), _t("score.ln"), "points", {""},
       "leading", "mean score of the bucket's new leads, one hour after each became a lead"),
    _k("lead_grade_share", _t("score.gn"), _t("score.gt"), "ratio", {"grade"}, "leading",
       "new leads of the grade (scored an hour after the lead) / all new leads scored"),
    # -- leads (section 7) ------------------------------------------------------
    _k("leads", _t("lead.le", M), None, "count", ATTR_DIMS, "leading",
       "contacts whose first lead goal is in the bucket (channel: attribution credit)",
       modes=("attribution",)),
    _k("cpl", _t("spend.cost", M), _t("lead.le", M), MONEY, ATTR_DIMS, "lagging",
       "spend / leads (total includes unallocated spend)", modes=("attribution",)),
    # -- funnel and revenue (section 7) ---------------------------------------------
    *[_k(name, _t(f"funnel.{comp}", M), None, "count", ATTR_DIMS, kind,
         f"deals entering {stage} in the bucket (once per deal)", modes=("attribution",))
      for name, comp, stage, kind in (
          ("mqls", "mql", "mql", "leading"), ("sals", "sal", "sal", "leading"),
          ("sqls", "sql", "sql", "leading"),
          ("opportunities", "opp", "opportunity", "leading"),
          ("won_deals", "won", "won", "lagging"), ("lost_deals", "lost", "lost", "lagging"))],
    _k("lead_to_mql_rate", _t("lead.l2m", M), _t("lead.le", M), "ratio", ATTR_DIMS,
       "leading", "of the leads created in the bucket, the share whose contact has a deal "
       "that reached mql (so far)", modes=("attribution",)),
    _k("lead_to_customer_rate", _t("lead.l2c", M), _t("lead.le", M), "ratio",
       ATTR_DIMS, "lagging", "of the leads created in the bucket, the share whose "
       "contact has a won deal (so far)", modes=("attribution",)),
    _k("mql_to_sql_rate", _t("funnel.m2s", M), _t("funnel.mql", M), "ratio", ATTR_DIMS,
       "leading", "of the deals entering mql in the bucket, the share that reached sql",
       modes=("attribution",)),
    _k("sql_to_opportunity_rate", _t("funnel.s2o", M), _t("funnel.sql", M), "ratio",
       ATTR_DIMS, "leading",
       "of the deals entering sql in the bucket, the share that reached opportunity",
       modes=("attribution",)),
    _k("win_rate", _t("funnel.won", M), [_t("funnel.won", M), _t("funnel.lost", M)], "ratio",
       ATTR_DIMS, "lagging", "won / (won + lost), by close time, renewals included",
       modes=("attribution",)),
    _k("revenue", _t("funnel.rev@{model}", M), None, MONEY, ATTR_DIMS, "lagging",
       "amount of deals won in the bucket", modes=("attribution",)),
    _k("new_revenue", _t("funnel.nrev", M), None, MONEY, ATTR_DIMS, "lagging",
       "revenue of new_business deals", modes=("attribution",)),
    _k("avg_revenue_per_sale", _t("funnel.rev@{model}", M), _t("funnel.won", M), MONEY,
       ATTR_DIMS, "lagging", "revenue / won_deals", modes=("attribution",)),
    _k("gross_profit", _t("funnel.gp", M), None, MONEY, ATTR_DIMS, "lagging",
       "given gross_profit of won deals, else amount x KPI_DEFAULT_MARGIN",
       modes=("attribution",)),
    _k("avg_sales_cycle_days", _t("funnel.cyc", M / 86_400_000), _t("funnel.won", M), "days",
       ATTR_DIMS, "lagging", "mean(won time - created_at) of deals won in the bucket",
       modes=("attribution",)),
    _k("cost_per_opportunity", _t("spend.cost", M), _t("funnel.opp", M), MONEY,
       ATTR_DIMS, "lagging", "spend / opportunities", modes=("attribution",)),
    _k("cost_per_sale", _t("spend.cost", M), _t("funnel.won", M), MONEY, ATTR_DIMS,
       "lagging", "spend / won_deals (total includes unallocated spend)",
       modes=("attribution",)),
    _k("cost_per_acquisition", _t("spend.cost", M), _t("web.cv"), MONEY, {"", "channel"},
       "lagging", "spend / conversions (total includes unallocated spend)"),
    _k("roas", _t("funnel.arev@{model}", M), _t("spend.media", M), "ratio",
       ATTR_DIMS, "lagging", "attributed revenue / media spend",
       modes=("attribution",)),
    _k("marketing_roi", [_t("funnel.agp@{model}", M), _t("spend.cost", -M)],
       _t("spend.cost", M), "ratio", ATTR_DIMS, "lagging",
       "(attributed gross profit - spend) / spend", modes=("attribution",)),
    # -- customers (section 8) -------------------------------------------------------
    _k("new_customers", _t("cust.nc", M), None, "count", ATTR_DIMS, "lagging",
       "customers whose first new_business deal is won in the bucket",
       modes=("attribution",)),
    _k("cac", _t("spend.cost", M), _t("cust.nc", M), MONEY, ATTR_DIMS, "lagging",
       "spend / new_customers (total includes unallocated spend)", modes=("attribution",)),
)

def _comp(comps: Comps, family: str, comp: str) -> float:
    return comps.get(family, {}).get(comp, 0) * M


def _active(comps: Comps, ctx: Context) -> tuple[float, float]:
    return ctx.end_active * M, 1.0


def _retention(comps: Comps, ctx: Context) -> tuple[float, float]:
    return (ctx.end_active * M - _comp(comps, "cust", "nc")), ctx.start_active * M


def _churn(comps: Comps, ctx: Context) -> tuple[float, float]:
    return _comp(comps, "cust", "ch"), ctx.start_active * M


def _revenue_growth(comps: Comps, ctx: Context) -> tuple[float, float]:
    comp = f"rev@{ctx.model}"
    now = _comp(comps, "funnel", comp)
    prev_comps = ctx.previous() if ctx.previous is not None else None
    before = _comp(prev_comps, "funnel", comp) if prev_comps else 0.0
    return now - before, before


def _ltv_parts(comps: Comps, ctx: Context) -> tuple[float | None, float | None]:
    months = 30 * 86_400_000 / ctx.length_ms
    end, start = ctx.end_active * M, ctx.start_active * M
    gp = _comp(comps, "funnel", "gp")
    margin = gp / end * months if end else None
    churn = _comp(comps, "cust", "ch") / start * months if start else None
    return margin, churn


def _ltv(comps: Comps, ctx: Context) -> tuple[float, float]:
    margin, churn = _ltv_parts(comps, ctx)
    if margin is None or not churn:
        return (margin or 0.0), 0.0  # undefined: value null
    return margin, churn


def _ltv_to_cac(comps: Comps, ctx: Context) -> tuple[float, float]:
    margin, churn = _ltv_parts(comps, ctx)
    nc = _comp(comps, "cust", "nc")
    cac = _comp(comps, "spend", "cost") / nc if nc else None
    if margin is None or not churn or not cac:
        return 0.0, 0.0
    return margin / churn, cac


KPIS = (*KPIS,
        _k("active_customers", [], None, "count", {"", "channel"}, "lagging",
           "customers active at the bucket's end (+1 at the first won new_business deal, "
           "-1 at a lost renewal)", fn=_active, uses=("cust",), modes=("attribution",)),
        _k("customer_retention_rate", [], None, "ratio", {"", "channel"}, "lagging",
           "(E - N) / S: active at the end, minus new ones, over active at the start",
           fn=_retention, uses=("cust",), modes=("attribution",)),
        _k("churn_rate", [], None, "ratio", {"", "channel"}, "lagging",
           "churned / active at the bucket's start", fn=_churn, uses=("cust",),
           modes=("attribution",)),
        _k("revenue_growth", [], None, "ratio", {"", "channel"}, "lagging",
           "(revenue - revenue of the period before) / revenue of the period before "
           "(the bucket or view of the same length just before)", fn=_revenue_growth,
           uses=("funnel",), modes=("attribution",)),
        _k("ltv", [], None, MONEY, {"", "channel"}, "lagging",
           "(gross profit won / active at end) / (churned / active at start), both per "
           "30 days", fn=_ltv, uses=("cust", "funnel"), modes=("attribution",)),
        _k("ltv_to_cac", [], None, "ratio", {"", "channel"}, "lagging", "ltv / cac",
           fn=_ltv_to_cac, uses=("cust", "funnel", "spend"), modes=("attribution",)))

BY_NAME: dict[str, KPI] = {k.name: k for k in KPIS}
# dim name ("" for the total) -> the KPIs computed for it, in catalogue order
BY_DIM: dict[str, tuple[KPI, ...]] = {
    name: tuple(k for k in KPIS if name in k.dims)
    for name in sorted({d for k in KPIS for d in k.dims})}


def kpis_for(dim_key: str, comps: Comps) -> list[KPI]:
    """The KPIs that have a snapshot for a cell with this dim and these components."""
    return [k for k in BY_DIM.get(dim_name(dim_key), ()) if not k.families.isdisjoint(comps)]


DIM_LABELS = {"": "total", "channel": "channel", "device": "device", "campaign": "campaign",
              "goal": "goal", "page_type": "page_type", "grade": "grade",
              "traffic_type": "traffic_type"}
UNIT_LABELS = {"CURRENCY": "reporting currency", "count": "count", "ratio": "fraction",
               "pages": "pages/session", "s": "seconds", "days": "days",
               "points": "score points"}


def reference_rows() -> list[str]:
    """The README's KPI reference table, one markdown row per KPI (tested for drift)."""
    rows = []
    for k in KPIS:
        dims = ", ".join(DIM_LABELS[d] for d in sorted(k.dims, key=lambda d: (d != "", d)))
        modes = ", ".join(k.modes) or "—"
        rows.append(f"| `{k.name}` | {k.kind} | {k.formula} | {UNIT_LABELS[k.unit]} | "
                    f"{dims} | {modes} |")
    return rows
