"""Backfills, the workload users replay, and the Quix Streams peer on the same page views.

    .venv/bin/python bench/backfill.py [--days 16] [--burst 100000] [--peer]
                                       [--workers 1,2] [--batch 100]

One run, one broker, one machine, one after the other (ratios, since machines are
shared and noisy):

  burst      a dense burst (``bench/run.py``'s stream: ~1,700 events a minute) of
             ``--burst`` events, batched: the figure a backfill is compared with
  backfill   ``--days`` of simulated history at the simulator's default density
             (all six inputs, ``--batch`` events per message), through 1 and/or 2
             workers (``--workers``); two workers on one machine share its cores
             with each other and with the broker. They are started together; on
             the local broker's default (KPI_BROKER_GROUP_DELAY=0) the second
             joins by a rebalance after the first has begun, as a worker added to
             a running group would; with Kafka's default 3s they share the first
             assignment (restart the broker with the setting to measure that)
  peer       (``--peer``) the backfill file's page views only, through kpi-streams
             and through ``../shared/peers/quix/bench.sh``, batched and single-event,
             on the same broker with the same partitions (4)

kpi-streams is timed from its first event accounted to the last page view in the
merged ``1d`` totals (stage 3; ``topic_seconds``: until no document is left to
build), the peer from its first message to its last processed (its own count).
Over that time the workers' and the broker's cores are sampled from /proc
(``cpu`` in the results): one worker uses one core at most (its interpreter),
so a run whose machine is not busy was bound by the worker, not the machine.
Results: bench/results/backfill-<ts>.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from run import pipeline, produce, simulated  # noqa: E402

from streams import broker  # noqa: E402
from streams.produce import Progress  # noqa: E402
from streams.schemas import parse_rfc3339_ms  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.simulate import DAY, Options, generate  # noqa: E402

PEER = ROOT.parent / "shared" / "peers" / "quix" / "bench.sh"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kpi-streams" / "bench"
START = "2026-10-01T00:00:00Z"


def history(days: int, seed: int) -> Path:
    """The simulated log of ``days`` days (default density), cached by its parameters."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"history-{days}d-seed{seed}.jsonl"
    if path.exists():
        return path
    start = parse_rfc3339_ms(START)
    progress = Progress(f"simulating {days} days -> {path}")
    tmp = path.with_suffix(".part")
    n = 0
    with tmp.open("wb") as fh:
        for batch in generate(start, start + days * DAY, Options(seed=seed)):
            fh.write(b"".join(orjson.dumps(e) + b"\n" for e in batch))
            n += len(batch)
            progress.update(n)
    progress.finish()
    tmp.rename(path)
    return path


def load(path: Path, only: str | None = None) -> list[dict[str, Any]]:
    events = []
    with path.open("rb") as fh:
        for line in fh:
            ev = orjson.loads(line)
            if only is None or ev.get("event_type") == only:
                events.append(ev)
    return events


def distinct_pageviews(evs: list[dict[str, Any]]) -> int:
    return len({e["event_id"] for e in evs if e.get("event_type") == "page_view"})


def kpi_run(name: str, events: list[dict[str, Any]], batch: int, stamp: str,
            extra: dict[str, str], workers: int = 1) -> dict[str, Any]:
    base = load_settings()
    env = {"KAFKA_BOOTSTRAP": base.bootstrap, "KPI_NAMESPACE": f"bf{stamp}{name}",
           # a replay: partitions are never idle by the wall clock
           "KPI_IDLE_TIMEOUT": "6h", **extra}
    s = load_settings({**os.environ, **env})
    print(f"[{name}] producing {len(events)} events, {batch} per message ...",
          file=sys.stderr, flush=True)
    messages = asyncio.run(produce(s, events, batch))
    logs = ROOT / "bench" / "results"
    print(f"[{name}] {workers} worker(s) ...", file=sys.stderr, flush=True)
    result = pipeline(s, env, len(events), distinct_pageviews(events),
                      logs / f"backfill-{stamp}-{name}.log", workers=workers)
    span = (parse_rfc3339_ms(max(e["occurred_at"] for e in events))
            - parse_rfc3339_ms(min(e["occurred_at"] for e in events)))
    result.update(messages=messages, batch=batch, workers=workers,
                  event_time_span_days=round(span / DAY, 2))
    print(f"[{name}] {result['events_per_s']:,.0f} events/s", file=sys.stderr, flush=True)
    return result


def quix_run(path: Path, batch: int) -> dict[str, Any]:
    """The peer's own bench script: a single-event run, then a batched one. The script
    stops at a run whose app printed no result (it did in a few runs); what ran is
    kept, with the exit status and the end of its output as ``error``."""
    env = {**os.environ, "BOOTSTRAP": load_settings().bootstrap, "PARTITIONS": "4"}
    out = subprocess.run(["bash", str(PEER), str(path), str(batch), "1"], env=env,
                         capture_output=True, text=True, timeout=3600, check=False)
    runs = [orjson.loads(line[len("BENCH "):]) for line in out.stdout.splitlines()
            if line.startswith("BENCH ")]
    by = {("single" if r["batch"] == 0 else "batched"): r for r in runs}
    version = re.search(r"quixstreams ([0-9.]+)", out.stdout)
    result: dict[str, Any] = {
        k: {"events": r["events"], "seconds": r["process_s"],
            "events_per_s": r["events_per_s"], "messages": r["messages"]}
        for k, r in by.items()} | {"version": version.group(1) if version else None}
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        result["error"] = f"bench.sh exited {out.returncode}: " + " | ".join(tail)
        print(f"[quix] {result['error']}", file=sys.stderr, flush=True)
    return result


