"""What a visitor's sessions contribute to the web KPIs, and how a batch changes it. Pure.

:func:`visitor_facts` compares a visitor's sessions before and after a batch and
adds the difference of their contributions to the stage's deltas: sessions that
changed are retracted and added again whole, users and new users are counted
again in every bucket a changed session has page views in. Only the net change
is written: a component that a batch would retract and add back (a user still
counted in the same dims of a bucket) is left alone, which is what the sum of
both would have been.
"""

from __future__ import annotations

import hashlib

from .buckets import MINUTE, bucket_end, starts
from .deltas import AggKey, Deltas, dim
from .messages import skip_horizons
from .sessions import FS, PV, Bucket, Session, Visitor, WebConfig, sessionize

FAMILY = "web"
EVERY_MINUTE = -(1 << 62)  # ``first_1m`` when no minute bucket is skipped
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


def _add(out: Deltas, key: AggKey, component: str, value: int) -> None:
    comps = out.get(key)
    if comps is None:
        out[key] = {component: value}
    else:
        comps[component] = comps.get(component, 0) + value


def first_minute(input_horizon: int | None, cfg: WebConfig) -> int:
    """The start of the oldest minute bucket still built: in a replay, those ending
    ``retention_1m_ms`` or more behind the inputs' horizon are past retention (the
    rows :func:`streams.kpis.messages.drop_past_retention` would drop at the flush,
    never built; the merge stage refuses them)."""
    skip = skip_horizons(input_horizon, {"1m": cfg.retention_1m_ms})
    return EVERY_MINUTE if "1m" not in skip else skip["1m"] - MINUTE + 1


def _session_comps(s: Session, cfg: WebConfig) -> dict[str, int]:
    """A human session's own components (counted in its start's buckets), zeros left
    out."""
    n = len(s.pvs)
    converted = 1 if s.forms else 0
    duration = s.end - s.start
    engaged_time = max(duration, s.engaged_ms())
    engaged = 1 if (engaged_time >= cfg.engaged_ms or n >= 2 or converted) else 0
    bounced = 1 if (n == 1 and not converted) else 0
    return {c: v for c, v in (("se", 1), ("sp", n), ("bo", bounced), ("en", engaged),
                              ("du", duration), ("sc", converted)) if v}


def _at_start(comps: dict[str, int], t: int, dims: tuple[str, ...], out: Deltas,
              first_1m: int) -> None:
    """Add ``comps`` in every dim of the 1m, 1h and 1d buckets of ``t``."""
    get = out.get
    items = comps.items()
    for size, start in starts(t):
        if start < first_1m and size == "1m":
            continue
        for d in dims:
            key = (FAMILY, size, start, d)
            cur = get(key)
            if cur is None:
                out[key] = dict(comps)
            else:
                cur_get = cur.get
                for comp, value in items:
                    cur[comp] = cur_get(comp, 0) + value


def _page_views(counts: dict[Bucket, int], sign: int, dims: tuple[str, ...], out: Deltas,
                first_1m: int) -> None:
    """Add ``sign`` times the page views per bucket in every dim of ``dims``."""
    get = out.get
    for (size, start), count in counts.items():
        if start < first_1m and size == "1m":
            continue
        value = sign * count
        for d in dims:
            key = (FAMILY, size, start, d)
            cur = get(key)
            if cur is None:
                out[key] = {"pv": value}
            else:
                cur["pv"] = cur.get("pv", 0) + value


def session_facts(s: Session, sign: int, cfg: WebConfig, out: Deltas, tdim: str,
                  human: bool, first_1m: int = EVERY_MINUTE) -> None:
    """Add (``sign`` 1) or retract (-1) one session's contribution (minute buckets
    from ``first_1m``)."""
    if not human:  # bots and internal traffic: sessions and page views by traffic_type
        _at_start({"se": sign}, s.start, (tdim,), out, first_1m)
        _page_views(s.per_bucket(), sign, (tdim,), out, first_1m)
        return
    dims = s.dims()
    comps = _session_comps(s, cfg)
    if sign != 1:
        comps = {c: sign * v for c, v in comps.items()}
    _at_start(comps, s.start, dims, out, first_1m)
    _page_views(s.per_bucket(), sign, dims[:3], out, first_1m)
    for f in s.forms:
        _conversion(f, dims, sign, out, first_1m)


