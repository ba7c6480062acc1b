"""A restore from the local store reads only the changelog tail and ends where a
full restore from the changelog ends; a missing, stale or behind store is repaired."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from streams.statestore import MemoryStore, RocksStore
from streams.store import META_KEY, restore
from streams.topics import STATE_COMPACTION_LAG_MS
from tests.unit.test_runner import Changelog

NOW = 1_796_000_000_000


def flush(fid: str, seq: int, values: dict[str, Any]) -> list[tuple[bytes, Any, str]]:
    recs = [(k.encode(), None if v is None else orjson.dumps(v), fid) for k, v in values.items()]
    return [*recs, (META_KEY, orjson.dumps({"seq": seq, "offsets": {}, "flush": fid,
                                            "out": 0, "wall": NOW}), fid)]


def changelog(n: int) -> list[tuple[bytes, Any, str]]:
    out: list[tuple[bytes, Any, str]] = []
    for i in range(n):
        out += flush(f"f{i}", i + 1, {f"k{j}": i for j in range(i, i + 50)})
    return out


def contents(store: MemoryStore) -> dict[bytes, bytes]:
    return dict(store.items())


def run(records: list[Any], store: MemoryStore, now: int = NOW) -> Any:
    return asyncio.run(restore(lambda: Changelog(records), "state", 0, None, store, now))


def test_a_store_with_a_checkpoint_reads_only_the_tail(tmp_path: Path) -> None:
    records = changelog(20)
    store = RocksStore(tmp_path / "s", 1 << 20)
    first = run(records, store)
    assert first.records == len(records) and not first.from_checkpoint
    assert first.meta is not None and first.meta["seq"] == 20
    # more flushes arrive (another owner), then one that never got its meta (a crash)
    records += flush("f20", 21, {"k0": "new", "k5": None})
    records += flush("f21", 22, {"k1": "newer"})
    records += [(b"k2", orjson.dumps("orphan"), "never-confirmed")]
    store.close()
    store = RocksStore(tmp_path / "s", 1 << 20)  # the worker restarted on its disk
    tail = run(records, store)
    assert tail.from_checkpoint
    assert tail.records == 51 + 3 + 2 + 1  # the newest known flush again, then on
    assert tail.meta is not None and tail.meta["seq"] == 22
    assert tail.orphans == {"k2"}
    full = MemoryStore()
    reference = run(records, full)
    assert reference.records == len(records) and reference.orphans == {"k2"}
    assert contents(store) == contents(full)
    assert store.get(b"k0") == b'"new"' and store.get(b"k5") is None
    assert store.get(b"k2") == orjson.dumps(2)  # the orphan (k2) did not count
    store.close()


def test_a_stale_or_foreign_checkpoint_rebuilds_from_the_beginning(tmp_path: Path) -> None:
    records = changelog(5)
    store = RocksStore(tmp_path / "s", 1 << 20)
    run(records, store)
    later = NOW + STATE_COMPACTION_LAG_MS + 1  # compaction may have dropped tombstones
    again = run(records, store, now=later)
    assert not again.from_checkpoint and again.records == len(records)
    store.write([(b"stray", b"1")], {"offset": 10**9, "wall": NOW})  # another cluster's
    again = run(records, store)
    assert not again.from_checkpoint and store.get(b"stray") is None
    full = MemoryStore()
    run(records, full)
    assert contents(store) == contents(full)
    store.close()


def test_a_store_behind_the_changelog_catches_up(tmp_path: Path) -> None:
    """A worker killed after Kafka acknowledged a flush but before its local write
    (or in the middle of it: a RocksDB write batch lands whole or not at all) has a
    checkpoint behind the changelog; the tail read brings it level."""
    records = changelog(8)
    store = RocksStore(tmp_path / "s", 1 << 20)
    run(records[:-51], store)  # the last flush never reached the local store
    tail = run(records, store)
    assert tail.from_checkpoint and tail.records == 2 * 51
    full = MemoryStore()
    run(records, full)
    assert contents(store) == contents(full)
    store.close()


def _cold(i: int, prefix: bytes = b"\x01") -> bytes:
    return prefix + f"{i:016x}".encode()


def test_cold_record_counts_are_exact_through_restores_and_reopens(tmp_path: Path) -> None:
    """Flushes of an earlier release carry no cold counts: a restore counts the cold
    records once, with a pass over their keys, and the store keeps the count."""
    def cold_flush(fid: str, seq: int, values: dict[bytes, bytes | None]) -> list[Any]:
        recs = [(k, v, fid) for k, v in values.items()]
        return [*recs, (META_KEY, orjson.dumps({"seq": seq, "offsets": {}, "flush": fid,
                                                "out": 0, "wall": NOW}), fid)]

    records = cold_flush("a", 1, {_cold(i): b"v" for i in range(30)})
    records += cold_flush("b", 2, {_cold(i, b"\x02"): b"m" for i in range(4)})
    records += cold_flush("c", 3, {_cold(i): None for i in range(10)} | {b"hot": b"1"})
    store = RocksStore(tmp_path / "s", 1 << 20)
    run(records, store)
    assert (store.count(b"\x01"), store.count(b"\x02"), store.count(b"\x03")) == (20, 4, 0)
    # a tail read after a restart writes the newest flush again: nothing counts twice
    records += cold_flush("d", 4, {_cold(0): b"back", _cold(29): b"rewritten",
                                   _cold(29, b"\x03"): b"c"})
    store.close()
    store = RocksStore(tmp_path / "s", 1 << 20)
    assert store.count(b"\x01") == 20  # read back with the store
    tail = run(records, store)
    assert tail.from_checkpoint
    expected = {p: sum(1 for _ in store.items(p)) for p in (b"\x01", b"\x02", b"\x03")}
    assert expected == {b"\x01": 21, b"\x02": 4, b"\x03": 1}
    assert {p: store.count(p) for p in expected} == expected
    memory = MemoryStore()
    run(records, memory)
    assert {p: memory.count(p) for p in expected} == expected
    store.close()


def test_a_store_from_before_counts_is_counted_once_on_open(tmp_path: Path) -> None:
    from rocksdict import Options, Rdict

    db = Rdict(str(tmp_path / "old"), Options(raw_mode=True))
    for i in range(7):
        db[_cold(i)] = b"v"
    db[b"k"] = b"1"
    db.close()
    store = RocksStore(tmp_path / "old", 1 << 20)
    assert store.count(b"\x01") == 7
    store.write([(_cold(0), None), (_cold(99), b"v")], None)
    store.close()
    assert RocksStore(tmp_path / "old", 1 << 20).count(b"\x01") == 7


def test_cold_counts_travel_with_the_flushes(tmp_path: Path) -> None:
    """A flush's meta says how many cold records its partition holds after it; the
    store takes that count (in the same write batch) and never reads a cold key back
    to count it, in the worker or in a restore, full or from the checkpoint."""
    def counted_flush(fid: str, seq: int, values: dict[bytes, bytes | None],
                      held: int) -> list[Any]:
        recs = [(k, v, fid) for k, v in values.items()]
        meta = {"seq": seq, "offsets": {}, "flush": fid, "out": 0, "wall": NOW,
                "cold": {"01": held}}
        return [*recs, (META_KEY, orjson.dumps(meta), fid)]

    records = counted_flush("a", 1, {_cold(i): b"v" for i in range(30)}, 30)
    records += counted_flush("b", 2, {_cold(i): None for i in range(10)}, 20)
    store = RocksStore(tmp_path / "s", 1 << 20)
    reads = 0
    real_get = store.get

    def counting_get(key: bytes) -> bytes | None:
        nonlocal reads
        reads += 1
        return real_get(key)

    store.get = counting_get  # type: ignore[method-assign]
    run(records, store)
    assert store.count(b"\x01") == 20 and reads == 0
    records += counted_flush("c", 3, {_cold(50): b"v"}, 21)
    store.close()
    store = RocksStore(tmp_path / "s", 1 << 20)
    assert store.count(b"\x01") == 20
    assert run(records, store).from_checkpoint and store.count(b"\x01") == 21
    # the worker's own write of a confirmed flush: the count from its meta
    store.write([(_cold(51), b"v")], None, {"01": 22})
    assert store.count(b"\x01") == 22
    store.close()
