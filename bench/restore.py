"""Restore time of one state partition, with and without a local store, by state size.

    .venv/bin/python bench/restore.py [--mb 64,256,1024] [--value-bytes 200]

For each size, a fresh state topic partition on the local broker is filled
with confirmed flushes (the worker's own ``StateWriter``: records, then a meta
record), 5,000 records each, of ``--value-bytes``-byte values. Then, in the same
run:

- **without a local store** (a new machine, a deleted volume): ``restore`` into
  an empty RocksDB store reads the whole changelog;
- **with a local store** (a restart on the same disk): the same store again,
  after 20 more flushes by "another owner", reads only the tail after its
  checkpoint.

A share of the records (``--cold-share``) are cold visitors, which a restored
worker reads in place; the rest are loaded on the heap, as the runner does.
Reported: records and MB, seconds and records/s of the full restore; seconds and
records of the tail restore; seconds to load the hot records (restart = tail +
load). Writes bench/results/restore-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from soak import start_run, write_report  # noqa: E402

from streams import statecodec  # noqa: E402
from streams.kafka import consumer, ensure_topics, producer  # noqa: E402
from streams.kpis.visitors import COLD_PREFIX, cold_name, encode, visitor_key  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.statestore import RocksStore  # noqa: E402
from streams.store import StateWriter, restore  # noqa: E402
from streams.topics import Topics  # noqa: E402

FLUSH = 5_000
COLD = COLD_PREFIX.encode()


def _record(i: int, pad: str, cold_share: float) -> tuple[str, Any]:
    """Record ``i``: a cold visitor (packed bytes under a cold key, read in place after
    a restore) for a share of them, else a value (MessagePack, as the stages' are) that
    a restore loads on the heap."""
    if (i * 0.6180339887) % 1.0 < cold_share:
        return cold_name(visitor_key(f"v{i}")), encode(i, [(i, "paid_search")]) + pad.encode()
    return f"key-{i:09d}", {"v": i, "p": pad}


async def fill(s: Any, topic: str, records: int, value_bytes: int, cold_share: float,
               start: int = 0, cold: int = 0) -> int:
    """Write ``records`` as the worker's flushes would (each meta says how many cold
    records the partition holds after it, ``cold`` before the first); returns that
    count after the last."""
    p = producer(s, linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        w = StateWriter(p, topic, 0)
        pad = "x" * max(value_bytes - 40, 1)
        n = start
        pending = []
        while n < start + records:
            updates = dict(_record(i, pad, cold_share)
                           for i in range(n, min(n + FLUSH, start + records)))
            n += len(updates)
            cold += sum(1 for k in updates if k.startswith(COLD_PREFIX))
            pending.append(w.write(updates, [], {"seq": n, "offsets": {}, "wall":
                                                 time.time_ns() // 1_000_000,
                                                 "cold": {COLD.hex(): cold}}))
            if len(pending) >= 8:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await p.stop()
    return cold


def reader(s: Any) -> Any:
    """The worker's changelog consumer (streams/app.py)."""
    return lambda: consumer(s, max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", default="64,256,1024", help="state sizes in MB (default "
                    "64,256,1024)")
    ap.add_argument("--value-bytes", type=int, default=200)
    ap.add_argument("--cold-share", type=float, default=0.9,
                    help="share of records that are cold visitors (default 0.9: the state "
                    "that grows with a site is mostly visitors)")
    args = ap.parse_args()
    bootstrap, stamp, workdir = start_run("restore")
    rows = []
    for mb in [int(x) for x in args.mb.split(",") if x]:
        s = load_settings({**os.environ, "KAFKA_BOOTSTRAP": bootstrap,
                           "KPI_NAMESPACE": f"restore{stamp}m{mb}",
                           "KPI_INPUT_PARTITIONS": "1", "KPI_KPI_PARTITIONS": "1"})
        asyncio.run(ensure_topics(s))
        topic = Topics(s).state("web")
        records = mb * 2**20 // (args.value_bytes + 16)
        t0 = time.monotonic()
        cold = asyncio.run(fill(s, topic, records, args.value_bytes, args.cold_share))
        fill_s = time.monotonic() - t0
        store = RocksStore(workdir / f"store-{mb}", 64 << 20)
        full = asyncio.run(restore(reader(s), topic, 0, None, store))
        # another owner writes 20 more flushes; this worker restarts on its disk
        cold = asyncio.run(fill(s, topic, 20 * FLUSH, args.value_bytes, args.cold_share,
                                start=records, cold=cold))
        store.close()
        store = RocksStore(workdir / f"store-{mb}", 64 << 20)
        tail = asyncio.run(restore(reader(s), topic, 0, None, store))
        # what the runner does next: load the hot records on the heap (cold ones stay)
        t0 = time.monotonic()
        loaded = sum(1 for k, v in store.items() if not k.startswith(COLD)
                     and statecodec.decode(v) is not None)
        load_s = time.monotonic() - t0
        disk = store.disk_bytes()
        assert store.count(COLD) == cold, (store.count(COLD), cold)  # exact, not read back
        store.close()
        row = {"mb": mb, "records": records, "value_bytes": args.value_bytes,
               "fill_s": round(fill_s, 1),
               "full_s": round(full.seconds, 2),
               "full_records_per_s": round(full.records / full.seconds),
               "tail_s": round(tail.seconds, 3), "tail_records": tail.records,
               "hot_loaded": loaded, "load_s": round(load_s, 2),
               "restart_s": round(tail.seconds + load_s, 2),
               "tail_from_checkpoint": tail.from_checkpoint,
               "store_disk_mb": round(disk / 2**20, 1)}
        rows.append(row)
        print(orjson.dumps(row).decode(), flush=True)
    write_report("restore", stamp, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
