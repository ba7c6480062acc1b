"""The components every KPI is made of: what each (family, component) counts, and its scale.

A stage turns events into integer *components* of a cell (one bucket, one dim),
grouped by *family*; the catalogue's KPIs are ratios of linear combinations of
them. Their names are short because they are written millions of times (to the
partials topic and the state); this table is where each is defined. The
catalogue refuses a term that names no component here, and the tests check
that every component the stages emit is here too (``tests/unit/test_components.py``).

Scales: ``count`` is a plain count; ``micro`` is a count in millionths, because
attribution splits one lead (or deal, or customer) over channels in whole
millionths that add up exactly; ``micro-currency`` is money in millionths of the
reporting currency; ``ms`` milliseconds; ``ms-micro`` milliseconds times
millionths (a duration weighted by attribution credit); ``milli-points``
thousandths of a lead-score point.
"""

from __future__ import annotations

from dataclasses import dataclass

from .attribution import MODELS

MODEL = "{model}"  # a component kept once per attribution model: rev@linear, rev@...


@dataclass(frozen=True, slots=True)
class Component:
    family: str
    name: str  # with MODEL for one kept under every attribution model
    meaning: str
    scale: str


def _c(family: str, name: str, meaning: str, scale: str = "count") -> Component:
    return Component(family, name, meaning, scale)


COMPONENTS: tuple[Component, ...] = (
    # web: page views and forms, sessionized (stage 1, keyed by visitor)
    _c("web", "pv", "page views"),
    _c("web", "se", "sessions starting in the bucket"),
    _c("web", "us", "distinct users with a page view (a HyperLogLog estimate)"),
    _c("web", "nu", "users whose first page view ever is in the bucket"),
    _c("web", "bo", "sessions starting in the bucket that bounced (one page view, no "
                    "conversion)"),
    _c("web", "en", "engaged sessions (foreground time past the engaged threshold, 2+ "
                    "page views or a conversion)"),
    _c("web", "sp", "page views of the sessions starting in the bucket"),
    _c("web", "du", "summed duration of the sessions starting in the bucket", "ms"),
    _c("web", "cv", "goal completions (form submits)"),
    _c("web", "sc", "sessions with at least one goal completion"),
    # email: one message's events (stage 1, keyed by message)
    _c("email", "ev", "e-mail events of any kind (so a bucket with only repeats exists)"),
    _c("email", "sent", "sent events"),
    _c("email", "de", "delivered events"),
    _c("email", "op", "open events, repeats included"),
    _c("email", "uo", "messages opened for the first time"),
    _c("email", "uc", "messages clicked for the first time"),
    _c("email", "un", "unsubscribes"),
    _c("email", "bo", "bounces"),
    # spend: prorated over each record's period (stage 1, keyed by record)
    _c("spend", "cost", "all cost", "micro-currency"),
    _c("spend", "media", "cost of category media", "micro-currency"),
    _c("spend", "imp", "ad impressions"),
    _c("spend", "clk", "ad clicks"),
    # eng: off-site engagement (stage 1, keyed by campaign)
    _c("eng", "cv", "content views and downloads"),
    _c("eng", "simp", "social impressions"),
    _c("eng", "seng", "social likes, comments and shares"),
    _c("eng", "fol", "new followers"),
    _c("eng", "off", "offline reach: flyers distributed and event attendance"),
    # lead: a contact's first lead, credited to channels (funnel stage, keyed by contact)
    _c("lead", "le", "leads (contacts whose first lead goal is in the bucket)", "micro"),
    _c("lead", "lor", "leads credited to an offline channel", "micro"),
    _c("lead", "l2m", "of the bucket's leads, those whose contact has a deal that "
                      "reached mql", "micro"),
    _c("lead", "l2c", "of the bucket's leads, those whose contact has a won deal", "micro"),
    # funnel: deals, credited with their contact's lead (funnel stage)
    _c("funnel", "mql", "deals entering mql", "micro"),
    _c("funnel", "sal", "deals entering sal", "micro"),
    _c("funnel", "sql", "deals entering sql", "micro"),
    _c("funnel", "opp", "deals entering opportunity", "micro"),
    _c("funnel", "won", "deals won", "micro"),
    _c("funnel", "lost", "deals lost", "micro"),
    _c("funnel", "m2s", "of the bucket's mql entries, deals that reached sql", "micro"),
    _c("funnel", "s2o", "of the bucket's sql entries, deals that reached opportunity",
       "micro"),
    _c("funnel", "cyc", "sales cycle of the deals won (creation to close)", "ms-micro"),
    _c("funnel", "gp", "gross profit of the deals won", "micro-currency"),
    _c("funnel", "nrev", "revenue of new-business deals won", "micro-currency"),
    _c("funnel", f"rev@{MODEL}", "revenue won, credited under the model", "micro-currency"),
    _c("funnel", f"arev@{MODEL}", "revenue won on deals with a lead (attributable), "
                                  "credited under the model", "micro-currency"),
    _c("funnel", f"agp@{MODEL}", "gross profit of attributable deals, credited under the "
                                 "model", "micro-currency"),
    # score: lead scoring (funnel stage)
    _c("score", "mql", "contacts whose lead score first reached the MQL threshold"),
    _c("score", "ls", "summed score of new leads, an hour after each became a lead",
       "milli-points"),
    _c("score", "ln", "new leads scored"),
    _c("score", "gt", "new leads scored (in each grade's cell: the denominator)"),
    _c("score", "gn", "new leads of the grade"),
    # cust: customers (customer stage, keyed by company)
    _c("cust", "nc", "new customers (first new-business deal won)", "micro"),
    _c("cust", "ch", "churned customers (a renewal lost)", "micro"),
)

_BY_KEY: dict[tuple[str, str], Component] = {(c.family, c.name): c for c in COMPONENTS}


def component(family: str, name: str) -> Component | None:
    """The component ``family.name``, a model's (``rev@linear``) or the template
    (``rev@{model}``); None if the vocabulary has no such component."""
    found = _BY_KEY.get((family, name))
    if found is None and "@" in name:
        base, model = name.split("@", 1)
        if model in MODELS:
            found = _BY_KEY.get((family, f"{base}@{MODEL}"))
    return found


def families() -> frozenset[str]:
    return frozenset(c.family for c in COMPONENTS)
