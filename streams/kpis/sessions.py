"""A visitor's kept events and the sessions they make. Pure.

The web stage (:mod:`.web`) keeps, per visitor, its page views and form submits
as small tuples sorted by ``(t, event_id)``; :func:`sessionize` cuts them into
sessions (a gap of the session timeout ends one, and optionally local midnight
or a new campaign) and attaches each form to the session it happened in.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .buckets import DAY, floor, starts
from .deltas import dim
from .scoring import ScoringConfig


class PV(NamedTuple):
    """A kept page view: sorts by ``(t, event_id)``, stored as a plain array."""

    t: int
    event_id: str
    page_type: str
    channel: str
    device: str
    engaged_ms: int
    campaign: str | None = None  # (absent from state written before campaigns)


class FS(NamedTuple):
    """A kept form submit: sorts by ``(t, event_id)``, stored as a plain array."""

    t: int
    event_id: str
    contact_id: str
    goal: str
    channel: str | None  # None: the session's
    campaign: str | None = None  # (absent from state written before campaigns)

Bucket = tuple[str, int]  # (size, start)


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
    # minute buckets this far behind the inputs' horizon are past retention in a
    # replay (KPI_REPLAY_SKIP_EXPIRED): not built (KPI_RETENTION_1M)
    retention_1m_ms: int = 2 * DAY


@dataclass(slots=True)
class Session:
    start: int
    last_pv: int
    pvs: list[PV]
    forms: list[FS] = field(default_factory=list)
    campaign: str | None = None
    # page views per 1m, 1h and 1d bucket, and the engagement time its page views
    # reported, worked out once (see ``per_bucket``, ``engaged_ms``, ``grown_from``)
    _per_bucket: dict[Bucket, int] | None = None
    _engaged_ms: int | None = None

    @property
    def channel(self) -> str:
        return self.pvs[0].channel

    @property
    def device(self) -> str:
        return self.pvs[0].device

    @property
    def landing(self) -> str:
        return self.pvs[0].page_type

    @property
    def first_campaign(self) -> str | None:
        """The campaign an attribution touch credits: the first page view's, as the
        session's channel is (``campaign`` is the newest seen, for splitting)."""
        return self.pvs[0].campaign

    @property
    def end(self) -> int:
        return max(self.last_pv, self.forms[-1].t) if self.forms else self.last_pv

    def identity(self) -> tuple[Any, ...]:
        """Tells this session from another of the same visitor's sessionized with
        fewer events (a batch only adds events; :func:`.webfacts.visitor_facts`):
        its first and last page views, their number, its last form and the forms'
        number. Sessions are runs of the sorted page views, so with the same first
        and last, more page views are events added between them; with the same page
        views, forms differ by forms added (more of them) or taken by a session
        started after its last page view (the latest: the last form differs)."""
        pvs, forms = self.pvs, self.forms
        return (pvs[0], pvs[-1], len(pvs), forms[-1] if forms else None, len(forms))

    def dims(self) -> tuple[str, str, str, str]:
        """The dims a human session counts in: total, channel, device, landing page."""
        first = self.pvs[0]
        return ("", dim("channel", first.channel), dim("device", first.device),
                dim("page_type", first.page_type))

    def per_bucket(self) -> dict[Bucket, int]:
        """Page views per (size, start) bucket: a session can span several."""
        counts = self._per_bucket
        if counts is None:
            counts = self._per_bucket = _count_buckets(self.pvs, {})
        return counts

    def engaged_ms(self) -> int:
        """The engagement time its page views reported, summed."""
        total = self._engaged_ms
        if total is None:
            total = self._engaged_ms = sum(p.engaged_ms for p in self.pvs)
        return total

    def grown_from(self, old: Session) -> dict[Bucket, int] | None:
        """If this session is ``old`` with page views added at its end (live traffic,
        nearly always): the added page views per bucket, and this session's own
        counts and engagement time are taken from ``old``'s plus theirs instead of
        counted again from its first page view. None if it changed otherwise."""
        n = len(old.pvs)
        if len(self.pvs) <= n or self.pvs[n - 1] != old.pvs[-1]:
            return None
        gained = self.pvs[n:]
        added = _count_buckets(gained, {})
        counts = dict(old.per_bucket())
        for b, count in added.items():
            counts[b] = counts.get(b, 0) + count
        self._per_bucket = counts
        self._engaged_ms = old.engaged_ms() + sum(p.engaged_ms for p in gained)
        return added


def _count_buckets(pvs: list[PV], counts: dict[Bucket, int]) -> dict[Bucket, int]:
    """Add each page view to ``counts`` in its 1m, 1h and 1d buckets."""
    get = counts.get
    for pv in pvs:
        for b in starts(pv.t):
            counts[b] = get(b, 0) + 1
    return counts


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
        return {p.event_id for p in self.pvs} | {f.event_id for f in self.forms}

    def to_state(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"f": self.first, "p": self.pvs, "s": self.forms,
                               "h": self.touches, "l": self.leads}
        if self.score or self.contacts:
            doc["sc"], doc["ct"] = self.score, self.contacts
        return doc

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Visitor:
        return cls(d["f"], [PV(*p) for p in d["p"]], [FS(*f) for f in d["s"]],
                   [tuple(h) for h in d["h"]], d["l"], d.get("sc", []), d.get("ct", []))


def sessionize(pvs: list[PV], forms: list[FS], cfg: WebConfig) -> tuple[list[Session], list[FS]]:
    """Sessions of sorted page views, with forms attached; returns (sessions, standalone)."""
    sessions: list[Session] = []
    cur: Session | None = None
    timeout = cfg.session_timeout_ms
    split_midnight, split_campaign = cfg.split_midnight, cfg.split_campaign
    for pv in pvs:
        t, campaign = pv.t, pv.campaign
        if cur is not None and t - cur.last_pv < timeout \
                and not (split_midnight and floor(t, "1d") != floor(cur.last_pv, "1d")) \
                and not (split_campaign and campaign is not None
                         and campaign != cur.campaign):
            cur.pvs.append(pv)
            cur.last_pv = t
            if campaign is not None:
                cur.campaign = campaign
        else:
            cur = Session(t, t, [pv], campaign=campaign)
            sessions.append(cur)
    standalone: list[FS] = []
    if forms:
        session_starts = [s.start for s in sessions]
        for f in forms:
            i = bisect_right(session_starts, f.t) - 1
            if i >= 0 and f.t < sessions[i].last_pv + timeout:
                sessions[i].forms.append(f)
            else:
                standalone.append(f)
    return sessions, standalone


def insort(items: list[Any], item: Any) -> None:
    """Insert into a sorted list; the common case (newest last) is an append."""
    if not items or items[-1] <= item:
        items.append(item)
    else:
        items.insert(bisect_right(items, item), item)
