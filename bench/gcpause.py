"""The cycle collector's share of a replay, in process: CPython's default thresholds
against the worker's (``streams.worker.GC_THRESHOLDS`` with ``gc.freeze()``).

    .venv/bin/python bench/gcpause.py [--days 4] [--sessions 150] [--repeat 3]

Each round runs, in its own process, ``--days`` simulated days through the in-process
pipeline (every stage, the merge included, as ``streams.local`` builds it; a day per
batch, then emission and expiry, with the inputs' horizon a worker would read) under
one setting of the collector, timing the whole replay and every collection
(``gc.callbacks``). Reported: the best of ``--repeat`` rounds per setting, the share
of time in the collector, its longest pause, what one full collection costs at the
end (over the objects it tracks and has not frozen), the peak resident memory, and
the ratio default / tuned.
Results: bench/results/gcpause-<ts>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z


def one(days: int, sessions: int, tuned: bool) -> dict[str, Any]:
    """One replay in this process; what it cost."""
    sys.path.insert(0, str(ROOT))
    from streams.agents.horizon import horizon_margin, horizon_of_records
    from streams.events import Decoder
    from streams.local import LocalPipeline, decode_all
    from streams.settings import load_settings
    from streams.simulate import DAY, Options, generate
    from streams.worker import tune_interpreter

    settings = load_settings({})
    decoder = Decoder.from_settings(settings)
    batches = []
    for d in range(days):
        events = [e for b in generate(START_MS + d * DAY, START_MS + (d + 1) * DAY,
                                      Options(seed=11, sessions_per_day=sessions)) for e in b]
        batches.append(decode_all(decoder, events, START_MS + 400 * DAY))
    if tuned:
        tune_interpreter()
    spent, worst, started = [0.0], [0.0], [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - started[0]
            spent[0] += pause
            worst[0] = max(worst[0], pause)

    gc.callbacks.append(timed)
    lp = LocalPipeline(partitions=2, kpi_partitions=2)
    lp.input_horizon = horizon_of_records((r for b in batches for r in b), 2,
                                          horizon_margin(settings))
    t0 = time.perf_counter()
    for d, recs in enumerate(batches):
        lp.feed(recs, wall_ms=START_MS + (d + 1) * DAY)
        lp.emit(START_MS + (d + 1) * DAY)
        lp.expire()
    total = time.perf_counter() - t0
    gc.callbacks.remove(timed)
    # what one full collection costs now, with the replay's state on the heap: the
    # collector runs one whenever a quarter of what it walked last time is new, over
    # everything it tracks and has not frozen
    tracked = len(gc.get_objects())
    t1 = time.perf_counter()
    gc.collect()
    full = time.perf_counter() - t1
    import resource

    return {"events": sum(len(b) for b in batches), "seconds": total,
            "gc_seconds": spent[0], "gc_share": spent[0] / total,
            "longest_pause_ms": 1000 * worst[0],
            "full_collection_ms": 1000 * full, "tracked_objects": tracked,
            "frozen_objects": gc.get_freeze_count(),
            # peak resident memory: cycles the collector now finds later cost this
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=4)
    ap.add_argument("--sessions", type=int, default=150, help="sessions a simulated day")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--one", choices=["default", "tuned"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.days, args.sessions, args.one == "tuned")))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "tuned": []}
    for i in range(args.repeat):
        for mode in ("default", "tuned"):
            out = subprocess.run([sys.executable, __file__, "--one", mode, "--days",
                                  str(args.days), "--sessions", str(args.sessions)],
                                 capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            runs[mode].append(res)
            print(f"[{i + 1}/{args.repeat}] {mode:8} {res['seconds']:6.2f} s, collector "
                  f"{100 * res['gc_share']:4.1f} %, longest pause "
                  f"{res['longest_pause_ms']:5.0f} ms, a full collection "
                  f"{res['full_collection_ms']:5.0f} ms, peak RSS {res['max_rss_mb']:.0f} MB",
                  file=sys.stderr, flush=True)
    best = {mode: min(rs, key=lambda r: r["seconds"]) for mode, rs in runs.items()}
    result = {"days": args.days, "sessions_per_day": args.sessions, "runs": runs,
              "best": best, "default/tuned": best["default"]["seconds"] /
              best["tuned"]["seconds"]}
    out_path = ROOT / "bench" / "results" / f"gcpause-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out_path.write_text(json.dumps(result, indent=1))
    print(f"default / tuned: {result['default/tuned']:.2f} x; written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