def session_change(old: Session, new: Session, cfg: WebConfig, out: Deltas, tdim: str,
                   human: bool, first_1m: int = EVERY_MINUTE) -> list[Bucket]:
    """Add what changed from ``old`` to ``new``, one session that kept its first page
    view (so its start and dims): what :func:`session_facts` would retract and add
    back, without the parts that cancel (page views of the buckets it did not grow
    in, the session itself when only its page views changed). Returns the buckets
    it has page views in now and had none in before, or the other way round."""
    ob = old.per_bucket()
    grown = new.grown_from(old)  # (grown at the end: only the new page views counted)
    if grown is not None:
        moved = [b for b in grown if b not in ob]
    else:
        nb = new.per_bucket()
        grown = {b: c for b in ob.keys() | nb.keys() if (c := nb.get(b, 0) - ob.get(b, 0))}
        moved = list(ob.keys() ^ nb.keys())
    if not human:  # the session's start is the same: only page views move
        _page_views(grown, 1, (tdim,), out, first_1m)
        return moved
    dims = new.dims()
    was, now = _session_comps(old, cfg), _session_comps(new, cfg)
    change = {c: now.get(c, 0) - was.get(c, 0) for c in was.keys() | now.keys()}
    change = {c: v for c, v in change.items() if v}
    if change:
        _at_start(change, new.start, dims, out, first_1m)
    _page_views(grown, 1, dims[:3], out, first_1m)
    if old.forms or new.forms:
        old_forms, new_forms = set(old.forms), set(new.forms)
        for f in old.forms:
            if f not in new_forms:
                _conversion(f, dims, -1, out, first_1m)
        for f in new.forms:
            if f not in old_forms:
                _conversion(f, dims, 1, out, first_1m)
    return moved


def _conversion(f: FS, dims: tuple[str, ...], sign: int, out: Deltas,
                first_1m: int) -> None:
    goal = dim("goal", f.goal)
    for size, start in starts(f.t):
        if start < first_1m and size == "1m":
            continue
        for d in (*dims, goal):
            _add(out, (FAMILY, size, start, d), "cv", sign)


def standalone_facts(f: FS, sign: int, out: Deltas, first_1m: int = EVERY_MINUTE) -> None:
    """A conversion outside any session counts in conversions, not in session rates;
    by device it is unknown (catalogue section 10)."""
    _conversion(f, ("", dim("channel", f.channel or "direct"), dim("device", "unknown")), sign,
                out, first_1m)


def _membership(sessions: list[Session], affected: set[Bucket], lo: int, hi: int,
                tdim: str, human: bool) -> dict[Bucket, set[str]]:
    """Per affected bucket, the dims the visitor counts in as a user: those of every
    session with a page view in it (``lo``..``hi``: the span the buckets cover)."""
    members: dict[Bucket, set[str]] = {}
    for s in sessions:
        if s.start >= hi or s.last_pv < lo:
            continue
        dims: tuple[str, ...] | None = None
        for b in s.per_bucket():
            if b in affected:
                if dims is None:
                    dims = s.dims() if human else (tdim,)
                got = members.get(b)
                if got is None:
                    members[b] = set(dims)
                else:
                    got.update(dims)
    return members


def _acquisition(sessions: list[Session], first: int | None) -> tuple[str, ...]:
    """Dims a new visitor counts in: the total, and the channel and device of the
    session that holds its first page view ever."""
    if first is None:
        return ()
    for s in sessions:
        if s.pvs[0].t == first:
            return ("", dim("channel", s.channel), dim("device", s.device))
    return ("",)  # its first page view is no longer kept: it is not new here


