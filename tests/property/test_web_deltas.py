"""A visitor's change of contribution is what its whole contribution after the batch
minus its whole contribution before gives.

:func:`streams.kpis.webfacts.visitor_facts` writes only what differs: a session
that kept its first page view changes by its difference, and users are counted
again only in the buckets where something entered or left. Here the reference
is the plain definition, built from scratch for both states: every session and
standalone form whole, a user in every bucket it has page views in (in the dims
of those sessions), a new user in the buckets of its first page view (in the
channel and device of the session that holds it).
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.kpis.buckets import starts
from streams.kpis.deltas import Deltas, dim, merge_into, prune_zero
from streams.kpis.sessions import FS, PV, Visitor, WebConfig, sessionize
from streams.kpis.webfacts import (
    EVERY_MINUTE,
    FAMILY,
    OTHER_TRAFFIC,
    session_facts,
    standalone_facts,
    traffic_of,
    visitor_facts,
)

BASE = 1_795_420_800_000 - 3_600_000  # 2026-11-23T07:00:00Z: an hour before midnight UTC+8
STEPS = [5_000, 45_000, 60_000, 600_000, 1_700_000, 1_900_000, 3_700_000]


def whole(vid: str, v: Visitor, cfg: WebConfig) -> Deltas:
    """Everything a visitor's kept events contribute, from scratch."""
    traffic = traffic_of(vid)
    human = traffic == "human"
    tdim = dim("traffic_type", traffic)
    out: Deltas = {}
    sessions, alone = sessionize(list(v.pvs), list(v.forms), cfg)
    for s in sessions:
        session_facts(s, 1, cfg, out, tdim, human)
    if human:
        for f in alone:
            standalone_facts(f, 1, out)
    members: dict[tuple[str, int], set[str]] = {}
    for s in sessions:
        for p in s.pvs:
            for b in starts(p.t):
                members.setdefault(b, set()).update(s.dims() if human else (tdim,))
    for (size, start), dims in members.items():
        for d in dims:
            merge_into(out, {(FAMILY, size, start, d): {"us": 1}})
    if human and v.first is not None:
        holder = [s for s in sessions if s.pvs[0].t == v.first]
        acq = ("", dim("channel", holder[0].channel),
               dim("device", holder[0].device)) if holder else ("",)
        for size, start in starts(v.first):
            for d in acq:
                merge_into(out, {(FAMILY, size, start, d): {"nu": 1}})
    return out


@st.composite
def changes(draw: Any) -> tuple[str, Visitor, Visitor, WebConfig, int]:
    n = draw(st.integers(1, 14))
    t = BASE + draw(st.integers(0, 120)) * 1_000
    events: list[PV | FS] = []
    for i in range(n):
        t += draw(st.sampled_from(STEPS))
        if draw(st.integers(0, 5)) == 0:
            events.append(FS(t, f"e{i:02d}", f"c{draw(st.integers(0, 1))}",
                             draw(st.sampled_from(["demo_request", "newsletter_signup"])),
                             draw(st.sampled_from([None, "email"])),
                             draw(st.sampled_from([None, "spring"]))))
        else:
            events.append(PV(t, f"e{i:02d}", draw(st.sampled_from(["landing", "blog"])),
                             draw(st.sampled_from(["direct", "paid_search", "email"])),
                             draw(st.sampled_from(["desktop", "mobile"])),
                             draw(st.sampled_from([0, 4_000, 15_000])),
                             draw(st.sampled_from([None, "spring", "autumn"]))))
    # the batch: any of them (late ones included), the rest kept from before
    new_ones = draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1, max_size=n))
    before = [e for i, e in enumerate(events) if i not in new_ones]

    def visitor(evs: list[PV | FS], first: int | None) -> Visitor:
        pvs = sorted(e for e in evs if isinstance(e, PV))
        forms = sorted(e for e in evs if isinstance(e, FS))
        seen = min([p.t for p in pvs] + ([first] if first is not None else []), default=None)
        return Visitor(seen, pvs, forms)

    # sometimes the first page view ever is older than what is kept
    pruned_first = draw(st.sampled_from([None, BASE - 86_400_000]))
    old = visitor(before, pruned_first)
    new = visitor(events, pruned_first)
    cfg = WebConfig(split_midnight=draw(st.booleans()), split_campaign=draw(st.booleans()))
    vid = draw(st.sampled_from(["v1", OTHER_TRAFFIC + "bot\x1fv1"]))
    first_1m = draw(st.sampled_from([EVERY_MINUTE, BASE + 3_600_000]))
    return vid, old, new, cfg, first_1m


# a page view of a new campaign splits a session after its form: the form moves to
# the new session, and the old one, which keeps its first page view, loses it
SPLIT = (PV(BASE, "a", "landing", "direct", "desktop", 0, None),
         PV(BASE + 900_000, "b", "blog", "email", "mobile", 0, "spring"),
         FS(BASE + 1_200_000, "f", "c0", "demo_request", None, None))


# the same split, and a form added before it: the first session keeps its page views
# and its number of forms, and has another form (which Session.identity must tell)
EARLY_FORM = FS(BASE + 300_000, "f0", "c0", "newsletter_signup", None, None)


@settings(max_examples=400, deadline=None)
@given(changes())
@example(("v1", Visitor(BASE, [SPLIT[0]], [SPLIT[2]]), Visitor(BASE, list(SPLIT[:2]), [SPLIT[2]]),
          WebConfig(split_campaign=True), EVERY_MINUTE))
@example(("v1", Visitor(BASE, [SPLIT[0]], [SPLIT[2]]),
          Visitor(BASE, list(SPLIT[:2]), [EARLY_FORM, SPLIT[2]]),
          WebConfig(split_campaign=True), EVERY_MINUTE))
def test_a_visitors_change_is_after_minus_before(case: tuple[str, Visitor, Visitor,
                                                                WebConfig, int]) -> None:
    vid, old, new, cfg, first_1m = case
    want: Deltas = {}
    merge_into(want, whole(vid, new, cfg))
    merge_into(want, whole(vid, old, cfg), -1)
    want = {k: c for k, c in prune_zero(want).items() if k[1] != "1m" or k[2] >= first_1m}
    out: Deltas = {}
    sketches: dict[Any, set[int]] = {}
    visitor_facts(vid, old, new, cfg, out, sketches, traffic_of(vid), first_1m)
    assert prune_zero(out) == want
    # the distinct-count sketches hear of every bucket and dim the visitor entered
    assert set(sketches) == {k for k, c in want.items() if c.get("us") == 1}