def group_delay_ms(settings: Any) -> int | None:
    """The running local broker's group.initial.rebalance.delay.ms (None: a cluster
    of KAFKA_BOOTSTRAP). With 0, a second worker started with the first joins by a
    rebalance once the first is at work (KPI_BROKER_GROUP_DELAY)."""
    if settings.kafka_bootstrap:
        return None
    props = broker.paths(settings).config.read_text()
    m = re.search(r"^group\.initial\.rebalance\.delay\.ms=(\d+)$", props, re.M)
    return int(m.group(1)) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=16, help="days of history (default 16)")
    ap.add_argument("--burst", type=int, default=100_000,
                    help="events of the dense burst baseline (default 100000; 0: skip)")
    ap.add_argument("--workers", default="1", help="worker counts to run the backfill "
                    "with, comma-separated (default 1; e.g. 1,2; 0: skip the backfill)")
    ap.add_argument("--batch", type=int, default=100, help="events per message (default 100)")
    ap.add_argument("--peer", action="store_true",
                    help="also the page views side by side with the Quix Streams peer")
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    base = load_settings()
    broker.start(base)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = history(args.days, args.seed)
    events = load(path)
    results: dict[str, Any] = {"meta": {
        "timestamp": stamp, "days": args.days, "file": str(path), "events": len(events),
        "cpus": os.cpu_count(), "batch": args.batch,
        "group_initial_rebalance_delay_ms": group_delay_ms(base)}}
    if args.burst:
        results["burst"] = kpi_run("burst", simulated(args.burst, 7), args.batch, stamp, {})
    for n in (int(x) for x in args.workers.split(",") if int(x) > 0):
        results[f"backfill_{n}w"] = kpi_run(f"backfill{n}w", events, args.batch, stamp, {},
                                            workers=n)
    if args.peer:
        pvs = [e for e in events if e.get("event_type") == "page_view"]
        pv_path = CACHE / f"{path.stem}-pageviews.jsonl"
        if not pv_path.exists():
            pv_path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in pvs))
        same = {"KPI_INPUT_PARTITIONS": "4", "KPI_KPI_PARTITIONS": "4"}
        results["peer_kpi_batched"] = kpi_run("pvbatched", pvs, args.batch, stamp, same)
        results["peer_kpi_single"] = kpi_run("pvsingle", pvs, 1, stamp, same)
        print("[quix] the peer's bench.sh ...", file=sys.stderr, flush=True)
        results["peer_quix"] = quix_run(pv_path, args.batch)
    ratios: dict[str, float] = {}
    if "burst" in results and "backfill_1w" in results:
        ratios["backfill_1w/burst"] = (results["backfill_1w"]["events_per_s"]
                                       / results["burst"]["events_per_s"])
    if "backfill_1w" in results and "backfill_2w" in results:
        ratios["backfill_2w/1w"] = (results["backfill_2w"]["events_per_s"]
                                    / results["backfill_1w"]["events_per_s"])
        one, two = (results[f"backfill_{n}w"]["topic_events_per_s"] for n in (1, 2))
        if one and two:
            ratios["backfill_2w/1w to the topic"] = two / one
    if args.peer:
        q = results["peer_quix"]
        for k in ("batched", "single"):
            if k in q:
                ratios[f"kpi/quix {k}"] = (results[f"peer_kpi_{k}"]["events_per_s"]
                                           / q[k]["events_per_s"])
    results["ratios"] = ratios
    out = ROOT / "bench" / "results" / f"backfill-{stamp}.json"
    out.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"\n{'run':22} {'events':>9} {'seconds':>8} {'events/s':>10} {'topic s':>8} "
          f"{'worker cores':>13} {'broker':>7} {'machine busy':>13}")
    for name, r in results.items():
        if name == "peer_quix":
            for k in ("batched", "single"):
                if k in r:
                    print(f"{'quix ' + k:22} {r[k]['events']:>9} {r[k]['seconds']:>8.1f} "
                          f"{r[k]['events_per_s']:>10,.0f}")
                else:
                    print(f"{'quix ' + k:22} {'(no result: see peer_quix.error)':>30}")
        elif isinstance(r, dict) and "events_per_s" in r:
            cpu = r.get("cpu") or {}
            topic = r.get("topic_seconds")
            print(f"{name:22} {r['events']:>9} {r['seconds']:>8.1f} "
                  f"{r['events_per_s']:>10,.0f} {'' if topic is None else f'{topic:.1f}':>8} "
                  f"{cpu.get('worker_cores_mean', ''):>13} "
                  f"{cpu.get('broker_cores_mean', ''):>7} "
                  f"{cpu.get('machine_busy_mean', ''):>13}")
    for name, ratio in ratios.items():
        print(f"{name:22} {ratio:>8.2f}")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