def visitor_facts(vid: str, old: Visitor, new: Visitor, cfg: WebConfig, out: Deltas,
                  sketches: dict[AggKey, set[int]], traffic: str,
                  first_1m: int = EVERY_MINUTE) -> list[Session]:
    """Add a visitor's change of contribution (minute buckets from ``first_1m``, see
    :func:`first_minute`); returns its sessions now."""
    human = traffic == "human"
    tdim = dim("traffic_type", traffic)
    old_sessions, old_alone = sessionize(old.pvs, old.forms, cfg)
    new_sessions, new_alone = sessionize(new.pvs, new.forms, cfg)
    added: list[Session] = new_sessions  # (a visitor without kept sessions: all of them)
    gone: dict[PV, Session] = {}
    if old_sessions:
        old_ids = {s.identity(): s for s in old_sessions}
        added = []
        kept: set[tuple[object, ...]] = set()
        for i, s in enumerate(new_sessions):
            ident = s.identity()
            same = old_ids.get(ident)
            if same is None:
                added.append(s)
            else:
                kept.add(ident)
                new_sessions[i] = same  # equal: the same events (reuses its bucket counts)
        # a session that kept its first page view (the common case: it grew) changes by
        # its difference; the others are retracted or added whole. A page view belongs
        # to one session, so at most one old session starts with it.
        gone = {s.pvs[0]: s for ident, s in old_ids.items() if ident not in kept}
    # the buckets whose users may have changed: those of a session added or retracted
    # whole, and those a grown session's page views entered or left
    affected: set[Bucket] = set()
    for s in added:
        prior = gone.pop(s.pvs[0], None) if gone else None
        if prior is None:
            session_facts(s, 1, cfg, out, tdim, human, first_1m)
            affected.update(s.per_bucket())
        else:
            affected.update(session_change(prior, s, cfg, out, tdim, human, first_1m))
    for s in gone.values():
        session_facts(s, -1, cfg, out, tdim, human, first_1m)
        affected.update(s.per_bucket())
    if human and (old_alone or new_alone):
        old_alone_ids = {f.event_id for f in old_alone}
        new_alone_ids = {f.event_id for f in new_alone}
        for f in old_alone:
            if f.event_id not in new_alone_ids:
                standalone_facts(f, -1, out, first_1m)
        for f in new_alone:
            if f.event_id not in old_alone_ids:
                standalone_facts(f, 1, out, first_1m)
    # users and new users, in the affected buckets and those of the first page view
    if old.first != new.first:
        for t in (old.first, new.first):
            if t is not None:
                affected.update(starts(t))
    if not affected:
        return new_sessions
    lo = min(start for _, start in affected)
    if lo < first_1m:  # a replay: minutes past retention are not built
        affected = {b for b in affected if b[1] >= first_1m or b[0] != "1m"}
        if not affected:
            return new_sessions
        lo = min(start for _, start in affected)
    h = visitor_hash(vid)
    hi = max(bucket_end(start, size) for size, start in affected)
    before = _membership(old_sessions, affected, lo, hi, tdim, human) if old_sessions else {}
    after = _membership(new_sessions, affected, lo, hi, tdim, human)
    # a new visitor counts once, in the channel and device of its first session
    # ever (acquisition, as GA4 does), whatever its other sessions in the bucket
    old_acq: tuple[str, ...] = ()
    new_acq: tuple[str, ...] = ()
    if human:
        old_acq = _acquisition(old_sessions, old.first)
        new_acq = _acquisition(new_sessions, new.first)
    empty: set[str] = set()
    # a bucket holds a time exactly when it is one of that time's buckets
    none: set[Bucket] = set()
    old_first = set(starts(old.first)) if human and old.first is not None else none
    new_first = set(starts(new.first)) if human and new.first is not None else none
    get, sketch = out.get, sketches.get
    for b in affected:
        size, start = b
        was = before.get(b, empty)
        now = after.get(b, empty)
        if was != now:
            if was:
                for d in was - now:
                    _add(out, (FAMILY, size, start, d), "us", -1)
                now = now - was
            for d in now:  # (the hottest loop of the web stage: _add inlined)
                key = (FAMILY, size, start, d)
                comps = get(key)
                if comps is None:
                    out[key] = {"us": 1}
                else:
                    comps["us"] = comps.get("us", 0) + 1
                got = sketch(key)
                if got is None:
                    sketches[key] = {h}
                else:
                    got.add(h)
        if not human:
            continue  # new users are people's
        was_new = b in old_first
        is_new = b in new_first
        if was_new and is_new and old_acq == new_acq:
            continue
        if was_new:
            for d in old_acq:
                if not (is_new and d in new_acq):
                    _add(out, (FAMILY, size, start, d), "nu", -1)
        if is_new:
            for d in new_acq:
                if not (was_new and d in old_acq):
                    _add(out, (FAMILY, size, start, d), "nu", 1)
    return new_sessions
