"""Bounded resources: replay many simulated days and watch the worker's memory and state.

    .venv/bin/python bench/soak.py [--days 30] [--sessions-per-day 4000] [--seed 3]
                                   [--env KPI_RETENTION_1H=7d ...]

Simulated days are produced one at a time to a fresh namespace on the local
broker (started if needed). After each day has been processed, the harness
records the worker's resident memory (VmRSS), its state entries per stage
(``kpi_streams_state_keys``) and the bytes of the state topics on the broker's
disk. Retention (``KPI_RETENTION_*``) expires merged cells, and the lateness
horizon drops per-visitor event lists (the dedupe window), so memory follows
the retention windows, not the length of the run.

Writes bench/results/soak-<ts>.json and prints one line per day.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streams import broker  # noqa: E402
from streams.kafka import ensure_topics  # noqa: E402
from streams.schemas import parse_rfc3339_ms  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.simulate import DAY, Options, World, closing_events  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from chaos import Worker, produce_log  # noqa: E402


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total


def state_by_kind(text: str) -> dict[str, float]:
    """``kpi_streams_state_keys`` as {"stage.kind": entries}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("kpi_streams_state_keys{"):
            head, _, value = line.rpartition(" ")
            labels = {k: v.strip('"') for k, v in
                      (p.split("=", 1) for p in head[head.index("{") + 1:-1].split(","))}
            out[f"{labels['stage']}.{labels['kind']}"] = float(value)
    return dict(sorted(out.items()))


def scrape(url: str, attempts: int = 10) -> str:
    """/metrics text; a worker busy with a replay may answer slowly."""
    for _ in range(attempts - 1):
        try:
            return urllib.request.urlopen(url, timeout=30).read().decode()
        except OSError:
            time.sleep(2)
    return urllib.request.urlopen(url, timeout=30).read().decode()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def dir_bytes(root: Path, prefix: str) -> int:
    total = 0
    for d in root.glob(prefix + "*"):
        for f in d.rglob("*"):
            if f.is_file():
                total += f.stat().st_blocks * 512  # indexes are sparse files
    return total


def start_run(kind: str) -> tuple[str, str, Path]:
    """Start (or find) the local broker; a time stamp and a work directory for one run
    of the ``kind`` bench."""
    bootstrap = broker.start(load_settings())
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workdir = ROOT / "bench" / "results" / f"{kind}-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    return bootstrap, stamp, workdir


