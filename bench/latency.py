"""Live latency: from an event's produce time to its effect in the worker and on the topic.

    .venv/bin/python bench/latency.py [--rates 200,2000] [--seconds 30] [--batch 10]

For each rate, a fresh namespace and worker; page views stamped with the current
time are produced at that rate (``--batch`` events per message, as a collector
would send them) for ``--seconds``. Meanwhile two observers count:

  api    polls ``/api/kpis?kpi=pageviews&bucket=1h&dim=total`` (the worker's live
         cells) every 50 ms
  topic  consumes the KPI topic and follows the same key's ``numerator``

The n-th page view's latency is the time from its send to the first observation
of a count of at least n (events of one run are counted in the order sent, so
this is exact for counts, whatever the order in between). p50/p99 per rate and
observer go to bench/results/latency-<ts>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import free_port  # noqa: E402

from streams import broker  # noqa: E402
from streams.events import iso_ms  # noqa: E402
from streams.kafka import consumer, ensure_topics, producer  # noqa: E402
from streams.kpis.buckets import floor  # noqa: E402
from streams.produce import BatchProducer  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.topics import Topics  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def latencies(sent: list[tuple[float, int]], seen: list[tuple[float, float]]) -> list[float]:
    """sent: (time, cumulative count) per message; seen: (time, count observed)."""
    out, j = [], 0
    for t_sent, upto in sent:
        while j < len(seen) and seen[j][1] < upto:
            j += 1
        if j == len(seen):
            break  # never seen within the run
        out.append(max(0.0, seen[j][0] - t_sent))
    return out


def start_worker(rate: int, stamp: str) -> tuple[Any, Any, int]:
    """A worker on a fresh namespace, once all its partitions are restored."""
    import subprocess

    base = load_settings()
    env = {"KAFKA_BOOTSTRAP": base.bootstrap, "KPI_NAMESPACE": f"lat{stamp}r{rate}"}
    s = load_settings({**os.environ, **env})
    asyncio.run(ensure_topics(s))
    port = free_port()
    log = ROOT / "bench" / "results" / f"latency-{stamp}-{rate}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env={**os.environ, **env, "KPI_WEB_PORT": str(port), "KPI_LOG_LEVEL": "warning",
                 "KPI_STATE_DIR": tempfile.mkdtemp(prefix="kpi-lat-")},
            stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health?ready=1",
                                        timeout=2):
                break
        except OSError:
            time.sleep(0.2)
    return proc, s, port


async def one_rate(s: Any, port: int, rate: int, seconds: float,
                   batch: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/kpis?kpi=pageviews&bucket=1h&dim=total"
    p = producer(s, linger_ms=5)
    await p.start()
    bp = BatchProducer(p, Topics(s), s.input_partitions, batch)
    sent: list[tuple[float, int]] = []
    seen_api: list[tuple[float, float]] = []
    seen_topic: list[tuple[float, float]] = []
    stop = asyncio.Event()
    hour_key: list[str] = []

    def api_count() -> float:
        with urllib.request.urlopen(url, timeout=2) as resp:
            doc = orjson.loads(resp.read())
        return sum(d["numerator"] for d in doc["snapshots"])

    async def poll_api() -> None:
        while not stop.is_set():
            try:
                n = await asyncio.to_thread(api_count)
                seen_api.append((time.perf_counter(), n))
            except OSError:
                pass
            await asyncio.sleep(0.05)

    async def follow_topic() -> None:
        c = consumer(s, Topics(s).snapshots, auto_offset_reset="latest")
        await c.start()
        try:
            while not stop.is_set():
                got = await c.getmany(timeout_ms=100)
                now = time.perf_counter()
                for msgs in got.values():
                    for m in msgs:
                        if m.key and m.value and m.key.decode() in hour_key:
                            n = orjson.loads(m.value)["numerator"]
                            seen_topic.append((now, n))
        finally:
            await c.stop()

    observers = [asyncio.create_task(poll_api()), asyncio.create_task(follow_topic())]
    await asyncio.sleep(2)  # the topic consumer has joined
    n = 0
    n_id = 0
    t0 = time.perf_counter()
    per_msg = batch
    interval = per_msg / rate
    hours = set()
    while time.perf_counter() - t0 < seconds:
        now_ms = time.time_ns() // 1_000_000
        hours.add(floor(now_ms, "1h"))
        group = []
        for _ in range(per_msg):
            n_id += 1
            group.append({"event_type": "page_view", "event_id": f"lat-{rate}-{n_id}",
                          "occurred_at": iso_ms(now_ms), "schema_version": 1,
                          "visitor_id": f"v{n_id % 5000}", "url": "https://x.example/",
                          "page_type": "blog", "device": "desktop"})
        await bp.send(group)
        n += len(group)
        sent.append((time.perf_counter(), n))
        hour_key[:] = [f"pageviews|1h|{iso_ms(h).replace('.000Z', 'Z')}|" for h in hours]
        target = t0 + len(sent) * interval
        await asyncio.sleep(max(0.0, target - time.perf_counter()))
    achieved = n / (time.perf_counter() - t0)
    await asyncio.sleep(15)  # let the last ones through (> KPI_SNAPSHOT_INTERVAL)
    stop.set()
    await asyncio.gather(*observers)
    await p.stop()
    if len(hours) > 1:  # an hour boundary in the run: the topic count restarts
        seen_topic = []
    api = latencies(sent, seen_api)
    topic = latencies(sent, seen_topic)
    return {"rate": rate, "achieved_events_per_s": round(achieved), "events": n,
            "batch": batch, "api_p50_s": pct(api, 0.5), "api_p99_s": pct(api, 0.99),
            "api_observed": len(api), "topic_p50_s": pct(topic, 0.5),
            "topic_p99_s": pct(topic, 0.99), "topic_observed": len(topic),
            "messages": len(sent)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="200,2000", help="events/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=30.0, help="seconds per rate")
    ap.add_argument("--batch", type=int, default=10, help="events per message (default 10)")
    args = ap.parse_args()
    broker.start(load_settings())
    stamp = time.strftime("%Y%m%dT%H%M%S")
    results = []
    for rate in (int(r) for r in args.rates.split(",")):
        proc, s, port = start_worker(rate, stamp)
        try:
            results.append(asyncio.run(one_rate(s, port, rate, args.seconds, args.batch)))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    out = ROOT / "bench" / "results" / f"latency-{stamp}.json"
    out.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"\n{'rate':>6} {'achieved':>9} {'API p50':>8} {'API p99':>8} {'topic p50':>10} "
          f"{'topic p99':>10}")
    for r in results:
        print(f"{r['rate']:>6} {r['achieved_events_per_s']:>9} {r['api_p50_s']:>8.3f} "
              f"{r['api_p99_s']:>8.3f} {r['topic_p50_s']:>10.3f} {r['topic_p99_s']:>10.3f}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
