"""Cold visitors: packed records in the embedded store that still answer "new?" and
"which sessions touched it?" when the visitor comes back."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.events import Decoder
from streams.kpis.visitors import (
    COLD_PREFIX,
    MemoryColdStore,
    cold_name,
    decode,
    encode,
    hot_id,
    hot_name,
)
from streams.kpis.web import WebPartition
from streams.local import LocalPipeline
from streams.statestore import ColdView, MemoryStore, RocksStore
from tests.unit.kpitables import FAR, form, pv, records


def test_records_are_small_and_round_trip() -> None:
    touches = [(1_790_812_800_000, "paid_search", None), (1_790_899_200_000, "my_podcast", None)]
    data = encode(1_790_812_800_000, touches)
    assert decode(data) == (1_790_812_800_000, touches, [])
    assert len(encode(1_790_812_800_000, touches[:1])) == 18
    assert decode(encode(None, [])) == (None, [], [])
    facts = [[1_790_812_800_000, "pv-1", 0, 10.0], [1_790_812_900_000, "pv-2", 3, -2.5]]
    assert decode(encode(None, touches, facts)) == (None, touches, facts)
    # a touch with its session's campaign: the name follows (1 + its bytes)
    with_campaign = [(1_790_812_800_000, "paid_search", "spring-sale"),
                     (1_790_899_200_000, "my_podcast", "ep-12"), (1_790_900_000_000, "email", None)]
    assert decode(encode(None, with_campaign, facts)) == (None, with_campaign, facts)
    assert len(encode(1_790_812_800_000, with_campaign[:1])) == 18 + 1 + len("spring-sale")
    # a record of the release before (two-element touches, no campaign codes) reads as is
    assert decode(encode(None, [(1, "email")])) == (None, [(1, "email", None)], [])
    long = "x" * 300
    assert decode(encode(None, [(1, "email", long)]))[1] == [(1, "email", "x" * 255)]


def test_a_visitor_id_never_reads_as_a_cold_key() -> None:
    for vid in ("v1", COLD_PREFIX + "abc", "\\x", "\\"):
        name = hot_name(vid)
        assert not name.startswith(COLD_PREFIX) and hot_id(name) == vid


def _stores(tmp_path: Path) -> dict[str, object]:
    return {"memory": MemoryColdStore(), "view": ColdView(MemoryStore()),
            "rocksdb": ColdView(RocksStore(tmp_path / "s", 1 << 20))}


@pytest.mark.parametrize("kind", ["memory", "view", "rocksdb"])
def test_a_returning_cold_visitor_is_not_new_and_keeps_its_touch(
        decoder: Decoder, tmp_path: Path, kind: str) -> None:
    lp = LocalPipeline(partitions=1)
    cold = _stores(tmp_path)[kind]
    lp.web[0] = WebPartition(lp.web[0].cfg, cold)  # type: ignore[arg-type]
    lp.feed(records(decoder, [pv("v1", "2026-11-20T10:00:00Z", utm_medium="cpc")]))
    # two days later (another visitor moves the watermark): v1 can only go cold
    lp.feed(records(decoder, [pv("v2", "2026-11-22T10:00:00Z")]))
    lp.expire()
    web = lp.web[0]
    assert "v1" not in web.visitors and web.cold.count() == 1
    assert web.state_keys() == {"visitor": 1, "visitor_cold": 1}  # exact in every store
    # v1 comes back direct and becomes a lead: returning, credited to its paid click
    lp.feed(records(decoder, [pv("v1", "2026-11-22T11:00:00Z"),
                              form("v1", "c1", "2026-11-22T11:01:00Z")]))
    snaps = lp.finish(FAR)
    day = "2026-11-22T00:00:00Z"
    assert snaps[f"users|1d|{day}|"]["value"] == 2
    assert snaps[f"new_users|1d|{day}|"]["value"] == 1  # v2 only
    assert snaps[f"leads|1d|{day}|channel=paid_search"]["value"] == 1
    assert f"leads|1d|{day}|channel=direct" not in snaps
    web.close()


def test_cold_records_survive_the_changelog(decoder: Decoder, tmp_path: Path) -> None:
    """What dump() gives the flush (packed bytes under the cold key) is what the
    runner mirrors into the local store, where a new owner reads it in place."""
    store = RocksStore(tmp_path / "a", 1 << 20)
    web = WebPartition(LocalPipeline().web[0].cfg, ColdView(store))
    recs = records(decoder, [pv("v1", "2026-11-20T10:00:00Z", utm_medium="cpc"),
                             pv("v2", "2026-11-22T10:00:00Z")])
    web.process([("page_views", r) for r in recs], 0)
    changed = web.prune()
    cold_keys = [k for k in changed if k.startswith(COLD_PREFIX)]
    assert len(cold_keys) == 1 and "v1" in changed
    assert web.dump("v1") is None  # hot record deleted: a tombstone
    value = web.dump(cold_keys[0])
    assert isinstance(value, bytes)
    assert store.get(cold_keys[0].encode()) is None  # not confirmed yet: overlay only
    store.write([(k.encode(), web.dump(k)) for k in changed], {"offset": 7, "wall": 0})
    web.committed()
    store.close()
    reopened = RocksStore(tmp_path / "a", 1 << 20)  # the worker restarted on its disk
    assert reopened.checkpoint() == {"offset": 7, "wall": 0}
    fresh = WebPartition(web.cfg, ColdView(reopened))
    assert fresh.cold.count() == 1 and fresh._visitor("v1") is not None
    assert fresh.visitors["v1"].touches == [(recs[0].t, "paid_search", None)]
    reopened.close()


def test_the_sweep_forgets_old_touches_and_visitors_past_their_ttl(
        decoder: Decoder) -> None:
    lp = LocalPipeline(partitions=1)
    web = lp.web[0]
    web.cfg = type(web.cfg)(visitor_ttl_ms=5 * 86_400_000, lookback_ms=86_400_000)
    lp.feed(records(decoder, [pv("v1", "2026-11-01T10:00:00Z", utm_medium="cpc")]))
    lp.feed(records(decoder, [pv("v2", "2026-11-03T10:00:00Z")]))
    lp.expire()
    assert web.cold.count() == 1
    v1_key = next(iter(web.cold.data))  # type: ignore[attr-defined]
    # six days after v1's first page view (TTL 5 d), four after v2's
    lp.feed(records(decoder, [pv("v3", "2026-11-07T10:00:00Z")]))
    changed = web.prune()
    assert web.cold.count() == 1  # v1 past its TTL is gone, v2 went cold
    assert web.cold.get(v1_key) is None
    assert cold_name(v1_key) in changed  # its tombstone goes to the changelog


def _deal(contact: str, stage: str, at: str, **kw: object) -> dict[str, object]:
    from tests.conftest import event

    return event("deal_update", contact_id=contact, stage=stage, occurred_at=at, **kw)


def test_quiet_contacts_go_cold_and_come_back_whole(decoder: Decoder) -> None:
    """A contact in the cold store (a MessagePack record) still has its lead and its
    deals: a deal won a week later is credited to the lead's channel, and the KPIs
    equal those of a pipeline that kept every contact on the heap."""
    week = [pv("v1", "2026-11-16T10:00:00Z", utm_medium="cpc"),
            form("v1", "c1", "2026-11-16T10:01:00Z"),
            _deal("c1", "mql", "2026-11-16T12:00:00Z", deal_id="d1"),
            pv("v2", "2026-11-18T10:00:00Z", referrer="https://www.google.com/"),
            form("v2", "c2", "2026-11-18T10:05:00Z"),
            _deal("c1", "won", "2026-11-23T09:00:00Z", deal_id="d1", amount=1200.0),
            _deal("c2", "sql", "2026-11-23T09:30:00Z", deal_id="d2")]
    recs = records(decoder, week)
    kept, cooled = LocalPipeline(partitions=1), LocalPipeline(partitions=1)
    kept.feed(recs)
    for r in recs:  # one at a time, cooling what is quiet after each
        cooled.feed([r])
        cooled.expire()
    funnel = cooled.funnel[0]
    assert funnel.cold.count() >= 1
    assert "c1" in funnel.contacts  # its won deal took it back into the heap
    cold_counts = cooled.state_keys()
    assert cold_counts["contact"] + cold_counts["contact_cold"] >= 2
    want, got = kept.finish(FAR), cooled.finish(FAR)
    assert got == want
    assert got["revenue|1d|2026-11-23T00:00:00Z|channel=paid_search"]["value"] == 1200.0


def test_a_cold_contact_record_names_its_contact() -> None:
    from streams.kpis.funnel import decode_contact, encode_contact

    st = {"c": {"e1": {"t": 5, "event_id": "e1", "credit": {"linear": [["email", 10]]}}},
          "d": {"d1": {"k": "renewal", "cu": "cu1", "cr": 1, "u": [(5, "e2", "won", 1.0,
                                                                     None)]}}}
    assert decode_contact(encode_contact("c1", st)) == ("c1", st)
    assert len(encode_contact("c1", st)) < 120
