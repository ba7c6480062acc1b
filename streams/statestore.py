"""The embedded store (RocksDB, through rocksdict) behind long-lived state.

Each stage partition that keeps cold state gets its own RocksDB directory
under ``KPI_STATE_DIR``, with a block cache of ``KPI_STATE_CACHE`` bytes (the
memory it may use; everything else is on disk). The durable copy of the state
is the compacted state topic, as before: the store is filled from it when the
worker takes a partition over, and written with every flush.

Because a flush is confirmed by its meta record on the changelog (see
:mod:`streams.store`), the local directory is not trusted across processes: it
is emptied when the partition is taken over and rebuilt from the changelog.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from rocksdict import BlockBasedOptions, Cache, Options, Rdict

from .kpis.visitors import ColdStore, MemoryColdStore

log = logging.getLogger(__name__)


class RocksColdStore:
    """A :class:`~streams.kpis.visitors.ColdStore` in one RocksDB directory."""

    def __init__(self, path: Path, cache_bytes: int) -> None:
        self.path = path
        if path.exists():
            shutil.rmtree(path)  # rebuilt from the changelog (see the module doc)
        path.mkdir(parents=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(Cache(max(cache_bytes, 1 << 20)))
        opts.set_block_based_table_factory(table)
        opts.set_write_buffer_size(max(cache_bytes // 4, 1 << 20))
        self.db = Rdict(str(path), opts)
        self._count = 0  # keys written and not deleted (exact: every put checks)

    def get(self, key: bytes) -> bytes | None:
        value = self.db.get(key)
        return None if value is None else bytes(value)

    def put(self, key: bytes, value: bytes) -> None:
        if self.db.get(key) is None:
            self._count += 1
        self.db[key] = value

    def delete(self, key: bytes) -> None:
        if self.db.get(key) is not None:
            self._count -= 1
            del self.db[key]

    def scan(self, after: bytes | None, limit: int) -> Iterator[tuple[bytes, bytes]]:
        it = self.db.iter()
        if after is None:
            it.seek_to_first()
        else:
            it.seek(after)
            if it.valid() and bytes(it.key()) == after:
                it.next()
        n = 0
        out = []
        while it.valid() and n < limit:
            out.append((bytes(it.key()), bytes(it.value())))
            it.next()
            n += 1
        del it  # an open iterator pins the database
        return iter(out)

    def count(self) -> int:
        return self._count

    def disk_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def close(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def cold_store(kind: str, root: Path, namespace: str, stage: str, partition: int,
               cache_bytes: int) -> ColdStore:
    """The cold store of one stage partition: ``memory`` or ``rocksdb``."""
    if kind == "memory":
        return MemoryColdStore()
    path = root / _safe(namespace or "default") / _safe(stage) / str(partition)
    try:
        return RocksColdStore(path, cache_bytes)
    except Exception as exc:  # rocksdict raises plain Exception for a held lock
        if "lock" not in str(exc).lower():
            raise
        # another worker on this machine still holds it (a rebalance in progress):
        # this copy is rebuilt from the changelog anyway, so use a directory of its own
        log.info("state store %s is in use; using a private copy", path)
        return RocksColdStore(path.with_name(f"{partition}.{os.getpid()}"), cache_bytes)
