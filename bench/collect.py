"""The collector under load on loopback: requests/s, latency, and nothing lost.

    .venv/bin/python bench/collect.py [--requests 20000] [--concurrency 64]
                                      [--batch 1,50] [--seconds 120]

One run, one broker, one machine (ratios, since machines are shared and noisy):

  direct     the same page views produced straight to Kafka with ``BatchProducer``
             (what ``ingest`` does): the baseline, in events/s
  collect    ``kpi-streams collect`` as its own process; a client with
             ``--concurrency`` connections posts ``--requests`` requests (bounded
             also by ``--seconds``) of ``--batch`` page views each (1: browser
             trackers; 50: a server-side batch), with a source token

Latency is from a request's send to its answer, which the collector gives only
after Kafka acknowledged the request's events. Afterwards the page-view topic is
read back: every acknowledged event must be on it (``lost`` must be 0), and
nothing that was not acknowledged may be (``extra``). Results:
bench/results/collect-<ts>.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from latency import pct  # noqa: E402
from run import free_port  # noqa: E402

from streams import broker  # noqa: E402
from streams.events import iso_ms  # noqa: E402
from streams.kafka import ensure_topics, producer  # noqa: E402
from streams.produce import BatchProducer  # noqa: E402
from streams.readback import read_topic  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.topics import Topics  # noqa: E402

TOKEN = "pk_bench_collector_1"


def page_views(n: int, tag: str) -> list[dict[str, Any]]:
    now = iso_ms(time.time_ns() // 1_000_000)
    return [{"event_type": "page_view", "event_id": f"{tag}-{i}", "occurred_at": now,
             "schema_version": 1, "visitor_id": f"v{i % 5000}",
             "url": "https://www.acme.example/pricing?utm_medium=cpc", "page_type": "pricing",
             "referrer": "https://www.google.com/", "device": "desktop", "engaged_ms": 4200}
            for i in range(n)]


async def direct(s: Any, events: list[dict[str, Any]]) -> float:
    p = producer(s)
    await p.start()
    try:
        bp = BatchProducer(p, Topics(s), s.input_partitions, 500)
        t0 = time.perf_counter()
        await bp.send(events)
        return time.perf_counter() - t0
    finally:
        await p.stop()


async def load(port: int, batches: list[list[dict[str, Any]]], concurrency: int,
               seconds: float) -> dict[str, Any]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/collect"
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    lat: list[float] = []
    acked: set[str] = set()
    codes: dict[int, int] = {}
    queue = list(reversed(batches))
    deadline = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while queue and time.monotonic() < deadline:
            batch = queue.pop()
            body = orjson.dumps(batch[0] if len(batch) == 1 else batch)
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                answer = await resp.read()
            lat.append(time.perf_counter() - t0)
            codes[resp.status] = codes.get(resp.status, 0) + 1
            if resp.status == 200 and orjson.loads(answer)["accepted"] == len(batch):
                acked.update(e["event_id"] for e in batch)

    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latency": lat, "acked": acked, "codes": codes, "seconds": wall}


def start_collector(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    import urllib.request

    port = free_port()
    fh = log.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "collect"],
                            env={**os.environ, **env, "KPI_COLLECT_PORT": str(port),
                                 "KPI_COLLECT_TOKENS": f"bench:{TOKEN}:page_view",
                                 "KPI_COLLECT_RATE": "1000000", "KPI_LOG_LEVEL": "warning"},
                            stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the collector exited; see {log}") from None
            time.sleep(0.2)
    raise SystemExit(f"the collector did not answer in 60 s; see {log}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20_000,
                    help="requests per batch size (default 20000)")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="connections the client keeps busy (default 64)")
    ap.add_argument("--batch", default="1,50",
                    help="events per request, comma-separated (default 1,50)")
    ap.add_argument("--seconds", type=float, default=120.0,
                    help="stop sending a run after this long (default 120)")
    args = ap.parse_args()
    base = load_settings()
    if base.uses_local_broker:
        broker.start(base, say=lambda line: print(line, file=sys.stderr))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    rows: list[dict[str, Any]] = []
    for size in (int(b) for b in args.batch.split(",")):
        n = args.requests * size
        ns = f"col{stamp}b{size}"
        env = {"KAFKA_BOOTSTRAP": base.bootstrap, "KPI_NAMESPACE": ns,
               "KPI_STATE_DIR": tempfile.mkdtemp(prefix="kpi-col-")}
        s = load_settings({**os.environ, **env})
        asyncio.run(ensure_topics(s))
        ds = s.replace(namespace=ns + "d")
        asyncio.run(ensure_topics(ds))
        base_s = direct_s = asyncio.run(direct(ds, page_views(n, f"d{uuid.uuid4().hex[:6]}")))
        print(f"[b={size}] direct: {n} events in {direct_s:.1f} s", file=sys.stderr)
        tag = f"c{uuid.uuid4().hex[:6]}"
        events = page_views(n, tag)
        batches = [events[i:i + size] for i in range(0, n, size)]
        log = ROOT / "bench" / "results" / f"collect-{stamp}-b{size}.log"
        proc, port = start_collector(env, log)
        try:
            res = asyncio.run(load(port, batches, args.concurrency, args.seconds))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        on_topic = set()
        for msg in asyncio.run(read_topic(s, Topics(s).input("page_view"))):
            doc = orjson.loads(msg.value) if msg.value is not None else []
            for ev in doc if isinstance(doc, list) else [doc]:
                if ev.get("event_id", "").startswith(tag):
                    on_topic.add(ev["event_id"])
        done = sum(res["codes"].values())
        acked_events = len(res["acked"])
        row = {
            "batch": size, "requests": done, "codes": {str(k): v for k, v in res["codes"].items()},
            "seconds": round(res["seconds"], 2),
            "requests_per_s": round(done / res["seconds"], 1),
            "events_per_s": round(acked_events / res["seconds"], 1),
            "p50_ms": round(pct(res["latency"], 0.50) * 1000, 2),
            "p99_ms": round(pct(res["latency"], 0.99) * 1000, 2),
            "acked_events": acked_events, "on_topic": len(on_topic),
            "lost": len(res["acked"] - on_topic), "extra": len(on_topic - res["acked"]),
            "direct_events_per_s": round(n / base_s, 1),
        }
        row["collect/direct"] = round(row["events_per_s"] / row["direct_events_per_s"], 3)
        rows.append(row)
    out = ROOT / "bench" / "results" / f"collect-{stamp}.json"
    out.write_text(orjson.dumps({"concurrency": args.concurrency, "runs": rows},
                                option=orjson.OPT_INDENT_2).decode())
    print(f"\n{'batch':>5} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'acked':>8} {'lost':>5} {'direct ev/s':>12} {'ratio':>6}")
    for r in rows:
        print(f"{r['batch']:>5} {r['requests_per_s']:>9,.0f} {r['events_per_s']:>10,.0f} "
              f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['acked_events']:>8} "
              f"{r['lost']:>5} {r['direct_events_per_s']:>12,.0f} {r['collect/direct']:>6}")
    print(f"\nwritten to {out}")
    if any(r["lost"] or r["extra"] for r in rows):
        raise SystemExit("events were lost or appeared unacknowledged")


if __name__ == "__main__":
    main()
