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

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..records import FormSubmit, PageView
from . import attribution
from .buckets import DAY, bucket_end, floor, starts
from .deltas import Deltas, add, add_many, dim, prune_zero
from .scoring import ScoringConfig
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

FAMILY = "web"

# page view: (t, event_id, page_type, channel, device, engaged_ms, campaign)
PV = tuple[int, str, str, str, str, int, str | None]
# form submit: (t, event_id, contact_id, goal, channel or None, campaign)
FS = tuple[int, str, str, str, str | None, str | None]


@dataclass(frozen=True)
class WebConfig:
    lateness_ms: int = 600_000
    session_timeout_ms: int = 1_800_000
    split_midnight: bool = False
    split_campaign: bool = False
    engaged_ms: int = 10_000
    lead_goals: frozenset[str] = frozenset(
        {"call_click", "contact", "content_download", "demo_request", "inquiry",
         "newsletter_signup"})
    lookback_ms: int = 30 * DAY
    half_life_ms: int = 7 * DAY
    visitor_ttl_ms: int = 400 * DAY
    scoring: ScoringConfig | None = None


@dataclass(slots=True)
class Session:
    start: int
    last_pv: int
    pvs: list[PV]
    forms: list[FS] = field(default_factory=list)
    campaign: str | None = None

    @property
    def channel(self) -> str:
        return self.pvs[0][3]

    @property
    def device(self) -> str:
        return self.pvs[0][4]

    @property
    def landing(self) -> str:
        return self.pvs[0][2]

    @property
    def first_campaign(self) -> str | None:
        """The campaign an attribution touch credits: the first page view's, as the
        session's channel is (``campaign`` is the newest seen, for splitting)."""
        return self.pvs[0][6]

    @property
    def end(self) -> int:
        return max(self.last_pv, self.forms[-1][0]) if self.forms else self.last_pv

    def identity(self) -> tuple[Any, ...]:
        return (tuple(p[1] for p in self.pvs), tuple(f[1] for f in self.forms))


@dataclass(slots=True)
class Visitor:
    first: int | None = None  # first page view ever (as far as we know)
    pvs: list[PV] = field(default_factory=list)  # sorted by (t, event_id)
    forms: list[FS] = field(default_factory=list)  # sorted by (t, event_id)
    # pruned session starts: (start, channel, campaign or None)
    touches: list[tuple[Any, ...]] = field(default_factory=list)
    leads: dict[str, str] = field(default_factory=dict)  # form event_id -> emitted signature
    score: list[Any] = field(default_factory=list)  # lead-score facts [t, event_id, rule, pts]
    contacts: list[str] = field(default_factory=list)  # contacts its forms named

    def ids(self) -> set[str]:
        """Event ids kept for this visitor (what deduplication compares against)."""
        return {p[1] for p in self.pvs} | {f[1] for f in self.forms}

    def to_state(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"f": self.first, "p": self.pvs, "s": self.forms,
                               "h": self.touches, "l": self.leads}
        if self.score or self.contacts:
            doc["sc"], doc["ct"] = self.score, self.contacts
        return doc

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Visitor:
        return cls(d["f"], [tuple(p) for p in d["p"]], [tuple(f) for f in d["s"]],
                   [tuple(h) for h in d["h"]], d["l"], d.get("sc", []), d.get("ct", []))


def sessionize(pvs: list[PV], forms: list[FS], cfg: WebConfig) -> tuple[list[Session], list[FS]]:
    """Sessions of sorted page views, with forms attached; returns (sessions, standalone)."""
    sessions: list[Session] = []
    cur: Session | None = None
    timeout = cfg.session_timeout_ms
    for pv in pvs:
        t, campaign = pv[0], pv[6]
        if cur is not None and t - cur.last_pv < timeout \
                and not (cfg.split_midnight and floor(t, "1d") != floor(cur.last_pv, "1d")) \
                and not (cfg.split_campaign and campaign is not None
                         and campaign != cur.campaign):
            cur.pvs.append(pv)
            cur.last_pv = t
            if campaign is not None:
                cur.campaign = campaign
        else:
            cur = Session(t, t, [pv], campaign=campaign)
            sessions.append(cur)
    standalone: list[FS] = []
    session_starts = [s.start for s in sessions]
    for f in forms:
        i = bisect_right(session_starts, f[0]) - 1
        if i >= 0 and f[0] < sessions[i].last_pv + timeout:
            sessions[i].forms.append(f)
        else:
            standalone.append(f)
    return sessions, standalone


