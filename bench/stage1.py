"""Stage 1 on page views alone, without Kafka: µs per page view to decode and to process.

    .venv/bin/python bench/stage1.py [--days 16] [--batch 100] [--take 500]
                                     [--partitions 4] [--repeat 3] [--base /work/main]
                                     [--profile decode|web]

The page views of the simulated backfill (``bench/backfill.py``'s history file:
``--days`` days, seed ``--seed``) are keyed by visitor and split over
``--partitions`` partitions as the producer splits them, then encoded as the Kafka
values would be: JSON arrays of ``--batch`` events. Per partition, every message
goes through ``Decoder.decode`` (as ``InputStage.ingest`` calls it), and the records
of each worker step (``--take`` messages over all partitions, as
``KPI_TAKE_MESSAGES``) go through one ``WebPartition.process``, followed by
``to_state`` of every visitor it touched (what the flush writes to the changelog).
The web stage is configured as the worker configures it (the default settings, with
the built-in lead-scoring rules), and so is the cycle collector (``tune_interpreter``);
its input horizon is the one a worker starting on this replay finds, so minute
buckets past retention are skipped as they are there.

With ``--base DIR`` the same measurement also runs against the source tree at DIR
(e.g. a checkout of main), alternating with this tree, each in its own process;
the best of ``--repeat`` rounds is reported with the ratios base/this (how many
times faster this tree is). ``--profile`` prints a cProfile of one phase instead.
Results: bench/results/stage1-<ts>.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kpi-streams" / "bench"
START_MS = 1_790_812_800_000  # 2026-10-01T00:00:00Z, as bench/backfill.py
PHASES = ("decode", "web", "state")


def page_views(days: int, seed: int) -> Path:
    """The backfill history's page views as JSON lines (generated once, then cached)."""
    path = CACHE / f"history-{days}d-seed{seed}-pageviews.jsonl"
    if path.exists():
        return path
    import orjson

    from streams.simulate import DAY, Options, generate

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    with tmp.open("wb") as fh:
        for batch in generate(START_MS, START_MS + days * DAY, Options(seed=seed)):
            fh.write(b"".join(orjson.dumps(e) + b"\n" for e in batch
                              if e.get("event_type") == "page_view"))
    tmp.rename(path)
    return path


def messages(path: Path, partitions: int, batch: int) -> list[tuple[int, bytes]]:
    """(partition, value) in production order: arrays of ``batch`` events per partition."""
    import orjson

    from streams.produce import partition_for

    groups: dict[int, list[bytes]] = {}
    out: list[tuple[int, bytes]] = []
    with path.open("rb") as fh:
        for line in fh:
            ev = orjson.loads(line)
            p = partition_for(ev["visitor_id"], partitions)
            group = groups.setdefault(p, [])
            group.append(line.rstrip(b"\n"))
            if len(group) >= batch:
                out.append((p, _array(group, batch)))
                groups[p] = []
    out += [(p, _array(g, batch)) for p, g in groups.items() if g]
    return out