def write_report(kind: str, stamp: str, report: dict[str, Any]) -> Path:
    out = ROOT / "bench" / "results" / f"{kind}-{stamp}.json"
    out.write_text(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    print(f"\nwritten to {out}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=30, help="simulated days (default 30)")
    ap.add_argument("--sessions-per-day", type=float, default=4000,
                    help="simulated traffic volume (default 4000)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra worker setting, e.g. KPI_RETENTION_1H=7d (repeatable)")
    args = ap.parse_args()

    base = load_settings()
    bootstrap, stamp, workdir = start_run("soak")
    env = {"KAFKA_BOOTSTRAP": bootstrap, "KPI_NAMESPACE": f"soak{stamp}",
           "KPI_LOG_LEVEL": "warning", "KPI_IDLE_TIMEOUT": "6h",
           "KPI_STATE_DIR": str(workdir / "state"),
           **dict(kv.split("=", 1) for kv in args.env)}
    s = load_settings({**os.environ, **env})
    asyncio.run(ensure_topics(s))
    w = Worker(env, workdir / "worker.log", "soak")
    w.start()
    url = f"http://127.0.0.1:{w.port}/metrics"
    start = parse_rfc3339_ms("2026-10-01T00:00:00Z")
    world = World(start, Options(seed=args.seed, sessions_per_day=args.sessions_per_day))
    data_dir = broker.paths(base).data
    rows: list[dict[str, Any]] = []
    produced = 0
    began = time.monotonic()
    print(f"{'day':>4} {'events':>9} {'rss MB':>7} {'web':>8} {'email':>7} {'spend':>6} "
          f"{'funnel':>7} {'cust':>6} {'merge':>8} {'state MB':>9} {'store MB':>9} "
          f"{'B/visitor':>9} {'s':>6}", flush=True)
    try:
        for day in range(1, args.days + 1):
            events = world.advance(start + day * DAY)
            if day == args.days:
                events += world.drain() + closing_events(s.input_partitions,
                                                         start + day * DAY + 3 * 3_600_000)
            asyncio.run(produce_log(s, events))
            produced += len(events)
            deadline = time.monotonic() + 900
            text = ""
            while time.monotonic() < deadline:
                if not w.alive():
                    raise SystemExit(f"the worker exited; see {w.log}")
                try:
                    text = scrape(url, attempts=1)
                except OSError:
                    time.sleep(1)
                    continue
                if metric_sum(text, "kpi_streams_events_total") >= produced:
                    break
                time.sleep(1)
            else:
                raise SystemExit(f"day {day} was not processed in 15 minutes")
            # stage 1 has counted every event; wait until the later stages (contacts,
            # customers, merge) have consumed everything too, so state is not sampled
            # mid-backlog (the lag gauge is refreshed every 10 s)
            caught_up = 0
            while caught_up < 2 and time.monotonic() < deadline:
                time.sleep(6)
                text = scrape(url)
                lag = metric_sum(text, "kpi_streams_consumer_lag_messages")
                caught_up = caught_up + 1 if lag == 0 else 0
            time.sleep(2)  # a tick to flush, expire and publish
            text = scrape(url)
            assert w.proc is not None
            by_kind = state_by_kind(text)
            keys = {st: sum(n for k, n in by_kind.items() if k.split(".")[0] == st)
                    for st in ("web", "email", "spend", "funnel", "customers", "merge")}
            row = {"day": day, "events": produced, "rss_mb": round(rss_mb(w.proc.pid), 1),
                   "state_keys": keys, "state_by_kind": by_kind,
                   "state_topic_mb": round(dir_bytes(data_dir, f"{s.namespace}.kpi-streams.state.")
                                           / 2**20, 1),
                   "store_mb": round(dir_bytes(s.state_dir, "") / 2**20, 1),
                   "web_store_mb": round(dir_bytes(s.state_dir / s.namespace,
                                                   f"{s.namespace}.kpi-streams.state.web")
                                         / 2**20, 2),
                   "elapsed_s": round(time.monotonic() - began, 1)}
            visitors = by_kind.get("web.visitor", 0) + by_kind.get("web.visitor_cold", 0)
            # the web stage's embedded stores hold the visitors (hot and cold)
            row["store_bytes_per_visitor"] = round(row["web_store_mb"] * 2**20 / visitors, 1) \
                if visitors else None
            rows.append(row)
            print(f"{day:4d} {produced:9d} {row['rss_mb']:7.1f} {keys['web']:8.0f} "
                  f"{keys['email']:7.0f} {keys['spend']:6.0f} {keys['funnel']:7.0f} "
                  f"{keys['customers']:6.0f} {keys['merge']:8.0f} "
                  f"{row['state_topic_mb']:9.1f} {row['store_mb']:9.1f} "
                  f"{row['store_bytes_per_visitor'] or 0:9.1f} {row['elapsed_s']:6.0f}",
                  flush=True)
        (workdir / "metrics-last-day.txt").write_text(text)  # watermarks, state, counters
    finally:
        w.signal(15)
    report = {"days": args.days, "sessions_per_day": args.sessions_per_day,
              "settings": dict(kv.split("=", 1) for kv in args.env),
              "events": produced, "rows": rows,
              "rss_mb_max": max(r["rss_mb"] for r in rows),
              "rss_mb_last": rows[-1]["rss_mb"]}
    write_report("soak", stamp, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