def _session_facts(s: Session, sign: int, cfg: WebConfig, out: Deltas, tdim: str,
                   human: bool) -> None:
    # page views by their own bucket (a session can span several)
    per_bucket: dict[tuple[str, int], int] = {}
    for pv in s.pvs:
        for b in starts(pv[0]):
            per_bucket[b] = per_bucket.get(b, 0) + 1
    if not human:  # bots and internal traffic: sessions and page views by traffic_type
        for size, start in starts(s.start):
            add(out, (FAMILY, size, start, tdim), "se", sign)
        for (size, start), count in per_bucket.items():
            add(out, (FAMILY, size, start, tdim), "pv", sign * count)
        return
    dims = ("", dim("channel", s.channel), dim("device", s.device),
            dim("page_type", s.landing))
    n = len(s.pvs)
    converted = 1 if s.forms else 0
    duration = s.end - s.start
    engaged_time = max(duration, sum(p[5] for p in s.pvs))
    engaged = 1 if (engaged_time >= cfg.engaged_ms or n >= 2 or converted) else 0
    bounced = 1 if (n == 1 and not converted) else 0
    comps = {c: v for c, v in (("se", sign), ("sp", sign * n), ("bo", sign * bounced),
                                ("en", sign * engaged), ("du", sign * duration),
                                ("sc", sign * converted)) if v}
    for size, start in starts(s.start):
        for d in dims:
            add_many(out, (FAMILY, size, start, d), comps)
    pv_dims = dims[:3]
    for (size, start), count in per_bucket.items():
        for d in pv_dims:
            add(out, (FAMILY, size, start, d), "pv", sign * count)
    for f in s.forms:
        _conversion(f, dims, sign, out)


def _conversion(f: FS, dims: tuple[str, ...], sign: int, out: Deltas) -> None:
    for size, start in starts(f[0]):
        for d in (*dims, dim("goal", f[3])):
            add(out, (FAMILY, size, start, d), "cv", sign)


def _standalone_facts(f: FS, sign: int, out: Deltas) -> None:
    # a conversion outside any session counts in conversions, not in session rates;
    # by device it is unknown (catalogue section 10)
    _conversion(f, ("", dim("channel", f[4] or "direct"), dim("device", "unknown")), sign,
                out)


def _membership(sessions: list[Session], size: str, start: int, tdim: str,
                human: bool) -> set[str]:
    end = bucket_end(start, size)
    dims: set[str] = set()
    for s in sessions:
        if s.start >= end or s.last_pv < start:
            continue
        if any(start <= p[0] < end for p in s.pvs):
            if human:
                dims.update(("", dim("channel", s.channel), dim("device", s.device),
                             dim("page_type", s.landing)))
            else:
                dims.add(tdim)
    return dims


def _acquisition(sessions: list[Session], first: int | None) -> tuple[str, ...]:
    """Dims a new visitor counts in: the total, and the channel and device of the
    session that holds its first page view ever."""
    if first is None:
        return ()
    for s in sessions:
        if s.pvs[0][0] == first:
            return ("", dim("channel", s.channel), dim("device", s.device))
    return ("",)  # its first page view is no longer kept: it is not new here


OTHER_TRAFFIC = "\x06"  # visitor key prefix of bot and internal traffic (then type, \x1f, id)


def traffic_of(vid: str) -> str:
    """The traffic type a (possibly prefixed) visitor key stands for."""
    if vid.startswith(OTHER_TRAFFIC):
        return vid[1:vid.index("\x1f")]
    return "human"


def visitor_hash(visitor_id: str) -> int:
    """Stable 63-bit hash of a visitor id for the distinct-count sketches."""
    return int.from_bytes(hashlib.blake2b(visitor_id.encode(), digest_size=8).digest(),
                          "big") >> 1