def _array(lines: list[bytes], batch: int) -> bytes:
    return lines[0] if batch == 1 else b"[" + b",".join(lines) + b"]"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One pass in this process (whatever ``streams`` is on the path)."""
    from streams.agents.horizon import horizon_margin, horizon_of_records
    from streams.events import Decoder
    from streams.kpis.scoring import scoring_from_settings
    from streams.kpis.web import WebConfig, WebPartition
    from streams.settings import load_settings
    from streams.worker import tune_interpreter

    msgs = messages(page_views(args.days, args.seed), args.partitions, args.batch)
    # the collector as the worker runs it (its thresholds, the state frozen once it
    # survives): with CPython's defaults the young collections' walks showed in
    # whatever frame allocated, about a fifth of the web stage's samples
    tune_interpreter()
    settings = load_settings({})
    decoder = Decoder.from_settings(settings)
    s = settings  # as the worker configures the web stage (its web_config)
    cfg = WebConfig(
        lateness_ms=s.allowed_lateness_ms, session_timeout_ms=s.session_timeout_ms,
        split_midnight=s.session_split_midnight, split_campaign=s.session_split_campaign,
        engaged_ms=s.engaged_ms, lead_goals=frozenset(s.lead_goals),
        lookback_ms=s.attribution_lookback_ms, half_life_ms=s.time_decay_half_life_ms,
        visitor_ttl_ms=s.visitor_ttl_ms, scoring=scoring_from_settings(s))
    webs = [WebPartition(cfg) for _ in range(args.partitions)]
    now = START_MS + 400 * 86_400_000
    # the inputs' horizon, as a worker finds it when it starts on a replay
    # (KPI_REPLAY_SKIP_EXPIRED, the default): minute buckets past retention are not built
    hz = horizon_of_records((r for _, value in msgs
                             for r in decoder.decode(value, "page_view", now)[0]),
                            args.partitions, horizon_margin(settings))
    for web in webs:
        web.input_horizon = hz
    topic = "page_views"
    spent = dict.fromkeys(PHASES, 0.0)
    events = rejected = 0
    profile = cProfile.Profile() if args.profile else None
    clock = time.perf_counter
    for step in range(0, len(msgs), args.take):
        items: dict[int, list[tuple[str, Any]]] = {}
        t0 = clock()
        if profile is not None and args.profile == "decode":
            profile.enable()
        for p, value in msgs[step:step + args.take]:
            records, rejects = decoder.decode(value, "page_view", now)
            rejected += len(rejects)
            part_items = items.setdefault(p, [])
            for rec in records:
                part_items.append((topic, rec))
        if profile is not None:
            profile.disable()
        t1 = clock()
        outs = []
        if profile is not None and args.profile == "web":
            profile.enable()
        for p, part_items in items.items():
            events += len(part_items)
            outs.append((p, webs[p].process(part_items, now)))
        if profile is not None:
            profile.disable()
        t2 = clock()
        for p, out in outs:
            for key in out.dirty:
                webs[p].dump(key)
        t3 = clock()
        spent["decode"] += t1 - t0
        spent["web"] += t2 - t1
        spent["state"] += t3 - t2
    if profile is not None:
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(25)
    return {"events": events, "rejected": rejected, "messages": len(msgs),
            "us_per_event": {k: round(v / events * 1e6, 3) for k, v in spent.items()},
            "streams": __import__("streams").__file__}


def run_tree(tree: Path, argv: list[str]) -> dict[str, Any]:
    # the tree first; other entries of PYTHONPATH stay (not this tree: it would shadow)
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and Path(p).resolve() != ROOT]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), *rest])}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--once", *argv],
                         env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=16, help="days of history (default 16)")
    ap.add_argument("--seed", type=int, default=3, help="simulator seed (default 3)")
    ap.add_argument("--batch", type=int, default=100, help="events per message (default 100)")
    ap.add_argument("--take", type=int, default=500,
                    help="messages per worker step, over all partitions (default 500)")
    ap.add_argument("--partitions", type=int, default=4, help="input partitions (default 4)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per tree; best is kept")
    ap.add_argument("--base", type=Path, help="also measure the source tree at this path")
    ap.add_argument("--profile", choices=("decode", "web"),
                    help="print a cProfile of one phase (this tree, one round)")
    ap.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.once or args.profile:
        print(json.dumps(measure(args)))
        return 0
    page_views(args.days, args.seed)  # generate once, before any timing
    argv = [f"--days={args.days}", f"--seed={args.seed}", f"--batch={args.batch}",
            f"--take={args.take}", f"--partitions={args.partitions}"]
    trees = {"this": ROOT} | ({"base": args.base.resolve()} if args.base else {})
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for i in range(args.repeat):
        for name, tree in trees.items():
            runs[name].append(run_tree(tree, argv))
            us = runs[name][-1]["us_per_event"]
            print(f"round {i + 1} {name:4}: " + "  ".join(
                f"{k} {v:.2f}" for k, v in us.items()) + " µs/page view", file=sys.stderr)
    best = {name: {k: min(r["us_per_event"][k] for r in rs) for k in PHASES}
            for name, rs in runs.items()}
    for b in best.values():
        b["total"] = round(sum(b[k] for k in PHASES), 3)
    result: dict[str, Any] = {
        "meta": {"timestamp": time.strftime("%Y%m%dT%H%M%S"), "days": args.days,
                 "seed": args.seed, "batch": args.batch, "take": args.take,
                 "partitions": args.partitions, "repeat": args.repeat,
                 "events": runs["this"][0]["events"], "cpus": os.cpu_count(),
                 "trees": {k: str(v) for k, v in trees.items()}},
        "us_per_page_view": best, "runs": runs}
    if "base" in best:
        result["speedup_base_over_this"] = {
            k: round(best["base"][k] / best["this"][k], 2) for k in (*PHASES, "total")}
    out = ROOT / "bench" / "results" / f"stage1-{result['meta']['timestamp']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'µs/page view':14} " + " ".join(f"{k:>8}" for k in (*PHASES, "total")))
    for name, b in best.items():
        print(f"{name:14} " + " ".join(f"{b[k]:>8.2f}" for k in (*PHASES, "total")))
    if "speedup_base_over_this" in result:
        sp = result["speedup_base_over_this"]
        print(f"{'base/this':14} " + " ".join(f"{sp[k]:>7.2f}x" for k in (*PHASES, "total")))
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
