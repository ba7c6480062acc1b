"""Stage 2: per contact, its lead and its deals -> leads, funnel, revenue. Pure.

Keyed by contact (deal updates without a contact are keyed by their deal and
are ``unattributed``). A contact's lead is its earliest lead candidate; its
deals inherit the lead's channel credit. Every fact of the contact (lead,
cohort conversions, stage entries, closes, revenue) is a function of the
contact's state, so a change anywhere is emitted as "new facts minus old facts":
an earlier lead candidate, or a deal update arriving late, rewrites history
correctly whatever the arrival order.

Deal rules: a deal counts in a stage once, at the first time it entered it. Its
close is its earliest won or lost update; a close of the other kind for the
same deal makes no sense (won after lost) and is reported with the reason
``impossible_transition`` (the later of the two, by event time, whatever the
arrival order). Moving back to an earlier stage is recorded, not counted again.

Contacts are kept for ever (a contact's lead is its first one ever), so they are
what grows with a site. A contact with no event for a while (``COLD_AFTER_MS``
behind the newest event time seen, and no lead-score output still due) moves
from the heap into the cold store as one MessagePack record keyed by a 64-bit
hash of its id (the id is in the record, so a hash collision is seen, not
merged); any event of the contact takes it back into the heap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ..events import iso_ms
from ..records import DealUpdate
from . import visitors as vis
from .attribution import MODELS
from .buckets import starts
from .deltas import MICRO, Deltas, add, dim, prune_zero, split_micro
from .scoring import LEAD_SCORE_DELAY_MS, ScoringConfig, lead_score_facts, mql_facts
from .stage import StageOutput
from .visitors import ColdBacked, ColdStore, hot_name
from .watermark import ClockedPartition

LEAD = "lead"
FUNNEL = "funnel"
STAGES = ("mql", "sal", "sql", "opportunity", "won")
RANK = {s: i for i, s in enumerate(STAGES)}
COUNT = {"mql": "mql", "sal": "sal", "sql": "sql", "opportunity": "opp", "won": "won",
         "lost": "lost"}
UNATTRIBUTED = "unattributed"

# deal update as kept: (t, event_id, stage, amount, gross_profit or None)
DU = tuple[int, str, str, float, float | None]
# a contact quiet for this long (event time, behind the newest event seen) goes cold
COLD_AFTER_MS = 2 * 3_600_000


def encode_contact(key: str, st: dict[str, Any]) -> bytes:
    """A contact's state as one MessagePack record, its id first."""
    return msgpack.packb([key, st], use_bin_type=True)


def decode_contact(data: bytes) -> tuple[str, dict[str, Any]]:
    key, st = msgpack.unpackb(data, raw=False, strict_map_key=False)
    for deal in st["d"].values():
        deal["u"] = [tuple(u) for u in deal["u"]]
    return key, st


def last_activity(st: dict[str, Any]) -> int:
    """Event time of the contact's newest lead candidate, deal update or score fact."""
    t = max((c["t"] for c in st["c"].values()), default=-1)
    for deal in st["d"].values():
        if deal["u"]:
            t = max(t, deal["u"][-1][0])
    for f in st.get("s", {}).values():
        t = max(t, f[0])
    return t


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


