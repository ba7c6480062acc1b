"""KPI-topic volume: snapshot messages written per input event, before and after.

    .venv/bin/python bench/topic.py [--days 2] [--rates 20,200,500] [--live-s 120]
                                    [--baseline-ref REF] [--skip-baseline]

Runs the same workloads through two workers, one after the other, on the same
local broker (each in a fresh namespace): the current tree, and the code at
``--baseline-ref`` (checked out into a git worktree under bench/results/) as the
baseline measured in the same run.

- **replay**: a simulated ``--days``-day log at the simulator's default density,
  all six inputs, produced at once, then closing events so every bucket becomes
  final. Counted once the worker has taken in every event and its topic output
  has settled: messages on the KPI topic, distinct keys, per window.
- **live**: ``kpi-streams simulate --rate R --duration --live-s`` (event times are
  now), then 65 s (one slow cadence); messages on the KPI topic per input event.

Writes bench/results/topic-<ts>.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from chaos import Worker, produce_log  # noqa: E402
from soak import metric_sum, scrape, start_run, write_report  # noqa: E402

from streams.kafka import ensure_topics  # noqa: E402
from streams.readback import read_topic  # noqa: E402
from streams.schemas import parse_rfc3339_ms  # noqa: E402
from streams.settings import load_settings  # noqa: E402
from streams.simulate import DAY, HOUR, Options, closing_events, generate  # noqa: E402
from streams.topics import Topics  # noqa: E402

START = parse_rfc3339_ms("2026-10-01T00:00:00Z")


class TreeWorker(Worker):
    """A worker run from a given source tree (the baseline's worktree)."""

    root: Path = ROOT

    def start(self) -> None:
        env = {**os.environ, **self.env, "KPI_WEB_PORT": str(self.port),
               "KPI_WORKER_ID": self.name, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(self.root)}
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"],
                                         env=env, stdout=fh, stderr=subprocess.STDOUT,
                                         cwd=self.root)


def worktree(ref: str, where: Path) -> Path:
    """A checkout of ``ref`` at ``where`` (made once, then moved to ``ref``)."""
    if not (where / "streams").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(where), ref], cwd=ROOT,
                       check=True, capture_output=True)
    else:
        subprocess.run(["git", "checkout", "-q", "--detach", ref], cwd=where, check=True,
                       capture_output=True)
    return where


def topic_stats(settings: Any) -> dict[str, Any]:
    records = asyncio.run(read_topic(settings, Topics(settings).snapshots, limit_s=60))
    keys = Counter()
    windows: Counter[str] = Counter()
    for msg in records:
        key = msg.key.decode()
        keys[key] += 1
        windows[key.split("|", 2)[1]] += 1
    return {"messages": len(records), "keys": len(keys),
            "bytes": sum(len(m.value or b"") + len(m.key or b"") for m in records),
            "by_window": dict(sorted(windows.items())),
            "keys_by_window": dict(sorted(Counter(k.split("|", 2)[1] for k in keys).items()))}


def settle(w: Worker, events: int, limit_s: float = 1800) -> float:
    """Wait until the worker has taken in ``events`` and its count of published finals
    has not moved for 75 s (longer than the slow cadence). Returns seconds waited."""
    url = f"http://127.0.0.1:{w.port}/metrics"
    began = time.monotonic()
    last, since = -1.0, time.monotonic()
    while time.monotonic() - began < limit_s:
        if not w.alive():
            raise SystemExit(f"{w.name} exited; see {w.log}")
        try:
            text = scrape(url, attempts=3)
        except OSError:
            time.sleep(2)
            continue
        seen = metric_sum(text, "kpi_streams_events_total")
        published = metric_sum(text, "kpi_streams_snapshots_total", final="true")
        lag = metric_sum(text, "kpi_streams_consumer_lag_messages")
        if seen < events or lag > 0 or published != last:
            last, since = published, time.monotonic()
        elif time.monotonic() - since >= 75:
            return time.monotonic() - began
        time.sleep(3)
    raise SystemExit(f"{w.name} did not settle in {limit_s:.0f} s; see {w.log}")


