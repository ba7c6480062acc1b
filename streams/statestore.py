"""The embedded store (RocksDB, through rocksdict) behind each stage partition.

A :class:`LocalStore` is a local mirror of one state-changelog partition: every
record of every *confirmed* flush (see :mod:`streams.store`), as the bytes that
went to Kafka, plus a checkpoint: the changelog offset where the newest
confirmed flush starts. It lives in ``KPI_STATE_DIR/<namespace>/<state
topic>/<partition>``; all stores of a worker share ``KPI_STATE_CACHE`` bytes of
block cache and write buffers (:class:`StoreMemory`); the rest is on disk.

- A worker that takes a partition over and finds a checkpoint reads only the
  changelog from that offset on (the newest flush again, then whatever other
  owners wrote since), so a restart costs the tail, not the history.
- Without one (a new machine, a deleted volume) it reads the changelog from the
  beginning into the store, in batches, never holding it all on the heap.
- The store is written only after a flush is acknowledged by Kafka, in one
  atomic RocksDB write batch with the new checkpoint. A crash before that write
  leaves the previous checkpoint, and the tail read repairs the rest; the
  changelog stays the durable copy.
- A checkpoint older than the state topics' compaction lag is not trusted (a
  tombstone it never saw may have been compacted away): the store is rebuilt.

Stages load what they need on the heap from the store at restore. Cold
visitors (:mod:`streams.kpis.visitors`) are never loaded: :class:`ColdView`
reads them in place, with the flush's unconfirmed writes in a small overlay.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch, WriteBufferManager

from .kpis.visitors import COLD_PREFIX, RAW_KEY_PREFIXES

log = logging.getLogger(__name__)

CHECKPOINT = b"\x00checkpoint"
COUNTS = b"\x00counts"  # cold records held, by prefix: as the newest confirmed flush said
_INTERNAL = (CHECKPOINT, COUNTS)
_COUNTED = tuple(p[0] for p in RAW_KEY_PREFIXES)


class MemoryStore:
    """A :class:`LocalStore` in a dict: nothing outlives the process (``memory``)."""

    persistent = False

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.counts: dict[int, int] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def _load_counts(self) -> None:
        raw = self.get(COUNTS)
        if raw is not None:
            self.counts = {int(k): n for k, n in orjson.loads(raw).items()}
            return
        # a store written before counts were kept (or an empty one): count it once
        self.counts = self._scan_counts()
        if any(self.counts.values()):
            log.info("counted the cold records of %s once: %s", getattr(self, "path", "-"),
                     self.counts)

    def count(self, prefix: bytes) -> int:
        """Records held under one cold prefix (exact, without a pass over them)."""
        return self.counts.get(prefix[0], 0)

    def recount(self) -> None:
        """Count the cold records with one pass over their keys: for a store rebuilt
        from a changelog whose flushes did not carry their counts (an earlier
        release's)."""
        self.counts = self._scan_counts()
        self._put(COUNTS, self._counts_bytes())

    def _scan_counts(self) -> dict[int, int]:
        return {p: sum(1 for _ in self.items(bytes([p]))) for p in _COUNTED}

    def _counts_bytes(self) -> bytes:
        return orjson.dumps({str(k): v for k, v in self.counts.items()})

    def _put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def _new_counts(self, checkpoint: dict[str, Any] | None,
                    counts: dict[str, int] | None) -> bytes | None:
        """The cold counts a flush confirmed (its meta's ``cold``: hex prefix -> count),
        merged into this store's, as the bytes to write with its records."""
        if counts is None and checkpoint is not None:
            counts = (checkpoint.get("meta") or {}).get("cold")
        if not counts:
            return None
        for prefix, n in counts.items():
            self.counts[int(prefix, 16)] = int(n)
        return self._counts_bytes()

    def write(self, records: list[tuple[bytes, bytes | None]],
              checkpoint: dict[str, Any] | None,
              counts: dict[str, int] | None = None) -> None:
        """Write one confirmed flush: its records, the cold counts it confirmed (from
        ``counts`` or the checkpoint's meta) and its checkpoint."""
        new_counts = self._new_counts(checkpoint, counts)
        for key, value in records:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        if new_counts is not None:
            self.data[COUNTS] = new_counts
        if checkpoint is not None:
            self.data[CHECKPOINT] = orjson.dumps(checkpoint)

    def checkpoint(self) -> dict[str, Any] | None:
        raw = self.data.get(CHECKPOINT)
        return None if raw is None else dict(orjson.loads(raw))

    def items(self, prefix: bytes = b"", after: bytes | None = None,
              limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(k for k in self.data if k.startswith(prefix) and k not in _INTERNAL
                      and (after is None or k > after))
        for k in keys[:limit]:
            yield k, self.data[k]

    def wipe(self) -> None:
        self.data.clear()
        self.counts = {}

    def disk_bytes(self) -> int:
        return 0

    def close(self) -> None:
        self.data.clear()


class StoreMemory:
    """The memory every embedded store of one worker shares: one block cache of
    ``KPI_STATE_CACHE`` bytes, with the stores' write buffers (memtables) charged to
    it (at most half), so the worker's RocksDB memory is bounded by that one setting
    however many partitions it holds (as Kafka Streams' bounded-memory config)."""

    def __init__(self, cache_bytes: int) -> None:
        self.cache_bytes = max(cache_bytes, 1 << 20)
        self.cache = Cache(self.cache_bytes)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            self.cache_bytes // 2, False, self.cache)

    def options(self) -> Options:
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        # index and filter blocks in the same cache, so they count against the budget
        # instead of growing with the number of table files (Kafka Streams' bounded
        # memory config does the same); a bloom filter answers "never seen" lookups
        # (every new visitor asks the cold store) without reading a data block
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        opts.set_write_buffer_manager(self.write_buffers)
        # many small stores: flush each memtable early rather than grow it to 64 MB
        opts.set_write_buffer_size(max(min(self.cache_bytes // 16, 8 << 20), 1 << 20))
        return opts


class RocksStore(MemoryStore):
    """A :class:`LocalStore` in one RocksDB directory that outlives the process."""

    persistent = True

    def __init__(self, path: Path, memory: StoreMemory | int) -> None:
        self.path = path
        self.memory = memory if isinstance(memory, StoreMemory) else StoreMemory(memory)
        path.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        self._load_counts()

    def _open(self) -> Rdict:
        return Rdict(str(self.path), self.memory.options())

    def get(self, key: bytes) -> bytes | None:
        value = self.db.get(key)
        return None if value is None else bytes(value)

    def write(self, records: list[tuple[bytes, bytes | None]],
              checkpoint: dict[str, Any] | None,
              counts: dict[str, int] | None = None) -> None:
        new_counts = self._new_counts(checkpoint, counts)
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if new_counts is not None:
            batch.put(COUNTS, new_counts)
        if checkpoint is not None:
            batch.put(CHECKPOINT, orjson.dumps(checkpoint))
        try:
            self.db.write(batch)  # atomic: the records, counts and checkpoint, or none
        except BaseException:
            self._load_counts()  # the counts in memory ran ahead of a failed write
            raise

    def _put(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def checkpoint(self) -> dict[str, Any] | None:
        raw = self.db.get(CHECKPOINT)
        return None if raw is None else dict(orjson.loads(bytes(raw)))

    def items(self, prefix: bytes = b"", after: bytes | None = None,
              limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        start = prefix if after is None or after < prefix else after
        it.seek(start)
        n = 0
        try:
            while it.valid() and (limit is None or n < limit):
                key = bytes(it.key())
                if not key.startswith(prefix):
                    break
                if key not in _INTERNAL and (after is None or key > after):
                    yield key, bytes(it.value())
                    n += 1
                it.next()
        finally:
            del it  # an open iterator pins the database

    def wipe(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.db = self._open()
        self.counts = {}

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def close(self) -> None:
        self.db.close()


LocalStore = MemoryStore  # the interface; RocksStore is the one that persists


class ColdView:
    """The cold records (visitors, e-mail messages: ``prefix``) of one partition, read
    in place from its local store.

    Writes (a visitor going cold, the TTL sweep) wait in an overlay until their
    flush is confirmed and written to the store by the runner (``committed``)."""

    def __init__(self, store: MemoryStore, prefix: str = COLD_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.encode()
        self.overlay: dict[bytes, bytes | None] = {}
        self.n = 0  # net change of the overlay: records it adds minus those it deletes

    def _name(self, key: bytes) -> bytes:
        return self.prefix + key.hex().encode()

    def get(self, key: bytes) -> bytes | None:
        name = self._name(key)
        if name in self.overlay:
            return self.overlay[name]
        return self.store.get(name)

    def put(self, key: bytes, value: bytes) -> None:
        if self.get(key) is None:
            self.n += 1
        self.overlay[self._name(key)] = value

    def delete(self, key: bytes) -> None:
        if self.get(key) is not None:
            self.n -= 1
            self.overlay[self._name(key)] = None

    def scan(self, after: bytes | None, limit: int) -> Iterator[tuple[bytes, bytes]]:
        start = None if after is None else self._name(after)
        out = []
        for name, value in self.store.items(self.prefix, start, limit):
            current = self.overlay.get(name, value)
            if current is not None:
                out.append((bytes.fromhex(name[len(self.prefix):].decode()), current))
        return iter(out)

    def count(self) -> int:
        """Cold records of this prefix, exact: the store's count and the overlay's."""
        return self.store.count(self.prefix) + self.n

    def counts(self) -> dict[str, int]:
        """What a flush's meta carries (hex prefix -> count, the overlay included), so
        the local store and any restore learn the count from the changelog instead of
        reading every cold key back."""
        return {self.prefix.hex(): self.count()}

    def committed(self) -> None:
        self.n = 0  # the overlay is in the store, and so in its count
        self.overlay.clear()

    def close(self) -> None:
        self.overlay.clear()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def open_store(kind: str, root: Path, namespace: str, topic: str, partition: int,
               memory: StoreMemory | int) -> MemoryStore:
    """The local store of one state-topic partition: ``memory`` or ``rocksdb``."""
    if kind == "memory":
        return MemoryStore()
    path = root / _safe(namespace or "default") / _safe(topic) / str(partition)
    try:
        return RocksStore(path, memory)
    except Exception as exc:  # rocksdict raises plain Exception for a held lock
        if "lock" not in str(exc).lower():
            raise
        # another worker on this machine holds it (two workers sharing a state
        # directory, a rebalance in flight): use a private copy, rebuilt from the
        # changelog
        private = path.with_name(f"{partition}.{os.getpid()}")
        log.warning("state store %s is held by another process; using %s (give each "
                    "worker its own KPI_STATE_DIR)", path, private)
        shutil.rmtree(private, ignore_errors=True)
        return RocksStore(private, memory)