class FunnelPartition(ColdBacked, ClockedPartition):
    """Contacts of one partition of the deal-updates and leads topics."""

    def __init__(self, cfg: FunnelConfig, cold: ColdStore | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.contacts: dict[str, dict[str, Any]] = {}  # hot: active recently
        self.cold: ColdStore = cold if cold is not None else vis.MemoryColdStore()
        self.score_pending: set[str] = set()  # contacts whose score outputs may be due
        self.newest = -1  # the newest event time seen (candidates, deals, score facts)

    def _cold(self, key: str) -> dict[str, Any] | None:
        data = self.cold.get(vis.visitor_key(key))
        if data is None:
            return None
        owner, st = decode_contact(data)
        return st if owner == key else None  # another contact with the same hash

    def contact(self, key: str) -> dict[str, Any] | None:
        """A contact's state, hot or cold (read in place), or None."""
        st = self.contacts.get(key)
        return st if st is not None else self._cold(key)

    def _contact(self, key: str) -> dict[str, Any] | None:
        """A hot contact, or a cold one taken back into the heap (its record stays in
        the cold store until it goes cold again and overwrites it)."""
        st = self.contacts.get(key)
        if st is None:
            st = self._cold(key)
            if st is not None:
                self.contacts[key] = st
        return st

    def process(self, deals_in: list[tuple[str, DealUpdate]],
                candidates: list[dict[str, Any]], wall_ms: int) -> StageOutput:
        out = StageOutput()
        before: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

        def state(key: str) -> dict[str, Any]:
            st = self._contact(key)
            if st is None:
                st = self.contacts[key] = {"c": {}, "d": {}}
            if key not in before:
                before[key] = ({k: dict(v) for k, v in st["c"].items()},
                               {k: {**v, "u": list(v["u"])} for k, v in st["d"].items()})
            return st

        for cand in candidates:
            if "score" in cand:  # lead-score facts, not a lead
                self._score_facts(cand, out)
                continue
            st = state(cand["contact_id"])
            st["c"][cand["event_id"]] = cand
            self.newest = max(self.newest, cand["t"])
            self.score_pending.add(cand["contact_id"])
        for topic, rec in deals_in:
            key = rec.contact_id or f"deal:{rec.deal_id}"
            existing = self._contact(key)
            if existing is not None and any(
                    u[1] == rec.event_id for d in existing["d"].values() for u in d["u"]):
                out.count("deal_update", "duplicate")
                continue
            if not self.admit(out, topic, rec, "deal_update", self.cfg.lateness_ms, wall_ms):
                continue
            st = state(key)
            deal = st["d"].get(rec.deal_id)
            if deal is None:
                deal = st["d"][rec.deal_id] = {"k": rec.kind, "cu": rec.customer_id,
                                               "cr": rec.created_at, "u": []}
            deal["u"].append((rec.t, rec.event_id, rec.stage, rec.amount, rec.gross_profit))
            deal["u"].sort()
            self.newest = max(self.newest, rec.t)
        for key, (old_c, old_d) in before.items():
            st = self.contacts[key]
            old_rejected = {u[1] for d in old_d.values() for u in deal_view(d)["rejected"]}
            for deal_id, deal in st["d"].items():
                for u in deal_view(deal)["rejected"]:
                    if u[1] not in old_rejected:
                        out.rejected_updates.append((u, deal_id, key))
            contact_facts(old_c, old_d, self.cfg, -1, out.deltas)
            facts = contact_facts(st["c"], st["d"], self.cfg, 1, out.deltas)
            old_facts = contact_facts(old_c, old_d, self.cfg, 0, {})
            if facts != old_facts:
                out.customers += facts
            out.dirty.add(hot_name(key))
        out.deltas = prune_zero(out.deltas)
        return out

    # -- lead scoring -------------------------------------------------------------
    def _score_facts(self, msg: dict[str, Any], out: StageOutput) -> None:
        key = msg["contact_id"]
        st = self._contact(key)
        if st is None:
            st = self.contacts[key] = {"c": {}, "d": {}}
        facts = st.setdefault("s", {})
        for f in msg["score"]:
            facts[f"{f[1]}/{f[2]}"] = f  # the same fact sent again changes nothing
            self.newest = max(self.newest, f[0])
        first = msg.get("known")
        if first is not None and ("k" not in st or first < st["k"]):
            st["k"] = first
        self.score_pending.add(key)
        out.dirty.add(hot_name(key))

    def score_due(self, wm: int | None) -> StageOutput:
        """Qualifications and new-lead scores whose time the watermark has passed.

        A crossing, or a lead's score one hour after it, is final once ``wm`` is past
        it plus the allowed lateness: every on-time fact before it has arrived.
        """
        out = StageOutput()
        sc = self.cfg.scoring
        if sc is None:
            self.score_pending.clear()  # no scoring: nothing is ever due
            return out
        if wm is None:
            return out
        late = self.cfg.lateness_ms
        for key in sorted(self.score_pending):
            st = self._contact(key)
            if st is None:
                self.score_pending.discard(key)
                continue
            facts = sorted(tuple(f) for f in st.get("s", {}).values())
            waiting = False
            if "q" not in st:
                cross = sc.crossing(facts, st.get("k"))
                if cross is not None and cross[0] + late <= wm:
                    t, score = cross
                    st["q"] = t
                    out.qualified.append({
                        "contact_id": key, "qualified_at": iso_ms(t),
                        "score": round(score, 3), "grade": sc.grade(score),
                        "threshold": sc.mql_threshold, "rules": sc.breakdown(facts, t),
                        "schema_version": 1})
                    mql_facts(t, out.deltas)
                    out.dirty.add(hot_name(key))
                elif cross is not None:
                    waiting = True
            lead = lead_of(st["c"])
            if lead is not None and "ls" not in st:
                at = lead["t"] + LEAD_SCORE_DELAY_MS
                if at + late <= wm:
                    score = sc.score_at(facts, at)
                    st["ls"] = round(score, 6)
                    lead_score_facts(sc, lead["t"], score, out.deltas)
                    out.dirty.add(hot_name(key))
                else:
                    waiting = True
            if not waiting:
                self.score_pending.discard(key)
        return out

    def contact_score(self, key: str, at: int) -> dict[str, Any] | None:
        """A contact's score at ``at``, its grade, and the rules behind it."""
        sc = self.cfg.scoring
        st = self.contact(key)  # read in place: a lookup does not warm the contact
        if sc is None or st is None:
            return None
        facts = sorted(tuple(f) for f in st.get("s", {}).values())
        score = sc.score_at(facts, at)
        return {"contact_id": key, "score": round(score, 3), "grade": sc.grade(score),
                "known_since": iso_ms(st["k"]) if "k" in st else None,
                "qualified_at": iso_ms(st["q"]) if "q" in st else None,
                "threshold": sc.mql_threshold, "rules": sc.breakdown(facts, at)}

    def prune(self, keys: list[str] | None = None) -> set[str]:
        """Move contacts quiet for ``COLD_AFTER_MS`` (and with no score output due) to
        the cold store. Returns the changelog keys changed."""
        quiet = self.newest - COLD_AFTER_MS
        changed: set[str] = set()
        for key, st in list(self.contacts.items()):
            if keys is not None and key not in keys:
                continue
            if last_activity(st) >= quiet or (self.cfg.scoring is not None
                                              and key in self.score_pending):
                continue
            ckey = vis.visitor_key(key)
            self.cold.put(ckey, encode_contact(key, st))
            del self.contacts[key]
            changed |= {hot_name(key), vis.cold_name(ckey, vis.CONTACT_PREFIX)}
        return changed

    def erase_contact(self, key: str) -> tuple[set[str], int]:
        """Remove a contact's state, hot and cold: (changelog keys to tombstone, entries
        removed). Its KPIs stay as they are."""
        changed: set[str] = set()
        removed = 0
        if self.contacts.pop(key, None) is not None:
            removed += 1
            changed.add(vis.hot_name(key))
        if self._cold(key) is not None:
            ckey = vis.visitor_key(key)
            self.cold.delete(ckey)
            removed += 1
            changed.add(vis.cold_name(ckey, vis.CONTACT_PREFIX))
        self.score_pending.discard(key)
        return changed, removed

    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry)."""
        return {"contact": len(self.contacts),
                "contact_cold": self.cold_count()}

    def dump(self, key: str) -> Any:
        if key.startswith(vis.CONTACT_PREFIX):
            return self.cold.get(vis.cold_key(key))  # packed bytes, written as they are
        return self.contacts.get(vis.hot_id(key))

    def load(self, key: str, value: Any) -> None:
        if key.startswith(vis.CONTACT_PREFIX):
            self.cold.put(vis.cold_key(key), value)
            return
        key = vis.hot_id(key)
        for deal in value["d"].values():
            deal["u"] = [tuple(u) for u in deal["u"]]
        self.contacts[key] = value
        self.newest = max(self.newest, last_activity(value))
        if value.get("s") or value.get("c"):
            self.score_pending.add(key)  # re-checked once: cheap, and nothing is missed