def run_variant(name: str, root: Path, env: dict[str, str], days: float, rates: list[float],
                live_s: float, workdir: Path, stamp: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # -- replay
    ns = f"topic{stamp}{name}r"
    # the closing events end the replay; without them only the wall clock would move
    # an idle partition's watermark, and rolling views would keep moving with it (as
    # they do live)
    venv = {**env, "KPI_NAMESPACE": ns, "KPI_IDLE_TIMEOUT": "6h"}
    s = load_settings({**os.environ, **venv})
    events = [e for b in generate(START, START + int(days * DAY), Options(seed=11))
              for e in b]
    events += closing_events(s.input_partitions, START + int(days * DAY) + 3 * HOUR)
    asyncio.run(ensure_topics(s))
    asyncio.run(produce_log(s, events))
    w = TreeWorker(venv, workdir / f"{name}-replay.log", f"{name}-replay")
    w.root = root
    began = time.monotonic()
    w.start()
    try:
        waited = settle(w, len(events))
    finally:
        w.signal(15)
    stats = topic_stats(s)
    out["replay"] = {"events": len(events), **stats,
                     "per_event": round(stats["messages"] / len(events), 3),
                     "per_key": round(stats["messages"] / max(stats["keys"], 1), 3),
                     "seconds": round(time.monotonic() - began, 1),
                     "settle_s": round(waited, 1)}
    print(f"{name:9} replay  {len(events):8d} events  {stats['messages']:9d} messages  "
          f"{stats['keys']:9d} keys  {out['replay']['per_event']:7.3f}/event  "
          f"{out['replay']['per_key']:5.2f}/key", flush=True)
    # -- live
    for rate in rates:
        ns = f"topic{stamp}{name}l{int(rate)}"
        lenv = {**env, "KPI_NAMESPACE": ns}
        s = load_settings({**os.environ, **lenv})
        asyncio.run(ensure_topics(s))
        w = TreeWorker(lenv, workdir / f"{name}-live{int(rate)}.log", f"{name}-live")
        w.root = root
        w.start()
        try:
            w.wait_ready()
            sim = subprocess.run(
                [sys.executable, "-m", "streams.cli", "simulate", "--rate", str(rate),
                 "--duration", str(live_s), "--batch-size", "50"],
                env={**os.environ, **lenv, "KPI_LOG_LEVEL": "warning",
                     "PYTHONPATH": str(root)}, cwd=root,
                capture_output=True, timeout=live_s + 600, check=False)
            if sim.returncode != 0:
                raise SystemExit(f"simulate failed: {sim.stderr.decode()[-2000:]}")
            # live traffic never settles (views move with the clock): count what the
            # run wrote plus one slow cadence after it
            time.sleep(65)
            text = scrape(f"http://127.0.0.1:{w.port}/metrics")
            produced = int(metric_sum(text, "kpi_streams_events_total"))
        finally:
            w.signal(15)
        stats = topic_stats(s)
        row = {"rate": rate, "seconds": live_s, "events": produced, **stats,
               "per_event": round(stats["messages"] / max(produced, 1), 3)}
        out[f"live_{int(rate)}"] = row
        print(f"{name:9} live {rate:5.0f}/s {produced:7d} events  {stats['messages']:9d} "
              f"messages  {stats['keys']:9d} keys  {row['per_event']:7.3f}/event", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=2.0, help="replayed days (default 2)")
    ap.add_argument("--rates", default="20,200,500",
                    help="live rates in events/s, comma separated (default 20,200,500)")
    ap.add_argument("--live-s", type=float, default=120.0,
                    help="seconds of live traffic per rate (default 120)")
    ap.add_argument("--baseline-ref", default="2f85146",
                    help="git ref of the baseline (default: the last release before "
                    "coalescing, 2f85146)")
    ap.add_argument("--current-ref", default="",
                    help="measure this git ref as the current code (a worktree, so the "
                    "tree can change while the bench runs); default: the working tree")
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    bootstrap, stamp, workdir = start_run("topic")
    env = {"KAFKA_BOOTSTRAP": bootstrap, "KPI_LOG_LEVEL": "warning",
           "KPI_INPUT_PARTITIONS": "3", "KPI_KPI_PARTITIONS": "3",
           "KPI_STATE_DIR": str(workdir / "state")}
    report: dict[str, Any] = {"days": args.days, "rates": rates, "live_s": args.live_s}
    current = ROOT
    if args.current_ref:
        current = worktree(args.current_ref, ROOT / "bench" / "results" / ".current-tree")
        report["current_ref"] = args.current_ref
    variants = [("current", current)]
    if not args.skip_baseline:
        tree = worktree(args.baseline_ref, ROOT / "bench" / "results" / ".baseline-tree")
        variants.insert(0, ("baseline", tree))
        report["baseline_ref"] = args.baseline_ref
    for name, root in variants:
        report[name] = run_variant(name, root, env, args.days, rates, args.live_s, workdir,
                                   stamp)
    if "baseline" in report:
        report["ratio"] = {
            k: round(report["current"][k]["messages"] / max(report["baseline"][k]["messages"],
                                                            1), 4)
            for k in report["current"]}
    write_report("topic", stamp, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
