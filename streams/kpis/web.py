"""Stage 1 for web traffic: per-visitor sessions, users and lead candidates. Pure.

One :class:`WebPartition` owns the visitors of one input partition (page views
and form submits are both keyed by ``visitor_id``). For every visitor touched
by a batch it sessionizes the visitor's kept events before and after the batch
and emits the difference of their contributions, so the sum of everything ever
emitted is always the contribution of the *current* sessions: a late page view
that bridges two sessions retracts both and adds the merged one, whatever
order the events came in.

Events are kept while they can still change a KPI: until their session cannot
grow any more and their UTC day can receive no on-time event. After that only
the session start and channel remain (attribution touches, for the lookback
window) and the visitor's first-seen time (new vs returning users); a visitor
that has nothing else left moves to the cold store (:mod:`.visitors`) as one
small binary record, and comes back to the heap when it returns.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..records import FormSubmit, PageView
from . import attribution
from .buckets import floor
from .deltas import prune_zero
from .scoring import ScoringConfig
from .sessions import FS, PV, Session, Visitor, WebConfig, insort, sessionize
from .stage import StageOutput
from .visitors import (
    COLD_PREFIX,
    ColdBacked,
    ColdStore,
    MemoryColdStore,
    cold_key,
    cold_name,
    hot_id,
    hot_name,
    visitor_key,
)
from .visitors import decode as decode_cold
from .visitors import encode as encode_cold
from .watermark import ClockedPartition
from .webfacts import (
    FAMILY,
    OTHER_TRAFFIC,
    first_minute,
    traffic_of,
    visitor_facts,
    visitor_hash,
)

# the names this module has always had (the rest of the package imports them from here)
__all__ = ["FAMILY", "FS", "OTHER_TRAFFIC", "PV", "Session", "Visitor", "WebConfig",
           "WebPartition", "sessionize", "traffic_of", "visitor_hash"]


class WebPartition(ColdBacked, ClockedPartition):
    """Per-visitor state of one partition of the page view and form submit topics."""

    def __init__(self, cfg: WebConfig, cold: ColdStore | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.visitors: dict[str, Visitor] = {}  # hot: sessions that can still change
        self.cold: ColdStore = cold if cold is not None else MemoryColdStore()
        self._sweep_after: bytes | None = None  # where the cold TTL sweep goes on
        self._hits: dict[tuple[Any, ...], Any] = {}  # scoring rules' hits per field values
        self._credit: dict[tuple[Any, ...], Any] = {}  # a lead's credit per (time, touches)

    def _visitor(self, vid: str) -> Visitor | None:
        """A hot visitor, or a cold one taken back into the heap (its record stays in
        the cold store until the visitor goes cold again and overwrites it)."""
        v = self.visitors.get(vid)
        if v is None:
            data = self.cold.get(visitor_key(vid))
            if data is not None:
                first, touches, score = decode_cold(data)
                v = self.visitors[vid] = Visitor(first, touches=touches, score=score)
        return v

    # -- the batch ------------------------------------------------------------
    def process(self, items: list[tuple[str, PageView | FormSubmit]],
                wall_ms: int) -> StageOutput:
        """Apply a batch of (input topic, record) in partition offset order."""
        out = StageOutput()
        touched: dict[str, Visitor] = {}
        old_state: dict[str, Visitor] = {}
        seen_ids: dict[str, set[str]] = {}  # per visitor, built once per batch
        lateness = self.cfg.lateness_ms
        scoring = self.cfg.scoring
        fresh: dict[str, list[Any]] = {}  # visitor -> score facts of this batch
        known: dict[str, dict[str, int]] = {}  # visitor -> contact -> first form time
        linked: dict[str, set[str]] = {}  # visitor -> contacts its forms named first now
        visitors = self.visitors
        admit = self.admit
        for topic, rec in items:
            vid = rec.visitor_id
            if rec.traffic_type != "human":  # kept apart: it counts in traffic_type only
                vid = OTHER_TRAFFIC + rec.traffic_type + "\x1f" + vid
            v = visitors.get(vid)
            if v is None:
                v = self._visitor(vid)
            is_pv = isinstance(rec, PageView)
            et = "page_view" if is_pv else "form_submit"
            if v is not None:
                ids = seen_ids.get(vid)
                if ids is None:
                    ids = seen_ids[vid] = v.ids()
                if rec.event_id in ids:
                    out.count(et, "duplicate")
                    continue
            if not admit(out, topic, rec, et, lateness, wall_ms):
                continue
            if v is None:
                v = visitors[vid] = Visitor()
            if vid not in old_state:
                old_state[vid] = Visitor(v.first, list(v.pvs), list(v.forms), v.touches, v.leads)
            ids = seen_ids.get(vid)
            if ids is not None:
                ids.add(rec.event_id)
            if is_pv:
                assert isinstance(rec, PageView)
                pv = PV(rec.t, rec.event_id, rec.page_type, rec.channel, rec.device,
                        rec.engaged_ms, rec.campaign)
                insort(v.pvs, pv)
                if v.first is None or rec.t < v.first:
                    v.first = rec.t
            else:
                assert isinstance(rec, FormSubmit)
                fs = FS(rec.t, rec.event_id, rec.contact_id, rec.goal, rec.channel,
                        rec.campaign)
                insort(v.forms, fs)
            if scoring is not None and rec.traffic_type == "human":
                self._score(scoring, vid, v, rec, fresh, known, linked, self._hits)
            touched[vid] = v
        dirty = out.dirty
        for vid, v in touched.items():
            self._visitor_deltas(vid, old_state[vid], v, out)
            dirty.add(hot_name(vid))
        for vid, v in touched.items():
            if not v.contacts:
                continue
            for contact in v.contacts:
                # a new link sends the visitor's whole history; otherwise what is new
                facts = v.score if contact in linked.get(vid, ()) else fresh.get(vid, [])
                first = known.get(vid, {}).get(contact)
                if facts or first is not None:
                    out.leads.append({"contact_id": contact, "event_id": f"score/{vid}",
                                      "score": [list(f) for f in facts], "known": first})
        out.deltas = prune_zero(out.deltas)
        return out

    @staticmethod
    def _score(scoring: ScoringConfig, vid: str, v: Visitor, rec: PageView | FormSubmit,
               fresh: dict[str, list[Any]], known: dict[str, dict[str, int]],
               linked: dict[str, set[str]], memo: dict[tuple[Any, ...], Any]) -> None:
        # the rules are fixed and see only these fields: their hits are looked up once
        # per combination of values
        if isinstance(rec, PageView):
            combo: tuple[Any, ...] = (rec.page_type, rec.channel, rec.device, rec.campaign)
            hits = memo.get(combo)
            if hits is None:
                hits = scoring.facts("page_view", {"page_type": rec.page_type,
                                                   "channel": rec.channel,
                                                   "device": rec.device,
                                                   "utm_campaign": rec.campaign})
                _remember(memo, combo, hits)
        else:
            combo = ("\x00form", rec.goal, rec.channel)
            hits = memo.get(combo)
            if hits is None:
                hits = scoring.facts("form_submit", {"goal": rec.goal, "channel": rec.channel})
                _remember(memo, combo, hits)
            firsts = known.setdefault(vid, {})
            firsts[rec.contact_id] = min(firsts.get(rec.contact_id, rec.t), rec.t)
            if rec.contact_id not in v.contacts:
                v.contacts.append(rec.contact_id)
                linked.setdefault(vid, set()).add(rec.contact_id)
        for rule, points in hits:
            fact = [rec.t, rec.event_id, rule, points]
            v.score.append(fact)
            fresh.setdefault(vid, []).append(fact)

    def _visitor_deltas(self, vid: str, old: Visitor, new: Visitor, out: StageOutput) -> None:
        """A visitor's change of contribution. Human traffic counts everywhere (the
        totals are human traffic); a bot's or internal visitor's counts only in its
        ``traffic_type`` of page views, sessions and users, so what was filtered out
        can be seen (and a wrong rule fixed). There is no ``traffic_type=human`` cell:
        it would repeat the total, at ~8 % of the web stage's time."""
        traffic = traffic_of(vid)
        sessions = visitor_facts(vid, old, new, self.cfg, out.deltas, out.sketches, traffic,
                                 first_minute(self.input_horizon, self.cfg))
        if traffic == "human" and new.forms:
            self._lead_candidates(vid, new, sessions, out)

    def _lead_candidates(self, vid: str, v: Visitor, sessions: list[Session],
                         out: StageOutput) -> None:
        cfg = self.cfg
        lead_forms = [f for f in v.forms if f.goal in cfg.lead_goals]
        if not lead_forms:
            return
        session_touches = [(s.start, s.channel, s.first_campaign) for s in sessions] + \
            list(v.touches)
        landing_of = {f.event_id: s.landing for s in sessions for f in s.forms}
        device_of = {f.event_id: s.device for s in sessions for f in s.forms}
        for f in lead_forms:
            t, eid, contact = f.t, f.event_id, f.contact_id
            touches = attribution.touches_for(session_touches, t, f.channel, cfg.lookback_ms,
                                              f.campaign)
            # the same touches (a lead's visitor touched again by a page view that
            # changes none of them) give the same credit: worked out once
            memo_key = (t, *touches)
            got = self._credit.get(memo_key)
            if got is None:
                got = attribution.all_models(touches, t, cfg.half_life_ms)
                _remember(self._credit, memo_key, got)
            credit, campaigns = got
            page_type = landing_of.get(eid)
            # the device of the session the form belongs to, else unknown (the rule
            # conversions by device follow)
            device = device_of.get(eid, "unknown")
            sig = orjson.dumps([credit, page_type, device, campaigns]).decode()
            if v.leads.get(eid) == sig:
                continue
            v.leads[eid] = sig
            out.leads.append({"contact_id": contact, "event_id": eid, "t": t,
                              "visitor_id": vid, "goal": f.goal, "page_type": page_type,
                              "device": device, "credit": credit, "campaigns": campaigns})

    # -- erasure ----------------------------------------------------------------
    def erase_visitor(self, visitor_id: str) -> tuple[set[str], int]:
        """Remove everything kept about a visitor (its bot or internal traffic too):
        the changelog keys to tombstone and the number of entries removed. The KPIs it
        counted in stay as they are (they hold no personal data)."""
        changed: set[str] = set()
        removed = 0
        for key in (visitor_id, *(f"{OTHER_TRAFFIC}{t}\x1f{visitor_id}"
                                  for t in ("bot", "internal"))):
            n, keys = self._drop(key)
            removed += n
            changed |= keys
        return changed, removed

    def erase_contact(self, contact_id: str) -> tuple[set[str], int]:
        """Remove every visitor whose forms named the contact (a visitor that named a
        contact is always hot, so the heap is all there is to look at)."""
        linked = [vid for vid, v in self.visitors.items()
                  if contact_id in v.contacts or any(f.contact_id == contact_id for f in v.forms)]
        changed: set[str] = set()
        removed = 0
        for vid in linked:
            n, keys = self._drop(vid)
            removed += n
            changed |= keys
        return changed, removed

    def _drop(self, key: str) -> tuple[int, set[str]]:
        removed, changed = 0, set()
        if self.visitors.pop(key, None) is not None:
            removed += 1
            changed.add(hot_name(key))
        ckey = visitor_key(key)
        if self.cold.get(ckey) is not None:
            self.cold.delete(ckey)
            removed += 1
            changed.add(cold_name(ckey))
        return removed, changed

    # -- expiry -----------------------------------------------------------------
    def prune(self, visitor_ids: list[str] | None = None) -> set[str]:
        """Drop what can no longer change a KPI; returns visitors changed or deleted."""
        wm = self.low_watermark()
        if wm is None:
            return set()
        cfg = self.cfg
        horizon = wm - cfg.lateness_ms  # no on-time event is older than this
        changed: set[str] = set()
        ids = list(self.visitors) if visitor_ids is None else visitor_ids
        for vid in ids:
            v = self.visitors.get(vid)
            if v is None:
                continue
            if self._prune_visitor(v, horizon):
                changed.add(hot_name(vid))
            if v.pvs or v.forms or v.leads or v.contacts:
                continue  # still hot (a visitor that named a contact stays on the heap)
            key = visitor_key(vid)
            if not v.touches and not v.score and (
                    v.first is None or v.first < wm - cfg.visitor_ttl_ms):
                self.cold.delete(key)
            else:
                try:
                    packed = encode_cold(v.first, v.touches, v.score)
                except ValueError:
                    continue  # an id or rule name too long to pack: it stays hot
                self.cold.put(key, packed)
            del self.visitors[vid]
            changed |= {hot_name(vid), cold_name(key)}
        if visitor_ids is None:
            changed |= self._sweep_cold(wm)
        return changed

    def _sweep_cold(self, wm: int, limit: int = 20_000) -> set[str]:
        """Part of a pass over the cold store: forget touches past the lookback and
        visitors past their TTL. Bounded per call, so each prune stays short; a full
        pass over a million visitors takes 50 prunes (25 minutes)."""
        cfg = self.cfg
        oldest_touch = wm - cfg.lateness_ms - cfg.lookback_ms - cfg.session_timeout_ms
        changed: set[str] = set()
        batch = list(self.cold.scan(self._sweep_after, limit))
        # a short batch ends the pass: the next one starts from the beginning
        self._sweep_after = batch[-1][0] if len(batch) == limit else None
        for key, data in batch:
            first, touches, score = decode_cold(data)
            kept = [t for t in touches if t[0] >= oldest_touch]
            facts = [f for f in score if f[0] >= oldest_touch]
            if not kept and not facts and (first is None or first < wm - cfg.visitor_ttl_ms):
                self.cold.delete(key)
            elif len(kept) != len(touches) or len(facts) != len(score):
                self.cold.put(key, encode_cold(first, kept, facts))
            else:
                continue
            changed.add(cold_name(key))
        return changed

    def _prune_visitor(self, v: Visitor, horizon: int) -> bool:
        cfg = self.cfg
        if not v.pvs and not v.forms and not v.touches:
            return False
        sessions, alone = sessionize(v.pvs, v.forms, cfg)
        day_open = floor(horizon, "1d")  # start of the oldest day that can still change
        keep_pv: list[PV] = []
        keep_forms: list[FS] = []
        dropped = False
        for s in sessions:
            frozen = horizon - s.last_pv >= cfg.session_timeout_ms and s.end < day_open \
                and all(f.t < day_open for f in s.forms)
            if frozen:
                v.touches.append((s.start, s.channel, s.first_campaign))
                for f in s.forms:
                    v.leads.pop(f.event_id, None)
                dropped = True
            else:
                keep_pv.extend(s.pvs)
                keep_forms.extend(s.forms)
        for f in alone:
            if f.t < day_open and horizon - f.t >= cfg.session_timeout_ms:
                v.leads.pop(f.event_id, None)
                dropped = True
            else:
                keep_forms.append(f)
        keep_forms.sort()
        oldest_touch = horizon - cfg.lookback_ms - cfg.session_timeout_ms
        touches = sorted((t for t in v.touches if t[0] >= oldest_touch),
                         key=lambda t: (t[0], t[1]))
        if len(touches) != len(v.touches):
            dropped = True
        if dropped:
            v.pvs, v.forms, v.touches = keep_pv, keep_forms, touches
        if any(f[0] < oldest_touch for f in v.score):
            # pre-contact behaviour counts within the attribution lookback
            v.score = [f for f in v.score if f[0] >= oldest_touch]
            dropped = True
        return dropped

    # -- persistence ------------------------------------------------------------
    def state_keys(self) -> dict[str, int]:
        """Entries of state held, by kind (the changelog holds one record per entry):
        hot visitors on the heap, cold ones in the cold store."""
        return {"visitor": len(self.visitors),
                "visitor_cold": self.cold_count()}

    def dump(self, key: str) -> dict[str, Any] | bytes | None:
        if key.startswith(COLD_PREFIX):
            return self.cold.get(cold_key(key))  # packed bytes, written as they are
        v = self.visitors.get(hot_id(key))
        return None if v is None else v.to_state()

    def load(self, key: str, value: Any) -> None:
        if key.startswith(COLD_PREFIX):
            self.cold.put(cold_key(key), value)
            return
        self.visitors[hot_id(key)] = Visitor.from_state(value)


MEMO_MAX = 4096  # field combinations remembered (campaign names are open-ended)


def _remember(memo: dict[tuple[Any, ...], Any], combo: tuple[Any, ...], hits: Any) -> None:
    if len(memo) >= MEMO_MAX:
        memo.clear()
    memo[combo] = hits
