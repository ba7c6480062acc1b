"""Emission of a replay's finals, without Kafka: µs per snapshot document.

    .venv/bin/python bench/emission.py [--days 2] [--sessions 6000] [--base DIR]
                                       [--repeat 2]

One merge partition is fed ``--days`` of simulated traffic (``--sessions`` sessions a
day, every input, in one batch: the state a replay leaves) and then drained as the
merge stage drains it while catching up with nobody listening live: rounds of at
most 2,000 cells and 8,000 documents, each bounded to ``EMIT_ROUND_S`` of time,
finals only, the rolling views every 20th round. Reported: rounds, documents, and
seconds and µs per document to drain it; and a digest of the latest document per
key, so two trees can be shown to publish the same values.

With ``--base DIR`` the same measurement also runs against the source tree at DIR
(a checkout of an earlier commit), alternating with this tree, each in its own
process; the best of ``--repeat`` is reported per tree, with the ratio base/this.
Results: bench/results/emission-<ts>.json.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = 1_790_812_800_000  # 2026-10-01T00:00:00Z
WINDOWS = frozenset({"1h", "1d", "1mo", "7d", "28d", "30d", "90d"})


def measure(days: float, sessions: int) -> dict[str, Any]:
    """Feed and drain one partition in this process (the tree on ``sys.path``)."""
    from streams.agents.merge import EMIT_MAX_CELLS, EMIT_MAX_DOCS, EMIT_MAX_VIEWS, EMIT_ROUND_S
    from streams.simulate import DAY
    from tests.unit.kpitables import simulated

    m = simulated(START, int(days * DAY), seed=9, sessions_per_day=sessions,
                  kpi_partitions=1).merge[0]
    gc.collect()
    gc.freeze()
    latest: dict[str, Any] = {}
    rounds = docs = 0
    started = time.perf_counter()
    while m.pending or m.views_todo or m.rolls_todo:
        out = m.emit(0, max_cells=EMIT_MAX_CELLS, publish=WINDOWS, max_views=EMIT_MAX_VIEWS,
                     max_docs=EMIT_MAX_DOCS, views=rounds % 20 == 0, finals_only=True,
                     until=time.perf_counter() + EMIT_ROUND_S)
        rounds += 1
        docs += len(out)
        for key, doc in out:
            latest[key] = None if doc is None else \
                (doc["numerator"], doc["denominator"], doc["final"], doc["value"])
    seconds = time.perf_counter() - started
    digest = hashlib.sha1(json.dumps(sorted(latest.items()), default=str).encode())
    return {"cells": len(m.cells), "held_open": len(m.deferred), "rounds": rounds,
            "documents": docs, "keys": len(latest), "seconds": round(seconds, 3),
            "us_per_document": round(seconds / max(docs, 1) * 1e6, 2),
            "digest": digest.hexdigest()[:16]}


def run_tree(tree: Path, days: float, sessions: int) -> dict[str, Any]:
    """``measure`` in a process of its own, against the source tree ``tree``."""
    code = (f"import sys, json; sys.path.insert(0, {str(tree)!r}); "
            f"sys.path.insert(0, {str(ROOT / 'bench')!r}); import emission; "
            f"print(json.dumps(emission.measure({days!r}, {sessions!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=2.0, help="days of traffic fed (2)")
    ap.add_argument("--sessions", type=int, default=6000, help="sessions a day (6000)")
    ap.add_argument("--base", type=Path, help="an earlier source tree to compare with")
    ap.add_argument("--repeat", type=int, default=2, help="runs per tree; the best counts")
    args = ap.parse_args()
    trees = {"this": ROOT} | ({"base": args.base.resolve()} if args.base else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for i in range(args.repeat):
        for name, tree in trees.items():
            r = run_tree(tree, args.days, args.sessions)
            runs[name].append(r)
            print(f"[{i + 1}/{args.repeat}] {name}: {r['rounds']} rounds, {r['documents']:,} "
                  f"documents in {r['seconds']:.2f}s ({r['us_per_document']:.1f} µs each), "
                  f"digest {r['digest']}", file=sys.stderr, flush=True)
    best = {name: min(rs, key=lambda r: r["seconds"]) for name, rs in runs.items()}
    result: dict[str, Any] = {"days": args.days, "sessions_per_day": args.sessions,
                              "best": best, "runs": runs}
    if "base" in best:
        result["base_over_this"] = round(best["base"]["seconds"] / best["this"]["seconds"], 2)
        result["same_documents"] = best["base"]["digest"] == best["this"]["digest"]
        print(f"base/this: {result['base_over_this']}x; same latest documents: "
              f"{result['same_documents']}")
    out = ROOT / "bench" / "results" / f"emission-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=1))
    print(f"-> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
