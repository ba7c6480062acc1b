"""The funnel's facts of one contact: its lead, its deals' stages and closes, and the
lead, funnel and revenue deltas they make. Pure.

A contact's lead is its earliest lead candidate; its deals inherit the lead's
channel credit (a contact with no lead, or a deal with no contact, is
``unattributed``). The facts are a function of the contact's state alone, which
is what lets :class:`.funnel.FunnelPartition` emit a change as "new facts minus
old facts" (:func:`contact_facts` with the signs 1 and -1).

Deal rules: a deal counts in a stage once, at the first time it entered it. Its
close is its earliest won or lost update; a close of the other kind for the
same deal makes no sense (won after lost) and is reported with the reason
``impossible_transition`` (the later of the two, by event time, whatever the
arrival order). Moving back to an earlier stage is recorded, not counted again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .attribution import MODELS
from .buckets import starts
from .deltas import MICRO, Deltas, add, dim, split_micro
from .scoring import ScoringConfig

LEAD = "lead"
FUNNEL = "funnel"
STAGES = ("mql", "sal", "sql", "opportunity", "won")
RANK = {s: i for i, s in enumerate(STAGES)}
COUNT = {"mql": "mql", "sal": "sal", "sql": "sql", "opportunity": "opp", "won": "won",
         "lost": "lost"}
UNATTRIBUTED = "unattributed"

# deal update as kept: (t, event_id, stage, amount, gross_profit or None)
DU = tuple[int, str, str, float, float | None]


@dataclass(frozen=True)
class FunnelConfig:
    attribution: str = "first_touch"
    lateness_ms: int = 600_000
    default_margin: float = 1.0
    scoring: ScoringConfig | None = None


def lead_of(cands: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if not cands:
        return None
    return min(cands.values(), key=lambda c: (c["t"], c["event_id"]))


def deal_view(deal: dict[str, Any]) -> dict[str, Any]:
    """Entered stages (first time each), the effective close, and rejected closes."""
    entered: dict[str, int] = {}
    closes = sorted(u for u in deal["u"] if u[2] in ("won", "lost"))
    close = closes[0] if closes else None
    rejected = [u for u in closes[1:] if close is not None and u[2] != close[2]]
    for u in deal["u"]:
        t, stage = u[0], u[2]
        if stage in ("won", "lost") and (close is None or u[1] != close[1]):
            continue
        if stage not in entered or t < entered[stage]:
            entered[stage] = t
    return {"entered": entered, "close": close, "rejected": rejected}


def reached(entered: dict[str, int], stage: str) -> bool:
    """Entered this stage or a later one, except lost."""
    return any(RANK.get(s, -1) >= RANK[stage] for s in entered)


def credit_of(lead: dict[str, Any] | None, model: str) -> list[tuple[str, int]]:
    if lead is None:
        return [(UNATTRIBUTED, MICRO)]
    return [(c, m) for c, m in lead["credit"][model]]


def campaigns_of(lead: dict[str, Any] | None, model: str) -> list[tuple[str, int]]:
    """The lead's campaign credit under ``model`` (a lead from before campaigns were
    credited, or one without a campaign touch, has none)."""
    if lead is None:
        return []
    return [(c, m) for c, m in lead.get("campaigns", {}).get(model, ())]


def scaled(shares: list[tuple[str, int]], amount: int) -> list[tuple[str, int]]:
    """``shares`` (millionths of one lead, summing to at most a million) of ``amount``.
    Channel credit sums to a million: a plain split. Campaign credit covers only the
    touches that had a campaign, so its part of the amount is scaled down first."""
    if amount == MICRO or not shares:
        return shares
    part = round(amount * sum(m for _, m in shares) / MICRO)
    return split_micro(shares, part) if part else []


def contact_facts(cands: dict[str, dict[str, Any]], deals: dict[str, dict[str, Any]],
                  cfg: FunnelConfig, sign: int, out: Deltas) -> list[dict[str, Any]]:
    """Add the contact's facts to ``out``; returns the customer facts of its closed deals.

    Leads, deal stages, revenue and gross profit are credited to channels and, by the
    same model and touches, to the campaigns of those touches (``utm_campaign``)."""
    lead = lead_of(cands)
    credit = credit_of(lead, cfg.attribution)
    ccredit = campaigns_of(lead, cfg.attribution)
    views = {deal_id: deal_view(d) for deal_id, d in deals.items()}
    if lead is not None:
        lt = lead["t"]
        any_mql = any(reached(v["entered"], "mql") for v in views.values())
        any_won = any(v["close"] is not None and v["close"][2] == "won"
                      for v in views.values())
        for size, start in starts(lt):
            add(out, (LEAD, size, start, ""), "le", sign * MICRO)
            if any_mql:
                add(out, (LEAD, size, start, ""), "l2m", sign * MICRO)
            if any_won:
                add(out, (LEAD, size, start, ""), "l2c", sign * MICRO)
            for channel, micro in credit:
                key = (LEAD, size, start, dim("channel", channel))
                add(out, key, "le", sign * micro)
                # offline_response_rate: leads credited to the responding channel (the
                # cell's own; in the total, offline)
                add(out, key, "lor", sign * micro)
                if channel == "offline":
                    add(out, (LEAD, size, start, ""), "lor", sign * micro)
                if any_mql:
                    add(out, key, "l2m", sign * micro)
                if any_won:
                    add(out, key, "l2c", sign * micro)
            for campaign, micro in ccredit:
                key = (LEAD, size, start, dim("campaign", campaign))
                add(out, key, "le", sign * micro)
                if any_mql:
                    add(out, key, "l2m", sign * micro)
                if any_won:
                    add(out, key, "l2c", sign * micro)
            if lead.get("device"):
                # visitor_conversion_rate by device: the device of the form's session
                add(out, (LEAD, size, start, dim("device", lead["device"])), "le",
                    sign * MICRO)
            if lead.get("page_type"):
                key = (LEAD, size, start, dim("page_type", lead["page_type"]))
                add(out, key, "le", sign * MICRO)
                if any_mql:
                    add(out, key, "l2m", sign * MICRO)
    customer_facts = []
    for deal_id, deal in deals.items():
        view = views[deal_id]
        entered = view["entered"]

        def bump(t: int, comp: str, amount: int = MICRO) -> None:
            # channel credit sums to a million, so scaling it is a plain split
            credited = [(dim(kind, name), share)
                        for kind, shares in (("channel", credit), ("campaign", ccredit))
                        for name, share in scaled(shares, amount)]
            for size, start in starts(t):
                add(out, (FUNNEL, size, start, ""), comp, sign * amount)
                for d, share in credited:
                    add(out, (FUNNEL, size, start, d), comp, sign * share)

        for stage, t in entered.items():
            bump(t, COUNT[stage])
            if stage == "mql" and reached(entered, "sql"):
                bump(t, "m2s")
            if stage == "sql" and reached(entered, "opportunity"):
                bump(t, "s2o")
        close = view["close"]
        if close is None:
            continue
        t_close, _, kind_close, amount, gp = close
        if kind_close == "won":
            amount_micro = round(amount * MICRO)
            gp_value = gp if gp is not None else amount * cfg.default_margin
            gp_micro = round(gp_value * MICRO)
            cycle = max(0, t_close - deal["cr"])
            if cycle:
                bump(t_close, "cyc", cycle * MICRO)
            for model in MODELS:
                shares = split_micro(credit_of(lead, model), amount_micro) if amount_micro \
                    else []
                gp_shares = split_micro(credit_of(lead, model), gp_micro) if gp_micro else []
                by_campaign = campaigns_of(lead, model)
                c_shares = scaled(by_campaign, amount_micro) if amount_micro else []
                c_gp = scaled(by_campaign, gp_micro) if gp_micro else []
                for size, start in starts(t_close):
                    tot = (FUNNEL, size, start, "")
                    add(out, tot, f"rev@{model}", sign * amount_micro)
                    if lead is not None:
                        add(out, tot, f"arev@{model}", sign * amount_micro)
                        add(out, tot, f"agp@{model}", sign * gp_micro)
                    for channel, share in shares:
                        key = (FUNNEL, size, start, dim("channel", channel))
                        add(out, key, f"rev@{model}", sign * share)
                        if lead is not None:
                            add(out, key, f"arev@{model}", sign * share)
                    if lead is not None:
                        for channel, share in gp_shares:
                            add(out, (FUNNEL, size, start, dim("channel", channel)),
                                f"agp@{model}", sign * share)
                    # a lead's campaign credit exists only with a lead: every campaign
                    # revenue is attributable
                    for campaign, share in c_shares:
                        key = (FUNNEL, size, start, dim("campaign", campaign))
                        add(out, key, f"rev@{model}", sign * share)
                        add(out, key, f"arev@{model}", sign * share)
                    for campaign, share in c_gp:
                        add(out, (FUNNEL, size, start, dim("campaign", campaign)),
                            f"agp@{model}", sign * share)
            if gp_micro:
                bump(t_close, "gp", gp_micro)
            if deal["k"] == "new_business" and amount_micro:
                bump(t_close, "nrev", amount_micro)
        # every closed deal is reported, not only the ones that count (a won new
        # business, a lost renewal): the customer stage replaces facts by deal id, so a
        # deal whose effective close turned out otherwise (an earlier "lost" arriving
        # after its "won") must replace the fact that counted it
        if kind_close in ("won", "lost"):
            customer_facts.append({"customer_id": deal["cu"], "deal_id": deal_id,
                                   "kind": deal["k"], "close": kind_close, "t": t_close,
                                   "credit": [list(x) for x in credit],
                                   "campaigns": [list(x) for x in ccredit]})
    return customer_facts