class WebPartition(ColdBacked, ClockedPartition):
    """Per-visitor state of one partition of the page view and form submit topics."""

    def __init__(self, cfg: WebConfig, cold: ColdStore | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.visitors: dict[str, Visitor] = {}  # hot: sessions that can still change
        self.cold: ColdStore = cold if cold is not None else MemoryColdStore()
        self._sweep_after: bytes | None = None  # where the cold TTL sweep goes on

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
        touched: dict[str, Visitor | None] = {}
        old_state: dict[str, Visitor] = {}
        seen_ids: dict[str, set[str]] = {}  # per visitor, built once per batch
        lateness = self.cfg.lateness_ms
        scoring = self.cfg.scoring
        fresh: dict[str, list[Any]] = {}  # visitor -> score facts of this batch
        known: dict[str, dict[str, int]] = {}  # visitor -> contact -> first form time
        linked: dict[str, set[str]] = {}  # visitor -> contacts its forms named first now
        for topic, rec in items:
            vid = rec.visitor_id
            if rec.traffic_type != "human":  # kept apart: it counts in traffic_type only
                vid = OTHER_TRAFFIC + rec.traffic_type + "\x1f" + vid
            v = self._visitor(vid)
            et = "page_view" if isinstance(rec, PageView) else "form_submit"
            if v is not None:
                ids = seen_ids.get(vid)
                if ids is None:
                    ids = seen_ids[vid] = v.ids()
                if rec.event_id in ids:
                    out.count(et, "duplicate")
                    continue
            if not self.admit(out, topic, rec, et, lateness, wall_ms):
                continue
            if v is None:
                v = self.visitors[vid] = Visitor()
            if vid not in old_state:
                old_state[vid] = Visitor(v.first, list(v.pvs), list(v.forms), v.touches, v.leads)
            if vid in seen_ids:
                seen_ids[vid].add(rec.event_id)
            if isinstance(rec, PageView):
                pv: PV = (rec.t, rec.event_id, rec.page_type, rec.channel, rec.device,
                          rec.engaged_ms, rec.campaign)
                _insort(v.pvs, pv)
                if v.first is None or rec.t < v.first:
                    v.first = rec.t
            else:
                fs: FS = (rec.t, rec.event_id, rec.contact_id, rec.goal, rec.channel,
                          rec.campaign)
                _insort(v.forms, fs)
            if scoring is not None and rec.traffic_type == "human":
                self._score(scoring, vid, v, rec, fresh, known, linked)
            touched[vid] = v
        for vid in touched:
            self._visitor_deltas(vid, old_state[vid], self.visitors[vid], out)
            out.dirty.add(hot_name(vid))
        for vid, v in touched.items():
            if v is None or not v.contacts:
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
               linked: dict[str, set[str]]) -> None:
        if isinstance(rec, PageView):
            hits = scoring.facts("page_view", {"page_type": rec.page_type,
                                               "channel": rec.channel, "device": rec.device,
                                               "utm_campaign": rec.campaign})
        else:
            hits = scoring.facts("form_submit", {"goal": rec.goal, "channel": rec.channel})
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
        sessions = self._facts(vid, old, new, out, traffic)
        if traffic == "human":
            self._lead_candidates(vid, new, sessions, out)

    def _facts(self, vid: str, old: Visitor, new: Visitor, out: StageOutput,
               traffic: str) -> list[Session]:
        cfg = self.cfg
        human = traffic == "human"
        tdim = dim("traffic_type", traffic)
        old_sessions, old_alone = sessionize(old.pvs, old.forms, cfg)
        new_sessions, new_alone = sessionize(new.pvs, new.forms, cfg)
        old_ids = {s.identity(): s for s in old_sessions}
        new_ids = {s.identity(): s for s in new_sessions}
        changed: list[Session] = []
        for ident, s in old_ids.items():
            if ident not in new_ids:
                _session_facts(s, -1, cfg, out.deltas, tdim, human)
                changed.append(s)
        for ident, s in new_ids.items():
            if ident not in old_ids:
                _session_facts(s, 1, cfg, out.deltas, tdim, human)
                changed.append(s)
        old_alone_ids = {f[1] for f in old_alone}
        new_alone_ids = {f[1] for f in new_alone}
        for f in old_alone if human else ():
            if f[1] not in new_alone_ids:
                _standalone_facts(f, -1, out.deltas)
        for f in new_alone if human else ():
            if f[1] not in old_alone_ids:
                _standalone_facts(f, 1, out.deltas)
        # users and new users, for every bucket a changed session has page views in
        affected: set[tuple[str, int]] = set()
        for s in changed:
            for p in s.pvs:
                affected.update(starts(p[0]))
        if old.first != new.first:
            for t in (old.first, new.first):
                if t is not None:
                    affected.update(starts(t))
        if affected:
            h = visitor_hash(vid)
        # a new visitor counts once, in the channel and device of its first session
        # ever (acquisition, as GA4 does), whatever its other sessions in the bucket
        old_acq = _acquisition(old_sessions, old.first)
        new_acq = _acquisition(new_sessions, new.first)
        for size, start in affected:
            end = bucket_end(start, size)
            before = _membership(old_sessions, size, start, tdim, human)
            after = _membership(new_sessions, size, start, tdim, human)
            was_new = old.first is not None and start <= old.first < end
            is_new = new.first is not None and start <= new.first < end
            for d in before:
                add(out.deltas, (FAMILY, size, start, d), "us", -1)
            for d in after:
                key = (FAMILY, size, start, d)
                add(out.deltas, key, "us", 1)
                if d not in before:
                    out.sketches.setdefault(key, set()).add(h)
            if not human:
                continue  # new users are people's
            if was_new:
                for d in old_acq:
                    add(out.deltas, (FAMILY, size, start, d), "nu", -1)
            if is_new:
                for d in new_acq:
                    add(out.deltas, (FAMILY, size, start, d), "nu", 1)
        return new_sessions

    def _lead_candidates(self, vid: str, v: Visitor, sessions: list[Session],
                         out: StageOutput) -> None:
        cfg = self.cfg
        lead_forms = [f for f in v.forms if f[3] in cfg.lead_goals]
        if not lead_forms:
            return
        session_touches = [(s.start, s.channel, s.first_campaign) for s in sessions] + \
            list(v.touches)
        landing_of = {f[1]: s.landing for s in sessions for f in s.forms}
        device_of = {f[1]: s.device for s in sessions for f in s.forms}
        for f in lead_forms:
            t, eid, contact = f[0], f[1], f[2]
            touches = attribution.touches_for(session_touches, t, f[4], cfg.lookback_ms,
                                              f[5])
            credit, campaigns = attribution.all_models(touches, t, cfg.half_life_ms)
            page_type = landing_of.get(eid)
            # the device of the session the form belongs to, else unknown (the rule
            # conversions by device follow)
            device = device_of.get(eid, "unknown")
            sig = orjson.dumps([credit, page_type, device, campaigns]).decode()
            if v.leads.get(eid) == sig:
                continue
            v.leads[eid] = sig
            out.leads.append({"contact_id": contact, "event_id": eid, "t": t,
                              "visitor_id": vid, "goal": f[3], "page_type": page_type,
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
                  if contact_id in v.contacts or any(f[2] == contact_id for f in v.forms)]
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
                and all(f[0] < day_open for f in s.forms)
            if frozen:
                v.touches.append((s.start, s.channel, s.first_campaign))
                for f in s.forms:
                    v.leads.pop(f[1], None)
                dropped = True
            else:
                keep_pv.extend(s.pvs)
                keep_forms.extend(s.forms)
        for f in alone:
            if f[0] < day_open and horizon - f[0] >= cfg.session_timeout_ms:
                v.leads.pop(f[1], None)
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


def _insort(items: list[Any], item: Any) -> None:
    if not items or items[-1] <= item:
        items.append(item)
    else:
        lo = bisect_right(items, item)
        items.insert(lo, item)
