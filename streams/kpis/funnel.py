"""Stage 2: per contact, its lead and its deals -> leads, funnel, revenue. Pure.

Keyed by contact (deal updates without a contact are keyed by their deal and
are ``unattributed``). Every fact of the contact (lead, cohort conversions,
stage entries, closes, revenue; :mod:`.funnel_facts` says how each is counted) is
a function of the contact's state, so a change anywhere is emitted as "new facts
minus old facts": an earlier lead candidate, or a deal update arriving late,
rewrites history correctly whatever the arrival order.

Contacts are kept for ever (a contact's lead is its first one ever), so they are
what grows with a site. A contact with no event for a while (``COLD_AFTER_MS``
behind the newest event time seen, and no lead-score output still due) moves
from the heap into the cold store as one MessagePack record keyed by a 64-bit
hash of its id (the id is in the record, so a hash collision is seen, not
merged); any event of the contact takes it back into the heap.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..records import DealUpdate
from . import visitors as vis
from .deltas import prune_zero
from .funnel_facts import FunnelConfig, contact_facts, deal_view, lead_of
from .localtime import iso_ms
from .scoring import LEAD_SCORE_DELAY_MS, lead_score_facts, mql_facts
from .stage import StageOutput
from .visitors import ColdBacked, ColdStore, hot_name
from .watermark import ClockedPartition

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
